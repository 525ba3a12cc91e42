"""Decide, for one attention call, "sparse with this mask" or "dense, because ...".

:func:`plan_call` is the whole decision and nothing else: it reads the call's tensors (shapes,
dtypes, the attention mask), the model call's :class:`~.run_state.ForwardContext`, ComfyUI's
signals in ``transformer_options`` and the patch's :class:`RadialConfig`, and returns a frozen
:class:`Plan`. It logs nothing, counts nothing and runs no attention; ``attention_override.py``
runs the plan and logs its reasons. It needs no ComfyUI (``tests/test_attention_plan.py``).

The rules, in the order they are asked (the first that answers decides):

1. not an attention call the override understands, cross-attention, grouped-query attention;
2. a call of another stream (LTX-2's audio) or a length that is not the video sequence
   (HunyuanVideo's text refiner, per-frame attention folded into the batch);
3. the block (ComfyUI's ``block_index`` where the model reports it, else the forward's call count)
   is past the model's last block, or the radial mask for this shape cannot be built;
4. a dense block, a dense step, a single frame (an image);
5. an input the sparse kernels cannot take (dtype, a mask that is not a key-padding mask).

Calls that need gradients (training, e.g. ComfyUI's Train LoRA) stay sparse:
``block_sparse_attention`` is differentiable, so forward and backward are radial.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..radial_core.mask import RadialMask, radial_mask
from ..radial_core.dispatch import Decision, decide
from .model_family import ModelFamily

_ARG_NAMES = ("q", "k", "v", "heads", "mask", "attn_precision", "skip_reshape", "skip_output_reshape")
SPARSE_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@dataclass(frozen=True)
class RadialConfig:
    """One Radial Attention Patch configuration (validated by ``radial_patcher``)."""

    family: ModelFamily
    decay_factor: float
    decay_is_default: bool
    block_size: int
    dense_blocks: frozenset
    dense_blocks_text: str
    dense_steps_first: int
    dense_steps_last: int
    dist1: str
    backend: str
    precision: str = "exact"

    def as_dict(self) -> dict:
        return {
            "family": self.family.family,
            "variant": self.family.variant,
            "decay_factor": self.decay_factor,
            "decay_is_default": self.decay_is_default,
            "block_size": self.block_size,
            "dense_blocks": sorted(self.dense_blocks),
            "dense_blocks_text": self.dense_blocks_text,
            "dense_steps_first": self.dense_steps_first,
            "dense_steps_last": self.dense_steps_last,
            "dist1": self.dist1,
            "backend": self.backend,
            "precision": self.precision,
            "mask_model": self.family.mask_model,
            "patch_size": list(self.family.patch_size),
            "num_blocks": self.family.num_blocks,
        }


@dataclass(frozen=True)
class Call:
    """The arguments of one ``optimized_attention`` call that the decision reads."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    heads: int
    mask: object
    skip_reshape: bool  # q, k, v are [B, H, L, D] (else [B, L, H*D])
    skip_output_reshape: bool  # the caller wants [B, H, L, D] back (else [B, L, H*D])
    scale: float | None = None  # newer ComfyUI passes scale= for some models
    gqa: bool = False  # grouped-query attention (fewer key/value heads): dense path

    @property
    def lq(self) -> int:
        return int(self.q.shape[2] if self.skip_reshape else self.q.shape[1])

    @property
    def lk(self) -> int:
        return int(self.k.shape[2] if self.skip_reshape else self.k.shape[1])

    @property
    def width(self) -> int:
        """Model width (heads x head dim) of the query."""
        return int(self.q.shape[1] * self.q.shape[3]) if self.skip_reshape else int(self.q.shape[-1])

    def bhld(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v as ``[B, H, L, D]`` views (no copy)."""
        if self.skip_reshape:
            return self.q, self.k, self.v
        B, L, HD = self.q.shape
        D = HD // self.heads
        return tuple(t.view(B, t.shape[1], self.heads, D).transpose(1, 2) for t in (self.q, self.k, self.v))


def parse_call(args: tuple, kwargs: dict) -> Call | None:
    """The :class:`Call` of ``override(func, *args, **kwargs)``; None when it is not one."""
    got = dict(zip(_ARG_NAMES, args))
    for name in _ARG_NAMES:
        if name in kwargs:
            got[name] = kwargs[name]
    q, k, v, heads = got.get("q"), got.get("k"), got.get("v"), got.get("heads")
    if not all(isinstance(t, torch.Tensor) for t in (q, k, v)) or not isinstance(heads, int):
        return None
    skip = bool(got.get("skip_reshape", False))
    if q.ndim != (4 if skip else 3) or k.ndim != q.ndim or v.ndim != q.ndim:
        return None
    scale = kwargs.get("scale")
    return Call(q, k, v, heads, got.get("mask"), skip, bool(got.get("skip_output_reshape", False)),
                float(scale) if isinstance(scale, (int, float)) else None, bool(kwargs.get("enable_gqa", False)))


def key_padding_from_mask(mask, batch: int, length: int) -> tuple[bool, torch.Tensor | None]:
    """Turn an attention mask into a ``[B, L]`` bool key-padding mask (True = real key).

    Accepts masks that only depend on the key (``(L,)``, ``(B|1, L)``, ``(B|1, 1, L)``,
    ``(B|1, 1, 1, L)``), bool (True = attend) or additive float (0 = attend, a large negative
    value = padded). Returns ``(ok, kpm)``; ``kpm`` is None when every key is real; ``ok`` is
    False for masks that depend on the query or carry real biases (the dense path takes those).
    """
    if mask is None:
        return True, None
    if not isinstance(mask, torch.Tensor) or mask.shape[-1] != length or mask.ndim > 4:
        return False, None
    m = mask
    if m.ndim == 1:
        m = m[None]
    while m.ndim > 2:
        if m.shape[1] != 1:
            return False, None
        m = m[:, 0]
    if m.shape[0] not in (1, batch):
        return False, None
    if m.dtype == torch.bool:
        keep = m
    else:
        mf = m.float()
        keep = mf > -1e3
        if not bool(torch.all(keep.logical_not() | (mf == 0))):
            return False, None  # a real additive bias, not a padding mask
    if bool(keep.all()):
        return True, None
    return True, keep.expand(batch, length).contiguous()


@dataclass(frozen=True)
class Plan:
    """What to do with one attention call: sparse (``reason == ""``) or dense because ``reason``.

    ``video``: a video self-attention call of a transformer block (it takes the forward's next
    block count). From there on the plan knows the ``block``, the geometry and the ``mask``
    (built even for dense blocks and steps, so that the run's log can describe the shape).
    """

    reason: str = ""
    warn: bool = False  # the reason is worth a warning (once per run)
    video: bool = False
    block: int | None = None
    step: int | None = None
    frames: int = 0
    tokens_per_frame: int = 0
    text_tokens: int = 0
    text_first: bool = False
    mask: RadialMask | None = None  # the shared radial mask (radial_core.mask.radial_mask)
    key_padding_mask: torch.Tensor | None = None
    backend: str = ""  # radial_core.dispatch's answer: "triton" or "pytorch"
    backend_reason: str = ""  # why not Triton ("" when Triton)
    decision: Decision | None = None  # what the executor passes to block_sparse_attention
    step_unknown: bool = False  # dense_steps_first/last asked, but this call's step is unknown

    @property
    def sparse(self) -> bool:
        return not self.reason

    def dense_because(self, reason: str, warn: bool) -> "Plan":
        return replace(self, reason=reason, warn=warn)


def _dense(reason: str, warn: bool = False, **kw) -> Plan:
    return Plan(reason=reason, warn=warn, **kw)


def _geometry(cfg: RadialConfig, fwd, call: Call) -> tuple[int, int] | None:
    """(frames in the sequence, text tokens) for a video self-attention call, else None."""
    T = fwd.tokens_per_frame
    L = call.lq
    if int(call.q.shape[0]) != fwd.batch:
        return None  # e.g. attention over per-frame groups folded into the batch
    if cfg.family.layout == "wan":
        if L % T or (cfg.family.exact_video and L != fwd.seq_frames * T):
            return None
        return L // T, 0
    if fwd.context_len is not None and L == fwd.context_len:
        return None  # HunyuanVideo's text refiner: text-only self-attention
    video = fwd.seq_frames * T
    if L < video:
        return None
    return fwd.seq_frames, L - video


def plan_call(call: Call | None, fwd, cfg: RadialConfig, transformer_options: dict) -> Plan:
    """The decision for one attention call (see the module doc); changes nothing."""
    step = fwd.step.global_index if fwd.step is not None else None
    if call is None:
        return _dense("unrecognised attention call", step=step)
    if call.lq != call.lk:
        return _dense("cross-attention", step=step)
    if call.gqa or call.k.shape != call.q.shape or call.v.shape != call.q.shape:
        return _dense("attention with other key/value shapes (grouped-query)", True, step=step)
    other = cfg.family.adapter.other_stream_reason(cfg.family, call.width, call.lq,
                                                   fwd.seq_frames * fwd.tokens_per_frame)
    if other is not None:  # e.g. LTX-2's audio stream: not video attention
        return _dense(other, step=step)
    geo = _geometry(cfg, fwd, call)
    if geo is None:
        if fwd.context_len is not None and call.lq == fwd.context_len:
            return _dense("text-only self-attention (token refiner)", step=step)
        return _dense(f"self-attention over {call.lq} tokens that do not match the video "
                      f"({fwd.seq_frames} frames x {fwd.tokens_per_frame} tokens)", True, step=step)
    frames, text = geo
    block = fwd.peek_block(transformer_options, cfg.family.double_blocks, cfg.family.num_blocks)
    if block is None:
        return _dense(f"more video self-attention calls than the model's {cfg.family.num_blocks} blocks",
                      True, video=True, step=step)
    base = dict(video=True, block=block, step=step, frames=frames, tokens_per_frame=fwd.tokens_per_frame,
                text_tokens=text, text_first=fwd.text_first)
    try:
        mask = radial_mask(frames, fwd.tokens_per_frame, text_tokens=text, block_size=cfg.block_size,
                           decay_factor=cfg.decay_factor, model=cfg.family.mask_model, dist1=cfg.dist1,
                           text_first=fwd.text_first)
    except Exception as exc:  # noqa: BLE001 - a shape the mask cannot take goes dense
        return _dense(f"a mask that could not be built ({type(exc).__name__}: {exc})", True, **base)
    q, k, v = call.bhld()
    # radial_core's one decision; a backend "triton" that cannot run falls back to PyTorch here
    # (the executor passes the decision on, and log_plan warns with its reason)
    decision = decide(q, k, v, block_size=cfg.block_size, backend=cfg.backend, precision=cfg.precision,
                      need_grad=torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)))
    if decision.backend != "triton":  # PyTorch's dense shortcut for an all-kept mask only beside Triton
        decision = decision._replace(dense_when_all_kept=False)
    base.update(mask=mask, backend=decision.backend, backend_reason=decision.why_not_triton, decision=decision)
    if block in cfg.dense_blocks:
        return _dense("dense block", **base)
    if fwd.step is not None and fwd.step.dense:
        return _dense(fwd.step.reason, **base)
    base["step_unknown"] = step is None and not getattr(fwd.step, "decided", False) \
        and bool(cfg.dense_steps_first or cfg.dense_steps_last) and not getattr(fwd, "training", False)
    if frames < 2:
        return _dense("single-frame input (an image): nothing to sparsify", True, **base)
    if call.q.dtype not in SPARSE_DTYPES or call.k.dtype != call.q.dtype or call.v.dtype != call.q.dtype:
        return _dense(f"dtype {call.q.dtype} (the sparse kernels take float16, bfloat16, float32)", True, **base)
    ok, kpm = fwd.key_padding(call.mask, int(call.q.shape[0]), call.lk, key_padding_from_mask)
    if not ok:
        return _dense("an attention mask that is not a key-padding mask", True, **base)
    return Plan(key_padding_mask=kpm, **base)
