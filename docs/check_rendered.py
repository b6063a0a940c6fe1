"""Check that the formulas of the built site render in a real browser (headless Chromium).

usage: ``python docs/check_rendered.py SITE_DIR [PAGE ...]``

Serves ``SITE_DIR`` (the output of ``mkdocs build``) on 127.0.0.1, loads each page in
headless Chromium, lets MathJax run (``--virtual-time-budget``) and reads back the DOM. A page
passes when

* at least as many formulas rendered (``<mjx-container>`` elements) as the built HTML holds
  math spans: each ``\\(...\\)``, ``\\[...\\]``, ``$...$`` or ``$$...$$`` in the text of the
  elements MathJax is told to typeset (``arithmatex``, arithmatex's output in Markdown pages;
  ``jp-RenderedMarkdown``, a notebook's Markdown cell in tutorial pages; ``md-ellipsis``, a
  navigation label, where a heading's math lands);
* no math span is left as raw text in those elements, and no ``\\(`` or ``\\[`` anywhere in the
  visible text (outside code, scripts and styles);
* no formula rendered as a MathJax error (an unknown macro, unbalanced braces).

The default pages are one concept page and one tutorial page. Chromium is Debian's
``chromium`` package (``apt-get install chromium``), or the binary named by ``$CHROMIUM``.
Exit status 0 when every page passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

DEFAULT_PAGES = ("concepts/likelihood/index.html", "tutorials/01_forward_sdes/index.html")
# the classes docs/javascripts/mathjax.js hands to MathJax (its processHtmlClass)
MATH_CLASSES = frozenset({"arithmatex", "jp-RenderedMarkdown", "md-ellipsis"})
# one math span, in the delimiters the site's MathJax accepts; \$ is a literal dollar
MATH_SPAN = re.compile(
    r"\$\$.+?\$\$|\\\[.+?\\\]|\\\(.+?\\\)|(?<!\\)\$.+?(?<!\\)\$|\\begin\{(\w+\*?)\}.+?\\end\{\1\}",
    re.S,
)
RAW_ANYWHERE = re.compile(r"\\[(\[]")
# elements whose text is not prose: MathJax skips them, and so does this check
SKIP_TAGS = frozenset({"script", "style", "pre", "code", "textarea", "noscript", "mjx-container"})
VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


@dataclass
class PageMath:
    """What one HTML document holds: its math spans and its rendered formulas."""

    spans: list[str] = field(default_factory=list)  # raw math spans in the typeset elements
    rendered: int = 0  # <mjx-container> elements
    errors: int = 0  # formulas MathJax rendered as an error
    raw_anywhere: list[str] = field(default_factory=list)  # \( or \[ left in visible text


class _MathScanner(HTMLParser):
    """Walk a document once, keeping the text of the typeset elements and the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._stack: list[tuple[str, bool, bool]] = []  # (tag, in math element, skipped)
        self._math_text: list[str] = []
        self._visible: list[str] = []
        self.result = PageMath()

    def _state(self) -> tuple[bool, bool]:
        return self._stack[-1][1:] if self._stack else (False, False)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "mjx-container":
            self.result.rendered += 1
        if tag == "mjx-merror" or attr.get("data-mml-node") == "merror":
            self.result.errors += 1
        if tag in VOID_TAGS:
            return
        in_math, skipped = self._state()
        classes = set((attr.get("class") or "").split())
        if classes & MATH_CLASSES and not skipped and not in_math:
            self._flush()  # each typeset element is scanned on its own
            in_math = True
        self._stack.append((tag, in_math, skipped or tag in SKIP_TAGS))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <path .../>: counted like a start tag, never pushed
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS and self._stack and self._stack[-1][0] == tag:
            self._stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                was_math = self._stack[i][1]
                del self._stack[i:]
                if was_math and not self._state()[0]:
                    self._flush()
                return  # an end tag with no open element is ignored, as browsers do

    def handle_data(self, data: str) -> None:
        in_math, skipped = self._state()
        if skipped:
            return
        self._visible.append(data)
        if in_math:
            self._math_text.append(data)

    def _flush(self) -> None:
        text = "".join(self._math_text)
        self.result.spans.extend(m.group(0) for m in MATH_SPAN.finditer(text))
        self._math_text = []

    def close(self) -> None:
        super().close()
        self._flush()
        visible = "".join(self._visible)
        self.result.raw_anywhere = [
            visible[max(0, m.start() - 20) : m.end() + 40].replace("\n", " ")
            for m in RAW_ANYWHERE.finditer(visible)
        ]


def scan(html: str) -> PageMath:
    """Math spans, rendered formulas and leftover raw math of one HTML document."""
    scanner = _MathScanner()
    scanner.feed(html)
    scanner.close()
    return scanner.result


def compare(expected: PageMath, after: PageMath) -> list[str]:
    """Problems of one page: ``expected`` scans its HTML as built, ``after`` the browser's DOM."""
    problems = []
    if not expected.spans:
        problems.append("the built page holds no math span: pick a page with formulas")
    if after.rendered < len(expected.spans):
        problems.append(
            f"{after.rendered} formulas rendered, expected at least {len(expected.spans)}"
        )
    if after.errors:
        problems.append(f"{after.errors} formulas rendered as MathJax errors")
    if after.spans:
        shown = "; ".join(s[:60] for s in after.spans[:3])
        problems.append(f"{len(after.spans)} math spans left as raw text, e.g. {shown}")
    if after.raw_anywhere:
        shown = "; ".join(after.raw_anywhere[:3])
        problems.append(f"{len(after.raw_anywhere)} raw \\( or \\[ in the visible text: {shown}")
    return problems


@contextmanager
def serve(site_dir: Path) -> Iterator[str]:
    """Serve ``site_dir`` on a free port of 127.0.0.1; yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site_dir))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()


def find_chromium() -> str:
    """The Chromium binary: ``$CHROMIUM``, else ``chromium`` or ``chromium-browser`` on PATH."""
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if name and (path := shutil.which(name)):
            return path
    raise FileNotFoundError(
        "no Chromium found (looked for $CHROMIUM, chromium, chromium-browser); install "
        "Debian's chromium package: apt-get install -y chromium"
    )


def dump_dom(chromium: str, url: str, budget_ms: int = 20000) -> str:
    """The DOM of ``url`` after ``budget_ms`` of virtual time in headless Chromium."""
    with tempfile.TemporaryDirectory(prefix="sdelab-chromium-") as profile:
        cmd = [
            chromium,
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0 or "<html" not in proc.stdout:
        raise RuntimeError(
            f"chromium failed on {url} (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
        )
    return proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site_dir", type=Path, help="the output directory of mkdocs build")
    parser.add_argument(
        "pages", nargs="*", default=list(DEFAULT_PAGES), help="pages relative to site_dir"
    )
    parser.add_argument("--budget-ms", type=int, default=20000, help="virtual time per page")
    args = parser.parse_args(argv)
    for page in args.pages:
        if not (args.site_dir / page).is_file():
            parser.error(f"page {page!r} is not a file of site_dir {str(args.site_dir)!r}")
    chromium = find_chromium()
    failed = 0
    with serve(args.site_dir) as base:
        for page in args.pages:
            expected = scan((args.site_dir / page).read_text(encoding="utf-8"))
            after = scan(dump_dom(chromium, base + page, args.budget_ms))
            problems = compare(expected, after)
            status = "FAIL" if problems else "ok  "
            print(f"{status} {page}: {after.rendered} of {len(expected.spans)} formulas rendered")
            for p in problems:
                print(f"     {p}")
            failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
