#!/usr/bin/env bash
# Install what the real-browser test (tests/browser/) needs, without downloading a browser build:
#   - Debian's `chromium` package (apt; needs root or sudo), used at /usr/bin/chromium
#   - npm `playwright-core` (the driver only, no bundled browsers) into tests/browser/node_modules
#   - the newest `comfyui-frontend-package` from PyPI into .frontend/newest/ (git-ignored), which
#     the browser tests serve with ComfyUI 0.33's --front-end-root beside the one it pins
#     (RADIAL_FRONTEND_VERSION=1.58.1 picks a version; PYTHON=... the pip to use, default .venv's)
# Safe to run again: it only installs what is missing. Set SKIP_BROWSER_SETUP=1 to skip it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BROWSER_DIR=$ROOT/tests/browser

if [ "${SKIP_BROWSER_SETUP:-}" = "1" ]; then
  echo "setup_browser: skipped (SKIP_BROWSER_SETUP=1)"
  exit 0
fi

# --- chromium (Debian package) -------------------------------------------------------------
CHROMIUM=${CHROMIUM_PATH:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      SUDO="sudo -n"
    else
      echo "setup_browser: $CHROMIUM is missing and this user cannot install packages." >&2
      echo "  fix: run 'sudo apt-get install chromium' (Debian/Ubuntu), or set CHROMIUM_PATH" >&2
      exit 3
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_browser: no apt-get here; install Chromium yourself and set CHROMIUM_PATH" >&2
    exit 3
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
fi
"$CHROMIUM" --version

# --- playwright-core (npm, no browser download) --------------------------------------------
if ! command -v npm >/dev/null 2>&1; then
  echo "setup_browser: npm is missing; install Node.js >= 18 (e.g. 'apt-get install nodejs npm')" >&2
  exit 3
fi
if [ ! -f "$BROWSER_DIR/node_modules/playwright-core/package.json" ]; then
  export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
  (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi
node -e "console.log('playwright-core', require('$BROWSER_DIR/node_modules/playwright-core/package.json').version)"

# --- the newest front end (PyPI comfyui-frontend-package, files only: no dependencies) ---------
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
FRONTEND_DIR=$ROOT/.frontend/newest
WANT=${RADIAL_FRONTEND_VERSION:-}
HAVE=$(cat "$FRONTEND_DIR/.version" 2>/dev/null || true)
if [ -z "$WANT" ] || [ "$WANT" != "$HAVE" ]; then
  SPEC=comfyui-frontend-package${WANT:+==$WANT}
  TMP=$(mktemp -d "$ROOT/.frontend-tmp.XXXXXX")
  if "$PY" -m pip install -q --disable-pip-version-check --no-deps --target "$TMP" "$SPEC"; then
    GOT=$(ls -d "$TMP"/comfyui_frontend_package-*.dist-info | sed 's/.*comfyui_frontend_package-\(.*\)\.dist-info/\1/')
    if [ "$GOT" != "$HAVE" ]; then
      rm -rf "$FRONTEND_DIR" && mkdir -p "$ROOT/.frontend" && mv "$TMP" "$FRONTEND_DIR"
      echo "$GOT" > "$FRONTEND_DIR/.version"
    fi
  else
    echo "setup_browser: could not install $SPEC (offline?); the newest-front-end browser tests will skip" >&2
  fi
  rm -rf "$TMP"
fi
echo "newest front end: $(cat "$FRONTEND_DIR/.version" 2>/dev/null || echo none) in $FRONTEND_DIR"
echo "browser test ready: chromium at $CHROMIUM"
