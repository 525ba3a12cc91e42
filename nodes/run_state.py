"""Per-sampling-run and per-forward state of the radial patch.

ComfyUI deep-copies ``model_options`` on every ``clone()``, so nothing that grows (masks,
counters, logged reasons) lives there. The OUTER_SAMPLE wrapper creates one :class:`RunState`
per sampling pass and puts it into the guider's ``transformer_options`` (ComfyUI copies those
dicts per call but keeps their values, so every model call of the pass sees the same object,
from every thread: ComfyUI's MultiGPU CFG split runs one thread per GPU on the same pass). So the
run holds only what the whole pass shares (its place in the schedule, counters and the reasons
already logged, behind a lock); the APPLY_MODEL wrapper builds a :class:`ForwardContext` for each
model call and puts it into that call's own ``transformer_options`` under :data:`FWD_KEY`
(ComfyUI builds that dict per call, per cond batch and per device thread; the copies it makes
further down keep the value), where the attention override finds it (:func:`forward_of`).

Blocks: ComfyUI's ``block_index`` names the block where the model reports it
(:meth:`ForwardContext.peek_block`); elsewhere (Wan in ComfyUI 0.3.x) the patch counts the video
self-attention calls of each forward, and this module is the one place that count lives:
:func:`call_schedule` maps the n-th call to its block (Wan VACE interleaves its extra blocks with
the main ones), :func:`mark_replaced_blocks` re-synchronises the count at every block that another
patch replaces (SkipLayerGuidance skips blocks that way).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import torch

from .model_family import ModelFamily
from .step_tracker import PassSteps, StepInfo, step_info

logger = logging.getLogger(__name__)

RUN_KEY = "radial_attention_run"
FWD_KEY = "radial_attention_forward"


def forward_of(transformer_options: dict):
    """The ForwardContext of the model call an attention call belongs to (None outside a patched
    model call). Training calls keep theirs there too, for the recomputation in backward."""
    return transformer_options.get(FWD_KEY)


@dataclass
class ForwardContext:
    """Geometry, step and block counter of one model call (one ``apply_model``)."""

    batch: int
    latent_shape: tuple[int, ...]
    frames: int  # latent frames after patchify, video only
    tokens_per_frame: int
    extra_frames: int  # reference / concatenated frames that join the video sequence
    context_len: int | None  # text length given to the model (HunyuanVideo's refiner runs on it)
    step: StepInfo
    schedule: tuple[int, ...]  # block index of the n-th video self-attention call
    calls: int = 0
    text_first: bool = False  # joint sequences: [text | video] instead of [video | text]
    seen: bool = False  # the radial override ran at least once in this model call
    training: bool = False  # a call that needs gradients (Train LoRA): dense steps do not apply
    _kpm: tuple | None = None  # (mask, batch, length, result): one mask serves every block

    @property
    def seq_frames(self) -> int:
        return self.frames + self.extra_frames

    def key_padding(self, mask, batch: int, length: int, convert):
        """``convert(mask, batch, length)``, computed once per mask object in this model call
        (the model builds one mask per forward; converting it reads it back from the GPU)."""
        if mask is None:
            return True, None
        c = self._kpm
        if c is not None and c[0] is mask and c[1] == batch and c[2] == length:
            return c[3]
        result = convert(mask, batch, length)
        self._kpm = (mask, batch, length, result)
        return result

    def peek_block(self, transformer_options: dict, double_blocks: int, num_blocks: int) -> int | None:
        """Block index of the video self-attention call being made now (None past the model's end).

        ComfyUI's own signal first: models that report ``transformer_options["block_index"]``
        (with ``total_blocks``; HunyuanVideo since 0.3.72 with ``block_type``, Wan since 0.5)
        name the block, HunyuanVideo's single-stream blocks counting after its ``double_blocks``.
        Older ComfyUI (Wan in 0.3.x): the count of this forward's video self-attention calls
        (``calls``, mapped through ``schedule``), the one fallback; the count goes on either way
        (:meth:`advance`) so the two agree. Reads only; :meth:`advance` moves the count.
        """
        idx = transformer_options.get("block_index")
        if isinstance(idx, int) and not isinstance(idx, bool) and "total_blocks" in transformer_options:
            block = idx + (double_blocks if transformer_options.get("block_type") == "single" else 0)
            return block if 0 <= block < num_blocks else None
        n = self.calls
        return self.schedule[n] if n < len(self.schedule) else None

    def advance(self) -> None:
        """One more video self-attention call made in this forward."""
        self.calls += 1


@dataclass
class RunState:
    """One sampling pass of one patched model, shared by every model call (and thread) of it."""

    steps: PassSteps | None
    reported: set = field(default_factory=set)  # reasons / shapes already logged this run
    sparse_calls: int = 0
    dense_calls: dict = field(default_factory=dict)  # reason -> count
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __deepcopy__(self, memo):
        # The run sits in the patcher's own model_options during its pass, and ComfyUI 0.3.x
        # deep-copies model_options on clone(): a copy must still be this one pass (its counters,
        # its logged reasons), and a lock cannot be copied anyway.
        return self

    def once(self, key: str, level: int, msg: str) -> None:
        """Log ``msg`` the first time ``key`` comes up in this run."""
        with self._lock:
            if key in self.reported:
                return
            self.reported.add(key)
        logger.log(level, msg)

    def count_sparse(self) -> None:
        with self._lock:
            self.sparse_calls += 1

    def count_dense(self, reason: str) -> None:
        with self._lock:
            self.dense_calls[reason] = self.dense_calls.get(reason, 0) + 1


def call_schedule(num_blocks: int, vace_layers: tuple[int, ...] = (), vace_contexts: int = 0) -> tuple[int, ...]:
    """Block index of each video self-attention call of one forward, in call order.

    Plain models: call n is block n. Wan VACE runs ``vace_contexts`` extra VACE blocks right
    after each main block listed in ``vace_layers``; those calls follow their main block's
    dense/sparse choice and get its index.
    """
    vace = set(vace_layers)
    out: list[int] = []
    for i in range(num_blocks):
        out.append(i)
        if i in vace:
            out.extend([i] * vace_contexts)
    return tuple(out)


class _BlockMarker:
    """Wraps a ``patches_replace["dit"]`` block replacement (SkipLayerGuidance, block swaps, ...)
    so the block counter points at that block when it runs, and at the call after it afterwards. A
    replacement that skips its block then cannot shift the count of the blocks after it."""

    def __init__(self, fn, fwd, position: int, after: int):
        self.fn, self.fwd, self.position, self.after = fn, fwd, position, after

    def __call__(self, *args, **kwargs):
        self.fwd.calls = self.position
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.fwd.calls = self.after


def mark_replaced_blocks(transformer_options: dict, fwd, double_blocks: int):
    """Wrap this model call's block replacements with :class:`_BlockMarker`.

    ``("double_block", i)`` is block i (Wan, Mochi, HunyuanVideo's double-stream blocks);
    ``("single_block", i)`` is block ``double_blocks + i`` (HunyuanVideo). Only this call's
    ``transformer_options`` get the wrapped dict (ComfyUI's own dicts stay as they are). Returns a
    function that undoes it.
    """
    pr = transformer_options.get("patches_replace")
    dit = pr.get("dit") if isinstance(pr, dict) else None
    if not dit:
        return lambda: None
    schedule = fwd.schedule
    first = {}
    for pos, b in enumerate(schedule):
        first.setdefault(b, pos)
    wrapped = dict(dit)
    for key, fn in dit.items():
        if not (isinstance(key, tuple) and len(key) == 2 and key[0] in ("double_block", "single_block")):
            continue
        block = int(key[1]) + (double_blocks if key[0] == "single_block" else 0)
        if block not in first:
            continue
        # afterwards: the call right after this block's own (a VACE block, or the next block)
        wrapped[key] = _BlockMarker(fn, fwd, first[block], first[block] + 1)
    transformer_options["patches_replace"] = {**pr, "dit": wrapped}

    def undo():
        transformer_options["patches_replace"] = pr

    return undo


def _ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def _sigma_of(t, transformer_options: dict) -> float | None:
    s = transformer_options.get("sigmas", t)
    if isinstance(s, torch.Tensor) and s.numel():
        return float(s.detach().flatten()[0])
    if isinstance(s, (int, float)):
        return float(s)
    return None


def open_forward(
    run: RunState,
    family: ModelFamily,
    x: torch.Tensor,
    t,
    context,
    model_kwargs: dict,
    transformer_options: dict,
    dense_first: int,
    dense_last: int,
    diffusion_model=None,
) -> ForwardContext | None:
    """Build the context of one model call; None when the input is not a video latent."""
    adapter = family.adapter  # what this family's model calls carry: nodes/model_family.py
    shape = adapter.video_latent_shape(x, model_kwargs)
    if shape is None:
        return None
    b, _, f, h, w = shape
    pt, ph, pw = family.patch_size
    frames = _ceil_div(f, pt)
    tpf = _ceil_div(h, ph) * _ceil_div(w, pw)
    extra = adapter.extra_frames(family, model_kwargs, diffusion_model)
    ctx_len = adapter.refiner_text_len(context)
    vace_contexts = 0
    if family.vace_layers:
        vc = model_kwargs.get("vace_context")
        vace_contexts = int(vc.shape[1]) if isinstance(vc, torch.Tensor) and vc.ndim >= 2 else 1
    sigma = _sigma_of(t, transformer_options)
    return ForwardContext(
        batch=b,
        latent_shape=shape,
        frames=frames,
        tokens_per_frame=tpf,
        extra_frames=extra,
        context_len=ctx_len,
        step=step_info(run.steps, sigma, dense_first, dense_last),
        schedule=call_schedule(family.num_blocks, family.vace_layers, vace_contexts),
        text_first=adapter.text_first(diffusion_model),
    )


