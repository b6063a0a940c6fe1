"""The Python examples in the documentation run as written.

Every fenced block opened with ```python in ``docs/**/*.md`` and ``README.md`` is executed. A page's blocks run
in order in one namespace, so a later block may use names from an earlier one. Write a snippet
that is not meant to run on its own as ```py or ```pycon instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```", re.S | re.M)


def _pages_with_examples() -> list[Path]:
    pages = [*DOCS.rglob("*.md"), ROOT / "README.md"]
    return sorted(p for p in pages if _BLOCK.search(p.read_text(encoding="utf-8")))


def test_docs_have_examples():
    # The index page promises a runnable example; guard against the regex finding nothing.
    assert DOCS / "index.md" in _pages_with_examples()
    assert ROOT / "README.md" in _pages_with_examples()


@pytest.mark.parametrize("page", _pages_with_examples(), ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # run where outputs cannot land in the checkout; relative paths to examples/ still work
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs_example__"}
    for i, block in enumerate(_BLOCK.findall(page.read_text(encoding="utf-8"))):
        code = compile(block, f"{page.relative_to(ROOT)} [python block {i + 1}]", "exec")
        exec(code, namespace)
