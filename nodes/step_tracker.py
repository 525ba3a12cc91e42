"""Which sampling step a model call belongs to, from ComfyUI's own signals.

Steps come from ``transformer_options["sample_sigmas"]`` (the schedule of this sampling pass) and
``["sigmas"]`` (the sigma of this model call). A workflow can split one schedule over several
passes (KSamplerAdvanced start/end steps, Wan 2.2 A14B's high- and low-noise experts): within one
queued prompt (ComfyUI's executing context names it), a pass that starts exactly at the sigma
where the previous pass stopped continues its step count, so "the first N steps" means the first
N of the whole schedule. "The last N steps" are counted back from the pass that ends the schedule
at sigma 0 (an earlier pass cannot know how many steps follow it, so with a last pass shorter
than N only that pass's steps are dense). A pass outside a prompt (a script calling
``comfy.sample`` itself) is a run of its own; nothing carries from one prompt to the next.

Blocks are counted in ``run_state`` (:class:`~.run_state.ForwardContext`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

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


def current_prompt() -> str | None:
    """The prompt ComfyUI is executing now (its executing context), None outside one."""
    try:
        from comfy_execution.utils import get_executing_context  # noqa: PLC0415
    except ImportError:  # a ComfyUI without it: every pass is a run of its own
        return None
    ctx = get_executing_context()
    return getattr(ctx, "prompt_id", None) if ctx is not None else None


class PassLedger:
    """Where the passes of each prompt stopped: ``(sigma, global step index)`` of its last
    finished pass. Keyed by the prompt, so a run never continues another run's count; bounded
    (the few most recent prompts), so it never grows."""

    def __init__(self, max_prompts: int = 8):
        self._lock = threading.Lock()
        self._stops: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._max = max_prompts

    def begin(self, sample_sigmas, prompt: str | None) -> PassSteps:
        """Steps of a pass starting now; continues the count of its prompt's previous pass when
        it starts exactly where that one stopped."""
        sig = as_floats(sample_sigmas)
        offset = 0
        if prompt is not None:
            with self._lock:
                last = self._stops.get(prompt)
            if last is not None and sig and last[0] > 0 and sig[0] == last[0]:
                offset = last[1]
        return PassSteps(sig, offset, bool(sig) and sig[-1] == 0.0)

    def end(self, steps: PassSteps, prompt: str | None) -> None:
        """Remember where this pass stopped, for a following pass of the same prompt."""
        if prompt is None or not steps.sigmas:
            return
        with self._lock:
            self._stops[prompt] = (steps.sigmas[-1], steps.offset + steps.num_steps)
            self._stops.move_to_end(prompt)
            while len(self._stops) > self._max:
                self._stops.popitem(last=False)


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
