"""Which sampling step of the whole schedule a model call belongs to, from ComfyUI's own signals.

Each model call carries ``transformer_options["sigmas"]`` (its sigma) and ``["sample_sigmas"]``
(the schedule of its sampling pass). A workflow can split one schedule over several passes
(KSamplerAdvanced start/end steps, SplitSigmas, Wan 2.2 A14B's high- and low-noise experts); each
pass then gets a contiguous slice of the whole schedule. "The first N steps" and "the last N
steps" mean steps of the whole schedule, so a pass has to know where its slice lies in it.

That is decided from the pass's own sigmas, never from what an earlier pass left behind: an
earlier pass may have been served from ComfyUI's cache, or interrupted and queued again, and
then never ran here. :func:`locate_pass`:

- a pass that starts at the model's highest noise level starts the schedule (no step before it);
- a pass that ends at sigma 0 ends it (no step after it);
- otherwise the slice is looked up in the schedules ComfyUI's own schedulers give for this
  model (``comfy.samplers.calculate_sigmas`` over ``SCHEDULER_NAMES``, and KSampler's variant
  that drops the penultimate sigma), for as many whole-schedule lengths as can still matter
  (a pass that ends at 0 and starts k steps in is only looked up for k below ``dense_first``).

The same slice gives the same answer whichever pass ran before, so a split graph decides each
step as the one-pass graph with the same schedule does. A pass whose slice matches no scheduler
(hand-made sigmas) and that does not start the schedule is taken to come after the dense first
steps (and, if it does not end the schedule either, before the dense last steps); the patch says
so once in the log. KSampler's ``denoise`` below 1 samples the tail of a longer schedule, exactly
like the second pass of a split: its first steps count after the steps it skips.

Blocks are counted in ``run_state`` (:class:`~.run_state.ForwardContext`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

# Whole-schedule lengths searched for a pass that neither starts nor ends the schedule (a middle
# pass of a split in three or more): at most this many times its own steps, plus the dense steps.
MIDDLE_SPAN = 4
MAX_TOTAL = 1000  # the longest whole schedule looked up (the dense_steps inputs' maximum)


@dataclass(frozen=True)
class PassSteps:
    """The steps of one sampling pass within the whole schedule."""

    sigmas: tuple[float, ...]  # this pass's schedule, n_steps + 1 values
    before: int | None  # steps of the whole schedule before this pass (None: not placed)
    after: int | None  # steps after it (None: not placed)

    @property
    def num_steps(self) -> int:
        return max(len(self.sigmas) - 1, 0)

    @property
    def offset(self) -> int | None:
        return self.before

    @property
    def ends_schedule(self) -> bool:
        return self.after == 0

    @property
    def placed(self) -> bool:
        return self.before is not None and self.after is not None


def as_floats(sigmas) -> tuple[float, ...]:
    if isinstance(sigmas, torch.Tensor):
        return tuple(float(s) for s in sigmas.detach().flatten().cpu())
    return tuple(float(s) for s in sigmas)


def _close(a: float, b: float) -> bool:
    # the same float32 computation gives the same values; the margin only covers a device copy
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b)) + 1e-9


def _slice_at(full: Sequence[float], sig: tuple[float, ...], k: int) -> bool:
    if k < 0 or k + len(sig) > len(full):
        return False
    return all(_close(full[k + j], s) for j, s in enumerate(sig))


def locate_pass(sample_sigmas, dense_first: int, dense_last: int, *, starts_schedule: bool,
                schedules: Callable[[int], tuple[Iterable[Sequence[float]], Iterable[Sequence[float]]]] | None,
                ) -> PassSteps:
    """Where this pass's slice lies in the whole schedule (see the module doc).

    ``starts_schedule``: the pass starts at the model's highest noise level. ``schedules(T)``:
    the whole schedules of ``T`` steps this model's sampler could have used (ComfyUI's
    schedulers) as ``(plain, dropped_penultimate)``, or None when they cannot be asked. Only
    what the dense window needs is looked up: nothing when ``dense_first`` and ``dense_last``
    are 0.
    """
    sig = as_floats(sample_sigmas)
    m = len(sig) - 1
    before = 0 if starts_schedule else None
    after = 0 if sig and sig[-1] == 0.0 else None
    if m < 1 or (before is not None and after is not None):
        return PassSteps(sig, before, after)
    need_first = dense_first > 0 and before is None
    need_last = dense_last > 0 and after is None
    if schedules is None or not (need_first or need_last):
        return PassSteps(sig, before, after)
    if after == 0:  # ends the schedule: T = before + m, only before < dense_first matters
        totals = range(m, min(m + dense_first, MAX_TOTAL + 1))
    elif before == 0:  # starts it: T = m + after, only after < dense_last matters
        totals = range(m + 1, min(m + dense_last, MAX_TOTAL + 1))
    else:  # a middle pass: neither end is known
        totals = range(m + 1, min(MIDDLE_SPAN * m + dense_first + dense_last, MAX_TOTAL) + 1)
    # plain schedules first: the start of KSampler's dropped-penultimate variant of T steps is the
    # start of the plain one of T + 1 steps, and most samplers use the plain one
    for variant in (0, 1):
        for total in totals:
            if after == 0:
                starts = (total - m,)
            elif before == 0:
                starts = (0,)
            else:
                starts = range(0, total - m + 1)
            for full in schedules(total)[variant]:
                if len(full) != total + 1:
                    continue
                for k in starts:
                    if _slice_at(full, sig, k):
                        return PassSteps(sig, k, total - m - k)
    return PassSteps(sig, before, after)


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
    global_index: int | None  # None when unknown (sigma outside the schedule, or the pass not placed)
    dense: bool
    reason: str  # why dense ("" when sparse)
    decided: bool = False  # the dense window was decided even though global_index is None


def step_info(steps: PassSteps | None, sigma: float | None, dense_first: int, dense_last: int) -> StepInfo:
    """Is the model call at ``sigma`` in one of the dense first/last steps of the whole schedule?

    A pass not placed in its schedule (:func:`locate_pass`) gets no dense first steps unless it
    starts the schedule, and no dense last steps unless it ends it."""
    if steps is None or sigma is None:
        return StepInfo(None, False, "")
    i = local_step(steps.sigmas, sigma)
    if i is None:
        return StepInfo(None, False, "")
    g = steps.before + i if steps.before is not None else None
    if g is not None and g < dense_first:
        return StepInfo(g, True, f"dense step (one of the first {dense_first})")
    if dense_last > 0 and steps.after is not None and steps.num_steps - i + steps.after <= dense_last:
        return StepInfo(g, True, f"dense step (one of the last {dense_last})", True)
    return StepInfo(g, False, "", True)


# ------------------------------------------------------------------- ComfyUI's schedulers
def comfy_schedules(model_sampling):
    """``T -> (plain, dropped_penultimate)``: the whole schedules of T steps of every scheduler
    ComfyUI knows (those other packs registered included), as BasicScheduler and KSampler build
    them for this model's ``model_sampling`` (KSampler takes one more step and drops the
    penultimate sigma for some samplers). None when ComfyUI cannot be asked."""
    try:
        import comfy.samplers as cs  # nodes/ may import ComfyUI
    except ImportError:
        return None
    names = list(getattr(cs, "SCHEDULER_NAMES", ()))
    calc = getattr(cs, "calculate_sigmas", None)
    if model_sampling is None or calc is None or not names:
        return None
    # KSampler takes one more step and drops the penultimate sigma for these samplers
    discard = bool(getattr(getattr(cs, "KSampler", None), "DISCARD_PENULTIMATE_SIGMA_SAMPLERS", ()))
    memo: dict[int, list[tuple[float, ...]]] = {}

    def raw(n: int) -> list[tuple[float, ...]]:
        if n not in memo:
            out = []
            for name in names:
                try:
                    out.append(as_floats(calc(model_sampling, name, n)))
                except Exception as exc:  # noqa: BLE001 - one scheduler of another pack failing is no reason to stop
                    logger.debug("Radial Attention: scheduler %s(%d) failed: %s", name, n, exc)
            memo[n] = out
        return memo[n]

    def schedules(total: int):
        dropped = [s[:-2] + s[-1:] for s in raw(total + 1) if len(s) >= 2] if discard else []
        return raw(total), dropped

    return schedules


def starts_at_full_noise(first_sigma: float, model_sampling, schedules=None, steps: int = 1) -> bool:
    """Does a pass starting at ``first_sigma`` start its schedule? Asked of the model (its
    ``sigma_max``) and of ComfyUI's schedulers (some start a little below it)."""
    top = getattr(model_sampling, "sigma_max", None)
    try:
        if top is not None and first_sigma >= float(top) * (1 - 1e-6):
            return True
    except (TypeError, ValueError):
        pass
    if schedules is not None and steps >= 1:
        return any(s and _close(s[0], first_sigma) for s in schedules(steps)[0])
    return False


class _PassCache:
    """The last few placed passes: the same slice of the same model's schedule is placed once,
    even when every model call has to ask (no OUTER_SAMPLE state)."""

    def __init__(self, size: int = 16):
        self._lock = threading.Lock()
        self._items: OrderedDict = OrderedDict()
        self._size = size

    def get(self, key, make):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


_PLACED = _PassCache()


def pass_steps(sample_sigmas, model_sampling, dense_first: int, dense_last: int) -> PassSteps:
    """:func:`locate_pass` for a pass of this ComfyUI model (see the module doc); memoised."""
    sig = as_floats(sample_sigmas)

    def make() -> PassSteps:
        schedules = comfy_schedules(model_sampling)
        head = bool(sig) and starts_at_full_noise(sig[0], model_sampling, schedules, max(len(sig) - 1, 1))
        return locate_pass(sig, dense_first, dense_last, starts_schedule=head, schedules=schedules)

    return _PLACED.get((id(model_sampling), sig, int(dense_first), int(dense_last)), make)
