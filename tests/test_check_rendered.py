"""The parsing behind docs/check_rendered.py (the browser run itself is a CI step).

``scan`` must find every math span MathJax is told to typeset, and nothing else; ``compare``
must fail a page whose formulas did not all render.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_rendered", ROOT / "docs/check_rendered.py")
check = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("check_rendered", check)  # dataclasses look their module up
_spec.loader.exec_module(check)

# a Markdown page (arithmatex) and a notebook cell, as mkdocs writes them
BUILT = r"""<html><head><style>.jp-RenderedMarkdown p { color: red }</style></head><body>
<nav class="md-nav"><a class="md-nav__link"><span class="md-ellipsis">
  \(\varepsilon\) truncation</span></a></nav>
<article class="md-content__inner md-typeset">
<p>The drift <span class="arithmatex">\(f(x, t)\)</span> and</p>
<div class="arithmatex">\[ dx = f\,dt + g\,dw \]</div>
<p>costs $5 and $6 in prose, left alone</p>
<pre><code>print("\(not math\)")</code></pre>
<img src="x.png" alt="a figure">
<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown jp-MarkdownOutput">
<p>Steps from $T = 1$ to $\varepsilon$; a literal \$ stays; <br>
$$ p_t(x) = \int p_{0t}(x \mid y)\, p_0(y)\, dy $$</p>
<ul><li>and <strong>$\sigma(t)^2$</strong></li></ul>
</div>
<script>var s = "\(script\)";</script>
</article></body></html>"""
N_MATH = 7  # the nav label, the two arithmatex elements, four spans in the notebook cell


def _rendered(html: str, leave: int = 0, error: bool = False) -> str:
    """``html`` as MathJax leaves it: every math span but the last ``leave`` typeset."""
    spans = check.scan(html).spans
    for i, span in enumerate(spans[: len(spans) - leave]):
        node = '<g data-mml-node="merror"></g>' if error and i == 0 else "<path d='M0'/>"
        html = html.replace(span, f"<mjx-container><svg>{node}</svg></mjx-container>", 1)
    return html


def test_scan_finds_the_typeset_math_and_nothing_else():
    page = check.scan(BUILT)
    assert len(page.spans) == N_MATH
    assert r"\(\varepsilon\)" in page.spans
    assert r"$T = 1$" in page.spans and r"$\sigma(t)^2$" in page.spans
    assert any(s.startswith("$$ p_t(x)") for s in page.spans)
    assert not any("$5" in s or "not math" in s or "script" in s for s in page.spans)
    assert page.rendered == 0 and page.errors == 0
    # the raw \( / \[ in visible text: the nav label, the two arithmatex elements
    assert len(page.raw_anywhere) == 3


def test_a_fully_rendered_page_passes():
    after = check.scan(_rendered(BUILT))
    assert (after.rendered, after.spans, after.raw_anywhere) == (N_MATH, [], [])
    assert check.compare(check.scan(BUILT), after) == []


@pytest.mark.parametrize(
    "dom, problem",
    [
        (BUILT, "0 formulas rendered"),  # MathJax never ran (no script, or a CDN offline)
        (_rendered(BUILT, leave=1), "left as raw text"),  # one cell skipped
        (_rendered(BUILT, error=True), "MathJax errors"),
    ],
)
def test_a_page_with_unrendered_math_fails(dom: str, problem: str):
    problems = check.compare(check.scan(BUILT), check.scan(dom))
    assert any(problem in p for p in problems), problems


def test_leftover_raw_math_outside_the_typeset_classes_fails():
    dom = _rendered(BUILT).replace("left alone", r"left \(x\) alone")
    problems = check.compare(check.scan(BUILT), check.scan(dom))
    assert any(r"raw \( or \[" in p for p in problems), problems


def test_a_page_without_math_is_refused():
    empty = "<html><body><p>no formulas</p></body></html>"
    assert any("no math span" in p for p in check.compare(check.scan(empty), check.scan(empty)))


def test_the_check_and_the_site_agree_on_what_mathjax_typesets():
    config = (ROOT / "docs/javascripts/mathjax.js").read_text(encoding="utf-8")
    classes = re.search(r'processHtmlClass:\s*"([^"]*)"', config).group(1).split("|")
    assert set(classes) == check.MATH_CLASSES


def test_the_site_loads_no_script_or_style_from_the_network():
    yaml = pytest.importorskip("yaml")  # PyYAML comes with mkdocs
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    urls = [*config["extra_javascript"], *config.get("extra_css", [])]
    assert urls and not [u for u in urls if re.match(r"[a-z]+:|//", str(u))]
