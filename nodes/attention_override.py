"""The ``optimized_attention_override`` callable that makes video self-attention radial.

ComfyUI (0.3.60+) calls ``transformer_options["optimized_attention_override"](func, *args,
**kwargs)`` from every ``@wrap_attn`` attention function, ``func`` being the dense function it
replaces. We take only the video self-attention calls of the transformer blocks (query length
= key length = the video sequence [+ text for HunyuanVideo/Mochi]) and run them through
``radial_core.block_sparse_attention`` with the radial mask; every other call (cross-attention,
text refiner, dense blocks or steps, single frames, inputs the kernel cannot take) goes to
the dense path: the override another pack installed before us, if any, else ComfyUI's own
function. Calls that need gradients (training) stay sparse: the op is differentiable.

Layouts that reach us (ComfyUI 0.3.75):
- Wan: ``q, k, v`` ``[B, L, H*D]`` with ``heads``; no mask; video tokens only (reference or
  concatenated frames count as frames).
- HunyuanVideo: ``[B, H, L, D]`` with ``skip_reshape=True``; video tokens then text tokens; an
  additive key mask ``(1, 1, L)`` (0 = real, -max = padded text) when the prompt is padded.
- Mochi: ``[B, H, L, D]`` with ``skip_reshape=True``; video then the unpadded text tokens.

``transformer_options["radial_attention_observer"]`` (optional, a callable) receives one dict per
decision: ``{"kind": "sparse", "block", "step", "q", "k", "v", "out", "block_mask", ...}`` or
``{"kind": "dense", "reason", "block", "step"}``. The tests use it to check every sparse call
against the dense reference; it costs one dict lookup when unset.

Newer ComfyUI (2026) hands q/k/v to the attention functions in ``AttentionTensorContainer``s and
unwraps them before calling an override that has no ``container_function``, so the override
still receives tensors; it may also pass ``scale=`` (honoured) and ``enable_gqa=`` (dense path).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from ..radial_core import mask_density, radial_block_mask
from .model_family import other_stream_reason
from .run_state import RUN_KEY, ForwardContext, RunState

logger = logging.getLogger(__name__)

OBSERVER_KEY = "radial_attention_observer"
_ARG_NAMES = ("q", "k", "v", "heads", "mask", "attn_precision", "skip_reshape", "skip_output_reshape")
_SPARSE_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

# Masks by shape, shared across runs (the same tensor object lets the kernel's CSR cache hit).
_MASKS: OrderedDict[tuple, torch.Tensor] = OrderedDict()
_MASKS_LOCK = threading.Lock()
_MAX_MASKS = 16


def cached_mask(frames: int, tpf: int, text: int, block_size: int, decay: float, model: str, dist1: str,
                text_first: bool = False) -> torch.Tensor:
    key = (frames, tpf, text, block_size, float(decay), model, dist1, text_first)
    with _MASKS_LOCK:
        m = _MASKS.get(key)
        if m is not None:
            _MASKS.move_to_end(key)
            return m
    # ComfyUI samples under torch.inference_mode(); a mask made there would be an inference
    # tensor, which the kernel's CSR cache cannot version-check. Build it as a normal tensor.
    with torch.inference_mode(False):
        m = radial_block_mask(frames, tpf, text_tokens=text, block_size=block_size,
                              decay_factor=decay, model=model, dist1=dist1, text_first=text_first)
    with _MASKS_LOCK:
        _MASKS[key] = m
        while len(_MASKS) > _MAX_MASKS:
            _MASKS.popitem(last=False)
    return m


@dataclass
class _Call:
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    heads: int
    mask: object
    skip_reshape: bool
    skip_output_reshape: bool
    scale: float | None = None  # newer ComfyUI passes scale= for some models
    gqa: bool = False  # grouped-query attention (fewer key/value heads): dense path

    @property
    def lq(self) -> int:
        return int(self.q.shape[2] if self.skip_reshape else self.q.shape[1])

    @property
    def lk(self) -> int:
        return int(self.k.shape[2] if self.skip_reshape else self.k.shape[1])


def _parse(args: tuple, kwargs: dict) -> _Call | None:
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
    return _Call(q, k, v, heads, got.get("mask"), skip, bool(got.get("skip_output_reshape", False)),
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


class RadialAttentionOverride:
    """``optimized_attention_override`` for one patch configuration (see the module doc)."""

    def __init__(self, config, previous=None):
        self.config = config  # RadialConfig (small, frozen)
        self.previous = previous  # an override installed before ours, serves the dense calls

    # ComfyUI calls override(func, *args, **kwargs). torch.compile (e.g. ComfyUI's
    # TorchCompileModel node) does not trace into it: counters and caches here are plain Python
    # state that would make it recompile on every block; the kernels run as they are.
    @torch.compiler.disable
    def __call__(self, func, *args, **kwargs):
        topts = kwargs.get("transformer_options") or {}
        run: RunState | None = topts.get(RUN_KEY)
        fwd = run.fwd if run is not None else None
        if fwd is None:
            return self.dense(func, args, kwargs)
        fwd.seen = True
        call = _parse(args, kwargs)
        if call is None:
            return self._dense_for(run, "unrecognised attention call", False, func, args, kwargs, topts)
        if call.lq != call.lk:
            return self._dense_for(run, "cross-attention", False, func, args, kwargs, topts)
        if call.gqa or call.k.shape != call.q.shape or call.v.shape != call.q.shape:
            return self._dense_for(run, "attention with other key/value shapes (grouped-query)",
                                   True, func, args, kwargs, topts)
        return self._self_attention(run, fwd, call, func, args, kwargs, topts)

    # ------------------------------------------------------------------ dense path
    def dense(self, func, args, kwargs):
        if self.previous is not None:
            return self.previous(func, *args, **kwargs)
        return func(*args, **kwargs)

    def _dense_for(self, run, reason, warn, func, args, kwargs, topts, block=None):
        run.count_dense(reason)
        level = logging.WARNING if warn else logging.DEBUG
        run.once("dense:" + reason, level, f"Radial Attention: dense attention for {reason}"
                 + ("" if not warn else " (this call and any like it in this run)"))
        obs = topts.get(OBSERVER_KEY)
        if obs is not None:
            obs({"kind": "dense", "reason": reason, "block": block,
                 "step": run.fwd.step.global_index if run.fwd else None})
        return self.dense(func, args, kwargs)

    # ------------------------------------------------------------------ self-attention
    def _geometry(self, fwd: ForwardContext, call: _Call) -> tuple[int, int] | None:
        """(frames in the sequence, text tokens) for a video self-attention call, else None."""
        cfg = self.config
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

    def _self_attention(self, run, fwd, call, func, args, kwargs, topts):
        cfg = self.config
        width = int(call.q.shape[1] * call.q.shape[3]) if call.skip_reshape else int(call.q.shape[-1])
        other = other_stream_reason(cfg.family, width, call.lq, fwd.seq_frames * fwd.tokens_per_frame)
        if other is not None:  # e.g. LTX-2's audio stream: not video attention
            return self._dense_for(run, other, False, func, args, kwargs, topts)
        geo = self._geometry(fwd, call)
        if geo is None:
            reason = (f"self-attention over {call.lq} tokens that do not match the video "
                      f"({fwd.seq_frames} frames x {fwd.tokens_per_frame} tokens)")
            text_only = fwd.context_len is not None and call.lq == fwd.context_len
            if text_only:
                reason = "text-only self-attention (token refiner)"
            return self._dense_for(run, reason, not text_only, func, args, kwargs, topts)
        frames, text = geo
        block = fwd.block_of_call(topts, cfg.family.double_blocks, cfg.family.num_blocks)
        if block is None:
            return self._dense_for(run, f"more video self-attention calls than the model's "
                                   f"{cfg.family.num_blocks} blocks", True, func, args, kwargs, topts)
        try:
            self._report_shape(run, fwd, call, frames, text)
        except Exception as exc:  # noqa: BLE001 - logging must never break sampling
            return self._dense_for(run, f"a mask that could not be built ({type(exc).__name__}: {exc})",
                                   True, func, args, kwargs, topts, block)
        if block in cfg.dense_blocks:
            return self._dense_for(run, "dense block", False, func, args, kwargs, topts, block)
        if fwd.step.dense:
            return self._dense_for(run, fwd.step.reason, False, func, args, kwargs, topts, block)
        if fwd.step.global_index is None and (cfg.dense_steps_first or cfg.dense_steps_last):
            run.once("step-unknown", logging.WARNING,
                     "Radial Attention: this model call's sampling step is unknown (no sample_sigmas "
                     "from the sampler); dense_steps_first/last cannot be applied to it.")
        if frames < 2:
            return self._dense_for(run, "single-frame input (an image): nothing to sparsify",
                                   True, func, args, kwargs, topts, block)
        # A call that needs gradients (training, e.g. ComfyUI's Train LoRA) stays sparse:
        # block_sparse_attention is differentiable (issue 14), so forward and backward are radial.
        if call.q.dtype not in _SPARSE_DTYPES or call.k.dtype != call.q.dtype or call.v.dtype != call.q.dtype:
            return self._dense_for(run, f"dtype {call.q.dtype} (the sparse kernels take float16, "
                                   f"bfloat16, float32)", True, func, args, kwargs, topts, block)
        B = int(call.q.shape[0])
        ok, kpm = fwd.key_padding(call.mask, B, call.lk, key_padding_from_mask)
        if not ok:
            return self._dense_for(run, "an attention mask that is not a key-padding mask",
                                   True, func, args, kwargs, topts, block)
        try:
            out = self._sparse(run, call, frames, text, kpm, topts, block)
        except Exception as exc:  # noqa: BLE001 - a sampling run must not crash here
            return self._dense_for(run, f"a sparse-kernel error ({type(exc).__name__}: {exc})",
                                   True, func, args, kwargs, topts, block)
        run.sparse_calls += 1
        return out

    def _to_bhld(self, call: _Call):
        if call.skip_reshape:
            return call.q, call.k, call.v
        B, L, HD = call.q.shape
        D = HD // call.heads
        return tuple(t.view(B, t.shape[1], call.heads, D).transpose(1, 2) for t in (call.q, call.k, call.v))

    def _backend(self, run, q) -> str:
        from ..radial_core.attention import can_use_triton  # noqa: PLC0415

        want = self.config.backend
        if want == "pytorch":
            return "pytorch"
        ok, reason = can_use_triton(q)
        if ok:
            return "triton"
        if want == "triton" or q.is_cuda:
            run.once("backend:" + reason, logging.WARNING,
                     f"Radial Attention: backend '{want}' cannot use the Triton kernel here "
                     f"({reason}); using the PyTorch block path.")
        return "pytorch"

    def _sparse(self, run, call, frames, text, kpm, topts, block):
        from ..radial_core import block_sparse_attention  # noqa: PLC0415

        cfg = self.config
        q, k, v = self._to_bhld(call)
        mask = cached_mask(frames, run.fwd.tokens_per_frame, text, cfg.block_size,
                           cfg.decay_factor, cfg.family.mask_model, cfg.dist1, run.fwd.text_first)
        backend = self._backend(run, q)
        # "auto" lets radial_core send an all-kept mask to PyTorch's fused dense attention
        # (same function, a few percent faster at density 1); Triton is known to work here.
        call_backend = "auto" if (backend == "triton" and cfg.backend == "auto") else backend
        out = block_sparse_attention(q, k, v, mask, block_size=cfg.block_size,
                                     key_padding_mask=kpm, scale=call.scale, backend=call_backend,
                                     precision=cfg.precision)
        obs = topts.get(OBSERVER_KEY)
        if obs is not None:
            obs({"kind": "sparse", "block": block, "step": run.fwd.step.global_index,
                 "q": q, "k": k, "v": v, "out": out, "block_mask": mask, "key_padding_mask": kpm,
                 "frames": frames, "tokens_per_frame": run.fwd.tokens_per_frame, "text_tokens": text,
                 "text_first": run.fwd.text_first,
                 "backend": backend})
        if call.skip_output_reshape:
            return out
        B, H, L, D = out.shape
        return out.transpose(1, 2).reshape(B, L, H * D)

    def _report_shape(self, run, fwd, call, frames, text):
        key = f"shape:{frames}x{fwd.tokens_per_frame}"  # once per run (cond/uncond text may differ)
        if key in run.reported:
            return
        cfg = self.config
        q = call.q
        mask = cached_mask(frames, fwd.tokens_per_frame, text, cfg.block_size, cfg.decay_factor,
                           cfg.family.mask_model, cfg.dist1, fwd.text_first)
        dense_blocks = sorted(cfg.dense_blocks)
        backend = self._backend(run, q if call.skip_reshape else q.view(q.shape[0], q.shape[1], call.heads, -1).transpose(1, 2))
        run.once(key, logging.INFO, (
            f"Radial Attention: {cfg.family.variant}, latent {list(fwd.latent_shape)} -> "
            f"{frames} frames x {fwd.tokens_per_frame} tokens"
            + (f" + {text} text" + (" (first)" if fwd.text_first else "") if text else "")
            + f" = {call.lq} tokens, block {cfg.block_size}, decay {cfg.decay_factor:g}"
            + (f", dist1 {cfg.dist1}" if cfg.family.mask_model == "wan" else "")
            + f", mask density {mask_density(mask):.3f}"
            + f", dense blocks {dense_blocks if dense_blocks else 'none'}"
            + f", dense steps first {cfg.dense_steps_first} / last {cfg.dense_steps_last}"
            + f", backend {backend} ({str(q.dtype).replace('torch.', '')}, {q.device.type})"
        ))
        if cfg.family.note:
            run.once("note", logging.INFO, f"Radial Attention: {cfg.family.note}")
