"""The "Sparsity Preview" node: what the radial mask does, before any GPU time is spent.

Given a model family and a video size (pixels), or a LATENT to read the shape from, it builds the
exact mask the kernel would run (``radial_core.radial_block_mask``) and outputs a picture of it
(frame boundaries, temporal-distance bands, density per distance chart) and a text summary:
tokens, blocks, density, attention FLOPs saved and the expected attention speedup. The picture
also shows in the node itself. No model is needed.
"""

from __future__ import annotations

import logging

import torch
from comfy_api.latest import io, ui

from ..radial_core import preview as rpreview
from ..radial_core.families import families, family_spec
from ..radial_core.geometry import geometry_from_latent, with_extra_groups
from ..radial_core import settings as S
from .model_family import family_keys_text, text_first_of
from .validation import choice_input, number_input

logger = logging.getLogger(__name__)

CATEGORY = "Radial Attention"
MAX_SIDE = S.SETTINGS["width"].maximum  # the settings contract's ranges (radial_core.settings)
MAX_FRAMES = S.SETTINGS["frames"].maximum
MAX_TEXT = S.SETTINGS["text_tokens"].maximum


def latent_shape(latent: dict, family: str) -> tuple[int, int, int]:
    """(frames, height, width) of a LATENT's samples; an image latent counts as one frame."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor) or samples.dim() not in (4, 5):
        shape = list(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
        raise ValueError(
            f"Sparsity Preview: expected a video LATENT with samples [B, C, frames, h, w]; got {shape}. "
            "Connect the output of an empty video latent node (e.g. EmptyHunyuanLatentVideo) "
            "or leave the latent input unconnected."
        )
    if samples.shape[1] == 48 and family != "wan22_5b":
        logger.warning("Sparsity Preview: a 48-channel latent is Wan 2.2-5B's; family is %s", family)
    if samples.dim() == 4:
        return 1, int(samples.shape[-2]), int(samples.shape[-1])
    return tuple(int(x) for x in samples.shape[-3:])


class SparsityPreview(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SparsityPreview",
            display_name="Sparsity Preview",
            category=CATEGORY,
            description=(
                "Shows the radial attention mask for a video size: which frames attend to which, "
                "its density and the expected attention speedup. Needs no model."
            ),
            is_output_node=True,
            inputs=[
                choice_input(
                    "family", options=list(families()), default="wan21",
                    tooltip="Model family: " + family_keys_text() + ". Sets the VAE compression, "
                    "patch size, text tokens and default decay factor.",
                ),
                number_input("width"),
                number_input("height"),
                number_input("frames"),
                choice_input("block_size", options=["128", "64"]),
                number_input("decay_factor"),
                choice_input("dist1"),
                number_input("text_tokens"),
                number_input("image_size"),
                io.Latent.Input("latent", optional=True,
                                tooltip="Optional: read frames and size from this video latent."),
                io.Model.Input("model", optional=True,
                               tooltip="Optional: a model from Radial Attention Patch; its family, "
                               "block size, decay factor and distance-1 rule replace this node's."),
            ],
            outputs=[
                io.Image.Output(display_name="mask image",
                                tooltip="The block mask, frame boundaries, bands and chart."),
                io.String.Output(display_name="summary",
                                 tooltip="Tokens, blocks, density, FLOPs saved, expected speedup."),
            ],
        )

    @classmethod
    def execute(cls, family: str, width: int, height: int, frames: int, block_size: str,
                decay_factor: float, dist1: str, text_tokens: int, image_size: int = 640,
                latent: dict | None = None, model=None) -> io.NodeOutput:
        settings = dict(family=family, block_size=int(block_size), decay_factor=decay_factor,
                        dist1=dist1)
        if model is not None:
            settings = settings_from_model(model, settings)
        est = estimate_for(width=width, height=height, frames=frames, text_tokens=text_tokens,
                           latent=latent, **settings)
        picture = est.render(panel_size=int(image_size))
        image = (picture.to(torch.float32) / 255.0).unsqueeze(0)  # [1, H, W, 3], 0..1
        summary = est.summary()
        logger.info("Sparsity Preview: %s", summary.replace("\n", "; "))
        return io.NodeOutput(image, summary, ui=ui.PreviewImage(image, cls=cls))


def settings_from_model(model, fallback: dict) -> dict:
    """Family, block size, decay factor and distance-1 rule of a model patched by the pack."""
    from .radial_patcher import get_radial_config

    cfg = get_radial_config(model)
    if cfg is None:
        logger.warning("Sparsity Preview: the MODEL input is not patched by Radial Attention Patch; "
                       "using this node's own settings")
        return fallback
    return {"family": cfg["family"], "block_size": int(cfg["block_size"]),
            "decay_factor": float(cfg["decay_factor"]), "dist1": cfg["dist1"]}


def estimate_for(family: str, width: int, height: int, frames: int, *, block_size: int,
                 decay_factor: float, dist1: str, text_tokens: int,
                 latent: dict | None = None) -> rpreview.Estimate:
    """The node's figures: from the pixel settings, or from a latent's shape when given."""
    decay = None if decay_factor <= 0 else float(decay_factor)
    text = None if text_tokens < 0 else int(text_tokens)
    text_first = text_first_of(family)  # where this ComfyUI puts the family's text
    if latent is None:
        return rpreview.estimate(family, width, height, frames, block_size=block_size,
                                 decay_factor=decay, dist1=dist1, text_tokens=text, text_first=text_first)
    spec = family_spec(family)
    geo = geometry_from_latent(latent_shape(latent, family), spec.patch,
                               text_tokens=spec.text_tokens if text is None else text,
                               mask_model=spec.mask_model, text_first=text_first)
    geo = with_extra_groups(family, geo)  # a Wan variant's reference / motion / pose tokens
    return rpreview.estimate_latent(
        geo.num_frames, geo.tokens_per_frame, text_tokens=geo.text_tokens, block_size=block_size,
        decay_factor=spec.default_decay if decay is None else decay, model=geo.mask_model,
        dist1=dist1, family=family, text_first=geo.text_first, other_label=geo.other_label,
        title=f"{spec.label}, latent {geo.num_frames} x {geo.tokens_per_frame} tokens",
    )
