"""mkdocs hooks for the sdelab site: the tutorials are executed notebooks.

Tutorials live in ``tutorials/NN_name.py`` (jupytext percent scripts) outside ``docs/``. This
hook

* adds them to the site as ``tutorials/NN_name.py`` pages, which the ``mkdocs-jupyter`` plugin
  (``execute: true``, ``allow_errors: false``) runs and renders, so a tutorial that raises
  fails ``mkdocs build``;
* runs them in a kernel of *this* Python (``sys.executable``, a kernelspec written to a
  temporary directory, so no user-level ``python3`` kernelspec can take over) with this
  checkout first on ``PYTHONPATH``, so they import the ``sdelab`` being documented;
* removes the MathJax 2 script that nbconvert puts into every notebook page: the site loads
  MathJax 3 (``docs/javascripts/mathjax.js``), which also typesets the notebooks' markdown;
* gives every figure of a tutorial its alt text, from an ``# alt: ...`` comment in the cell
  that draws it (one per figure, in order; further lines of the same text start ``#   ``).
  nbconvert has no way to take an alt text from a notebook and writes "No description has
  been provided for this image" instead; a figure without its comment, or a comment without
  its figure, is a warning, so ``--strict`` fails;
* checks the relative links in tutorial pages, which mkdocs itself does not validate (their
  HTML comes from nbconvert, not from Markdown): a link to a page that does not exist is a
  warning, so ``--strict`` fails. Tutorials link to the *site* URL of a page, e.g.
  ``[Forward SDEs](../../concepts/forward_sdes/)`` from ``tutorials/NN_name/``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from posixpath import dirname, join, normpath

from bs4 import BeautifulSoup
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.sdelab_docs")

KERNEL_NAME = "sdelab-docs"
TUTORIAL_GLOB = "[0-9][0-9]_*.py"
_HREF = re.compile(r'<a\s[^>]*?href="([^"#?]*)')
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_MATHJAX2 = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)
_ALT = re.compile(r"^[ \t]*# alt: (.+(?:\n[ \t]*#   .+)*)", re.M)
_kernel_dir: str | None = None


def _root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def on_config(config):
    global _kernel_dir
    root = _root(config)
    paths = [str(root), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))

    if _kernel_dir is None:
        _kernel_dir = tempfile.mkdtemp(prefix="sdelab-docs-kernel-")
        spec_dir = Path(_kernel_dir, "kernels", KERNEL_NAME)
        spec_dir.mkdir(parents=True)
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"sdelab docs ({sys.executable})",
            "language": "python",
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        jp = [_kernel_dir, *filter(None, os.environ.get("JUPYTER_PATH", "").split(os.pathsep))]
        os.environ["JUPYTER_PATH"] = os.pathsep.join(jp)

    config.watch.append(str(root / "tutorials"))
    return config


@event_priority(100)  # before mkdocs-jupyter (priority 0) turns them into notebook pages
def on_files(files, config):
    # A plain File rooted at the checkout (not File.generated: mkdocs-jupyter's wrapper needs
    # src_dir to find the source).
    root = _root(config)
    for path in sorted((root / "tutorials").glob(TUTORIAL_GLOB)):
        files.append(
            File(
                f"tutorials/{path.name}",
                src_dir=str(root),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
            )
        )
    return files


def _is_tutorial(page) -> bool:
    return page.file.src_uri.startswith("tutorials/") and page.file.src_uri.endswith(".py")


def on_page_content(html, page, config, files):
    if not _is_tutorial(page):
        return html
    html, n = _MATHJAX2.subn("", html)
    if n == 0:
        log.warning(
            "%s: no nbconvert MathJax block found to remove; check that notebook math "
            "still renders with the site's MathJax 3",
            page.file.src_uri,
        )
    html = _set_alt_texts(html, page)
    _check_links(html, page, files)
    return html


def _set_alt_texts(html: str, page) -> str:
    """Give each figure of a tutorial page the alt text of its cell's ``# alt:`` comment."""
    soup = BeautifulSoup(html, "html.parser")
    for cell in soup.select("div.jp-CodeCell"):
        source = cell.select_one(".jp-InputArea pre")  # the highlighted source
        code = source.get_text().strip() if source else ""
        alts = [
            " ".join(line.lstrip().removeprefix("#").strip() for line in m.splitlines())
            for m in _ALT.findall(code)
        ]
        images = cell.select(".jp-OutputArea img")
        if len(alts) != len(images):
            log.warning(
                "%s: the cell starting %r draws %d figure(s) and has %d '# alt: ...' "
                "comment(s); every figure needs one, in order, in the cell that draws it",
                page.file.src_uri,
                code.split("\n", 1)[0][:60],
                len(images),
                len(alts),
            )
        for img, alt in zip(images, alts, strict=False):
            img["alt"] = alt
    return str(soup)


def _check_links(html, page, files) -> None:
    """Warn about relative links in a tutorial page that lead to no file of the site."""
    base = page.url if page.url.endswith("/") or not page.url else dirname(page.url) + "/"
    urls = {f.url.rstrip("/") for f in files}
    urls.add(base + Path(page.file.src_uri).name)  # the source, copied by include_source
    for href in _HREF.findall(html):
        if not href or href.startswith("/") or _SCHEME.match(href):
            continue  # same-page anchor, absolute path or external URL
        target = normpath(join(base, href)).rstrip("/")
        target = "" if target == "." else target
        if target not in urls:
            log.warning(
                "%s links to '%s', which is not a page or file of the site (links in "
                "tutorials are site URLs relative to %s)",
                page.file.src_uri,
                href,
                base or "the site root",
            )


def on_shutdown():
    global _kernel_dir
    if _kernel_dir is not None:
        shutil.rmtree(_kernel_dir, ignore_errors=True)
        _kernel_dir = None
