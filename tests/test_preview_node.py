"""The "Sparsity Preview" node run through real ComfyUI's execution engine (in-process, CPU).

The prompt goes through ComfyUI's own ``validate_prompt`` and ``PromptExecutor``, exactly as a
queued prompt does; its outputs are read from the executor's output cache.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch
from PIL import Image

import helpers_models as hm
from radial_core import radial_block_mask
from radial_core.families import default_decay
from radial_core.geometry import geometry_from_pixels

pytestmark = pytest.mark.comfy


def run_prompt(prompt: dict):
    """Validate and execute ``prompt`` (API format) with ComfyUI; returns the executor."""
    from conftest import script_module

    executor, _ = script_module("comfy_headless").execute(prompt)
    return executor


def preview_prompt(**inputs) -> dict:
    values = {
        "family": "wan21", "width": 832, "height": 480, "frames": 81, "block_size": "128",
        "decay_factor": 0.0, "dist1": "full", "text_tokens": -1, "image_size": 256,
    }
    values.update(inputs)
    return {"1": {"class_type": "SparsityPreview", "inputs": values}}


def node_outputs(executor, node_id: str = "1"):
    from conftest import script_module

    entry = script_module("comfy_headless").cached_output(executor, node_id)
    assert entry is not None, f"node {node_id} produced no output"
    image, summary = entry.outputs[0][0], entry.outputs[1][0]
    return image, summary, entry.ui["output"]


def summary_number(summary: str, prefix: str) -> str:
    line = next(x for x in summary.splitlines() if x.startswith(prefix))
    return line


def test_node_is_registered(comfy):
    cls = comfy.nodes.NODE_CLASS_MAPPINGS["SparsityPreview"]
    assert comfy.nodes.NODE_DISPLAY_NAME_MAPPINGS["SparsityPreview"] == "Sparsity Preview"
    info = cls.INPUT_TYPES()
    for name in ("family", "width", "height", "frames", "block_size", "decay_factor", "dist1",
                 "text_tokens", "image_size"):
        spec = info["required"][name][1]
        assert spec.get("tooltip"), f"input {name} has no tooltip"
    for name in ("width", "height", "frames", "decay_factor", "text_tokens", "image_size"):
        spec = info["required"][name][1]
        assert "min" in spec and "max" in spec, f"input {name} has no bounds"
    assert "latent" in info["optional"]


@pytest.mark.parametrize(
    "family,width,height,frames,block,decay,dist1",
    [
        ("wan21", 1280, 720, 81, "128", 0.0, "full"),
        ("hunyuan", 960, 544, 129, "64", 0.95, "full"),
        ("wan22_5b", 1280, 704, 121, "128", 0.2, "half"),
    ],
)
def test_node_image_and_summary_match_radial_core(comfy, family, width, height, frames, block, decay, dist1):
    executor = run_prompt(preview_prompt(family=family, width=width, height=height, frames=frames,
                                         block_size=block, decay_factor=decay, dist1=dist1))
    image, summary, ui = node_outputs(executor)

    # ComfyUI IMAGE: [B, H, W, 3] float in 0..1, not blank
    assert image.dim() == 4 and image.shape[0] == 1 and image.shape[-1] == 3
    assert image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert image.shape[1] >= 256 and image.shape[2] >= 256
    assert float(image.std()) > 0.05

    # the figures are radial_core's, from the same mask the kernel runs (text where this ComfyUI
    # puts it: HunyuanVideo's text comes first in 0.33, last in 0.3.75)
    text_first = comfy.pack_module("nodes.model_family").text_first_of(family)
    geo = geometry_from_pixels(family, width, height, frames, text_first=text_first)
    mask = radial_block_mask(geo.num_frames, geo.tokens_per_frame, text_tokens=geo.text_tokens,
                             block_size=int(block), decay_factor=decay or default_decay(family),
                             model=geo.mask_model, dist1=dist1, text_first=text_first)
    nb = mask.shape[0]
    kept = int(mask.sum())
    tokens = geo.num_frames * geo.tokens_per_frame + geo.text_tokens
    assert f"= {tokens:,} tokens" in summary
    assert f"blocks: {nb} x {nb} of {block}, kept {kept:,} (density {kept / nb**2:.2%})" in summary
    assert f"{geo.num_frames} frames x {geo.tokens_per_frame} tokens/frame" in summary
    assert f"decay factor {decay or default_decay(family):g}" in summary
    assert "expected attention speedup: ~" in summary

    # the picture shows in the node: a temp PNG that ComfyUI saved, same pixels as the output
    images = ui["images"]
    assert len(images) == 1 and images[0]["type"] == "temp"
    path = comfy.folder_paths.get_temp_directory() + "/" + images[0]["subfolder"] + "/" + images[0]["filename"]
    png = np.asarray(Image.open(path).convert("RGB"))
    assert png.shape == tuple(image.shape[1:])
    assert np.abs(png.astype(np.float32) / 255 - image[0].numpy()).max() <= 1 / 255 + 1e-6


def load_builtin_extra_nodes(comfy) -> None:
    """ComfyUI's comfy_extras nodes (video latents, ...), loaded as at server start-up; the
    ``comfy`` fixture loads only nodes.py and this pack. (Same check as tests/test_workflows.py,
    so the two never leave the registry half-loaded for each other.)"""
    if "EmptyHunyuanLatentVideo" not in comfy.nodes.NODE_CLASS_MAPPINGS:
        asyncio.run(comfy.nodes.init_builtin_extra_nodes())
    assert "EmptyHunyuanLatentVideo" in comfy.nodes.NODE_CLASS_MAPPINGS


def latent_preview_prompt(comfy, family: str, width: int, height: int, length: int) -> dict:
    """A preview of ``family`` (node "1", its own size widgets at 16x16, 1 frame) that reads the
    shape from node "2", ComfyUI's own empty video latent (EmptyHunyuanLatentVideo:
    [1, 16, frames', h/8, w/8])."""
    load_builtin_extra_nodes(comfy)
    prompt = {
        "2": {"class_type": "EmptyHunyuanLatentVideo",
              "inputs": {"width": width, "height": height, "length": length, "batch_size": 1}},
        "1": preview_prompt(family=family, width=16, height=16, frames=1)["1"],
    }
    prompt["1"]["inputs"]["latent"] = ["2", 0]
    return prompt


def test_node_reads_shape_from_a_latent(comfy):
    executor = run_prompt(latent_preview_prompt(comfy, "hunyuan", 848, 480, 49))
    _, summary, _ = node_outputs(executor)
    # 49 frames -> 13 latent frames; 480x848 -> 60x106 latent -> 30x53 tokens; +256 text
    assert "13 frames x 1590 tokens/frame + 256 text" in summary
    text_first = comfy.pack_module("nodes.model_family").text_first_of("hunyuan")
    assert ("256 text (first)" in summary) == text_first
    mask = radial_block_mask(13, 1590, text_tokens=256, decay_factor=0.95, model="hunyuan", text_first=text_first)
    assert f"kept {int(mask.sum()):,}" in summary


def test_node_reads_settings_from_a_patched_model(comfy, tmp_path):
    """UNETLoader (a tiny random-weight Wan 2.2-5B file) -> Radial Attention Patch -> preview."""
    import helpers_models as hm

    tm = hm.tiny_models_module()
    tm.save(tm.wan_state_dict("wan22_5b"), tmp_path / "tiny_wan22_5b.safetensors")
    comfy.folder_paths.add_model_folder_path("diffusion_models", str(tmp_path))
    prompt = {
        "3": {"class_type": "UNETLoader",
              "inputs": {"unet_name": "tiny_wan22_5b.safetensors", "weight_dtype": "default"}},
        "4": {"class_type": "RadialAttentionPatch",
              "inputs": {"model": ["3", 0], "decay_factor": 0.5, "block_size": 64,
                         "dense_blocks": "", "dense_steps_first": 0, "dense_steps_last": 0,
                         "dist1": "half", "backend": "pytorch", "family": "auto"}},
        # the node's own settings say otherwise; the patched model's must win
        "1": preview_prompt(family="hunyuan", width=1280, height=704, frames=121, block_size="128",
                            decay_factor=0.9, dist1="full")["1"],
    }
    prompt["1"]["inputs"]["model"] = ["4", 0]
    executor = run_prompt(prompt)
    _, summary, _ = node_outputs(executor)
    geo = geometry_from_pixels("wan22_5b", 1280, 704, 121)
    assert (geo.num_frames, geo.tokens_per_frame, geo.text_tokens) == (31, 880, 0)
    mask = radial_block_mask(31, 880, block_size=64, decay_factor=0.5, model="wan", dist1="half")
    assert "31 frames x 880 tokens/frame + 0 text" in summary
    assert f"of 64, kept {int(mask.sum()):,}" in summary
    assert "decay factor 0.5, distance-1 rule half" in summary


def test_node_counts_a_wan_variants_token_groups_from_a_latent(comfy):
    """With a LATENT, a Wan variant's preview adds the tokens its conditioning puts into the
    sequence, as the pixel path does (SCAIL: the reference frame in front, the half-resolution
    pose video after the video)."""
    _, summary, _ = node_outputs(run_prompt(latent_preview_prompt(comfy, "wan21_scail", 832, 480, 81)))
    geo = geometry_from_pixels("wan21_scail", 832, 480, 81)
    assert (geo.num_frames, geo.text_tokens) == (22, 21 * 15 * 26)
    assert f"{geo.num_frames} frames x {geo.tokens_per_frame} tokens/frame + {geo.text_tokens} pose" in summary


def test_node_text_first_matches_the_model_comfyui_builds(comfy):
    """The preview puts HunyuanVideo's text where the running ComfyUI's HunyuanVideo does: asked
    of a real (tiny) model built through ComfyUI's detection, as the patch asks it."""
    tm = hm.tiny_models_module()
    model = tm.load_with_comfy(tm.save(tm.hunyuan_state_dict(), hm._TMP / "hy_text_first.safetensors"))
    mf = comfy.pack_module("nodes.model_family")
    fam = mf.detect_family(model)
    assert mf.text_first_of("hunyuan") == fam.adapter.text_first(model.model.diffusion_model)
    executor = run_prompt(preview_prompt(family="hunyuan", width=320, height=192, frames=21, block_size="64"))
    _, summary, _ = node_outputs(executor)
    assert ("text (first)" in summary) == mf.text_first_of("hunyuan")
    assert mf.text_first_of("minimax_h3") and not mf.text_first_of("wan21")


def test_node_bad_size_is_a_clear_error(comfy):
    from conftest import script_module

    prompt = preview_prompt(family="wan21", width=8192, height=8192, frames=2049)
    executor, _ = script_module("comfy_headless").execute(prompt, check=False)
    assert executor is not None, "the prompt should validate (the size is checked when the node runs)"
    assert not executor.success
    errors = [d for e, d in executor.status_messages if e == "execution_error"]
    assert errors and "too large for a preview" in errors[0]["exception_message"]


def test_node_at_4x_length(comfy):
    """Wan 720x1280 at 321 frames (4x length) through the executor: a fresh mask each time.
    Its speed is a benchmark (bench/bench_preview.py), not a test."""
    for decay in (0.21, 0.22):  # a new decay factor: a mask not in any cache yet
        prompt = preview_prompt(family="wan21", width=1280, height=720, frames=321, decay_factor=decay)
        executor = run_prompt(prompt)
        image, summary, _ = node_outputs(executor)
        assert "81 frames x 3600 tokens/frame" in summary
