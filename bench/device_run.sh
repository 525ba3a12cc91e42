#!/usr/bin/env bash
# One device call: GPU tests + kernel benchmark, logs under $OUT (device tool) or ./out.
# usage: bash bench/device_run.sh [tests] [bench ARGS...]
set -uo pipefail
OUT=${OUT:-$(pwd)/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv | tee "$OUT/env.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/env.txt"
if ! python3 -c "import pytest" 2>/dev/null && [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# comfy-kitchen (bench peers): the stripped package from ../shared/comfyui/gpu-bundle.sh's recipe,
# carried in .gpu/site (git-ignored)
[ -d .gpu/site ] && export PYTHONPATH=$(pwd)/.gpu/site${PYTHONPATH:+:$PYTHONPATH}
# runs in place: tests and benchmarks import the pack as ComfyUI does (tests/pack_import.py; its
# root never on sys.path, its __init__ registers no nodes without ComfyUI)
if [ "${1:-}" = "tests" ]; then
  shift
  python3 -m pytest -q -s -p no:cacheprovider -rs tests/test_gpu_attention.py \
    tests/test_fp8_attention.py tests/test_gluon_kernel.py tests/test_backward.py \
    tests/test_custom_op.py tests/test_triton_interpret.py tests/test_attention_api.py \
    tests/test_attention_torch.py 2>&1 | tee "$OUT/gpu_tests.log" \
    | sed 's/\[gpu-err\].*//' | grep -v '^$' | tail -25
  grep -o '\[gpu-err\].*' "$OUT/gpu_tests.log" | grep float32 | tail -6
  grep -o '\[fp8-err\].*' "$OUT/gpu_tests.log" | tail -14
fi
if [ "${1:-}" = "bench" ]; then
  shift
  python3 bench/bench_kernel.py --json "$OUT/bench.json" "$@" 2>&1 | tee "$OUT/bench.log" | grep -v '^{' 
fi
