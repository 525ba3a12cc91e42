"""Public block-sparse attention: input checks, backend choice (Triton or PyTorch), fallback.

``block_sparse_attention(q, k, v, block_mask, ...)`` computes exactly dense softmax attention
restricted to the tokens of the kept blocks of ``block_mask``:

- ``q, k, v``: ``[B, H, S, D]`` with any strides (a ``[B, S, H*D]`` tensor viewed as
  ``t.view(B, S, H, D).transpose(1, 2)`` costs no copy); same shape, dtype and device.
- ``block_mask``: bool ``[nb, nb]`` shared by batch and heads, or ``[H, nb, nb]`` per head,
  ``nb = ceil(S / block_size)``; entry ``[qi, ki]`` keeps query block qi x key block ki; or a
  ``mask.RadialMask`` (``radial_mask(...)``), whose CSR is kept on it.
- ``key_padding_mask``: optional bool ``[B, S]``, True = real key. Padded keys and keys past S
  never enter the softmax; a query row with no kept key returns zeros (never NaN).
- Output: ``[B, H, S, D]`` in q's dtype, always ``out.transpose(1, 2)`` of a contiguous
  ``[B, S, H, D]`` buffer, so ``result.transpose(1, 2).reshape(B, S, H * D)`` is free. With
  ``backend="auto"``, a mask that keeps every block (and no key padding) goes to PyTorch's
  dense ``scaled_dot_product_attention`` (same function, faster at density 1), copied into
  that layout (the custom op declares one layout); inputs that require grad stay on the sparse
  path (see Gradients below).

Precision: ``precision="exact"`` (default; ``"bf16"`` is accepted as an alias, the issue's name
for it) computes in the inputs' own dtype: bf16 stays bf16, fp16 stays fp16, nothing is cast.
``precision="fp8"`` (opt-in, GPU kernel on compute capability 8.9+, head dim 32..128) runs
Q.K^T on 8-bit copies (``triton_kernel.FP8_SCHEME``: int8 with per-block scales, K smoothed;
``triton_kernel.quantize_fp8``) and P.V in the inputs' 16-bit dtype; its error on random inputs
is 1.2e-2 (Triton kernel) to 1.3e-2 (the Gluon kernel on Hopper) relative (comfy-kitchen INT8:
1.7e-2), against 2.3e-3 for bf16 (docs/perf-notes.md). Where FP8 cannot run (CPU, older GPU, head dim, backend
``"pytorch"``) the call computes the exact result and logs one warning.

torch.compile: the call is the custom op ``torch.ops.radial_attention.block_sparse_attn``
(``torch.library``), so a compiled model keeps one graph with the attention inside.

Gradients (issue 14): the op is differentiable with respect to q, k and v on every backend
(``torch.library.register_autograd``; :func:`supports_backward` says which backward runs). When
an input requires grad the forward also returns the float32 log-sum-exp of each query row
(float64 for float64 inputs), and autograd saves q, k, v, the output, that LSE and the masks:
memory linear in S, never the attention matrix. The backward is a second custom op
(``radial_attention::block_sparse_attn_backward``, so torch.compile traces it as one node too):
on the Triton backend the kernels of ``triton_backward`` (dQ over each query block's kept key
blocks; dK, dV over each key block's kept query blocks through the key-side CSR); elsewhere
the PyTorch path's blockwise backward (``torch_path``), both recomputing the probabilities from
the saved LSE group by group. Under ComfyUI's gradient checkpointing the op simply runs again.
With ``precision="fp8"`` the forward is FP8 and the backward exact: it first recomputes the
exact output and LSE (one more exact forward pass), then differentiates exact attention. An
all-kept mask with ``backend="auto"`` stays on the sparse path when gradients are needed (the
LSE must come from the same kernel as the backward). A query row with no kept key has zero
output and zero gradient.

Backends: ``"triton"`` (CUDA, Triton >= 3.0; fp16 and bf16 natively; fp32 inputs are accepted
and computed with three-pass TF32 products (``tf32x3``, near-float32 accuracy) and a float32
softmax; any head dim up to 256, padded to a power of two inside the kernel; on Hopper,
fp16/bf16 with head dim 64 or 128 at block 128 run the forward in ``gluon_kernel``, the
warp-specialised Gluon form of the same kernel), ``"pytorch"``
(any device; float32 math, float64 for float64 inputs; memory bounded per group of query
blocks), ``"auto"`` (Triton when :func:`can_use_triton` says yes, else PyTorch).
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from .csr import block_mask_to_csr, block_mask_to_key_csr
from .mask import block_tensor
from .torch_path import (out_layout, torch_block_sparse_attention,
                         torch_block_sparse_attention_backward)

logger = logging.getLogger(__name__)

BLOCK_SIZES = (64, 128)
BACKENDS = ("auto", "triton", "pytorch")
PRECISIONS = ("exact", "bf16", "fp8")  # "bf16": alias of "exact" (the input dtype's own path)
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_TRITON_HEAD_DIM = 256

_triton_state: dict[str, object] = {}
_warned: set[str] = set()


def _triton_module():
    """The kernel module, or None with the import error recorded (Triton missing, say)."""
    if "module" not in _triton_state:
        try:
            from . import triton_kernel

            _triton_state["module"] = triton_kernel
        except Exception as exc:  # ImportError, or a broken Triton install
            _triton_state["module"] = None
            _triton_state["error"] = f"{type(exc).__name__}: {exc}"
    return _triton_state["module"]


def _name(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"tensor of shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"
    return f"{type(t).__name__} {t!r}"


def _validate(q, k, v, block_mask, block_size, key_padding_mask, scale, backend,
              precision="exact") -> None:
    where = "block_sparse_attention"
    if precision not in PRECISIONS:
        raise ValueError(
            f"{where}: precision must be one of {PRECISIONS}; got {precision!r}. "
            f"Fix: 'exact' (or its alias 'bf16') for the input dtype, 'fp8' for the FP8 kernel."
        )
    for nm, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{where}: {nm} must be a torch.Tensor [B, H, S, D]; got {_name(t)}")
        if t.dim() != 4:
            raise ValueError(
                f"{where}: {nm} must be 4-D [B, H, S, D]; got shape {tuple(t.shape)}. "
                f"Fix: view a [B, S, H*D] tensor as t.view(B, S, H, D).transpose(1, 2)."
            )
    if k.shape != q.shape or v.shape[:3] != q.shape[:3] or v.shape[3] != q.shape[3]:
        raise ValueError(
            f"{where}: q, k and v must have the same shape [B, H, S, D] (self-attention); got "
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}. Fix: use dense "
            f"attention for cross-attention (key length != query length)."
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(
            f"{where}: q, k, v must share one dtype; got {q.dtype}, {k.dtype}, {v.dtype}. "
            f"Fix: cast them to the same dtype."
        )
    if not q.dtype.is_floating_point:
        raise TypeError(
            f"{where}: expected float16, bfloat16, float32 (or float64 on backend='pytorch'); "
            f"got {q.dtype}. Fix: cast q, k, v to a floating dtype."
        )
    if not (q.device == k.device == v.device):
        raise ValueError(
            f"{where}: q, k, v must be on one device; got {q.device}, {k.device}, {v.device}."
        )
    if backend not in BACKENDS:
        raise ValueError(f"{where}: backend must be one of {BACKENDS}; got {backend!r}.")
    if block_size not in BLOCK_SIZES:
        raise ValueError(
            f"{where}: block_size must be 64 or 128; got {block_size!r}. Fix: build the mask "
            f"with radial_block_mask(..., block_size=64 or 128) and pass the same value here."
        )
    B, H, S, D = q.shape
    if S == 0 or D == 0:
        raise ValueError(f"{where}: sequence length and head dim must be > 0; got {tuple(q.shape)}.")
    if not isinstance(block_mask, torch.Tensor):
        raise TypeError(f"{where}: block_mask must be a bool torch.Tensor; got {_name(block_mask)}")
    if block_mask.dtype != torch.bool:
        raise TypeError(
            f"{where}: block_mask must have dtype torch.bool; got {block_mask.dtype}. "
            f"Fix: pass block_mask.bool() (True = block kept)."
        )
    nb = -(-S // block_size)
    ok_shape = block_mask.dim() == 2 and tuple(block_mask.shape) == (nb, nb)
    ok_shape |= block_mask.dim() == 3 and tuple(block_mask.shape) in ((H, nb, nb), (1, nb, nb))
    if not ok_shape:
        raise ValueError(
            f"{where}: block_mask must be [nb, nb] or [H, nb, nb] with nb = ceil(S / block_size) "
            f"= ceil({S} / {block_size}) = {nb}, H = {H}; got shape {tuple(block_mask.shape)}. "
            f"Fix: build the mask for this sequence length and block size."
        )
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool:
            raise TypeError(
                f"{where}: key_padding_mask must be a bool tensor [B, S] (True = real key); "
                f"got {_name(key_padding_mask)}."
            )
        if tuple(key_padding_mask.shape) != (B, S):
            raise ValueError(
                f"{where}: key_padding_mask must have shape [B, S] = [{B}, {S}]; got "
                f"{tuple(key_padding_mask.shape)}."
            )
    if scale is not None and (
        not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0
    ):
        raise ValueError(f"{where}: scale must be a positive finite number or None; got {scale!r}.")


def can_use_triton(
    q: torch.Tensor, k: torch.Tensor | None = None, v: torch.Tensor | None = None
) -> tuple[bool, str]:
    """Cheap check: can the Triton kernel serve these tensors? Returns ``(ok, reason)``.

    Looks only at metadata (device, dtype, head dim, autograd, GPU generation); it does not
    validate shapes (``block_sparse_attention`` does that and raises).
    """
    if not isinstance(q, torch.Tensor) or not q.is_cuda:
        dev = q.device if isinstance(q, torch.Tensor) else None
        return False, f"the Triton kernel needs CUDA tensors; got device {dev}"
    if q.dtype not in TRITON_DTYPES:
        return False, f"the Triton kernel takes float16, bfloat16 or float32; got {q.dtype}"
    if q.dim() != 4:
        return False, f"expected q as [B, H, S, D]; got shape {tuple(q.shape)}"
    if q.shape[-1] > MAX_TRITON_HEAD_DIM:
        return False, f"head dim {q.shape[-1]} is above the kernel's {MAX_TRITON_HEAD_DIM}"
    major, minor = torch.cuda.get_device_capability(q.device)
    if (major, minor) < (7, 5) or (q.dtype == torch.bfloat16 and major < 8):
        return False, (
            f"GPU compute capability {major}.{minor} is too old for the Triton kernel "
            f"with {q.dtype} (needs 8.0+ for bfloat16, 7.5+ otherwise)"
        )
    if q.shape[0] * q.shape[1] > 65535:
        return False, f"batch x heads = {q.shape[0] * q.shape[1]} is above the kernel's grid limit 65535"
    if _triton_module() is None:
        return False, f"Triton is not importable ({_triton_state.get('error')})"
    if not _triton_module().triton_version_ok():
        return False, (
            f"Triton {_triton_module().triton.__version__} is older than the kernel needs (3.0)"
        )
    return True, "ok"


def choose_backend(
    q: torch.Tensor, backend: str = "auto", k: torch.Tensor | None = None, v: torch.Tensor | None = None
) -> tuple[str, str]:
    """The one backend rule: ``("triton" | "pytorch", why not Triton)`` for these tensors.

    ``backend="pytorch"`` is PyTorch; otherwise the Triton kernel when :func:`can_use_triton`
    says yes, else PyTorch with its reason (``""`` when Triton). ``block_sparse_attention`` uses
    it (and raises for ``backend="triton"`` where it says PyTorch); a caller that prefers a
    fallback over that error (the ComfyUI node) asks here first and passes the answer on.
    """
    if backend == "pytorch":
        return "pytorch", "backend 'pytorch' asked"
    ok, reason = can_use_triton(q, k, v)
    return ("triton", "") if ok else ("pytorch", reason)


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        logger.warning(msg)


def block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block_mask: torch.Tensor,
    *,
    block_size: int = 128,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    backend: str = "auto",
    precision: str = "exact",
) -> torch.Tensor:
    """Block-sparse attention; see the module docstring for the full contract."""
    block_mask = block_tensor(block_mask)  # a RadialMask or its bool tensor (its CSR stays on it)
    _validate(q, k, v, block_mask, block_size, key_padding_mask, scale, backend, precision)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    need_lse = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    out, _ = _OP(q, k, v, block_mask, key_padding_mask, block_size, float(scale), backend,
                 precision, need_lse)
    return out


def supports_backward(q: torch.Tensor, backend: str = "auto") -> tuple[bool, str]:
    """Is ``block_sparse_attention`` differentiable for these tensors? ``(True, which backward)``.

    Always True: every backend has a backward. The second value names the one that runs:
    ``"triton"`` (the backward kernels) or ``"pytorch"`` (the blockwise PyTorch backward), the
    same choice as the forward's (:func:`choose_backend`).
    """
    used, _ = choose_backend(q, backend)
    return True, used


def _plan(q, k, v, backend: str, precision: str) -> tuple[bool, bool]:
    """``(use_triton, fp8)`` for a call (warns once where it falls back; raises for
    ``backend="triton"`` where the kernel cannot run). The backward makes the same choice."""
    used, reason = choose_backend(q, backend, k, v)
    use_triton = used == "triton"
    if backend == "triton" and not use_triton:
        raise ValueError(
            f"block_sparse_attention(backend='triton'): {reason}. Fix: move the tensors to "
            f"a CUDA GPU with a supported dtype, or pass backend='pytorch' or 'auto'."
        )
    if backend == "auto" and q.is_cuda and not use_triton:
        _warn_once(f"block_sparse_attention: using the PyTorch path because {reason}")

    fp8 = False
    if precision == "fp8":
        if use_triton:
            ok, reason = _triton_module().fp8_supported(q)
        elif backend == "pytorch":
            ok, reason = False, "backend='pytorch' has no FP8 kernel"
        else:
            ok, reason = False, f"the FP8 kernel needs the Triton backend on a CUDA GPU (device {q.device})"
        fp8 = ok
        if not ok:
            _warn_once(f"block_sparse_attention: precision='fp8' computes the exact result "
                       f"instead, because {reason}")

    return use_triton, fp8


OP_NAME = "radial_attention::block_sparse_attn"
BWD_OP_NAME = "radial_attention::block_sparse_attn_backward"


def _lse_dtype(q: torch.Tensor) -> torch.dtype:
    return torch.float64 if q.dtype == torch.float64 else torch.float32


# The two functions below are the bodies of the custom ops (``_register_op``). Their parameters
# are spelled out with type annotations because torch.library.custom_op reads the op's schema
# from them; every other function of the paths takes the same arguments unannotated.


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: torch.Tensor,
               key_padding_mask: torch.Tensor | None, block_size: int, scale: float,
               backend: str, precision: str,
               need_lse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward op ``block_sparse_attn``: backend and precision choice, then the call
    (inputs validated, scale resolved). Returns ``(out, lse)``; see ``_register_op``."""
    use_triton, fp8 = _plan(q, k, v, backend, precision)
    csr = block_mask_to_csr(block_mask, q.device if use_triton else "cpu")
    with_lse = need_lse and not fp8  # an FP8 forward has no exact LSE (the backward recomputes it)
    lse = None
    if (backend == "auto" and not need_lse and not fp8 and key_padding_mask is None
            and csr.kept == csr.mask_heads * csr.nb * csr.nb):
        # every block kept: plain dense attention is the same function, and PyTorch's fused
        # kernels (cuDNN, flash) are a few percent faster than any sparse path at density 1
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    elif use_triton:
        out = _triton_module().triton_block_sparse_attention(
            q, k, v, csr, block_size, key_padding_mask=key_padding_mask, scale=scale, fp8=fp8,
            return_lse=with_lse)
    else:
        out = torch_block_sparse_attention(
            q, k, v, csr, block_size, key_padding_mask=key_padding_mask, scale=scale,
            return_lse=with_lse)
    if with_lse:
        out, lse = out
    B, H, S, D = q.shape
    if out.stride() != (S * H * D, D, H * D, 1):
        out = out_layout(q).copy_(out)
    if not need_lse:
        lse = q.new_empty((0,), dtype=_lse_dtype(q))
    elif lse is None:  # FP8 forward: no exact LSE (the backward recomputes it)
        lse = torch.full((B, H, S), float("nan"), dtype=_lse_dtype(q), device=q.device)
    return out, lse


def _backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
              lse: torch.Tensor, grad_out: torch.Tensor, block_mask: torch.Tensor,
              key_padding_mask: torch.Tensor | None, block_size: int, scale: float,
              backend: str, precision: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The backward op ``block_sparse_attn_backward``: dQ, dK, dV, same backend choice as the
    forward's."""
    use_triton, fp8 = _plan(q, k, v, backend, precision)
    if use_triton:
        tk = _triton_module()
        csr = block_mask_to_csr(block_mask, q.device)
        if fp8 or lse.numel() == 0:
            # FP8 forward (its LSE is not the exact one) or a forward that kept no LSE: one
            # exact forward pass first, so the backward differentiates exact attention
            out, lse = tk.triton_block_sparse_attention(
                q, k, v, csr, block_size, key_padding_mask=key_padding_mask, scale=scale,
                return_lse=True)
        from .triton_backward import triton_block_sparse_attention_backward

        kcsr = block_mask_to_key_csr(block_mask, q.device)
        return triton_block_sparse_attention_backward(
            q, k, v, out, lse, grad_out, csr, kcsr, block_size,
            key_padding_mask=key_padding_mask, scale=scale)
    csr = block_mask_to_csr(block_mask, "cpu")
    if lse.numel() == 0:
        out, lse = torch_block_sparse_attention(
            q, k, v, csr, block_size, key_padding_mask=key_padding_mask, scale=scale,
            return_lse=True)
    return torch_block_sparse_attention_backward(
        q, k, v, out, lse, grad_out, csr, block_size, key_padding_mask=key_padding_mask,
        scale=scale)


def _register_op():
    """The custom ops that torch.compile sees as opaque nodes (no graph break), with autograd.

    ``block_sparse_attn(..., need_lse) -> (out, lse)`` (``_attention``): ``out`` always has the
    sparse paths' layout (a ``[B, H, S, D]`` view of a contiguous ``[B, S, H, D]`` buffer,
    ``torch_path.out_layout``), which ``register_fake`` states; the dense shortcut for an
    all-kept mask is copied into that layout. ``lse`` is ``[B, H, S]`` (float32; float64 for
    float64 inputs) when ``need_lse``, else an empty ``[0]`` tensor (a backward then recomputes
    it); after an FP8 forward its values are NaN (unused: the backward recomputes the exact
    one). ``register_autograd`` saves q, k, v, out, lse and the masks and calls
    ``block_sparse_attn_backward`` (``_backward``), itself a custom op with a fake, so a
    compiled training step traces both as single nodes.

    A second copy of this module (ComfyUI loads the pack under its own module name beside a
    plain ``import radial_core``) reuses the ops that the first one registered.
    """
    ns, name = OP_NAME.split("::")
    try:
        return getattr(getattr(torch.ops, ns), name).default
    except (AttributeError, RuntimeError):
        pass  # not registered yet

    backward_op = torch.library.custom_op(BWD_OP_NAME, mutates_args=())(_backward)

    @backward_op.register_fake
    def _(q, k, v, *rest):
        return out_layout(q), out_layout(k), out_layout(v)

    forward_op = torch.library.custom_op(OP_NAME, mutates_args=())(_attention)

    @forward_op.register_fake
    def _(q, k, v, block_mask, key_padding_mask, block_size, scale, backend, precision,
          need_lse=False):
        B, H, S, D = q.shape
        return out_layout(q), q.new_empty((B, H, S) if need_lse else (0,), dtype=_lse_dtype(q))

    def setup_context(ctx, inputs, output):
        q, k, v, block_mask, key_padding_mask, block_size, scale, backend, precision = inputs[:9]
        out, lse = output
        ctx.save_for_backward(q, k, v, out, lse, block_mask, key_padding_mask)
        ctx.args = (block_size, scale, backend, precision)

    def backward(ctx, grad_out, grad_lse):
        q, k, v, out, lse, block_mask, key_padding_mask = ctx.saved_tensors
        if grad_out is None:
            grad_out = torch.zeros_like(out)
        dq, dk, dv = torch.ops.radial_attention.block_sparse_attn_backward.default(
            q, k, v, out, lse, grad_out, block_mask, key_padding_mask, *ctx.args)
        return dq, dk, dv, None, None, None, None, None, None, None

    forward_op.register_autograd(backward, setup_context=setup_context)
    return torch.ops.radial_attention.block_sparse_attn.default


_OP = _register_op()
