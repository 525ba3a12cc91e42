#!/usr/bin/env bash
# `make serve`: start ComfyUI with the Radial Attention pack at http://127.0.0.1:8188
#
# ComfyUI folder: $COMFYUI_DIR (your own install) or the development copy that
# scripts/setup_env.sh sets up: .comfyui/ (ComfyUI 0.33.0, the default) or, with LEG=0.3.75,
# .comfyui-0.3.75/ (ComfyUI 0.3.75). The pack is linked into its custom_nodes/ folder
# (an existing folder or link of that name is left alone). --cpu is added when PyTorch sees no
# CUDA GPU. Extra arguments go to ComfyUI's main.py, e.g. `bash scripts/serve.sh --port 8190`.
set -euo pipefail
# a relative COMFYUI_DIR is relative to where the command was started
if [ -n "${COMFYUI_DIR:-}" ] && [ -d "$COMFYUI_DIR" ]; then
  COMFYUI_DIR=$(cd "$COMFYUI_DIR" && pwd)
fi
cd "$(dirname "$0")/.."
ROOT=$(pwd)
case "${LEG:-0.33}" in
  0.3.75) VENV=${VENV:-$ROOT/.venv-0.3.75} ;;
  *) VENV=${VENV:-$ROOT/.venv} ;;
esac
PY=${PYTHON:-$VENV/bin/python}
[ -x "$PY" ] || PY=python3

if [ -n "${COMFYUI_DIR:-}" ]; then
  COMFY=$COMFYUI_DIR
elif [ -f "$VENV/comfyui-path" ]; then
  COMFY=$(cat "$VENV/comfyui-path")
else
  COMFY=$ROOT/.comfyui
fi
if [ ! -f "$COMFY/main.py" ]; then
  echo "No ComfyUI at $COMFY (main.py missing). Run \`make serve\` (it sets one up) or set COMFYUI_DIR to your ComfyUI folder." >&2
  exit 2
fi

mkdir -p "$COMFY/custom_nodes"
link=$COMFY/custom_nodes/radial-attention
if [ ! -e "$link" ]; then
  ln -s "$ROOT" "$link"
  echo "linked the pack: $link -> $ROOT"
elif [ "$(readlink -f "$link")" != "$ROOT" ]; then
  echo "note: $link exists and is not this checkout; ComfyUI will load that copy." >&2
fi

HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8188}
extra=()
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  extra+=(--cpu)
  echo "no CUDA GPU visible to PyTorch: starting ComfyUI with --cpu (the pack uses its PyTorch path)"
fi
ver=$(sed -n 's/^__version__ *= *"\(.*\)"/\1/p' "$COMFY/comfyui_version.py" 2>/dev/null)
echo "ComfyUI ${ver:-?}: $COMFY  ->  http://$HOST:$PORT   (Ctrl+C stops it)"
cd "$COMFY"
exec "$PY" main.py --listen "$HOST" --port "$PORT" "${extra[@]}" "$@"
