#!/usr/bin/env bash
# Build the benchmark's peer kernels, SageAttention2 and SpargeAttn, from source on the GPU
# machine, in place (nothing is installed): bench/bench_kernel.py then times them when run with
#   PYTHONPATH=.peers/SageAttention:.peers/SpargeAttn
#
# The GPU machine has no network, so the sources travel with the checkout in .peers/ (git-ignored).
# Fetch them on a machine with network, from the repository root:
#   mkdir -p .peers/SageAttention .peers/SpargeAttn
#   git -C <clone of github.com/thu-ml/SageAttention> archive HEAD LICENSE README.md setup.py \
#       pyproject.toml csrc sageattention | tar -x -C .peers/SageAttention
#   git -C <clone of github.com/thu-ml/SpargeAttn> archive HEAD LICENSE setup.py requirements.txt \
#       csrc spas_sage_attn | tar -x -C .peers/SpargeAttn
#   (under 1.1 MB together; record the two commits: git -C <clone> log -1 --format=%H)
# then carry .peers to the GPU machine and run, there:
#   bash bench/build_peers.sh && \
#   PYTHONPATH=.peers/SageAttention:.peers/SpargeAttn python3 bench/bench_kernel.py --errors
#
# Needs the machine's nvcc (CUDA 12.8+ for SageAttention2++ paths), torch with CUDA, setuptools,
# packaging; ninja for a parallel build (about 3 minutes on 16 cores); SpargeAttn imports einops
# at run time. The card's architecture comes from PEERS_CUDA_ARCH (default 9.0, H100 / H200), not
# from TORCH_CUDA_ARCH_LIST: GPU machines often set that to "9.0a", which both setup.py files refuse.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PEERS="${PEERS:-$ROOT/.peers}"
PYTHON="${PYTHON:-python3}"
export TORCH_CUDA_ARCH_LIST="${PEERS_CUDA_ARCH:-9.0}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"

"$PYTHON" -c "import torch, setuptools, packaging; assert torch.cuda.is_available(), 'no CUDA GPU'"
command -v nvcc >/dev/null || [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ] || {
    echo "build_peers.sh: no nvcc (set CUDA_HOME)" >&2; exit 2; }
"$PYTHON" -c "import ninja" 2>/dev/null || echo "build_peers.sh: no ninja: the build runs serially (slow)" >&2
"$PYTHON" -c "import einops" 2>/dev/null || echo "build_peers.sh: no einops: SpargeAttn will not import" >&2

NVCC=nvcc
[ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ] && NVCC="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
nvcc_major=$("$NVCC" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p') || nvcc_major=0

status=0
for name in SageAttention SpargeAttn; do
    src="$PEERS/$name"
    if [ ! -f "$src/setup.py" ]; then
        echo "build_peers.sh: $src/setup.py missing: fetch the sources first (see this file's head)" >&2
        status=1
        continue
    fi
    # both setup.py files read a README for the package description
    [ -f "$src/README.md" ] || : > "$src/README.md"
    # SpargeAttn force-includes <cassert> in host code ("-Xcompiler -include,cassert"); with
    # CUDA 13's nvcc that include lands twice and g++ stops at "redefinition of
    # std::__terminate()". Its sources build without it there: drop the flag from this
    # throwaway copy (older toolkits keep it: it was added for them).
    if [ "$name" = SpargeAttn ] && [ "${nvcc_major:-0}" -ge 13 ]; then
        sed -i 's/"-Xcompiler", "-include,cassert",//' "$src/setup.py"
    fi
    echo "== $name ($TORCH_CUDA_ARCH_LIST, $MAX_JOBS jobs)"
    start=$(date +%s)
    if (cd "$src" && "$PYTHON" setup.py build_ext --inplace >"$src/build.log" 2>&1); then
        echo "   built in $(( $(date +%s) - start )) s"
    else
        echo "build_peers.sh: $name failed; the end of $src/build.log:" >&2
        tail -n 30 "$src/build.log" >&2
        status=1
    fi
done

PYTHONPATH="$PEERS/SageAttention:$PEERS/SpargeAttn${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - <<'PY' || status=1
for module, fn in (("sageattention", "sageattn"), ("spas_sage_attn", "block_sparse_sage2_attn_cuda")):
    try:
        getattr(__import__(module), fn)
        print(f"   {module}.{fn}: importable")
    except Exception as exc:
        print(f"   {module}.{fn}: NOT importable: {type(exc).__name__}: {exc}")
        raise SystemExit(1)
PY
exit $status
