#!/usr/bin/env bash
# Install what the real-browser test (tests/browser/) needs, without downloading a browser build:
#   - Debian's `chromium` package (apt; needs root or sudo), used at /usr/bin/chromium
#   - npm `playwright-core` (the driver only, no bundled browsers) into tests/browser/node_modules
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
echo "browser test ready: chromium at $CHROMIUM"
