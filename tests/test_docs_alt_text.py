"""The docs hook gives each tutorial figure the alt text of its cell's ``# alt:`` comment."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("bs4")
ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("sdelab_docs", ROOT / "docs/_hooks/sdelab_docs.py")
hook = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("sdelab_docs", hook)
_spec.loader.exec_module(hook)
PAGE = SimpleNamespace(file=SimpleNamespace(src_uri="tutorials/99_test.py"))


def _cell(source: str, n_images: int) -> str:
    # the shape nbconvert writes: highlighted source in a <pre>, a plain copy for the
    # clipboard button, then the outputs
    images = "".join(
        f'<div class="jp-OutputArea-output"><img src="data:image/png;base64,{i}" '
        'alt="No description has been provided for this image"></div>'
        for i in range(n_images)
    )
    return (
        f'<div class="jp-Cell jp-CodeCell"><div class="jp-InputArea">'
        f'<div class="jp-InputPrompt">In [1]:</div><div class="highlight-ipynb"><pre>{source}'
        f'</pre></div><div class="clipboard-copy-txt">{source}</div></div>'
        f'<div class="jp-OutputArea">{images}</div></div>'
    )


def test_each_figure_gets_its_comment_in_order(caplog: pytest.LogCaptureFixture):
    source = (
        "fig = plot()\n# alt: First figure, a line\n#   going up.\nplt.show()\n"
        "# alt: Second &amp; last.\ndisplay(img)"
    )
    with caplog.at_level(logging.WARNING):
        html = hook._set_alt_texts(_cell(source, 2), PAGE)
    assert 'alt="First figure, a line going up."' in html
    assert 'alt="Second &amp; last."' in html
    assert "No description" not in html and not caplog.records


@pytest.mark.parametrize("n_comments, n_images", [(0, 1), (1, 2), (2, 1)])
def test_a_figure_without_its_comment_warns(caplog, n_comments: int, n_images: int):
    source = "\n".join(["x = 1", *[f"# alt: figure {i}" for i in range(n_comments)]])
    with caplog.at_level(logging.WARNING):
        hook._set_alt_texts(_cell(source, n_images), PAGE)
    assert any("alt" in r.getMessage() and "99_test" in r.getMessage() for r in caplog.records)
