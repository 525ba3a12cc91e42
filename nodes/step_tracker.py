"""Where a model call sits: which sampling step, and which transformer block.

Steps come from ``transformer_options["sample_sigmas"]`` (the schedule of this sampling pass) and
``["sigmas"]`` (the sigma of this model call). A workflow can split one schedule over several
passes (KSamplerAdvanced start/end steps, Wan 2.2 A14B's high- and low-noise experts): a pass that
starts exactly at the sigma where the previous pass stopped continues its step count, so
"the first N steps" means the first N of the whole schedule. "The last N steps" are counted back
from the pass that ends the schedule at sigma 0 (an earlier pass cannot know how many steps follow
it, so with a last pass shorter than N only that pass's steps are dense).

Blocks: ComfyUI 0.3.75 does not tell Wan's attention which block it is in, so the patch counts
the video self-attention calls of each forward; :func:`call_schedule` maps the n-th call to
its block (Wan VACE interleaves its extra blocks with the main ones), and
:func:`mark_replaced_blocks` re-synchronises the count at every block that another patch
replaces (SkipLayerGuidance skips blocks that way).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

_lock = threading.Lock()
# (sigma the last finished pass stopped at, global step index it stopped at)
_last_pass: tuple[float, int] | None = None


@dataclass(frozen=True)
class PassSteps:
    """The steps of one sampling pass within the whole schedule."""

    sigmas: tuple[float, ...]  # this pass's schedule, n_steps + 1 values
    offset: int  # global index of this pass's first step
    ends_schedule: bool  # the pass ends at sigma 0 (its last steps are the schedule's last)

    @property
    def num_steps(self) -> int:
        return max(len(self.sigmas) - 1, 0)


def as_floats(sigmas) -> tuple[float, ...]:
    if isinstance(sigmas, torch.Tensor):
        return tuple(float(s) for s in sigmas.detach().flatten().cpu())
    return tuple(float(s) for s in sigmas)


def begin_pass(sample_sigmas) -> PassSteps:
    """Register the start of a sampling pass; continues the previous pass's step count if this
    pass starts exactly where it stopped."""
    sig = as_floats(sample_sigmas)
    offset = 0
    with _lock:
        if _last_pass is not None and sig and _last_pass[0] > 0 and sig[0] == _last_pass[0]:
            offset = _last_pass[1]
    return PassSteps(sig, offset, bool(sig) and sig[-1] == 0.0)


def end_pass(steps: PassSteps) -> None:
    """Remember where this pass stopped, for a following pass of the same schedule."""
    global _last_pass
    if not steps.sigmas:
        return
    with _lock:
        _last_pass = (steps.sigmas[-1], steps.offset + steps.num_steps)


def reset_passes() -> None:
    """Forget earlier passes (tests)."""
    global _last_pass
    with _lock:
        _last_pass = None


def local_step(sample_sigmas: tuple[float, ...], sigma: float) -> int | None:
    """Index of the step of ``sample_sigmas`` that a model call at ``sigma`` belongs to.

    A call at ``sample_sigmas[i]`` is step i; a call between ``sample_sigmas[i]`` and
    ``sample_sigmas[i+1]`` (DPM-2's midpoint) also belongs to step i. A call exactly on
    ``sample_sigmas[i+1]`` (Heun's correction) counts as step i+1: by its sigma it cannot be told
    apart. None when ``sigma`` is outside the schedule.
    """
    n = len(sample_sigmas) - 1
    if n < 1:
        return None
    for i in range(n):
        hi = sample_sigmas[i]
        tol = 1e-5 * max(abs(hi), 1e-8)
        if abs(sigma - hi) <= tol:
            return i
        lo = sample_sigmas[i + 1]
        if min(hi, lo) < sigma < max(hi, lo):
            return i
    return None


@dataclass(frozen=True)
class StepInfo:
    global_index: int | None  # None when unknown (sigma outside the schedule)
    dense: bool
    reason: str  # why dense ("" when sparse)


def step_info(steps: PassSteps | None, sigma: float | None, dense_first: int, dense_last: int) -> StepInfo:
    """Is the model call at ``sigma`` in one of the dense first/last steps?"""
    if steps is None or sigma is None:
        return StepInfo(None, False, "")
    i = local_step(steps.sigmas, sigma)
    if i is None:
        return StepInfo(None, False, "")
    g = steps.offset + i
    if g < dense_first:
        return StepInfo(g, True, f"dense step (one of the first {dense_first})")
    if dense_last > 0 and steps.ends_schedule and steps.num_steps - i <= dense_last:
        return StepInfo(g, True, f"dense step (one of the last {dense_last})")
    return StepInfo(g, False, "")


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


def parse_dense_blocks(spec: str, num_blocks: int | None = None) -> frozenset[int]:
    """``dense_blocks`` text -> set of block indices.

    ``""`` or ``"0"``: none; ``"N"`` (one number): the first N blocks; ``"0,1,39"``: those
    blocks; ranges ``"0-3"`` allowed; a trailing comma makes one number a list (``"5,"`` = block
    5 only). With ``num_blocks``, indices past the model's last block are an error.
    """
    text = (spec or "").strip()
    if not text:
        return frozenset()
    bad = (
        f"dense_blocks: could not read {spec!r}. Expected a number N (the first N blocks stay "
        f"dense), or a comma-separated list of block indices and ranges such as '0,1,39' or "
        f"'0-3,39'. Fix the text or leave it empty."
    )
    if "," not in text and "-" not in text:
        try:
            n = int(text)
        except ValueError:
            raise ValueError(bad) from None
        if n < 0:
            raise ValueError(bad)
        if num_blocks is not None and n > num_blocks:
            raise ValueError(
                f"dense_blocks: {n} first blocks asked, but this model has {num_blocks} blocks. "
                f"Fix: use a number from 0 to {num_blocks}."
            )
        return frozenset(range(n))
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if lo < 0 or hi < lo:
                    raise ValueError
                out.update(range(lo, hi + 1))
            else:
                idx = int(part)
                if idx < 0:
                    raise ValueError
                out.add(idx)
        except (TypeError, ValueError):
            raise ValueError(bad) from None
    if num_blocks is not None and out and max(out) >= num_blocks:
        raise ValueError(
            f"dense_blocks: block {max(out)} asked, but this model has blocks 0 to {num_blocks - 1}. "
            f"Fix: list only indices below {num_blocks}."
        )
    return frozenset(out)


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
