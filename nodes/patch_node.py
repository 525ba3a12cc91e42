"""The "Radial Attention Patch" node: MODEL in, MODEL with radial attention out (node API v3).

All the work is in ``radial_patcher.apply_radial_patch``; this module only describes the inputs.
"""

from __future__ import annotations

import logging

from comfy_api.latest import io

from ..radial_core import settings as S
from .model_family import FAMILY_CHOICES, supported_names
from .radial_patcher import PRECISION_CHOICES, apply_radial_patch
from .validation import choice_input, dense_blocks_problem, number_input

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
                io.Model.Input(
                    "model",
                    tooltip="The video model to patch (its family is detected from the weights; "
                    "see the node's description).",
                ),
                number_input("decay_factor"),
                choice_input("block_size"),
                io.String.Input(
                    "dense_blocks",
                    default=S.SETTINGS["dense_blocks"].default,
                    multiline=False,
                    tooltip=S.SETTINGS["dense_blocks"].tooltip,
                ),
                number_input("dense_steps_first"),
                number_input("dense_steps_last"),
                choice_input("dist1"),
                choice_input("backend"),
                # only the families the weights cannot tell apart can be named (nodes/model_family.py)
                choice_input("family", options=FAMILY_CHOICES, optional=True),
                choice_input("precision", options=PRECISION_CHOICES, optional=True),
            ],
            outputs=[io.Model.Output(tooltip="The model with radial attention on its video self-attention.")],
        )

    @classmethod
    def validate_inputs(cls, dense_blocks: str | None = None) -> bool | str:
        # One argument only: ComfyUI reports a failed check once per argument (nodes/validation.py).
        # Numbers (NaN included: validation.number_input) and dropdowns are checked by ComfyUI
        # itself, each on its own input.
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
