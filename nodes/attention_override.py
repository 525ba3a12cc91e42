"""The ``optimized_attention_override`` callable that makes video self-attention radial.

ComfyUI (0.3.60+) calls ``transformer_options["optimized_attention_override"](func, *args,
**kwargs)`` from every ``@wrap_attn`` attention function, ``func`` being the dense function it
replaces. For each call: :func:`~.attention_plan.plan_call` decides (sparse with the radial
mask, or dense and why), :func:`log_plan` tells the user once per run, and
:meth:`RadialAttentionOverride.execute` runs the plan: ``radial_core.block_sparse_attention``
for the video self-attention calls of the transformer blocks (query length = key length = the
video sequence [+ text for HunyuanVideo/Mochi]), the dense path for every other call
(cross-attention, text refiner, dense blocks or steps, single frames, inputs the kernel cannot
take): the override another pack installed before us, if any, else ComfyUI's own function.
Calls that need gradients (training) stay sparse: the op is differentiable.

Layouts that reach us (ComfyUI 0.3.75):
- Wan: ``q, k, v`` ``[B, L, H*D]`` with ``heads``; no mask; video tokens only (reference or
  concatenated frames count as frames).
- HunyuanVideo: ``[B, H, L, D]`` with ``skip_reshape=True``; video tokens then text tokens; an
  additive key mask ``(1, 1, L)`` (0 = real, -max = padded text) when the prompt is padded.
- Mochi: ``[B, H, L, D]`` with ``skip_reshape=True``; video then the unpadded text tokens.

Newer ComfyUI hands q/k/v to the attention functions in ``AttentionTensorContainer``s and
unwraps them before calling an override that has no ``container_function``, so the override
still receives tensors; it may also pass ``scale=`` (honoured) and ``enable_gqa=`` (dense path).
"""

from __future__ import annotations

import logging

import torch

from ..radial_core import block_sparse_attention, mask_density
from .attention_plan import Call, Plan, parse_call, plan_call
from .run_state import RUN_KEY, RunState, forward_of

logger = logging.getLogger(__name__)


def log_plan(run: RunState, cfg, fwd, call: Call | None, plan: Plan) -> None:
    """What the user reads about one decision: each reason once per run (warnings for the ones
    that mean a setting or an input keeps attention dense), the shape once per run."""
    if plan.mask is not None:
        _log_shape(run, cfg, fwd, call, plan)
        if plan.backend != "triton" and cfg.backend != "pytorch" and (cfg.backend == "triton" or call.q.is_cuda):
            run.once("backend:" + plan.backend_reason, logging.WARNING,
                     f"Radial Attention: backend '{cfg.backend}' cannot use the Triton kernel here "
                     f"({plan.backend_reason}); using the PyTorch block path.")
    if plan.step_unknown:
        run.once("step-unknown", logging.WARNING,
                 "Radial Attention: this model call's sampling step is unknown (no sample_sigmas "
                 "from the sampler, or a sigma outside them); dense_steps_first/last cannot be "
                 "applied to it.")
    if not plan.sparse:
        log_dense(run, plan)


def log_dense(run: RunState, plan: Plan) -> None:
    level = logging.WARNING if plan.warn else logging.DEBUG
    run.once("dense:" + plan.reason, level, f"Radial Attention: dense attention for {plan.reason}"
             + ("" if not plan.warn else " (this call and any like it in this run)"))


def _log_shape(run: RunState, cfg, fwd, call: Call, plan: Plan) -> None:
    key = f"shape:{plan.frames}x{plan.tokens_per_frame}"  # once per run (cond/uncond text may differ)
    if key in run.reported:
        return
    text = plan.text_tokens
    dense_blocks = sorted(cfg.dense_blocks)
    run.once(key, logging.INFO, (
        f"Radial Attention: {cfg.family.variant}, latent {list(fwd.latent_shape)} -> "
        f"{plan.frames} frames x {plan.tokens_per_frame} tokens"
        + (f" + {text} {cfg.family.other_tokens}" + (" (first)" if plan.text_first else "") if text else "")
        + f" = {call.lq} tokens, block {cfg.block_size}, decay {cfg.decay_factor:g}"
        + (f", dist1 {cfg.dist1}" if cfg.family.mask_model == "wan" else "")
        + f", mask density {mask_density(plan.mask):.3f}"
        + f", dense blocks {dense_blocks if dense_blocks else 'none'}"
        + f", dense steps first {cfg.dense_steps_first} / last {cfg.dense_steps_last}"
        + f", backend {plan.backend} ({str(call.q.dtype).replace('torch.', '')}, {call.q.device.type})"
        + (f": {plan.decision.reason}" if plan.decision is not None else "")
    ))
    if cfg.family.note:
        run.once("note", logging.INFO, f"Radial Attention: {cfg.family.note}")


class RadialAttentionOverride:
    """``optimized_attention_override`` for one patch configuration (see the module doc)."""

    def __init__(self, config, previous=None, observer=None):
        self.config = config  # RadialConfig (small, frozen)
        self.previous = previous  # an override installed before ours, serves the dense calls
        # observer("sparse", plan, q=, k=, v=, out=) after each sparse call ([B, H, L, D]) and
        # observer("dense", plan) before each dense one; None in the pack (the tests watch with it)
        self.observer = observer

    # ComfyUI calls override(func, *args, **kwargs). torch.compile (e.g. ComfyUI's
    # TorchCompileModel node) does not trace into it: counters and caches here are plain Python
    # state that would make it recompile on every block; the kernels run as they are.
    @torch.compiler.disable
    def __call__(self, func, *args, **kwargs):
        topts = kwargs.get("transformer_options") or {}
        run: RunState | None = topts.get(RUN_KEY)
        # this model call's own context (per call, so per device thread); a training call's
        # also when its block is recomputed in backward
        fwd = forward_of(topts)
        if fwd is None or run is None:  # outside a patched model call
            return self.dense(func, args, kwargs)
        fwd.seen = True
        call = parse_call(args, kwargs)
        plan = plan_call(call, fwd, self.config, topts)
        if plan.video:
            fwd.advance()
        log_plan(run, self.config, fwd, call, plan)
        return self.execute(run, plan, call, func, args, kwargs)

    def execute(self, run: RunState, plan: Plan, call: Call | None, func, args, kwargs):
        """Run ``plan``: the sparse kernel, or the dense path; a kernel error goes dense."""
        if plan.sparse:
            try:
                q, k, v = call.bhld()
                out = self.sparse_attention(plan, call, q, k, v)
            except Exception as exc:  # noqa: BLE001 - a sampling run must not crash here
                plan = plan.dense_because(f"a sparse-kernel error ({type(exc).__name__}: {exc})", True)
                log_dense(run, plan)
            else:
                run.count_sparse()
                if call.skip_output_reshape:
                    return out
                B, H, L, D = out.shape
                return out.transpose(1, 2).reshape(B, L, H * D)
        run.count_dense(plan.reason)
        if self.observer is not None:
            self.observer("dense", plan)
        return self.dense(func, args, kwargs)

    def sparse_attention(self, plan: Plan, call: Call, q, k, v) -> torch.Tensor:
        """The one call into radial_core: ``[B, H, L, D]`` in and out."""
        cfg = self.config
        out = block_sparse_attention(q, k, v, plan.mask, key_padding_mask=plan.key_padding_mask,
                                     scale=call.scale, precision=cfg.precision,
                                     decision=plan.decision)
        if self.observer is not None:
            self.observer("sparse", plan, q=q, k=k, v=v, out=out)
        return out

    def dense(self, func, args, kwargs):
        if self.previous is not None:
            return self.previous(func, *args, **kwargs)
        return func(*args, **kwargs)
