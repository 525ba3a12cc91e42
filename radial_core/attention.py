"""Public block-sparse attention: input checks, backend choice (Triton or PyTorch), fallback.

``block_sparse_attention(q, k, v, block_mask, ...)`` computes exactly dense softmax attention
restricted to the tokens of the kept blocks of ``block_mask``:

- ``q, k, v``: ``[B, H, S, D]`` with any strides (a ``[B, S, H*D]`` tensor viewed as
  ``t.view(B, S, H, D).transpose(1, 2)`` costs no copy); same shape, dtype and device.
- ``block_mask``: a ``mask.RadialMask`` (``radial_mask(...)``, whose CSRs are kept on it); a
  ``csr.BlockCSR`` (``csr.block_csr(mask, block_size, device)``: what a compiled caller builds
  outside the graph, as ``flex_attention``'s callers build their ``BlockMask``); or a bool
  ``[nb, nb]`` tensor shared by batch and heads, or ``[H, nb, nb]`` per head,
  ``nb = ceil(S / block_size)``; entry ``[qi, ki]`` keeps query block qi x key block ki (turned
  into a CSR at each call). The first two carry their block size: ``block_size`` may then be
  left out (if given, it must match); for a bool tensor it defaults to 128.
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
``precision="int8-qk"`` (opt-in, GPU kernel on compute capability 8.0+, head dim 32..128;
``"fp8"``, its old name, is read as it) runs Q.K^T on int8 copies (``int8_quant.quantize_int8``:
per-row or per-64-row scales, K smoothed) and P.V in the inputs' 16-bit dtype; its error on
random inputs is 1.2e-2 (Triton kernel) to 1.3e-2 (the Gluon kernel on Hopper) relative
(comfy-kitchen INT8: 1.7e-2), against 2.3e-3 for bf16 (docs/perf-notes.md). ``precision="int8"``
(opt-in) runs P.V in 8 bits as well where the Gluon kernel runs (Hopper): P rounded to 8 bits per
(query row, 128-key tile), V per channel with its mean out (``int8_quant.quantize_v8``); elsewhere
it runs as ``"int8-qk"`` and logs one warning. Where int8 cannot run at all (CPU, older GPU, head
dim, backend ``"pytorch"``) the call computes the exact result and logs one warning.

Which kernel runs is decided once per call by ``dispatch.decide`` (a caller that decided already,
the ComfyUI node, passes its ``decision=``); the custom op
``torch.ops.radial_attention.block_sparse_attn`` (``torch.library``) takes the CSR tensors, the
integers of the mask and the decision's integers, so a compiled model keeps one graph with the
attention inside (build the CSR outside the graph and pass the ``BlockCSR``).

Gradients: the op is differentiable with respect to q, k and v on every backend
(``torch.library.register_autograd``; :func:`supports_backward` says which backward runs). When
an input requires grad the forward also returns the float32 log-sum-exp of each query row
(float64 for float64 inputs), and autograd saves q, k, v, the output, that LSE and the CSR tensors:
memory linear in S, never the attention matrix. The backward is a second custom op
(``radial_attention::block_sparse_attn_backward``, so torch.compile traces it as one node too):
on the Triton backend the kernels of ``triton_backward`` (dQ over each query block's kept key
blocks; dK, dV over each key block's kept query blocks through the key-side CSR); elsewhere
the PyTorch path's blockwise backward (``torch_path``), both recomputing the probabilities from
the saved LSE group by group. Under ComfyUI's gradient checkpointing the op simply runs again.
With ``precision="int8-qk"`` the forward is int8 Q.K^T and the backward exact: it first recomputes the
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

from .csr import BlockCSR, build_csr, key_csr_from_csr
from .dispatch import Decision, can_use_triton as _can_use_triton, decide, for_gradient
from .mask import SUPPORTED_BLOCK_SIZES as BLOCK_SIZES, RadialMask
from .settings import SETTINGS
from .torch_path import (out_layout, torch_block_sparse_attention,
                         torch_block_sparse_attention_backward)

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "triton", "pytorch")
# "bf16": alias of "exact" (the input dtype's own path); "fp8": the old name of "int8-qk";
# "int8": both products in 8 bits
PRECISIONS = ("exact", "bf16", "int8-qk", "fp8", "int8")

_warned: set[str] = set()


def _name(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"tensor of shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"
    return f"{type(t).__name__} {t!r}"


def _mask_block_size(block_mask, block_size) -> int:
    """The block size of the call: the mask's own (a RadialMask or BlockCSR carries it; a
    ``block_size`` given as well must match), else ``block_size`` (default 128)."""
    own = block_mask.block_size if isinstance(block_mask, (RadialMask, BlockCSR)) else None
    if own:
        if block_size is not None and block_size != own:
            raise ValueError(
                f"block_sparse_attention: block_size={block_size!r} but the mask was built with "
                f"block_size={own}. Fix: leave block_size out (the mask carries it) or build "
                f"the mask with the block size you pass.")
        return own
    return 128 if block_size is None else block_size


def _validate(q, k, v, block_mask, block_size, key_padding_mask, scale, backend,
              precision="exact") -> None:
    where = "block_sparse_attention"
    if precision not in PRECISIONS:
        raise ValueError(
            f"{where}: precision must be one of {PRECISIONS}; got {precision!r}. "
            f"Fix: 'exact' (or its alias 'bf16') for the input dtype, 'int8-qk' for int8 Q.K^T, "
            f"'int8' for Q.K^T and P.V in 8 bits."
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
    nb = -(-S // block_size)
    if isinstance(block_mask, (RadialMask, BlockCSR)):
        shape = (block_mask.nb, block_mask.nb)
        if isinstance(block_mask, BlockCSR) and block_mask.mask_heads > 1:
            shape = (block_mask.mask_heads, *shape)
    else:
        if not isinstance(block_mask, torch.Tensor):
            raise TypeError(f"{where}: block_mask must be a RadialMask, a BlockCSR or a bool "
                            f"torch.Tensor; got {_name(block_mask)}")
        if block_mask.dtype != torch.bool:
            raise TypeError(
                f"{where}: block_mask must have dtype torch.bool; got {block_mask.dtype}. "
                f"Fix: pass block_mask.bool() (True = block kept)."
            )
        shape = tuple(block_mask.shape)
    ok_shape = len(shape) == 2 and shape == (nb, nb)
    ok_shape |= len(shape) == 3 and shape in ((H, nb, nb), (1, nb, nb))
    if not ok_shape:
        raise ValueError(
            f"{where}: block_mask must be [nb, nb] or [H, nb, nb] with nb = ceil(S / block_size) "
            f"= ceil({S} / {block_size}) = {nb}, H = {H}; got shape {shape}. "
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
    """Cheap check: can the Triton kernel serve these tensors? Returns ``(ok, reason)``
    (``dispatch.can_use_triton``; metadata only, shapes are not validated)."""
    return _can_use_triton(q)


def supports_backward(q: torch.Tensor, backend: str = "auto") -> tuple[bool, str]:
    """Is ``block_sparse_attention`` differentiable for these tensors? ``(True, which backward)``.

    Always True: every backend has a backward. The second value names the one that runs:
    ``"triton"`` (the backward kernels) or ``"pytorch"`` (the blockwise PyTorch backward), the
    same choice as the forward's.
    """
    if backend == "pytorch":
        return True, "pytorch"
    return True, "triton" if _can_use_triton(q)[0] else "pytorch"


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        logger.warning(msg)


def _all_kept(block_mask) -> bool:
    if isinstance(block_mask, RadialMask):
        return block_mask.density == 1.0
    if isinstance(block_mask, BlockCSR):
        return block_mask.kept == block_mask.mask_heads * block_mask.nb * block_mask.nb
    return bool(block_mask.all())


def _csrs(block_mask, block_size: int, device, key_side: bool):
    """``(csr, key-side csr or None)`` of the mask on ``device``."""
    if isinstance(block_mask, RadialMask):
        return block_mask.csr(device), block_mask.key_csr(device) if key_side else None
    if isinstance(block_mask, BlockCSR):
        csr = block_mask.to(device)
        key = csr.key if csr.key is not None or not key_side else key_csr_from_csr(csr, device)
        return csr, key if key_side else None
    csr = build_csr(block_mask, "cpu", block_size)
    key = key_csr_from_csr(csr, device) if key_side else None
    return csr.to(device), key


def block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block_mask,
    *,
    block_size: int | None = None,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    backend: str = "auto",
    precision: str = "exact",
    decision: Decision | None = None,
) -> torch.Tensor:
    """Block-sparse attention; see the module docstring for the full contract. ``decision``: a
    ``dispatch.decide`` result for these tensors and mask that the caller made (and logged)
    already; then ``backend`` is not consulted and no fallback is warned about here."""
    block_size = _mask_block_size(block_mask, block_size)
    _validate(q, k, v, block_mask, block_size, key_padding_mask, scale, backend, precision)
    precision = SETTINGS["precision"].rename(precision) or precision  # "fp8": its old name
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    if decision is None:
        decision = decide(q, k, v, block_size=block_size, backend=backend, precision=precision,
                          need_grad=need_grad)
        if backend == "triton" and decision.backend != "triton":
            raise ValueError(
                f"block_sparse_attention(backend='triton'): {decision.why_not_triton}. Fix: move "
                f"the tensors to a CUDA GPU with a supported dtype, or pass backend='pytorch' or "
                f"'auto'.")
        if backend == "auto" and q.is_cuda and decision.why_not_triton:
            _warn_once(f"block_sparse_attention: using the PyTorch path because "
                       f"{decision.why_not_triton}")
    elif need_grad and decision.backend == "triton" and decision.backward is None:
        raise ValueError("block_sparse_attention: the decision passed was made without gradients "
                         "(dispatch.decide(..., need_grad=False)) but q, k or v requires grad. "
                         "Fix: decide with need_grad=True.")
    if decision.why_exact:
        _warn_once(f"block_sparse_attention: precision={precision!r} computes the exact result "
                   f"instead, because {decision.why_exact}")
    if decision.why_pv16:
        _warn_once(f"block_sparse_attention: precision='int8' runs as 'int8-qk' (P.V in "
                   f"{q.dtype}), because {decision.why_pv16}")
    if decision.dense_when_all_kept and key_padding_mask is None and _all_kept(block_mask):
        # every block kept: plain dense attention is the same function, and PyTorch's fused
        # kernels (cuDNN, flash) are a few percent faster than any sparse path at density 1
        return out_layout(q).copy_(F.scaled_dot_product_attention(q, k, v, scale=scale))
    plan = decision.encode()
    device = q.device if decision.backend == "triton" else "cpu"
    csr, kcsr = _csrs(block_mask, block_size, device, need_grad and decision.backend == "triton")
    key = (None, None, None) if kcsr is None else (kcsr.row_start, kcsr.row_len, kcsr.col_idx)
    out, _ = _OP(q, k, v, csr.row_start, csr.row_len, csr.col_idx, csr.row_order, *key,
                 key_padding_mask, csr.nb, csr.mask_heads, block_size, float(scale), plan,
                 need_grad)
    return out


OP_NAME = "radial_attention::block_sparse_attn"
BWD_OP_NAME = "radial_attention::block_sparse_attn_backward"


def _lse_dtype(q: torch.Tensor) -> torch.dtype:
    return torch.float64 if q.dtype == torch.float64 else torch.float32


def _op_csrs(nb, mask_heads, block_size, row_start, row_len, col_idx, row_order,
             key_row_start, key_row_len, key_col_idx):
    """The op's CSR tensors as ``(csr, key-side csr or None)``."""
    csr = BlockCSR(nb, mask_heads, row_start, row_len, col_idx, row_order, block_size)
    if key_row_start is None:
        return csr, None
    # the key side's row_order is not carried: only the PyTorch path reads one, the query side's
    return csr, BlockCSR(nb, mask_heads, key_row_start, key_row_len, key_col_idx, row_order,
                         block_size)


def _forward(q, k, v, csr, decision: Decision, key_padding_mask, scale, exact=False, with_lse=False):
    """The one forward launcher of ``decision`` (its exact forward with ``exact``)."""
    kernel = decision.exact_kernel if exact else decision.kernel
    cfg = decision.exact_forward if exact else decision.forward
    int8 = decision.int8 and not exact
    if kernel == "gluon":
        from .gluon_kernel import launch

        return launch(q, k, v, csr, cfg, int8=int8, pv8=int8 and decision.pv8,
                      key_padding_mask=key_padding_mask,
                      scale=scale, return_lse=with_lse)
    if kernel == "triton":
        from .triton_kernel import triton_block_sparse_attention

        return triton_block_sparse_attention(q, k, v, csr, cfg, int8=int8,
                                             key_padding_mask=key_padding_mask, scale=scale,
                                             return_lse=with_lse)
    return torch_block_sparse_attention(q, k, v, csr, csr.block_size,
                                        key_padding_mask=key_padding_mask, scale=scale,
                                        return_lse=with_lse)


# The two functions below are the bodies of the custom ops (``_register_op``). Their parameters
# are spelled out with type annotations because torch.library.custom_op reads the op's schema
# from them; every other function of the paths takes the same arguments unannotated.


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, row_start: torch.Tensor,
               row_len: torch.Tensor, col_idx: torch.Tensor, row_order: torch.Tensor,
               key_row_start: torch.Tensor | None, key_row_len: torch.Tensor | None,
               key_col_idx: torch.Tensor | None, key_padding_mask: torch.Tensor | None,
               nb: int, mask_heads: int, block_size: int, scale: float, plan: list[int],
               need_lse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward op ``block_sparse_attn``: the launcher that ``plan`` (``Decision.encode``)
    names, on the mask's CSR. Returns ``(out, lse)``; see ``_register_op``."""
    decision = Decision.decode(plan)
    csr, _ = _op_csrs(nb, mask_heads, block_size, row_start, row_len, col_idx, row_order,
                      None, None, None)
    with_lse = need_lse and not decision.int8  # int8 has no exact LSE (the backward recomputes it)
    out = _forward(q, k, v, csr, decision, key_padding_mask, scale, with_lse=with_lse)
    lse = None
    if with_lse:
        out, lse = out
    B, H, S, D = q.shape
    if out.stride() != (S * H * D, D, H * D, 1):
        out = out_layout(q).copy_(out)
    if not need_lse:
        lse = q.new_empty((0,), dtype=_lse_dtype(q))
    elif lse is None:  # int8 forward: no exact LSE (the backward recomputes it)
        lse = torch.full((B, H, S), float("nan"), dtype=_lse_dtype(q), device=q.device)
    return out, lse


def _backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
              lse: torch.Tensor, grad_out: torch.Tensor, row_start: torch.Tensor,
              row_len: torch.Tensor, col_idx: torch.Tensor, row_order: torch.Tensor,
              key_row_start: torch.Tensor | None, key_row_len: torch.Tensor | None,
              key_col_idx: torch.Tensor | None, key_padding_mask: torch.Tensor | None,
              nb: int, mask_heads: int, block_size: int, scale: float,
              plan: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The backward op ``block_sparse_attn_backward``: dQ, dK, dV on the forward's backend."""
    decision = for_gradient(Decision.decode(plan), grad_out)
    csr, kcsr = _op_csrs(nb, mask_heads, block_size, row_start, row_len, col_idx, row_order,
                         key_row_start, key_row_len, key_col_idx)
    if decision.int8 or lse.numel() == 0:
        # int8 forward (its LSE is not the exact one) or a forward that kept no LSE: one exact
        # forward pass first, so the backward differentiates exact attention
        out, lse = _forward(q, k, v, csr, decision, key_padding_mask, scale, exact=True,
                            with_lse=True)
    if decision.backend == "triton":
        from .triton_backward import triton_block_sparse_attention_backward

        return triton_block_sparse_attention_backward(
            q, k, v, out, lse, grad_out, csr, kcsr, decision.backward,
            key_padding_mask=key_padding_mask, scale=scale)
    return torch_block_sparse_attention_backward(
        q, k, v, out, lse, grad_out, csr, block_size, key_padding_mask=key_padding_mask,
        scale=scale)


def _register_op():
    """The custom ops that torch.compile sees as opaque nodes (no graph break), with autograd.

    ``block_sparse_attn(q, k, v, <CSR tensors>, <key-side CSR tensors or None>,
    key_padding_mask, nb, mask_heads, block_size, scale, plan, need_lse) -> (out, lse)``
    (``_attention``): ``out`` always has the sparse paths' layout (a ``[B, H, S, D]`` view of a
    contiguous ``[B, S, H, D]`` buffer, ``torch_path.out_layout``), which ``register_fake``
    states. ``lse`` is ``[B, H, S]`` (float32; float64 for float64 inputs) when ``need_lse``,
    else an empty ``[0]`` tensor (a backward then recomputes it); after an int8 forward its
    values are NaN (unused: the backward recomputes the exact one). ``register_autograd`` saves
    q, k, v, out, lse and the CSR tensors and calls ``block_sparse_attn_backward``
    (``_backward``), itself a custom op with a fake, so a compiled training step traces both as
    single nodes.

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
    def _(q, k, v, *rest):
        need_lse = rest[-1] if len(rest) == 14 else False
        B, H, S, D = q.shape
        return out_layout(q), q.new_empty((B, H, S) if need_lse else (0,), dtype=_lse_dtype(q))

    def setup_context(ctx, inputs, output):
        q, k, v, *tensors = inputs[:11]
        out, lse = output
        ctx.save_for_backward(q, k, v, out, lse, *tensors)
        ctx.args = tuple(inputs[11:16])  # nb, mask_heads, block_size, scale, plan

    def backward(ctx, grad_out, grad_lse):
        q, k, v, out, lse, *tensors = ctx.saved_tensors
        if grad_out is None:
            grad_out = torch.zeros_like(out)
        dq, dk, dv = torch.ops.radial_attention.block_sparse_attn_backward.default(
            q, k, v, out, lse, grad_out, *tensors, *ctx.args)
        return (dq, dk, dv) + (None,) * 14

    forward_op.register_autograd(backward, setup_context=setup_context)
    return torch.ops.radial_attention.block_sparse_attn.default


_OP = _register_op()
