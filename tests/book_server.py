"""Helpers for the browser tests of the rendered book (tests/test_browser.py).

- `serve(html_dir)`: an in-process, threaded HTTP server for the built HTML on 127.0.0.1 and a free port.
- `find_chromium()`: the Chromium binary to drive (Debian's `chromium`; ``$CHROMIUM`` overrides).
- `find_mathjax()` / `fetch_mathjax()`: an offline copy of MathJax 3. The book's pages load
  MathJax from a CDN, which the tests cannot reach; the browser test answers those requests from
  this copy, so the math is really typeset by MathJax (the same major version the pages ask for).

`python tests/book_server.py --fetch-mathjax` downloads MathJax into the cache (scripts/install_chromium.sh
runs it): from npm (`mathjax@3`, the official package) when npm is available, else from PyPI
(`django-static-mathjax`, which ships the same MathJax 3 files; only the files are unpacked, nothing is installed).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

# The flags the book's browser tests launch Chromium with (issue 8), plus a fresh user-data dir.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The script every page loads: `https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js`. MathJax then
# loads its fonts and extensions relative to that address, so the whole prefix is served from the local copy.
MATHJAX_CDN_PREFIX = "https://cdn.jsdelivr.net/npm/mathjax@3/"
MATHJAX_ENTRY = "es5/tex-mml-chtml.js"


def cache_dir() -> Path:
    """Where fetched MathJax copies live: ``$VAELAB_MATHJAX_DIR`` or ``~/.cache/vaelab/mathjax``."""
    if os.environ.get("VAELAB_MATHJAX_DIR"):
        return Path(os.environ["VAELAB_MATHJAX_DIR"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vaelab" / "mathjax"


def _mathjax_candidates(root: Path) -> list[Path]:
    return [
        root,  # VAELAB_MATHJAX_DIR may name a MathJax folder itself
        root / "node_modules" / "mathjax",  # npm install --prefix root mathjax@3
        root / "pypi" / "mathjax" / "static" / "mathjax",  # unpacked django-static-mathjax wheel
    ]


def find_mathjax() -> Path | None:
    """The folder of an offline MathJax 3 copy (it holds es5/tex-mml-chtml.js), or None."""
    for folder in _mathjax_candidates(cache_dir()):
        if (folder / MATHJAX_ENTRY).is_file():
            return folder
    return None


def fetch_mathjax(quiet: bool = True) -> Path | None:
    """Download MathJax 3 into `cache_dir()` unless present (npm first, then PyPI); return its folder or None."""
    found = find_mathjax()
    if found is not None:
        return found
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    out = subprocess.DEVNULL if quiet else None
    npm = shutil.which("npm")
    if npm:
        cmd = [npm, "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(root), "mathjax@3"]
        subprocess.run(cmd, stdout=out, stderr=out, check=False, timeout=600)
        if find_mathjax() is not None:
            return find_mathjax()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, "django-static-mathjax>=3,<4"]
        subprocess.run(cmd, stdout=out, stderr=out, check=False, timeout=600)
        for wheel in Path(tmp).glob("*.whl"):
            with zipfile.ZipFile(wheel) as zf:
                members = [m for m in zf.namelist() if m.startswith("mathjax/static/mathjax/")]
                zf.extractall(root / "pypi", members)
    return find_mathjax()


def mathjax_version(folder: Path) -> str:
    """The version in the copy's package.json, or 'unknown'."""
    import json

    try:
        return json.loads((folder / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "unknown"


def find_chromium() -> str | None:
    """Path of a Chromium binary: ``$CHROMIUM``, else `chromium`/`chromium-browser` on PATH, else None."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return shutil.which(explicit) or (explicit if Path(explicit).is_file() else None)
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves one folder; records every request path and status instead of printing them."""

    def __init__(self, *args, log: list, **kwargs):
        self._log = log
        super().__init__(*args, **kwargs)

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass

    def log_request(self, code="-", size="-"):
        self._log.append((self.path, int(code) if str(code).isdigit() else code))


@contextlib.contextmanager
def serve(html_dir: Path) -> Iterator[tuple[str, list]]:
    """Serve `html_dir` on 127.0.0.1 and a free port; yield (base URL ending in '/', request log)."""
    html_dir = Path(html_dir)
    if not html_dir.is_dir():
        raise FileNotFoundError(f"no built book at {html_dir}")
    log: list = []
    handler = functools.partial(_QuietHandler, directory=str(html_dir), log=log)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="book-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", log
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fetch-mathjax", action="store_true", help="download MathJax 3 into the cache if missing")
    args = parser.parse_args(argv)
    if args.fetch_mathjax:
        folder = fetch_mathjax(quiet=False)
        if folder is None:
            print(f"could not fetch MathJax 3 into {cache_dir()} (neither npm nor pip reached a registry)")
            return 1
        print(f"MathJax {mathjax_version(folder)} in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
