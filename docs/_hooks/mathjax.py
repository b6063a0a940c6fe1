"""mkdocs hook: the site serves its own MathJax, installed from the npm registry at build time.

The built site must render its formulas with no network (offline readers, CI). Instead of a
CDN ``<script>``, this hook

* installs the pinned npm package ``mathjax@MATHJAX_VERSION`` once into a cache directory
  (``$SDELAB_MATHJAX_CACHE``, default ``~/.cache/sdelab-docs``; ``npm install --prefix``, so
  node and npm must be on PATH; the registry is the only thing reached);
* adds the one bundle the site loads (``es5/tex-svg.js``: TeX input, SVG output, so no web
  fonts) to the site as ``javascripts/mathjax/tex-svg.js`` (``extra_javascript`` in
  mkdocs.yml), with the TeX extensions MathJax autoloads on demand (``\\boldsymbol``,
  ``\\cancel``, ...) beside it under ``input/tex/extensions/`` and the package's LICENSE.

Nothing is committed: a fresh checkout gets the same files on its first build, and
``mkdocs serve`` serves them like any other file of the site.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.mathjax")

MATHJAX_VERSION = "3.2.2"
SITE_DIR = "javascripts/mathjax"  # where the site holds it; mkdocs.yml's extra_javascript
BUNDLE = "es5/tex-svg.js"
# what the bundle loads by itself, relative to the bundle's directory ([mathjax] in MathJax)
ON_DEMAND = "es5/input/tex/extensions"


def package_dir() -> Path:
    """The installed ``mathjax`` npm package, installing it into the cache if missing."""
    cache = Path(os.environ.get("SDELAB_MATHJAX_CACHE") or Path.home() / ".cache/sdelab-docs")
    prefix = cache / f"mathjax-{MATHJAX_VERSION}"
    package = prefix / "node_modules" / "mathjax"
    if (package / BUNDLE).is_file():
        return package
    npm = shutil.which("npm")
    if npm is None:
        raise PluginError(
            f"the docs serve MathJax from the npm package mathjax@{MATHJAX_VERSION}, and npm "
            "is not on PATH: install node and npm (Debian: apt-get install nodejs npm)"
        )
    log.info("installing mathjax@%s from the npm registry into %s", MATHJAX_VERSION, prefix)
    cache.mkdir(parents=True, exist_ok=True)
    # install beside the cache, then rename: two builds at once never see half a package
    tmp = Path(tempfile.mkdtemp(prefix=f"mathjax-{MATHJAX_VERSION}-", dir=cache))
    try:
        cmd = [npm, "install", "--prefix", str(tmp), "--no-save", "--no-audit", "--no-fund"]
        cmd += ["--ignore-scripts", "--loglevel=error", f"mathjax@{MATHJAX_VERSION}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not (tmp / "node_modules/mathjax" / BUNDLE).is_file():
            raise PluginError(
                f"npm install mathjax@{MATHJAX_VERSION} failed (exit {proc.returncode}): "
                f"{proc.stderr.strip()[-800:]}"
            )
        try:
            tmp.rename(prefix)
        except OSError:  # another build installed it first
            if not (package / BUNDLE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return package


def site_files(package: Path) -> dict[str, Path]:
    """Site path -> file of the package, for everything the site's MathJax loads."""
    root = package / Path(BUNDLE).parent
    files = {f"{SITE_DIR}/{Path(BUNDLE).name}": package / BUNDLE}
    for path in sorted((package / ON_DEMAND).glob("*.js")):
        files[f"{SITE_DIR}/{path.relative_to(root).as_posix()}"] = path
    files[f"{SITE_DIR}/LICENSE"] = package / "LICENSE"
    return files


def on_config(config):
    bundle = f"{SITE_DIR}/{Path(BUNDLE).name}"
    if bundle not in [str(s) for s in config.extra_javascript]:
        raise PluginError(f"mkdocs.yml: extra_javascript must load {bundle} (docs/_hooks/mathjax)")
    return config


def on_files(files, config):
    for uri, path in site_files(package_dir()).items():
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
