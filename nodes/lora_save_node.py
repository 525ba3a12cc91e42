"""The "Save Radial LoRA" node: a LoRA trained through the Radial Attention Patch, saved with the
radial settings it was trained with (node API v3).

ComfyUI's own "Save LoRA Weights" (``SaveLoRA`` in ``comfy_extras/nodes_train.py``, 0.3.75 and
0.33 alike) calls ``safetensors.torch.save_file(lora, path)`` with no metadata, and its
``LORA_MODEL`` input is a plain dict of tensors made inside "Train LoRA": nothing a patch or a
node before it controls reaches that file's metadata. This node writes the same tensors (same
key names, so ComfyUI's loaders read the file as they read SaveLoRA's) plus the
``radial_attn.*`` metadata keys that the Radial LoRA Loader applies (docs/lora-format.md), read
from the patched MODEL that was trained: decay factor, block size, dense blocks, dense steps
(for sampling; training itself ignores them), the Wan distance-1 rule and the family.
"""

from __future__ import annotations

import logging
import os

import folder_paths
import torch
from comfy_api.latest import io, ui
from safetensors.torch import save_file

from ..radial_core.lora import metadata as lora_radial
from .radial_patcher import get_radial_config
from .validation import number_input

logger = logging.getLogger(__name__)

CATEGORY = "Radial Attention"
DEFAULT_PREFIX = "loras/radial_length_extension"


def radial_settings_metadata(cfg: dict, *, tuned_frames: int = 0, tuned_width: int = 0,
                             tuned_height: int = 0) -> dict[str, str]:
    """The ``radial_attn.*`` metadata for a patch configuration (``get_radial_config``), checked by
    ``radial_core.lora.metadata.radial_metadata`` the way the loader will read it: both use the
    settings contract's ranges (``radial_core.settings``), so whatever the patch accepted saves."""
    blocks = sorted(int(b) for b in cfg.get("dense_blocks", []))
    family = cfg.get("family")
    settings = {
        "decay_factor": cfg["decay_factor"],
        "block_size": cfg["block_size"],
        # the explicit block list: the same blocks whatever the loader's model has
        "dense_blocks": blocks if blocks else "none",
        "dense_steps": cfg.get("dense_steps_first", 0),
        "dense_steps_last": cfg.get("dense_steps_last", 0),
        "dist1": cfg.get("dist1", "full"),
        "family": family if family in lora_radial.FAMILIES else None,
        "tuned_frames": tuned_frames or None,
        "tuned_width": tuned_width or None,
        "tuned_height": tuned_height or None,
        "base_model": cfg.get("variant"),
    }
    return lora_radial.radial_metadata(**settings)


def _check_lora(lora) -> dict[str, torch.Tensor]:
    if not isinstance(lora, dict) or not lora or not all(isinstance(t, torch.Tensor) for t in lora.values()):
        raise ValueError(
            f"lora: expected the LORA_MODEL output of ComfyUI's Train LoRA node (a dict of tensors); got "
            f"{type(lora).__name__}. Fix: connect Train LoRA's 'lora' output."
        )
    tensors = {k: t.detach().to("cpu").contiguous() for k, t in lora.items()}
    # the loader refuses such a file (radial_core.lora.file): say so now, not after it is shared
    for name, t in tensors.items():
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            why = f"is {t.dtype}, not floating point" if not t.is_floating_point() else "holds NaN or infinite values"
            raise ValueError(
                f"lora: tensor {name!r} {why}, so no loader could apply it. Fix: train again with a lower "
                "learning rate (NaN means the training diverged), or save the LoRA of an earlier step."
            )
    return tensors


class SaveRadialLora(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SaveRadialLora",
            display_name="Save Radial LoRA",
            category=CATEGORY,
            description=(
                "Saves a LoRA trained by ComfyUI's Train LoRA on a MODEL from Radial Attention Patch, "
                "with the radial settings it was trained with in the file's metadata (the keys the "
                "Radial LoRA Loader applies). Same tensors as Save LoRA Weights writes."
            ),
            is_output_node=True,
            inputs=[
                io.Custom("LORA_MODEL").Input("lora", tooltip="The 'lora' output of Train LoRA."),
                io.Model.Input(
                    "model",
                    tooltip=(
                        "The MODEL from Radial Attention Patch that Train LoRA trained on: its decay "
                        "factor, block size, dense blocks, dense steps (used when sampling with the "
                        "LoRA) and distance-1 rule go into the file."
                    ),
                ),
                io.String.Input(
                    "filename_prefix", default=DEFAULT_PREFIX,
                    tooltip=(
                        "File name prefix inside ComfyUI's output folder (as Save LoRA Weights). Move "
                        "the file into models/loras to load it with Radial LoRA Loader."
                    ),
                ),
                number_input("steps", optional=True),
                number_input("tuned_frames", optional=True),
                number_input("tuned_width", optional=True),
                number_input("tuned_height", optional=True),
            ],
            outputs=[],
        )

    @classmethod
    def execute(cls, lora, model, filename_prefix: str, steps: int = 0, tuned_frames: int = 0,
                tuned_width: int = 0, tuned_height: int = 0) -> io.NodeOutput:
        cfg = get_radial_config(model)
        if cfg is None:
            raise ValueError(
                "model: this MODEL carries no Radial Attention Patch, so there are no radial settings "
                "to save. Fix: connect the MODEL from the Radial Attention Patch node that you fed to "
                "Train LoRA (or use Save LoRA Weights for a LoRA trained without radial attention)."
            )
        tensors = _check_lora(lora)
        metadata = radial_settings_metadata(cfg, tuned_frames=int(tuned_frames or 0),
                                            tuned_width=int(tuned_width or 0), tuned_height=int(tuned_height or 0))
        out_dir = folder_paths.get_output_directory()
        folder, filename, counter, _sub, _prefix = folder_paths.get_save_image_path(filename_prefix, out_dir)
        name = (
            f"{filename}_{int(steps)}_steps_{counter:05}_.safetensors"
            if steps
            else f"{filename}_{counter:05}_.safetensors"
        )
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, name)
        save_file(tensors, path, metadata=metadata)
        shown = ", ".join(f"{k[len(lora_radial.RADIAL_PREFIX):]}={v}" for k, v in sorted(metadata.items()))
        logger.info("Save Radial LoRA: %d tensors to %s (%s)", len(tensors), path, shown)
        return io.NodeOutput(ui=ui.PreviewText(f"{path}\n{shown}"))
