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
import comfy.patcher_extension as pe

from ..radial_core import settings as S

from .attention_override import RadialAttentionOverride
from .attention_plan import RadialConfig
from ..radial_core.families import default_decay
from .model_family import ModelFamily, describe_model, detect_family, override_family, supported_names
from .run_state import FWD_KEY, RUN_KEY, RunState, mark_replaced_blocks, open_forward
from .step_tracker import pass_steps
from .training import is_training_call, prepare_training_call, settle_sdpa_backend_order

logger = logging.getLogger(__name__)

RADIAL_KEY = "radial_attention"
OVERRIDE_KEY = "optimized_attention_override"
# The settings contract (radial_core.settings) states every range and choice; these names stay for
# the modules that import them.
BLOCK_SIZES = S.SETTINGS["block_size"].choices
DIST1_CHOICES = S.SETTINGS["dist1"].choices
BACKEND_CHOICES = S.SETTINGS["backend"].choices
# what the node offers: not the API-only "int8" (slower than int8-qk, docs/perf-notes.md)
PRECISION_CHOICES = S.SETTINGS["precision"].choices
MAX_DENSE_STEPS = S.DENSE_STEPS_MAX
MAX_DECAY = S.DECAY_MAX


def parse_dense_blocks(spec, num_blocks: int | None = None) -> frozenset[int]:
    """``dense_blocks`` (the contract's one grammar, ``radial_core.settings.parse_dense_blocks``)
    -> the block indices of a model of ``num_blocks`` blocks.

    ``""``, ``"none"`` or ``"0"``: none; ``"N"``: the first N blocks; ``"0,1,39"``, ranges
    ``"0-3"``: those blocks (``"5,"`` = block 5 only). With ``num_blocks``, indices past the
    model's last block are an error; the set built never has more than ``num_blocks`` entries.
    Without it, only the text is checked and the set of the indices named is returned.
    """
    blocks = S.parse_dense_blocks(spec)
    if num_blocks is not None:
        return blocks.indices(num_blocks)
    return blocks.indices(S.DENSE_BLOCK_MAX + 1)  # bounded by the contract's cap


def _decay(value, family: ModelFamily) -> tuple[float, bool]:
    d = 0.0 if value is None else S.parse("decay_factor", value)
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

    Every value is read by the settings contract's parser (``radial_core.settings``): the same
    ranges and grammar as the nodes, LoRA metadata and the routes. ``decay_factor`` None or 0: the
    family's default. ``dense_blocks``: "N" (first N blocks) or a list "0,1,39". ``family``: "auto"
    or a family key (only to tell Wan 2.2-A14B from Wan 2.1,
    whose weights look the same). An unsupported model is returned as it is, with a warning.
    Bad values raise ValueError (``SettingError``) naming the setting, the value, the rule and the fix.
    """
    if not hasattr(model, "clone") or not hasattr(model, "model_options"):
        raise ValueError(
            f"model: expected a ComfyUI MODEL (ModelPatcher); got {type(model).__name__}. "
            f"Fix: connect the output of a model loader."
        )
    # one parser per setting (radial_core.settings): combo values and metadata may arrive as text
    block_size = S.parse("block_size", block_size)
    dist1 = S.parse("dist1", dist1)
    backend = S.parse("backend", backend)
    family = S.parse("family", family)  # the node offers FAMILY_CHOICES
    precision = S.parse("precision", precision)
    first = S.parse("dense_steps_first", dense_steps_first)
    last = S.parse("dense_steps_last", dense_steps_last)
    dense = S.parse_dense_blocks(dense_blocks)
    decay_value = None if decay_factor is None else S.parse("decay_factor", decay_factor)

    fam = detect_family(model)
    if fam is None:
        logger.warning(
            "Radial Attention Patch: %s is not a video model this pack supports (%s); the model "
            "passes through unchanged.", describe_model(model), supported_names())
        return model
    fam = override_family(fam, family)
    blocks = dense.indices(fam.num_blocks)
    decay, is_default = _decay(decay_value, fam)
    cfg = RadialConfig(fam, decay, is_default, int(block_size), blocks, str(dense_blocks or "").strip(),
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
