"""Apply radial attention to a ComfyUI ModelPatcher through ComfyUI's own hooks.

``apply_radial_patch(model, ...)`` clones the model and configures the clone:

- ``transformer_options["optimized_attention_override"]``: our override; an override that was
  there before (e.g. a SageAttention patch) is kept and serves every dense call;
- a keyed OUTER_SAMPLE wrapper: one :class:`RunState` per sampling pass (where the pass lies in
  the whole schedule, read from its sigmas: nodes/step_tracker.py; once-per-run logging);
- a keyed APPLY_MODEL wrapper: per model call, the latent geometry, the step and the block
  counter, in that call's own ``transformer_options``. (APPLY_MODEL rather than DIFFUSION_MODEL
  because ComfyUI's Mochi model does not run DIFFUSION_MODEL wrappers; APPLY_MODEL runs for every
  model and has one fixed signature.)
- ``transformer_options["radial_attention"]``: a small dict describing the configuration, read
  back by :func:`get_radial_config`. Masks are never stored in ``model_options`` (ComfyUI
  deep-copies it on every clone).

Re-applying replaces the earlier radial configuration (its wrappers are removed by key, and
the override it had captured stays the one that serves dense calls).
"""

from __future__ import annotations

import logging
import math

import comfy.patcher_extension as pe

from .attention_override import RadialAttentionOverride
from .attention_plan import RadialConfig
from .model_family import (FAMILY_NAMES, ModelFamily, default_decay, describe_model, detect_family,
                           override_family, supported_names)
from .run_state import FWD_KEY, RUN_KEY, RunState, mark_replaced_blocks, open_forward
from .step_tracker import pass_steps
from .training import is_training_call, prepare_training_call, settle_sdpa_backend_order

logger = logging.getLogger(__name__)

RADIAL_KEY = "radial_attention"
OVERRIDE_KEY = "optimized_attention_override"
BLOCK_SIZES = (128, 64)
DIST1_CHOICES = ("full", "half")
BACKEND_CHOICES = ("auto", "triton", "pytorch")
PRECISION_CHOICES = ("exact", "fp8")  # radial_core.PRECISIONS without its "bf16" alias of "exact"
MAX_DENSE_STEPS = 1000
MAX_DECAY = 10.0  # the decay_factor inputs' maximum (patch, LoRA loader, preview, estimate route)


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


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}; got {value!r}. Fix: pick one of those.")


def _steps(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DENSE_STEPS:
        raise ValueError(
            f"{name}: expected a whole number of steps from 0 to {MAX_DENSE_STEPS}; got {value!r}. "
            f"Fix: use 0 for none."
        )
    return value


def _decay(value, family: ModelFamily) -> tuple[float, bool]:
    if value is None:
        return default_decay(family.family), True
    try:
        d = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"decay_factor: expected a number; got {value!r}. Fix: use 0 for the family default.") from None
    if not math.isfinite(d) or d < 0:
        raise ValueError(
            f"decay_factor: expected 0 (family default) or a positive number; got {value!r}. "
            f"Fix: use 0, or e.g. 0.2 (Wan 2.1), 0.8 (Wan 2.2), 0.95 (HunyuanVideo)."
        )
    if d == 0:
        return default_decay(family.family), True
    return d, False


class _OuterSampleWrapper:
    """One RunState per sampling pass, placed in the guider's transformer_options."""

    def __init__(self, config: RadialConfig):
        self.config = config

    def __call__(self, executor, *args, **kwargs):
        guider = executor.class_obj
        cfg = self.config
        topts = None
        steps = None
        try:
            sigmas = kwargs.get("sigmas", args[3] if len(args) > 3 else None)
            if sigmas is not None:
                patcher = getattr(guider, "model_patcher", None)
                ms = patcher.get_model_object("model_sampling") if patcher is not None else None
                steps = pass_steps(sigmas, ms, cfg.dense_steps_first, cfg.dense_steps_last)
            opts = getattr(guider, "model_options", None)
            if isinstance(opts, dict):
                topts = opts.setdefault("transformer_options", {})
        except Exception as exc:  # noqa: BLE001 - a guider of another pack: per-call state only
            logger.debug("Radial Attention: no run state for %s (%s)", type(guider).__name__, exc)
        run = RunState(steps)
        _say_unplaced(run, cfg)
        if topts is not None:
            topts[RUN_KEY] = run
        try:
            return executor(*args, **kwargs)
        finally:
            if topts is not None:
                topts.pop(RUN_KEY, None)
            logger.debug("Radial Attention: run done, %d sparse calls, dense calls %s",
                         run.sparse_calls, run.dense_calls)


class _ApplyModelWrapper:
    """Per model call: latent geometry, step, block counter (see run_state.open_forward)."""

    def __init__(self, config: RadialConfig):
        self.config = config

    def __call__(self, executor, x, t, c_concat=None, c_crossattn=None, control=None,
                 transformer_options=None, **kwargs):
        topts = transformer_options if transformer_options is not None else {}
        cfg = self.config
        base = executor.class_obj
        run = topts.get(RUN_KEY)
        if run is None:  # no OUTER_SAMPLE state (another guider, a direct call): this call only
            sample_sigmas = topts.get("sample_sigmas")
            run = RunState(pass_steps(sample_sigmas, getattr(base, "model_sampling", None), cfg.dense_steps_first,
                                      cfg.dense_steps_last) if sample_sigmas is not None else None)
            topts[RUN_KEY] = run
        prev = topts.get(FWD_KEY)
        training = is_training_call(x)  # Train LoRA: no sampling schedule, so no dense steps
        try:
            fwd = open_forward(run, cfg.family, x, t, c_crossattn, kwargs, topts,
                               0 if training else cfg.dense_steps_first, 0 if training else cfg.dense_steps_last,
                               getattr(base, "diffusion_model", None))
            not_video = fwd is None
        except Exception as exc:  # noqa: BLE001 - never break sampling over bookkeeping
            run.once("fwd-error", logging.WARNING,
                     f"Radial Attention: could not read the latent geometry ({exc}); dense attention.")
            fwd, not_video = None, False
        if not_video:
            run.once("not-video", logging.WARNING,
                     f"Radial Attention: input of shape {tuple(getattr(x, 'shape', ()))} is not a "
                     f"video latent [B, C, F, H, W]; dense attention.")
        # this call's own dict (ComfyUI builds one per call and per device thread), never the
        # shared run: two threads' forwards must not see each other's context
        topts[FWD_KEY] = fwd
        if training and fwd is not None:  # attention recomputed in backward finds its call (nodes/training.py)
            fwd.training = True
            if x.is_cuda:
                settle_sdpa_backend_order(str(x.device))
            prepare_training_call(topts, fwd, cfg.family)
        undo = mark_replaced_blocks(topts, fwd, cfg.family.double_blocks) if fwd is not None else None
        # an override set after ours that does not chain to it (a cache that skips a whole
        # forward leaves ours on top and is not reported)
        foreign = not isinstance(topts.get(OVERRIDE_KEY), RadialAttentionOverride)
        try:
            return executor(x, t, c_concat, c_crossattn, control, topts, **kwargs)
        finally:
            if undo is not None:
                undo()
            if not (training and fwd is not None):  # a training call's backward still needs it
                if prev is None:
                    topts.pop(FWD_KEY, None)
                else:
                    topts[FWD_KEY] = prev
            if fwd is not None and foreign and fwd.seen:
                # e.g. ComfyUI's "Model Sparse Attention" node (0.34+): it re-installs its override
                # on top at every step and hands down the calls it declines. The user gets that
                # override for the calls it takes and radial attention for the rest; say so once.
                above = topts.get(OVERRIDE_KEY)
                name = getattr(above, "__qualname__", None) or type(above).__name__
                run.once("override-above", logging.WARNING,
                         f"Radial Attention: another attention override ({name}) runs above Radial "
                         f"Attention Patch: it handles the attention calls it takes, radial attention "
                         f"only the calls it passes on. Two sparse attentions do not combine; bypass "
                         f"one of the two nodes to get the other alone.")
            if fwd is not None and foreign and not fwd.seen:
                run.once("override-unused", logging.WARNING,
                         "Radial Attention: the radial attention override did not run in this model "
                         "call: a node applied after Radial Attention Patch installed its own "
                         "attention override (put Radial Attention Patch after it). Attention "
                         "stays dense.")


def _say_unplaced(run: RunState, cfg: RadialConfig) -> None:
    """Once per pass: dense first/last steps asked, but the pass could not be placed in its
    schedule (nodes/step_tracker.py), so they are not applied to it."""
    steps = run.steps
    if steps is None or not steps.sigmas:
        return
    first = cfg.dense_steps_first > 0 and steps.before is None
    last = cfg.dense_steps_last > 0 and steps.after is None
    if first or last:
        parts = []
        if first:
            parts.append(f"it starts {cfg.dense_steps_first} or more steps into its schedule, "
                         f"after the dense first steps")
        if last:
            parts.append(f"it ends {cfg.dense_steps_last} or more steps before the schedule's end, "
                         f"before the dense last steps")
        run.once("unplaced", logging.INFO,
                 f"Radial Attention: this sampling pass (sigma {steps.sigmas[0]:.4g} to {steps.sigmas[-1]:.4g}) "
                 f"is part of a longer schedule; as far as ComfyUI's schedulers tell, "
                 + "; ".join(parts) + " (hand-made sigmas cannot be placed and count the same).")


def _clean_override(existing):
    """The override to keep for dense calls: ours is replaced by what it had captured."""
    while isinstance(existing, RadialAttentionOverride):
        existing = existing.previous
    return existing


def apply_radial_patch(
    model,
    *,
    decay_factor=None,
    block_size: int = 128,
    dense_blocks: str = "",
    dense_steps_first: int = 0,
    dense_steps_last: int = 0,
    dist1: str = "full",
    backend: str = "auto",
    family: str = "auto",
    precision: str = "exact",
):
    """Return a clone of ``model`` with radial attention configured (see the module doc).

    ``decay_factor`` None or 0: the family's default. ``dense_blocks``: "N" (first N blocks) or
    a list "0,1,39". ``family``: "auto" or a family key (only to tell Wan 2.2-A14B from Wan 2.1,
    whose weights look the same). An unsupported model is returned as it is, with a warning.
    Bad values raise ValueError naming the value and the fix.
    """
    if not hasattr(model, "clone") or not hasattr(model, "model_options"):
        raise ValueError(
            f"model: expected a ComfyUI MODEL (ModelPatcher); got {type(model).__name__}. "
            f"Fix: connect the output of a model loader."
        )
    if isinstance(block_size, str) and block_size.strip().isdigit():
        block_size = int(block_size)  # combo values and metadata may arrive as text
    _choice("block_size", block_size, BLOCK_SIZES)
    _choice("dist1", dist1, DIST1_CHOICES)
    _choice("backend", backend, BACKEND_CHOICES)
    _choice("family", family, ("auto",) + tuple(FAMILY_NAMES))  # the node offers FAMILY_CHOICES
    _choice("precision", precision, PRECISION_CHOICES)
    first = _steps("dense_steps_first", dense_steps_first)
    last = _steps("dense_steps_last", dense_steps_last)
    if dense_blocks is None:
        dense_blocks = ""
    if not isinstance(dense_blocks, str):
        dense_blocks = str(dense_blocks)

    fam = detect_family(model)
    if fam is None:
        parse_dense_blocks(dense_blocks)  # still report a malformed value
        logger.warning(
            "Radial Attention Patch: %s is not a video model this pack supports (%s); the model "
            "passes through unchanged.", describe_model(model), supported_names())
        return model
    fam = override_family(fam, family)
    blocks = parse_dense_blocks(dense_blocks, fam.num_blocks)
    decay, is_default = _decay(decay_factor, fam)
    cfg = RadialConfig(fam, decay, is_default, int(block_size), blocks, dense_blocks.strip(),
                       first, last, dist1, backend, precision)

    m = model.clone()
    topts = m.model_options.setdefault("transformer_options", {})
    previous = _clean_override(topts.get(OVERRIDE_KEY))
    topts[OVERRIDE_KEY] = RadialAttentionOverride(cfg, previous)
    topts[RADIAL_KEY] = cfg.as_dict()
    for kind, wrapper in ((pe.WrappersMP.OUTER_SAMPLE, _OuterSampleWrapper(cfg)),
                          (pe.WrappersMP.APPLY_MODEL, _ApplyModelWrapper(cfg))):
        m.remove_wrappers_with_key(kind, RADIAL_KEY)
        m.add_wrapper_with_key(kind, RADIAL_KEY, wrapper)
    logger.debug("Radial Attention Patch applied: %s", cfg.as_dict())
    return m


def get_radial_config(model) -> dict | None:
    """The radial configuration applied to ``model`` (a copy), or None when not patched."""
    opts = getattr(model, "model_options", None) or {}
    topts = opts.get("transformer_options", {})
    cfg = topts.get(RADIAL_KEY)
    if not isinstance(cfg, dict) or not isinstance(topts.get(OVERRIDE_KEY), RadialAttentionOverride):
        return None
    return dict(cfg)
