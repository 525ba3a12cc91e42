"""Training through the Radial Attention Patch: model calls that need gradients.

ComfyUI's "Train LoRA" node (``comfy_extras/nodes_train.py``) runs the patched MODEL with
gradients enabled and, with its ``gradient_checkpointing`` option, wraps modules in
``torch.utils.checkpoint`` (0.3.75: every top-level child of the diffusion model, i.e. each
transformer block; 0.33: the modules at ``checkpoint_depth``, 1 = the whole diffusion model). A
checkpointed module runs its forward again during ``loss.backward()``, after the model call
has returned, so the per-call state that the APPLY_MODEL wrapper opens (the geometry, the block
counter) is gone by then, and ComfyUI's own ``block_index`` still names the last block. The
recomputed attention must make the same choice (sparse, same mask, or dense) as the original
forward, or PyTorch stops with "a different number of tensors was saved during the original
forward and recomputation".

So for a call that needs gradients, :func:`prepare_training_call` leaves in that call's own
``transformer_options`` (ComfyUI copies them per model call):

- the call's :class:`~.run_state.ForwardContext` under :data:`FWD_KEY`;
- a ``patches_replace["dit"]`` entry for every block (wrapping any replacement already there)
  that hands the block its own copy of ``transformer_options`` with ComfyUI's own block keys
  (``block_index``, ``total_blocks``, ``block_type``). A checkpoint keeps the arguments a block
  was called with, so the recomputed block reads the same block index as the original call.

Sampling (no gradients) never goes through here. Training also draws random noise levels, not a
sampling schedule, so dense first/last *steps* do not apply to it (see ``ForwardContext.training``);
dense *blocks* do.
"""

from __future__ import annotations

import functools

import torch

from . import comfy_compat
from .run_state import FWD_KEY


def is_training_call(x=None) -> bool:
    """A model call of a training loop (Train LoRA), as opposed to sampling.

    ComfyUI's own signal, ``comfy.model_management.in_training``, which Train LoRA sets around its
    loop (:func:`comfy_compat.in_training` stands in for it on 0.3.75: ``x`` requiring grad).
    Sampling runs under ``torch.inference_mode`` and is never a training call; a call with
    gradients that is not training (say, guidance by a gradient through the model) keeps the
    sampling rules (dense steps) and, needing no recomputation, its attention stays radial anyway.
    """
    if not torch.is_grad_enabled():
        return False
    return comfy_compat.in_training(x)


class _TrainingBlock:
    """``patches_replace["dit"][(kind, i)]``: the block gets its own ``transformer_options``."""

    def __init__(self, inner, index: int, total: int, block_type: str):
        self.inner, self.index, self.total, self.block_type = inner, index, total, block_type

    def __call__(self, args, extra):
        topts = args.get("transformer_options") if isinstance(args, dict) else None
        if isinstance(topts, dict):
            args = dict(args)
            args["transformer_options"] = {**topts, "block_index": self.index, "total_blocks": self.total,
                                           "block_type": self.block_type}
        if self.inner is not None:
            return self.inner(args, extra)
        return extra["original_block"](args)


@functools.cache
def settle_sdpa_backend_order(device: str) -> None:
    """Once per process and CUDA device: one tiny SDPA call before the first training call.

    Seen on an H200 with torch 2.11: the first SDPA dispatch of a process does not
    honour the backend priority that ComfyUI 0.33's ``comfy.ops.scaled_dot_product_attention``
    sets around it (flash first, ``sdpa_kernel(..., set_priority=True)``): that call runs cuDNN,
    every later one flash. When that first call is a checkpointed block's dense attention (a
    dense block in Train LoRA, right after the server started from a saved dataset), its
    recomputation in backward picks flash, saves other tensors, and ``torch.utils.checkpoint``
    stops the training ("Recomputed values ... have different metadata"). After any earlier
    SDPA call the order holds; this makes that earlier call.
    """
    t = torch.zeros(1, 1, 1, 64, device=device, dtype=torch.bfloat16)
    torch.nn.functional.scaled_dot_product_attention(t, t, t)


def prepare_training_call(transformer_options: dict, fwd, family) -> None:
    """Make this training call's attention decisions reproducible in backward (module doc).

    The APPLY_MODEL wrapper has already put ``fwd`` under ``FWD_KEY`` (every model call's context
    lives there); it is set again here because backward depends on it. ``family``: the patch's
    :class:`~.model_family.ModelFamily` (``num_blocks``, ``double_blocks``: HunyuanVideo's
    single-stream blocks count after its double-stream ones)."""
    transformer_options[FWD_KEY] = fwd
    pr = transformer_options.get("patches_replace")
    pr = dict(pr) if isinstance(pr, dict) else {}
    dit = dict(pr.get("dit") or {})
    double = int(family.double_blocks or 0)
    total = int(family.num_blocks)
    keys = ([("double_block", i) for i in range(double)] + [("single_block", i) for i in range(total - double)]
            if double else [("double_block", i) for i in range(total)])
    for kind, i in keys:
        dit[(kind, i)] = _TrainingBlock(dit.get((kind, i)), i, total, "single" if kind == "single_block" else "double")
    pr["dit"] = dit
    transformer_options["patches_replace"] = pr
