#!/usr/bin/env bash
# Build the benchmark's peer kernels, SageAttention2 and SpargeAttn, from source, in place (nothing
# is installed): bench/bench_kernel.py then times them when run with
#   PYTHONPATH=.peers/SageAttention:.peers/SpargeAttn
#
#   bash bench/build_peers.sh           build both (on the GPU machine, or on any machine whose
#                                       torch is the GPU machine's CUDA build: no GPU is needed)
#   bash bench/build_peers.sh pack      strip the built extensions into .peers/bin/*.tar.xz
#   bash bench/build_peers.sh unpack    put them back in place (on the GPU machine)
#
# The GPU machine has no network, so the sources travel with the checkout in .peers/ (git-ignored).
# Fetch them on a machine with network, from the repository root:
#   mkdir -p .peers/SageAttention .peers/SpargeAttn
#   git -C <clone of github.com/thu-ml/SageAttention> archive HEAD LICENSE README.md setup.py \
#       pyproject.toml csrc sageattention | tar -x -C .peers/SageAttention
#   git -C <clone of github.com/thu-ml/SpargeAttn> archive HEAD LICENSE setup.py requirements.txt \
#       csrc spas_sage_attn | tar -x -C .peers/SpargeAttn
#   (under 1.1 MB together; record the two commits: git -C <clone> log -1 --format=%H)
# then either carry .peers to the GPU machine and run there
#   bash bench/build_peers.sh && \
#   PYTHONPATH=.peers/SageAttention:.peers/SpargeAttn python3 bench/bench_kernel.py --errors
# (about 4 + 4 minutes of device time on 16 cores), or build here first, with the same torch and
# CUDA major version as the GPU machine and Python 3.12 (about 20 minutes on 2 cores), then
# `pack`, carry .peers (about 6 MB with the archives), and run `unpack` there before the benchmark.
#
# Needs nvcc (CUDA 12.8+ for SageAttention2++ paths), a CUDA build of torch, setuptools,
# packaging; ninja for a parallel build; SpargeAttn imports einops at run time. The architecture
# comes from PEERS_CUDA_ARCH (default 9.0, H100 / H200), not from TORCH_CUDA_ARCH_LIST: GPU
# machines often set that to "9.0a", which both setup.py files refuse.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PEERS="${PEERS:-$ROOT/.peers}"
PYTHON="${PYTHON:-python3}"
# name, source folder, package folder (where the extensions land)
PACKAGES="SageAttention:sageattention SpargeAttn:spas_sage_attn"

case "${1:-build}" in
build) ;;
pack)
    mkdir -p "$PEERS/bin"
    for entry in $PACKAGES; do
        name=${entry%%:*} pkg=${entry#*:}
        tmp=$(mktemp -d)
        for so in "$PEERS/$name/$pkg"/*.so; do
            [ -f "$so" ] || { echo "build_peers.sh: nothing built in $PEERS/$name/$pkg" >&2; exit 1; }
            # host debug information is most of each file's size and nothing the benchmark needs
            strip --strip-debug -o "$tmp/$(basename "$so")" "$so"
        done
        tar -cJf "$PEERS/bin/$name.tar.xz" -C "$tmp" .
        rm -rf "$tmp"
        echo "   $PEERS/bin/$name.tar.xz: $(du -h "$PEERS/bin/$name.tar.xz" | cut -f1)"
    done
    exit 0 ;;
unpack)
    for entry in $PACKAGES; do
        name=${entry%%:*} pkg=${entry#*:}
        tar -xJf "$PEERS/bin/$name.tar.xz" -C "$PEERS/$name/$pkg"
        echo "   $name: $(ls "$PEERS/$name/$pkg"/*.so | wc -l) extensions in place"
    done
    exit 0 ;;
*)
    echo "usage: bash bench/build_peers.sh [build|pack|unpack]" >&2
    exit 2 ;;
esac

export TORCH_CUDA_ARCH_LIST="${PEERS_CUDA_ARCH:-9.0}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"

"$PYTHON" -c "import torch, setuptools, packaging; assert torch.version.cuda, 'torch is not a CUDA build'"
command -v nvcc >/dev/null || [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ] || {
    echo "build_peers.sh: no nvcc (set CUDA_HOME)" >&2; exit 2; }
"$PYTHON" -c "import ninja" 2>/dev/null || echo "build_peers.sh: no ninja: the build runs serially (slow)" >&2
"$PYTHON" -c "import einops" 2>/dev/null || echo "build_peers.sh: no einops: SpargeAttn will not import" >&2

# torch finds the toolkit through the first nvcc on PATH when CUDA_HOME is unset, which may be a
# copy outside the toolkit (then it links against a lib64 without libcudart)
[ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ] && export CUDA_HOME=/usr/local/cuda
NVCC=nvcc
[ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ] && NVCC="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
nvcc_major=$("$NVCC" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p') || nvcc_major=0

# A toolkit of nvcc and the runtime alone (no GPU machine's full CUDA) lacks the library headers
# torch's ATen/cuda headers include: take them from the nvidia-* wheels torch came with.
if [ ! -f "${CUDA_HOME:-/usr/local/cuda}/include/cusparse.h" ]; then
    wheel_include=$("$PYTHON" - <<'PY'
import glob, os, torch
site = os.path.dirname(os.path.dirname(torch.__file__))
hits = sorted(glob.glob(os.path.join(site, "nvidia", "*", "include", "cusparse.h")))
print(os.path.dirname(hits[0]) if hits else "")
PY
)
    if [ -n "$wheel_include" ]; then
        export NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:+$NVCC_APPEND_FLAGS }-I$wheel_include"
        export CPLUS_INCLUDE_PATH="$wheel_include${CPLUS_INCLUDE_PATH:+:$CPLUS_INCLUDE_PATH}"
    else
        echo "build_peers.sh: no cusparse.h in the CUDA toolkit or torch's nvidia wheels" >&2
    fi
fi
# Both link -lcuda, the driver's library, which a machine without a GPU lacks: link against the
# toolkit's stub where it has one, else against an empty library of the same soname. The driver's
# symbols (cuTensorMapEncodeTiled) resolve against the real one where the extensions run.
# --no-as-needed: the linker would drop a library that defines none of the symbols still
# undefined, and the import there would fail with "undefined symbol".
if ! ldconfig -p 2>/dev/null | grep -q "libcuda\.so "; then
    stub="${CUDA_HOME:-/usr/local/cuda}/lib64/stubs"
    if [ ! -e "$stub/libcuda.so" ]; then
        stub=$(mktemp -d)
        trap 'rm -rf "$stub"' EXIT
        echo "" | cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub/libcuda.so" -x c -
        export LDFLAGS="-Wl,--no-as-needed${LDFLAGS:+ $LDFLAGS}"
    fi
    export LIBRARY_PATH="$stub${LIBRARY_PATH:+:$LIBRARY_PATH}"
fi

status=0
for entry in $PACKAGES; do
    name=${entry%%:*}
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

if ! "$PYTHON" -c "import torch; raise SystemExit(0 if torch.cuda.is_available() else 1)"; then
    # SpargeAttn needs the driver's library to import: check it on the GPU machine (`unpack` there)
    echo "   no CUDA GPU here: the import check runs on the GPU machine"
    exit $status
fi
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
