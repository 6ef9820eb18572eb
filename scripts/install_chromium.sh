#!/usr/bin/env bash
# Install what the browser tests (tests/test_browser.py) need at run time, for CI (.ci/run):
#   1. Debian's `chromium` (plus fonts for the math and the text), with apt-get, when no Chromium is found;
#   2. the Playwright Python package (drives that Chromium; `playwright install` is never run);
#   3. MathJax 3 (npm, else PyPI) into ~/.cache/vaelab/mathjax, served in place of the CDN copy (tests run offline).
# Does nothing for the parts already present. Without options it never fails: it prints why a part
# could not be installed and exits 0 (the browser tests then skip with a message saying what is missing).
# --require (what `make test` runs): afterwards, exit 1 with the exact command for each part that is
# still missing, so the README's one test command never skips the browser tests unnoticed.
#
# Environment: PYTHON (the project's Python; default .venv/bin/python when it exists),
#              VAELAB_MATHJAX_DIR (default: ~/.cache/vaelab/mathjax), CHROMIUM (a browser binary to use).
set -u
cd "$(dirname "$0")/.."
REQUIRE=0
[ "${1:-}" = "--require" ] && REQUIRE=1

note() { echo "install_chromium: $*"; }

# --- 1. Chromium -------------------------------------------------------------------------------------
find_chromium() {
  for c in "${CHROMIUM:-}" chromium chromium-browser google-chrome; do
    [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 && { command -v "$c"; return 0; }
  done
  return 1
}

if path=$(find_chromium); then
  note "Chromium present: $path ($("$path" --version 2>/dev/null || echo 'version unknown'))"
elif ! command -v apt-get >/dev/null 2>&1; then
  note "no Chromium and no apt-get: install Chromium yourself (or set CHROMIUM=/path/to/chrome)."
else
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
      note "no Chromium, and apt-get needs root (no password-less sudo): skipping."; SUDO="skip"; fi
  fi
  if [ "$SUDO" != skip ]; then
    note "installing Debian's chromium with apt-get (a few minutes) ..."
    export DEBIAN_FRONTEND=noninteractive
    if $SUDO apt-get update -qq && \
       $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation fonts-dejavu-core >/dev/null; then
      note "installed $(chromium --version 2>/dev/null || echo chromium)"
    else
      note "apt-get could not install chromium (no network or no package?): the browser tests will be skipped."
    fi
  fi
fi

# --- 2. Playwright (Python) --------------------------------------------------------------------------
# Into the project's environment: $PYTHON, else .venv (the Makefile's, which also gets it from the
# `browser` extra). Without either there is nothing to install into yet: `make install` will do it.
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
if [ -z "${PYTHON:-}" ]; then
  note "no .venv yet: Playwright comes with the project's browser extra (make install / pip install -e '.[browser]')."
elif "$PYTHON" -c "import playwright.sync_api" 2>/dev/null; then
  note "Playwright present ($PYTHON)."
elif "$PYTHON" -m pip install -q "playwright>=1.40"; then
  note "installed Playwright for Python into $PYTHON (its own browsers are not downloaded; Debian's Chromium is used)."
else
  note "pip could not install playwright into $PYTHON: the browser tests will be skipped."
fi

# --- 3. MathJax 3 (offline copy of the CDN script the book loads; npm, else the files of a PyPI wheel) ---
if "${PYTHON:-python3}" tests/book_server.py --fetch-mathjax; then :; else
  note "MathJax 3 could not be fetched: the browser tests will fail their math checks until it is."
fi
[ "$REQUIRE" = 1 ] || exit 0

# --- --require: the browser tests find everything they need, or the exact commands to get it ----------
# The same look-ups as tests/test_browser.py (tests/book_server.py's find_chromium and find_mathjax).
"${PYTHON:-python3}" - <<'PY'
import subprocess
import sys

sys.path.insert(0, "tests")
from book_server import find_chromium, find_mathjax

missing = []
try:
    import playwright.sync_api  # noqa: F401
except ImportError:
    missing.append(("Playwright (Python)", f"{sys.executable} -m pip install 'playwright>=1.40'  "
                    "(never `playwright install`: Debian's chromium is used)"))
chromium = find_chromium()
if chromium is None:
    missing.append(("Chromium", "sudo apt-get install chromium fonts-liberation fonts-dejavu-core  "
                    "(Debian/Ubuntu; or `sudo bash scripts/install_chromium.sh`), "
                    "or set CHROMIUM=/path/to/chromium-or-chrome"))
else:
    try:
        subprocess.run([chromium, "--version"], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        missing.append((f"a working Chromium ({chromium} --version failed: {err})",
                        "reinstall it: sudo apt-get install --reinstall chromium"))
if find_mathjax() is None:
    missing.append(("MathJax 3 (offline copy)", f"{sys.executable} tests/book_server.py --fetch-mathjax  "
                    "(needs npm or PyPI once), or set VAELAB_MATHJAX_DIR"))
if missing:
    print("\nThe browser tests (tests/test_browser.py) cannot run here. Missing:", file=sys.stderr)
    for what, fix in missing:
        print(f"  - {what}: {fix}", file=sys.stderr)
    print("Install what is missing and run `make test` again, or run everything else with "
          "`make test BROWSER=0` (the browser tests are then left out).", file=sys.stderr)
    sys.exit(1)
print(f"install_chromium: browser tests ready (Chromium: {chromium}, MathJax: {find_mathjax()})")
PY
