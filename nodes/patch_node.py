"""The "Radial Attention Patch" node: MODEL in, MODEL with radial attention out (node API v3).

All the work is in ``radial_patcher.apply_radial_patch``; this module only describes the inputs.
"""

from __future__ import annotations

import logging

from comfy_api.latest import io

from .model_family import FAMILY_CHOICES, decay_defaults_text, supported_names
from .radial_patcher import (BACKEND_CHOICES, BLOCK_SIZES, DIST1_CHOICES, MAX_DECAY, MAX_DENSE_STEPS, PRECISION_CHOICES,
                            apply_radial_patch)
from .validation import Choice, dense_blocks_problem

logger = logging.getLogger(__name__)

CATEGORY = "Radial Attention"


class RadialAttentionPatch(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RadialAttentionPatch",
            display_name="Radial Attention Patch",
            category=CATEGORY,
            description=(
                "Radial Attention (O(n log n) block-sparse attention, arXiv 2506.19852) for video "
                "models: video self-attention keeps only the blocks of a static mask whose window "
                "shrinks with the distance between frames. Families: " + supported_names() + ". "
                "Other models pass through unchanged."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The video model to patch (its family is detected from the weights; see the node's description)."),
                io.Float.Input(
                    "decay_factor", default=0.0, min=0.0, max=MAX_DECAY, step=0.01,
                    tooltip=(
                        "How fast the attention window shrinks with frame distance; lower is sparser "
                        "and faster. 0 = the family's default, " + decay_defaults_text() + "."
                    ),
                ),
                Choice(
                    "block_size", options=list(BLOCK_SIZES), default=BLOCK_SIZES[0],
                    tooltip="Tokens per mask block. 128 is fastest on GPUs; 64 follows the mask more finely.",
                ),
                io.String.Input(
                    "dense_blocks", default="1", multiline=False,
                    tooltip=(
                        "Transformer blocks that keep dense attention. A number N = the first N "
                        "blocks (the authors keep the first block dense); a list such as '0,1,39' "
                        "or '0-3' = those blocks; empty or 0 = none. HunyuanVideo numbers its "
                        "double-stream blocks first, then the single-stream ones (0-59)."
                    ),
                ),
                io.Int.Input(
                    "dense_steps_first", default=0, min=0, max=MAX_DENSE_STEPS,
                    tooltip=(
                        "The first N sampling steps of the schedule stay dense (they shape the "
                        "layout; the authors keep about a quarter dense, e.g. 12 of 50). Counted "
                        "across split KSamplerAdvanced passes."
                    ),
                ),
                io.Int.Input(
                    "dense_steps_last", default=0, min=0, max=MAX_DENSE_STEPS,
                    tooltip="The last N sampling steps of the schedule stay dense (fine detail).",
                ),
                Choice(
                    "dist1", options=list(DIST1_CHOICES), default="full",
                    tooltip=(
                        "Wan only: window for neighbouring frames. 'full' = the authors' current "
                        "code; 'half' = the paper-era rule earlier ComfyUI ports use (LoRAs trained "
                        "with those ports expect it)."
                    ),
                ),
                Choice(
                    "backend", options=list(BACKEND_CHOICES), default="auto",
                    tooltip=(
                        "auto: the Triton kernel on a CUDA GPU, else the PyTorch block path. "
                        "triton: ask for the kernel (falls back to PyTorch with a warning when it "
                        "cannot run). pytorch: always the PyTorch block path."
                    ),
                ),
                Choice(
                    "family", options=list(FAMILY_CHOICES), default="auto",
                    tooltip=(
                        "auto: detect from the model. Wan 2.1-14B T2V and Wan 2.2-A14B T2V weights "
                        "look the same: set wan22_14b for a Wan 2.2 A14B expert to get its defaults."
                    ),
                    optional=True,
                ),
                Choice(
                    "precision", options=list(PRECISION_CHOICES), default="exact",
                    tooltip=(
                        "exact: the sparse attention in the model's own dtype (bf16/fp16). fp8 "
                        "(opt-in): the Triton kernel computes Q·K in 8 bits (int8, per-row and per-tile "
                        "scales, K smoothed) and P·V in bf16/fp16 on Hopper / Ada GPUs (sm 8.9+): "
                        "about 1.2x faster, about 1.2e-2 relative error on random inputs; elsewhere "
                        "it runs exact with one warning."
                    ),
                    optional=True,
                ),
            ],
            outputs=[io.Model.Output(tooltip="The model with radial attention on its video self-attention.")],
        )

    @classmethod
    def validate_inputs(cls, dense_blocks: str | None = None) -> bool | str:
        # One argument only: ComfyUI reports a failed check once per argument (nodes/validation.py).
        # Numbers and dropdowns are checked by ComfyUI itself, each on its own input.
        problem = dense_blocks_problem(dense_blocks)
        return True if problem is None else problem

    @classmethod
    def execute(
        cls,
        model,
        decay_factor: float,
        block_size: int,
        dense_blocks: str,
        dense_steps_first: int,
        dense_steps_last: int,
        dist1: str,
        backend: str,
        family: str = "auto",
        precision: str = "exact",
    ) -> io.NodeOutput:
        patched = apply_radial_patch(
            model,
            decay_factor=None if not decay_factor else decay_factor,
            block_size=int(block_size),
            dense_blocks=dense_blocks,
            dense_steps_first=int(dense_steps_first),
            dense_steps_last=int(dense_steps_last),
            dist1=dist1,
            backend=backend,
            family=family or "auto",
            precision=precision or "exact",
        )
        return io.NodeOutput(patched)
