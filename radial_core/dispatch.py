"""Which backend, kernel, precision and launch configuration runs one attention call, decided
once, with its reason.

:func:`decide` is the only place in the pack that reads the device's compute capability, the
Triton release, and the inputs' dtype, head dim and strides for that purpose. It runs in a
compiled caller's trace too: the facts of the machine are read once (constants to the trace). Its
:class:`Decision` travels through the custom op as a list of integers (:meth:`Decision.encode`,
as ``flex_attention``'s op takes its block mask's tensors and integers); the launchers read it
and decide nothing again. The one thing decided later, here too, is the dK/dV pass's dO loads:
the gradient's strides exist only once the backward runs (:func:`for_gradient`).

Kernels: ``"pytorch"`` (the block path of ``torch_path``), ``"triton"`` (``triton_kernel``),
``"gluon"`` (``gluon_kernel``, Hopper). ``int8``: int8 Q.K^T (``precision="int8-qk"``, its old
name ``"fp8"``, and ``"int8"``); ``pv8``: ``precision="int8"``'s 8-bit P.V as well (the Gluon
kernel only; elsewhere ``"int8"`` runs as ``"int8-qk"``, with ``why_pv16``).
``dense_when_all_kept``: a mask that keeps every block, without key padding, runs PyTorch's dense
attention instead (the same function, a few percent faster at density 1); the caller, who holds
the mask, applies it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

KERNELS = ("pytorch", "triton", "gluon")
# what runs int8 Q.K^T: its name, the name it had before it said what it runs, and "int8"
# (both products in 8 bits: PV8_PRECISIONS)
INT8_PRECISIONS = ("int8-qk", "fp8", "int8")
PV8_PRECISIONS = ("int8",)
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_TRITON_HEAD_DIM = 256

# Gluon is experimental and its compiler moves (Triton 3.8 compiles the Gluon kernel but
# spills 16-61 registers in the consumers, tests/test_gluon_compile.py): other releases run
# the Triton kernel
GLUON_TRITON = ("3.6.",)
GLUON_DTYPES = (torch.float16, torch.bfloat16)
GLUON_HEAD_DIMS = (64, 128)
GLUON_BLOCK = 128
# K/V buffers in the ring: 3 x 64 KB + Q's 32 KB is what shared memory holds; 2 measured 3-19 %
# slower (H200, docs/perf-notes.md); int8 Q.K^T: 16 KB Q + 32 KB O + 3 x 48 KB
GLUON_STAGES = 3


class TritonConfig(NamedTuple):
    """The Triton forward's launch: tile sizes, warps, pipeline stages, K/V through tensor
    descriptors (TMA) or pointers."""

    block_m: int
    block_n: int
    block_d: int
    num_warps: int
    num_stages: int
    use_tma: bool


class GluonConfig(NamedTuple):
    """The Gluon forward's launch: K/V buffers in the ring."""

    stages: int


class PassConfig(NamedTuple):
    """One backward pass: ``block_m`` query rows and ``block_n`` keys per tile or program."""

    block_m: int
    block_n: int
    num_warps: int
    num_stages: int
    use_tma: bool


class BackwardConfig(NamedTuple):
    dq: PassConfig
    dkdv: PassConfig
    block_d: int


_FWD_INTS = 6  # the widest forward config (TritonConfig)
_NO_FORWARD = (0,) * _FWD_INTS


class Decision(NamedTuple):
    """What runs: ``backend`` ("triton" | "pytorch"), ``kernel`` (one of ``KERNELS``), ``int8``,
    ``forward`` (the kernel's launch config, ``()`` for the PyTorch ones), ``exact_kernel`` /
    ``exact_forward`` (the exact forward a backward recomputes after an int8 one, else the same
    as the forward's), ``backward`` (Triton's, when gradients are wanted),
    ``dense_when_all_kept`` (see the module doc), ``reason`` (one
    sentence: what and why), ``why_not_triton`` ("" when Triton), ``why_exact`` (why
    ``precision="int8-qk"`` runs exact, else ""), ``pv8`` (P.V in 8 bits too: ``precision="int8"``
    on the Gluon kernel), ``why_pv16`` (why ``precision="int8"`` runs its P.V in 16 bits, else
    "")."""

    backend: str
    kernel: str
    int8: bool
    forward: tuple
    exact_kernel: str
    exact_forward: tuple
    backward: BackwardConfig | None
    dense_when_all_kept: bool = False
    reason: str = ""
    why_not_triton: str = ""
    why_exact: str = ""
    pv8: bool = False
    why_pv16: str = ""

    def encode(self) -> list[int]:
        """The integers the custom op carries (the reasons stay behind)."""
        out = [KERNELS.index(self.kernel), int(self.int8) + int(self.pv8), *_padded(self.forward),
               KERNELS.index(self.exact_kernel), *_padded(self.exact_forward)]
        if self.backward is None:
            out += [0] * 11
        else:
            dq, dkdv, bd = self.backward
            out += [*(int(x) for x in dq), *(int(x) for x in dkdv), bd]
        return out

    @classmethod
    def decode(cls, plan) -> "Decision":
        """The decision :meth:`encode` wrote (without its reasons)."""
        plan = [int(x) for x in plan]
        kernel, exact_kernel = KERNELS[plan[0]], KERNELS[plan[2 + _FWD_INTS]]
        backward = None
        tail = plan[3 + 2 * _FWD_INTS:]
        if any(tail):
            backward = BackwardConfig(PassConfig(*tail[:4], bool(tail[4])),
                                      PassConfig(*tail[5:9], bool(tail[9])), tail[10])
        return cls("pytorch" if kernel == "pytorch" else "triton", kernel,
                   plan[1] >= 1, _config(kernel, plan[2:2 + _FWD_INTS]), exact_kernel,
                   _config(exact_kernel, plan[3 + _FWD_INTS:3 + 2 * _FWD_INTS]), backward,
                   pv8=plan[1] == 2)


def _padded(cfg: tuple) -> tuple:
    return tuple(int(x) for x in cfg) + _NO_FORWARD[len(cfg):]


def _config(kernel: str, ints) -> tuple:
    if kernel == "triton":
        return TritonConfig(*ints[:5], bool(ints[5]))
    if kernel == "gluon":
        return GluonConfig(ints[0])
    return ()


# ---- what the machine offers --------------------------------------------------------------

_triton_state: dict[str, object] = {}


@torch.compiler.assume_constant_result
def triton_release() -> tuple[str | None, str]:
    """``(version, "")`` of the importable Triton, or ``(None, why not)``."""
    if "version" not in _triton_state:
        try:
            import triton
            import triton.language  # (a broken install fails here)

            _triton_state["version"], _triton_state["error"] = triton.__version__, ""
        except Exception as exc:  # noqa: BLE001 - ImportError, or a broken Triton install
            _triton_state["version"], _triton_state["error"] = None, f"{type(exc).__name__}: {exc}"
    return _triton_state["version"], _triton_state["error"]


@torch.compiler.assume_constant_result
def _triton_new_enough() -> bool:
    """Triton 3.0 or newer (a version string that does not parse counts as new)."""
    version, _ = triton_release()
    try:
        return int(version.split(".")[0]) >= 3
    except ValueError:
        return True


@torch.compiler.assume_constant_result
def _has_descriptors() -> bool:
    if "descriptors" not in _triton_state:
        try:
            from triton.tools.tensor_descriptor import TensorDescriptor  # noqa: F401

            _triton_state["descriptors"] = True
        except ImportError:
            _triton_state["descriptors"] = False
    return _triton_state["descriptors"]


@torch.compiler.assume_constant_result
def _has_gluon() -> bool:
    if "gluon" not in _triton_state:
        try:
            from triton.experimental.gluon.language.nvidia.hopper import warpgroup_mma  # noqa: F401

            _triton_state["gluon"] = True
        except ImportError:
            _triton_state["gluon"] = False
    return _triton_state["gluon"]


_capabilities: dict[int, tuple[int, int]] = {}


def capability(device: torch.device) -> tuple[int, int]:
    """The CUDA compute capability of ``device``, (0, 0) for any other device. Read once per
    GPU: a compiled caller's trace then finds a constant."""
    if device.type != "cuda":
        return (0, 0)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _capability_of(index)


@torch.compiler.assume_constant_result
def _capability_of(index: int) -> tuple[int, int]:
    if index not in _capabilities:
        _capabilities[index] = tuple(torch.cuda.get_device_capability(index))
    return _capabilities[index]


def tma_ok(t: torch.Tensor) -> bool:
    """Can the copy engine (a tensor descriptor) read ``t``: 16-byte-aligned base and strides,
    a unit last stride, no zero stride (a broadcast tensor has them). The base is PyTorch's
    allocation (aligned far beyond 16 bytes) plus the storage offset, which a compiled caller's
    trace can read (a pointer it cannot)."""
    es = t.element_size()
    if not (t.stride(-1) == 1 and all(st > 0 for st in t.stride())
            and all((st * es) % 16 == 0 for st in t.stride()[:-1])):
        return False
    # A compiled caller's trace cannot read the storage offset: there it sees the strides only,
    # which miss just a view that starts inside a row of an aligned buffer
    return torch.compiler.is_compiling() or (t.storage_offset() * es) % 16 == 0


def can_use_triton(q: torch.Tensor) -> tuple[bool, str]:
    """Can the Triton kernels serve q (device, dtype, head dim, GPU generation, grid, Triton)?
    ``(ok, reason)``; metadata only."""
    if not isinstance(q, torch.Tensor) or not q.is_cuda:
        dev = q.device if isinstance(q, torch.Tensor) else None
        return False, f"the Triton kernel needs CUDA tensors; got device {dev}"
    if q.dtype not in TRITON_DTYPES:
        return False, f"the Triton kernel takes float16, bfloat16 or float32; got {q.dtype}"
    if q.dim() != 4:
        return False, f"expected q as [B, H, S, D]; got shape {tuple(q.shape)}"
    if q.shape[-1] > MAX_TRITON_HEAD_DIM:
        return False, f"head dim {q.shape[-1]} is above the kernel's {MAX_TRITON_HEAD_DIM}"
    major, minor = capability(q.device)
    if (major, minor) < (7, 5) or (q.dtype == torch.bfloat16 and major < 8):
        return False, (
            f"GPU compute capability {major}.{minor} is too old for the Triton kernel "
            f"with {q.dtype} (needs 8.0+ for bfloat16, 7.5+ otherwise)"
        )
    if q.shape[0] * q.shape[1] > 65535:
        return False, f"batch x heads = {q.shape[0] * q.shape[1]} is above the kernel's grid limit 65535"
    version, error = triton_release()
    if version is None:
        return False, f"Triton is not importable ({error})"
    if not _triton_new_enough():  # tl.dot(..., input_precision=...)
        return False, f"Triton {version} is older than the kernel needs (3.0)"
    return True, "ok"


INT8_MIN_CAP = (8, 0)  # int8 tensor cores (mma.sync s8 on Ampere, wgmma s8 on Hopper)


def _int8_ok(q: torch.Tensor) -> tuple[bool, str]:
    cap = capability(q.device)
    if cap < INT8_MIN_CAP:
        return False, (f"int8 matrix units need compute capability {INT8_MIN_CAP[0]}.{INT8_MIN_CAP[1]}+ "
                       f"(Ampere and newer); this GPU is {cap[0]}.{cap[1]}")
    D = q.shape[-1]
    if D < 32 or D > 128:
        return False, f"the 8-bit kernels take head dims 32..128 (8-bit MMA tiles); got {D}"
    return True, "ok"


def gluon_takes(head_dim: int, dtype: torch.dtype, block_size: int, cap: tuple[int, int]
                ) -> tuple[bool, str]:
    """Is a call of this geometry one for the Gluon kernel? ``(ok, reason)``: the Triton release
    it was measured with, Hopper, fp16/bf16, head dim 64 or 128, mask block 128."""
    version, error = triton_release()
    if version is None or not _has_gluon():
        return False, f"this Triton has no Gluon (Triton 3.5+) {error}".rstrip()
    if not version.startswith(GLUON_TRITON):
        return False, (f"the Gluon kernel is measured with Triton {', '.join(GLUON_TRITON)}x; "
                       f"this is {version}")
    if cap[0] != 9:
        return False, "the Gluon kernel is written for Hopper (compute capability 9.x)"
    if dtype not in GLUON_DTYPES:
        return False, f"the Gluon kernel takes fp16/bf16; got {dtype}"
    if head_dim not in GLUON_HEAD_DIMS:
        return False, f"the Gluon kernel takes head dims {GLUON_HEAD_DIMS}; got {head_dim}"
    if block_size != GLUON_BLOCK:
        return False, f"the Gluon kernel takes block_size {GLUON_BLOCK}; got {block_size}"
    return True, "ok"


# ---- launch tables (no autotuning at run time: the first sampling step must not stall) ------

# the compute capabilities whose launch rows were chosen by measurement on such a card; the
# others' rows are reasoned from the card's shared memory and registers and kept within them
# by tests/test_triton_compile.py, and the decision's reason says so
MEASURED_CAPS = ((9, 0),)


def _big_shared(cap: tuple[int, int]) -> bool:
    """Hopper and datacenter Blackwell (9.x, 10.x): ~227 KB of shared memory per block and
    tensor descriptors (TMA). Consumer Blackwell (12.x, RTX 50) has ~99 KB and mma.sync like
    Ada: the Hopper rows spill there (tests/test_triton_compile.py)."""
    return cap[0] in (9, 10)


def row_note(cap: tuple[int, int]) -> str:
    """'' where a card of this compute capability measured the launch rows, else a note."""
    if cap in MEASURED_CAPS:
        return ""
    return f"launch row unmeasured on compute capability {cap[0]}.{cap[1]}"


def triton_config(head_dim: int, dtype: torch.dtype, block_size: int, cap: tuple[int, int],
                  int8: bool = False, use_tma: bool | None = None) -> TritonConfig:
    """The Triton forward's row for (head dim, dtype, block size, GPU generation).

    Hopper rows were chosen by sweeps on an H200 and an H100 (docs/perf-notes.md): one
    warpgroup per 128 query rows, 64-key tiles, two pipeline stages, K/V through tensor
    descriptors (TMA); int8 Q.K^T three stages. GPUs before Hopper load K/V with plain
    pointers; those with ~100 KB of shared memory (sm 8.6/8.9, 7.5) use 32-key tiles so two
    stages still fit; int8 before Hopper (not measured) a 64 x 64 row. A sweep
    of all four benchmark shapes found the same bf16 row fastest at each: no per-shape rows.
    Only Hopper's rows are measured (``MEASURED_CAPS``, :func:`row_note`). ``use_tma`` None:
    on Hopper where this Triton has descriptors (the caller checks the strides).
    """
    bd = max(16, 1 << (head_dim - 1).bit_length())
    hopper = _big_shared(cap)
    if int8:
        # H200 sweeps (wan720, views): int8 Q.K 3 stages 53.3 ms, 2 stages 54.0, BN128 w8 59.1-60.3
        row = (128, 64, 4, 3) if hopper else (64, 64, 4, 2)
    elif dtype == torch.float32 or bd >= 256:
        row = (64, 32, 4, 2)
    elif hopper:
        row = (128, 64, 4, 2)
    elif cap == (8, 0):
        # A100 (not measured here): mma.sync keeps Q and the accumulator in registers, so
        # 128 x 128 tiles need 8 warps to stay clear of spills
        row = (128, 64, 8 if bd > 64 else 4, 2)
    else:
        row = (128 if bd <= 64 else 64, 32, 4, 2)
    bm, bn, warps, stages = row
    if use_tma is None:
        use_tma = hopper and _has_descriptors()
    return TritonConfig(min(bm, block_size), min(bn, block_size), bd, warps, stages, bool(use_tma))


def backward_config(head_dim: int, dtype: torch.dtype, block_size: int, cap: tuple[int, int],
                    dq_tma: bool | None = None, dkdv_tma: bool | None = None) -> BackwardConfig:
    """The backward's two passes: ``dq`` (``block_m`` query rows per program, ``block_n`` keys
    per tile), ``dkdv`` (``block_n`` keys per program, ``block_m`` query rows per tile). The
    Hopper row was chosen on an H200 (docs/benchmarks.md, "Backward"); the others are
    conservative (small tiles, two stages, to fit ~100 KB of shared memory and avoid spills).
    ``*_tma`` None: on Hopper where this Triton has descriptors."""
    bd = max(16, 1 << (head_dim - 1).bit_length())
    hopper = _big_shared(cap)
    if dtype == torch.float32 or bd >= 256:
        dq, dkdv = (32, 32, 4, 1), (32, 32, 4, 1)
    elif hopper:
        # H200 sweeps, Wan 720p bf16 (dQ / dK-dV pass alone, ms): pointer loads dQ 64x64 w4
        # 94.8, 128x64 w8 95.9, 128x32 w4 s3 97.7; dK/dV 64x64 w4 120.0, 128x64 w8 130.6,
        # 64x32 w4 s3 140.0. Tensor descriptors (TMA) at 64x64 w4 s2: dQ 80.1, dK/dV 108.0.
        dq, dkdv = (64, 64, 4, 2), (64, 64, 4, 2)
    else:
        # head dim 128's dK/dV pass keeps two 64 x 128 accumulators and the K/V tiles in
        # registers: 4 warps spill there on sm_80-89 (tests/test_triton_compile.py), 8 do not
        dq, dkdv = (64, 32, 4, 2), (32, 64, 8 if bd > 64 else 4, 2)
    tma = hopper and _has_descriptors()
    dq_tma = tma if dq_tma is None else dq_tma
    dkdv_tma = tma if dkdv_tma is None else dkdv_tma

    def fit(row, use):
        bm, bn, warps, stages = row
        return PassConfig(min(bm, block_size), min(bn, block_size), warps, stages, bool(use))

    return BackwardConfig(fit(dq, dq_tma), fit(dkdv, dkdv_tma), bd)


# ---- the decision ---------------------------------------------------------------------------


def _forward(q, k, v, block_size: int, cap, int8: bool, pv8: bool = False
             ) -> tuple[str, tuple, str]:
    """``(kernel, config, why)`` of the Triton backend's forward."""
    D = q.shape[-1]
    ok, why = gluon_takes(D, q.dtype, block_size, cap)
    if ok:
        # int8 reads quantised copies of q and k (and pv8 of v): only the others' strides matter
        if all(tma_ok(t) for t in (() if pv8 else (v,) if int8 else (q, k, v))):
            return "gluon", GluonConfig(GLUON_STAGES), "the Gluon kernel (Hopper)"
        why = "TMA needs 16-byte-aligned base and strides and a unit last stride"
    cfg = triton_config(D, q.dtype, block_size, cap, int8)
    if cfg.use_tma and not all(tma_ok(t) for t in ((v,) if int8 else (k, v))):
        cfg = cfg._replace(use_tma=False)
    notes = [why] if cap[0] == 9 else []
    notes += [row_note(cap)] if row_note(cap) else []
    return "triton", cfg, f"the Triton kernel ({'; '.join(notes)})" if notes else "the Triton kernel"


def decide(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, block_size: int,
           backend: str = "auto", precision: str = "exact", need_grad: bool = False) -> Decision:
    """The one decision for a call on these (validated) tensors.

    ``backend``: "auto" (Triton where :func:`can_use_triton` says yes, else PyTorch),
    "triton" (the caller raises where the decision says PyTorch), "pytorch". ``precision``:
    "exact" / "bf16", "int8-qk" (its old name "fp8" too: int8 Q.K^T where the GPU has 8-bit
    matrix units; else exact, with ``why_exact``) or "int8" (P.V in 8 bits too where the Gluon
    kernel runs; else as "int8-qk", with ``why_pv16``). ``need_grad``: the backward's
    configuration too; gradients and int8 keep an all-kept mask on the sparse path (the LSE must
    come from the same kernel as the backward), as does a backend other than "auto".
    """
    if backend == "pytorch":
        use_triton, why_not = False, "backend 'pytorch' asked"
    else:
        use_triton, why_not = can_use_triton(q)
        why_not = "" if use_triton else why_not
    int8, why_exact = False, ""
    if precision in INT8_PRECISIONS:
        if use_triton:
            int8, why_exact = _int8_ok(q)
            why_exact = "" if int8 else why_exact
        elif backend == "pytorch":
            why_exact = "backend='pytorch' has no int8 kernel"
        else:
            why_exact = f"the int8 kernel needs the Triton backend on a CUDA GPU (device {q.device})"
    dense = backend == "auto" and not need_grad and not int8
    if not use_triton:
        reason = f"the PyTorch block path ({why_not})"
        return Decision("pytorch", "pytorch", False, (), "pytorch", (), None, dense, reason,
                        why_not, why_exact)
    cap = capability(q.device)
    pv8, why_pv16 = False, ""
    if int8 and precision in PV8_PRECISIONS:
        # 8-bit P.V is the Gluon kernel's alone (it reads quantised copies of q, k and v)
        pv8, why_pv16 = gluon_takes(q.shape[-1], q.dtype, block_size, cap)
        why_pv16 = "" if pv8 else f"8-bit P.V is in the Gluon kernel only: {why_pv16}"
    kernel, cfg, why = _forward(q, k, v, block_size, cap, int8, pv8)
    exact_kernel, exact_cfg = kernel, cfg
    backward = None
    if need_grad:
        if int8:
            exact_kernel, exact_cfg, _ = _forward(q, k, v, block_size, cap, False)
        D = q.shape[-1]
        backward = backward_config(D, q.dtype, block_size, cap,
                                   dq_tma=None if tma_ok(k) and tma_ok(v) else False,
                                   dkdv_tma=None if tma_ok(q) else False)
    reason = why + (", int8 Q.K^T and P.V" if pv8 else ", int8 Q.K^T" if int8 else "")
    return Decision("triton", kernel, int8, cfg, exact_kernel, exact_cfg, backward, dense, reason,
                    "", why_exact, pv8, why_pv16)


def for_gradient(decision: Decision, grad_out: torch.Tensor) -> Decision:
    """``decision`` for the backward of a call whose output gradient is ``grad_out``: the dK/dV
    pass loads dO through tensor descriptors only where the copy engine takes ``grad_out`` (a
    broadcast gradient, ``out.sum().backward()``'s, has zero strides)."""
    bwd = decision.backward
    if bwd is None or not bwd.dkdv.use_tma or tma_ok(grad_out):
        return decision
    return decision._replace(backward=bwd._replace(dkdv=bwd.dkdv._replace(use_tma=False)))
