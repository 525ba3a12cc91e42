"""Write the pack's example workflows (``workflows/*.json``, UI format) from short descriptions.

The files are what ComfyUI's front end saves and what its template browser serves. Writing them by
hand is error-prone (widget order, link tables), so each workflow is described here by node type,
widget values *by name* and links, and the JSON is laid out from the real node definitions of the
ComfyUI copy this repository uses (``INPUT_TYPES()`` order, control-after-generate values that the
front end stores after seeds). ``tests/test_workflows.py`` then reads the files back independently
(UI -> API conversion) and has ComfyUI validate them, so a schema change shows up as a failing test:
re-run this script and commit the result.

Usage:  .venv/bin/python scripts/build_workflows.py          (writes workflows/*.json)
        .venv/bin/python scripts/build_workflows.py --check  (exit 1 if a file is out of date)

workflows/Sparsity Preview, no model needed.json and workflows/demo_wan_tiny.json belong to other scripts/owners and
are not written here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "workflows"

HF_WAN21 = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files"
HF_WAN22 = "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files"
HF_HUNYUAN = "https://huggingface.co/Comfy-Org/HunyuanVideo_repackaged/resolve/main/split_files"
HF_CLIP_L = "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors"

# The model files, with the names and download places ComfyUI's own templates use.
MODELS = {
    "wan2.1_t2v_14B_fp8_scaled.safetensors": (
        f"{HF_WAN21}/diffusion_models/wan2.1_t2v_14B_fp8_scaled.safetensors", "diffusion_models"),
    "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors": (
        f"{HF_WAN22}/diffusion_models/wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors", "diffusion_models"),
    "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors": (
        f"{HF_WAN22}/diffusion_models/wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors", "diffusion_models"),
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": (
        f"{HF_WAN21}/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors", "text_encoders"),
    "wan_2.1_vae.safetensors": (f"{HF_WAN21}/vae/wan_2.1_vae.safetensors", "vae"),
    "hunyuan_video_t2v_720p_bf16.safetensors": (
        f"{HF_HUNYUAN}/diffusion_models/hunyuan_video_t2v_720p_bf16.safetensors", "diffusion_models"),
    "clip_l.safetensors": (HF_CLIP_L, "text_encoders"),
    "llava_llama3_fp8_scaled.safetensors": (f"{HF_HUNYUAN}/text_encoders/llava_llama3_fp8_scaled.safetensors", "text_encoders"),
    "hunyuan_video_vae_bf16.safetensors": (f"{HF_HUNYUAN}/vae/hunyuan_video_vae_bf16.safetensors", "vae"),
}
# Length-extension LoRAs have no canonical download yet: the workflows name a file the user puts in
# models/loras/ (any name works: pick yours in the node).
WAN_LONG_LORA = "radial_wan2.1_t2v_14B_4x_length_lora.safetensors"
HUNYUAN_LONG_LORA = "radial_hunyuan_video_t2v_4x_length_lora.safetensors"
START_IMAGE = "example.png"  # ships in ComfyUI's input/ folder

WAN_NEGATIVE = (
    "Vivid colors, overexposed, static, blurry details, subtitles, style, artwork, painting, still "
    "picture, overall gray, worst quality, low quality, JPEG artifacts, ugly, deformed, extra fingers, "
    "poorly drawn hands, poorly drawn face, malformed limbs, fused fingers, motionless frame, cluttered "
    "background, three legs, many people in the background, walking backwards"
)

MODE_BYPASS = 4
# Nodes that the pack's front-end extension makes taller (density readout under the widgets). With
# Vue nodes ("Nodes 2.0") a node is as tall as its content: measured there (front ends 1.49.6 and
# 1.58.1, tests/test_workflows_browser.py), the Patch needs 420 and the loader with the readout of a
# LoRA not yet downloaded about 505 below the title; a little more here, so no node overlaps the next.
SIZE_HINTS = {"RadialAttentionPatch": (370, 440), "RadialLoraLoader": (380, 530)}


@dataclass
class Node:
    id: int
    type: str
    values: dict[str, Any]
    links_in: dict[str, tuple["Node", int]]
    title: str | None = None
    mode: int = 0
    col: int = 0
    size: tuple[int, int] | None = None

    def __getitem__(self, slot: int) -> tuple["Node", int]:
        return (self, slot)


@dataclass
class Workflow:
    name: str
    nodes: list[Node] = field(default_factory=list)

    def add(self, type_: str, *, title: str | None = None, mode: int = 0, col: int | None = None,
            size: tuple[int, int] | None = None, **inputs) -> Node:
        links = {k: v for k, v in inputs.items() if isinstance(v, tuple) and v and isinstance(v[0], Node)}
        values = {k: v for k, v in inputs.items() if k not in links}
        auto_col = 1 + max((src.col for src, _ in links.values()), default=-1)
        node = Node(len(self.nodes) + 1, type_, values, links, title, mode,
                    auto_col if col is None else col, size)
        self.nodes.append(node)
        return node


# --- the four workflows ---------------------------------------------------------------------------

def density(family: str, width: int, height: int, frames: int) -> str:
    """The exact mask density at the family's default decay, from radial_core (for the notes)."""
    sys.path.insert(0, str(ROOT))
    from radial_core import preview

    return f"{100 * preview.estimate(family, width, height, frames).stats.density:.1f} %"


def note(wf: Workflow, text: str, height: int = 640) -> Node:
    # tall enough for the note with Vue nodes on front end 1.32.9 (its Markdown grows the node)
    return wf.add("MarkdownNote", text=text, col=0, size=(460, height))


def wan_text(wf: Workflow, positive: str) -> tuple[Node, Node, Node]:
    clip = wf.add("CLIPLoader", clip_name="umt5_xxl_fp8_e4m3fn_scaled.safetensors", type="wan", device="default", col=0)
    pos = wf.add("CLIPTextEncode", title="Positive prompt", text=positive, clip=clip[0], size=(420, 200))
    neg = wf.add("CLIPTextEncode", title="Negative prompt", text=WAN_NEGATIVE, clip=clip[0], size=(420, 200))
    return clip, pos, neg


def wan21_sample(wf: Workflow, model: Node, pos: Node, neg: Node, length: int) -> tuple[Node, Node]:
    """The Wan 2.1 VAE and a KSampler over an empty 1280x720 latent of ``length`` frames, with the
    settings both Wan 2.1 T2V workflows use (50 uni_pc steps, CFG 5, seed 42)."""
    vae = wf.add("VAELoader", vae_name="wan_2.1_vae.safetensors", col=1)
    latent = wf.add("EmptyHunyuanLatentVideo", width=1280, height=720, length=length, batch_size=1, col=2)
    sampler = wf.add("KSampler", model=model[0], positive=pos[0], negative=neg[0], latent_image=latent[0],
                     seed=42, steps=50, cfg=5.0, sampler_name="uni_pc", scheduler="simple", denoise=1.0, col=4)
    return vae, sampler


def save_video(wf: Workflow, images: tuple[Node, int], fps: int, prefix: str) -> None:
    col = images[0].col
    video = wf.add("CreateVideo", images=images, fps=fps, col=col)
    wf.add("SaveVideo", video=video[0], filename_prefix=prefix, format="auto", codec="auto", col=col,
           size=(340, 420))


def links(**files: str) -> dict[str, str]:
    """The download links of model files (MODELS), by the names a note's placeholders give them."""
    return {key: MODELS[name][0] for key, name in files.items()}


def unet_loader(wf: Workflow, name: str, title: str | None = None) -> Node:
    return wf.add("UNETLoader", title=title, unet_name=name, weight_dtype="default", col=1)


def radial_patch(wf: Workflow, model: tuple[Node, int], *, dense_blocks: str, dense_steps_first: int,
                 family: str = "auto", title: str | None = None) -> Node:
    """A Radial Attention Patch as the bundled workflows set it: the family's default decay (0),
    block 128, the authors' distance-1 rule, backend auto."""
    return wf.add("RadialAttentionPatch", title=title, model=model, decay_factor=0.0, block_size=128,
                  dense_blocks=dense_blocks, dense_steps_first=dense_steps_first, dense_steps_last=0,
                  dist1="full", backend="auto", family=family)


def radial_lora(wf: Workflow, model: tuple[Node, int], lora_name: str, radial_mode: str, **node) -> Node:
    """A Radial LoRA Loader that takes every radial setting from the LoRA ("from LoRA" / -1 / empty)."""
    return wf.add("RadialLoraLoader", model=model, lora_name=lora_name, strength=1.0, radial_mode=radial_mode,
                  decay_factor=0.0, block_size="from LoRA", dense_blocks="", dense_steps_first=-1,
                  dense_steps_last=-1, dist1="from LoRA", family="from LoRA", backend="auto", **node)


def hunyuan15_prompts(wf: Workflow) -> tuple[Node, Node]:
    """HunyuanVideo 1.5's text encoders (Qwen 2.5 VL + ByT5) and the prompts both of its
    workflows share: ``(positive, negative)``."""
    clip = wf.add("DualCLIPLoader", clip_name1="qwen_2.5_vl_7b_fp8_scaled.safetensors",
                  clip_name2="byt5_small_glyphxl_fp16.safetensors", type="hunyuan_video_15", device="default", col=0)
    pos = wf.add("CLIPTextEncode", title="Positive prompt", clip=clip[0], size=(420, 200),
                 text="A paper airplane released from the top of a skyscraper glides through the city, over "
                      "traffic and between towers, the camera following it closely in one continuous shot.")
    neg = wf.add("CLIPTextEncode", title="Negative prompt", clip=clip[0], size=(420, 200), text="")
    return pos, neg


def noise_and_sampler(wf: Workflow) -> tuple[Node, Node]:
    """RandomNoise (seed 42) and KSamplerSelect (euler) for :func:`sample_custom`, in column 3."""
    return wf.add("RandomNoise", noise_seed=42, col=3), wf.add("KSamplerSelect", sampler_name="euler", col=3)


def sample_custom(wf: Workflow, noise_sampler: tuple[Node, Node], guider: Node, sigmas: Node,
                  latent: tuple[Node, int], col: int) -> Node:
    noise, sampler = noise_sampler
    return wf.add("SamplerCustomAdvanced", noise=noise[0], guider=guider[0], sampler=sampler[0],
                  sigmas=sigmas[0], latent_image=latent, col=col)


def tiled_decode(wf: Workflow, samples: tuple[Node, int], vae: tuple[Node, int], tile_size: int = 512) -> Node:
    return wf.add("VAEDecodeTiled", samples=samples, vae=vae, tile_size=tile_size, overlap=64,
                  temporal_size=64, temporal_overlap=8)


WAN21_NOTE = """## Wan 2.1 T2V 14B, 1280x720, 81 frames, with Radial Attention

**Download** (put each file in the ComfyUI `models/` folder named after the arrow):
- [wan2.1_t2v_14B_fp8_scaled.safetensors]({unet}) → `diffusion_models/` (the original weights: `wan2.1_t2v_14B_bf16.safetensors` from the same folder, if you have the VRAM; pick it in the loader)
- [umt5_xxl_fp8_e4m3fn_scaled.safetensors]({te}) → `text_encoders/`
- [wan_2.1_vae.safetensors]({vae}) → `vae/`

**Radial Attention Patch, recommended settings (the paper authors' for Wan 2.1, 1x length):**
- `decay_factor` 0 = family default (0.2 for Wan 2.1); lower is sparser and faster
- `dense_blocks` 1 (the first transformer block stays dense)
- `dense_steps_first` 12 of 50 steps (about a quarter of the schedule stays dense; scale it if you change the steps)
- `block_size` 128, `dist1` full, `backend` auto (Triton on NVIDIA, PyTorch elsewhere)

At this size the mask keeps {density} of the attention blocks (decay 0.2); the saving grows with length (see the Sparsity Preview workflow). Remove the patch node (or bypass it with Ctrl+B) to compare with dense attention on the same seed.
"""

WAN22_NOTE = """## Wan 2.2 I2V A14B, both experts, with Radial Attention on each

**Download:**
- [wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors]({hi}) → `models/diffusion_models/`
- [wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors]({lo}) → `models/diffusion_models/`
- [umt5_xxl_fp8_e4m3fn_scaled.safetensors]({te}) → `models/text_encoders/`
- [wan_2.1_vae.safetensors]({vae}) → `models/vae/`
- a start image: drop it on the Load Image node

Wan 2.2 A14B runs two models: the high-noise expert does steps 0-10, the low-noise expert steps 10-20 (two KSamplerAdvanced). Each expert is its own MODEL, so each gets its own **Radial Attention Patch** with the same settings:
- `family` wan22_14b (Wan 2.2 defaults), `decay_factor` 0 = family default 0.8
- `dense_blocks` 1, `dense_steps_first` 5: dense steps are counted over the **whole** 20-step schedule (the pack reads it from the sampler), so steps 0-4 of the high-noise pass stay dense and the low-noise pass is all sparse. Use the same numbers on both patches.
- At 1280x720, 81 frames the mask keeps {density} of the attention blocks (decay 0.8).
- Low VRAM: lower the resolution in WanImageToVideo, or keep 1280x720 and use fewer frames.
"""

WAN_LONG_NOTE = """## Wan 2.1 T2V 14B, 4x length: 321 frames at 1280x720, Radial LoRA Loader

A model trained on 81 frames loses quality at 4x length; the Radial Attention paper recovers it with a light LoRA tuned **with the radial mask**. The **Radial LoRA Loader** applies the LoRA through ComfyUI's own LoRA patches *and* applies the Radial Attention Patch with the settings stored in the LoRA file (or the authors' length-extension settings when the file has none: 2 dense blocks, 2 dense steps). Its `report` output (shown here) says how many tensors matched and which radial settings were used.

**Download:**
- [wan2.1_t2v_14B_fp8_scaled.safetensors]({unet}) → `models/diffusion_models/`
- [umt5_xxl_fp8_e4m3fn_scaled.safetensors]({te}) → `models/text_encoders/`
- [wan_2.1_vae.safetensors]({vae}) → `models/vae/`
- your length-extension LoRA → `models/loras/` (ComfyUI, diffusers/PEFT or Kohya keys; a diffusers folder works too) and pick it in the loader. The name in this workflow is only an example.

**Recommended:** keep the loader's optional inputs at "from LoRA" / -1 / empty so the LoRA's own settings apply; 50 steps. 321 frames at 720p are 81 latent frames x 3600 tokens = 291 600 tokens; the mask keeps {density} of the attention blocks (decay 0.2). Low VRAM: the fp8 model is already selected; lower the VAE's tile size.
"""

HUNYUAN_NOTE = """## HunyuanVideo T2V, 1280x720, 253 frames, with Radial Attention

**Download:**
- [hunyuan_video_t2v_720p_bf16.safetensors]({unet}) → `models/diffusion_models/`
- [clip_l.safetensors]({clip_l}) → `models/text_encoders/`
- [llava_llama3_fp8_scaled.safetensors]({llava}) → `models/text_encoders/`
- [hunyuan_video_vae_bf16.safetensors]({vae}) → `models/vae/`

**Radial Attention Patch, recommended (the authors' HunyuanVideo settings):** `decay_factor` 0 = family default 0.95, `dense_blocks` 0, `dense_steps_first` 12 of 50 steps. The text tokens of HunyuanVideo's joint attention always stay dense; the text padding mask is honoured. At 1280x720, 253 frames the mask keeps {density} of the attention blocks.

**Longer than the 129 frames the model was trained on:** a length-extension LoRA helps. The **Radial LoRA Loader** here is bypassed (purple); put your LoRA in `models/loras/`, select the node and press Ctrl+B to enable it. With `radial_mode` replace, the radial settings stored in the LoRA (or 2 dense blocks, 2 dense steps) replace the patch's.

Low VRAM: weight_dtype fp8 in the loader, and lower the tile size of the tiled VAE decode.
"""


# the Wan 2.1 T2V notes' download links
WAN21_FILES = links(unet="wan2.1_t2v_14B_fp8_scaled.safetensors", te="umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                    vae="wan_2.1_vae.safetensors")


def wan21_t2v() -> Workflow:
    wf = Workflow("Wan 2.1 T2V 14B, 720p 81 frames")
    note(wf, WAN21_NOTE.format(density=density("wan21", 1280, 720, 81), **WAN21_FILES))
    unet = unet_loader(wf, "wan2.1_t2v_14B_fp8_scaled.safetensors")
    patch = radial_patch(wf, unet[0], dense_blocks="1", dense_steps_first=12)
    shift = wf.add("ModelSamplingSD3", model=patch[0], shift=8.0)
    _, pos, neg = wan_text(wf, "A red fox trots through fresh snow in a pine forest at sunrise, its breath "
                           "steaming; the camera tracks alongside at ground level, soft golden light.")
    vae, sampler = wan21_sample(wf, shift, pos, neg, length=81)
    decode = wf.add("VAEDecode", samples=sampler[0], vae=vae[0])
    save_video(wf, decode[0], 16, "video/radial_wan21_t2v")
    return wf


def wan22_i2v() -> Workflow:
    wf = Workflow("Wan 2.2 I2V A14B, 720p 81 frames")
    note(wf, WAN22_NOTE.format(density=density("wan22_14b", 1280, 720, 81), **links(
        hi="wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors", lo="wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors",
        te="umt5_xxl_fp8_e4m3fn_scaled.safetensors", vae="wan_2.1_vae.safetensors")))
    common = dict(dense_blocks="1", dense_steps_first=5, family="wan22_14b")
    hi = unet_loader(wf, "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors", title="High-noise expert")
    lo = unet_loader(wf, "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors", title="Low-noise expert")
    hi_patch = radial_patch(wf, hi[0], title="Radial Attention Patch (high noise)", **common)
    lo_patch = radial_patch(wf, lo[0], title="Radial Attention Patch (low noise)", **common)
    hi_shift = wf.add("ModelSamplingSD3", model=hi_patch[0], shift=8.0)
    lo_shift = wf.add("ModelSamplingSD3", model=lo_patch[0], shift=8.0)
    _, pos, neg = wan_text(wf, "The white dragon warrior stands still on a cliff in the wind, then slowly raises "
                           "its head; the camera circles around it, clouds drifting behind.")
    vae = wf.add("VAELoader", vae_name="wan_2.1_vae.safetensors", col=1)
    image = wf.add("LoadImage", image=START_IMAGE, col=1, size=(320, 330))
    i2v = wf.add("WanImageToVideo", positive=pos[0], negative=neg[0], vae=vae[0], start_image=image[0],
                 width=1280, height=720, length=81, batch_size=1)
    first = wf.add("KSamplerAdvanced", title="KSampler (high noise: steps 0-10)", model=hi_shift[0],
                   positive=i2v[0], negative=i2v[1], latent_image=i2v[2], add_noise="enable", noise_seed=42,
                   steps=20, cfg=3.5, sampler_name="euler", scheduler="simple", start_at_step=0, end_at_step=10,
                   return_with_leftover_noise="enable", col=4)
    second = wf.add("KSamplerAdvanced", title="KSampler (low noise: steps 10-20)", model=lo_shift[0],
                    positive=i2v[0], negative=i2v[1], latent_image=first[0], add_noise="disable", noise_seed=0,
                    steps=20, cfg=3.5, sampler_name="euler", scheduler="simple", start_at_step=10,
                    end_at_step=10000, return_with_leftover_noise="disable", col=5)
    decode = wf.add("VAEDecode", samples=second[0], vae=vae[0])
    save_video(wf, decode[0], 16, "video/radial_wan22_i2v")
    return wf


def wan21_long() -> Workflow:
    wf = Workflow("Wan 2.1 T2V 14B, 321 frames with LoRA")
    note(wf, WAN_LONG_NOTE.format(density=density("wan21", 1280, 720, 321), **WAN21_FILES))
    unet = unet_loader(wf, "wan2.1_t2v_14B_fp8_scaled.safetensors")
    lora = radial_lora(wf, unet[0], WAN_LONG_LORA, "auto")
    wf.add("PreviewAny", title="LoRA report", source=lora[1], size=(420, 200))
    shift = wf.add("ModelSamplingSD3", model=lora[0], shift=8.0)
    _, pos, neg = wan_text(wf, "A slow drone flight along a winding mountain river through autumn forests, "
                           "passing a wooden bridge and a small village, continuous shot, natural light.")
    vae, sampler = wan21_sample(wf, shift, pos, neg, length=321)
    decode = tiled_decode(wf, sampler[0], vae[0])
    save_video(wf, decode[0], 16, "video/radial_wan21_t2v_long")
    return wf


def hunyuan_t2v() -> Workflow:
    wf = Workflow("HunyuanVideo T2V, 720p 253 frames")
    note(wf, HUNYUAN_NOTE.format(density=density("hunyuan", 1280, 720, 253), **links(
        unet="hunyuan_video_t2v_720p_bf16.safetensors", clip_l="clip_l.safetensors",
        llava="llava_llama3_fp8_scaled.safetensors", vae="hunyuan_video_vae_bf16.safetensors")))
    unet = unet_loader(wf, "hunyuan_video_t2v_720p_bf16.safetensors")
    patch = radial_patch(wf, unet[0], dense_blocks="0", dense_steps_first=12)
    lora = radial_lora(wf, patch[0], HUNYUAN_LONG_LORA, "replace", title="Radial LoRA Loader (optional: Ctrl+B to enable)",
                       mode=MODE_BYPASS)
    shift = wf.add("ModelSamplingSD3", model=lora[0], shift=7.0)
    clip = wf.add("DualCLIPLoader", clip_name1="clip_l.safetensors", clip_name2="llava_llama3_fp8_scaled.safetensors",
                  type="hunyuan_video", device="default", col=0)
    text = wf.add("CLIPTextEncode", title="Prompt", clip=clip[0], size=(420, 200),
                  text="A paper boat drifts down a rain-soaked city gutter at dusk, neon reflections "
                       "rippling around it, the camera following closely at water level, cinematic.")
    guidance = wf.add("FluxGuidance", conditioning=text[0], guidance=6.0)
    guider = wf.add("BasicGuider", model=shift[0], conditioning=guidance[0])
    noise_sampler = noise_and_sampler(wf)
    sigmas = wf.add("BasicScheduler", model=shift[0], scheduler="simple", steps=50, denoise=1.0)
    latent = wf.add("EmptyHunyuanLatentVideo", width=1280, height=720, length=253, batch_size=1, col=3)
    sample = sample_custom(wf, noise_sampler, guider, sigmas, latent[0], col=5)
    vae = wf.add("VAELoader", vae_name="hunyuan_video_vae_bf16.safetensors", col=4)
    decode = tiled_decode(wf, sample[0], vae[0], tile_size=256)
    save_video(wf, decode[0], 24, "video/radial_hunyuan_t2v")
    return wf


HUNYUAN15_NAME = "HunyuanVideo 1.5 T2V, 720p 241 frames"
LTX2_NAME = "LTX-2 T2V with audio, 704p 481 frames"
# --- HunyuanVideo 1.5 and LTX-2 at a long length (issue 12) ------------------------------------
HF_HUNYUAN15 = "https://huggingface.co/Comfy-Org/HunyuanVideo_1.5_repackaged/resolve/main/split_files"
HF_LTX2 = "https://huggingface.co/Lightricks/LTX-2/resolve/main"
MODELS.update({
    "hunyuanvideo1.5_720p_t2v_fp16.safetensors": (
        f"{HF_HUNYUAN15}/diffusion_models/hunyuanvideo1.5_720p_t2v_fp16.safetensors", "diffusion_models"),
    "qwen_2.5_vl_7b_fp8_scaled.safetensors": (
        f"{HF_HUNYUAN15}/text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors", "text_encoders"),
    "byt5_small_glyphxl_fp16.safetensors": (
        f"{HF_HUNYUAN15}/text_encoders/byt5_small_glyphxl_fp16.safetensors", "text_encoders"),
    "hunyuanvideo15_vae_fp16.safetensors": (f"{HF_HUNYUAN15}/vae/hunyuanvideo15_vae_fp16.safetensors", "vae"),
    "ltx-2-19b-dev-fp8.safetensors": (f"{HF_LTX2}/ltx-2-19b-dev-fp8.safetensors", "checkpoints"),
    "gemma_3_12B_it_fp4_mixed.safetensors": (
        "https://huggingface.co/Comfy-Org/ltx-2/resolve/main/split_files/text_encoders/gemma_3_12B_it_fp4_mixed.safetensors",
        "text_encoders"),
})

HUNYUAN15_NOTE = """## HunyuanVideo 1.5 T2V, 1280x720, 241 frames (2x length), with Radial Attention

**Download:**
- [hunyuanvideo1.5_720p_t2v_fp16.safetensors]({unet}) → `models/diffusion_models/`
- [qwen_2.5_vl_7b_fp8_scaled.safetensors]({qwen}) → `models/text_encoders/`
- [byt5_small_glyphxl_fp16.safetensors]({byt5}) → `models/text_encoders/`
- [hunyuanvideo15_vae_fp16.safetensors]({vae}) → `models/vae/`

**Radial Attention Patch (untuned: no published quality figure for HunyuanVideo 1.5 yet):** `decay_factor` 0 = family default 0.95 (HunyuanVideo's, same pixels per token), `dense_blocks` 0, `dense_steps_first` 5 of 20 steps (a quarter, as the authors keep for HunyuanVideo). The text, glyph and image-encoder tokens of the joint attention always stay dense. At 1280x720, 241 frames the mask keeps {density} of the attention blocks.

Twice the 121 frames the model was trained on: expect weaker motion far apart in time; raise `decay_factor` or the dense steps if it suffers. Low VRAM: weight_dtype fp8_e4m3fn in the loader, a smaller tile size in the tiled VAE decode.
"""

LTX2_NOTE = """## LTX-2 T2V (video + audio), 1280x704, 481 frames (19 s), with Radial Attention

**Needs ComfyUI 0.33 or newer** (its LTX-2 audio nodes; older versions do not offer this template).

**Download:**
- [ltx-2-19b-dev-fp8.safetensors]({ckpt}) → `models/checkpoints/` (model, video VAE and audio VAE in one file)
- [gemma_3_12B_it_fp4_mixed.safetensors]({gemma}) → `models/text_encoders/`

**Radial Attention Patch (untuned: no published quality figure for LTX-2 yet):** `decay_factor` 0 = family default 0.8 (Wan 2.2-5B's, same 32x32 pixels per token), `dense_blocks` 1, `dense_steps_first` 5 of 20 steps. Only the video stream's self-attention is radial: the audio self-attention and the audio-video cross-attention (both directions) stay dense. At 1280x704, 481 frames the mask keeps {density} of the video attention blocks.

Width and height divisible by 64, frames 8k+1. Low VRAM: lower the size or the frames, or decode with a smaller tile size.
"""


def hunyuan15_long() -> Workflow:
    wf = Workflow(HUNYUAN15_NAME)
    note(wf, HUNYUAN15_NOTE.format(density=density("hunyuan15", 1280, 720, 241), **links(
        unet="hunyuanvideo1.5_720p_t2v_fp16.safetensors", qwen="qwen_2.5_vl_7b_fp8_scaled.safetensors",
        byt5="byt5_small_glyphxl_fp16.safetensors", vae="hunyuanvideo15_vae_fp16.safetensors")))
    unet = unet_loader(wf, "hunyuanvideo1.5_720p_t2v_fp16.safetensors")
    patch = radial_patch(wf, unet[0], dense_blocks="0", dense_steps_first=5)
    shift = wf.add("ModelSamplingSD3", model=patch[0], shift=7.0)
    pos, neg = hunyuan15_prompts(wf)
    guider = wf.add("CFGGuider", model=shift[0], positive=pos[0], negative=neg[0], cfg=6.0)
    noise_sampler = noise_and_sampler(wf)
    sigmas = wf.add("BasicScheduler", model=shift[0], scheduler="simple", steps=20, denoise=1.0)
    latent = wf.add("EmptyHunyuanVideo15Latent", width=1280, height=720, length=241, batch_size=1, col=3)
    sample = sample_custom(wf, noise_sampler, guider, sigmas, latent[0], col=5)
    vae = wf.add("VAELoader", vae_name="hunyuanvideo15_vae_fp16.safetensors", col=4)
    decode = tiled_decode(wf, sample[0], vae[0])
    save_video(wf, decode[0], 24, "video/radial_hunyuan15_t2v")
    return wf


def ltx2_long() -> Workflow:
    wf = Workflow(LTX2_NAME)
    note(wf, LTX2_NOTE.format(density=density("ltxav", 1280, 704, 481), **links(
        ckpt="ltx-2-19b-dev-fp8.safetensors", gemma="gemma_3_12B_it_fp4_mixed.safetensors")))
    ckpt = wf.add("CheckpointLoaderSimple", ckpt_name="ltx-2-19b-dev-fp8.safetensors", col=1)
    patch = radial_patch(wf, ckpt[0], dense_blocks="1", dense_steps_first=5)
    te = wf.add("LTXAVTextEncoderLoader", text_encoder="gemma_3_12B_it_fp4_mixed.safetensors",
                ckpt_name="ltx-2-19b-dev-fp8.safetensors", device="default", col=0)
    pos = wf.add("CLIPTextEncode", title="Positive prompt", clip=te[0], size=(420, 200),
                 text="A street musician plays a cheerful melody on an accordion in a rainy European square, "
                      "people with umbrellas pass by, the camera slowly circles him; the music and the rain "
                      "are clearly audible.")
    neg = wf.add("CLIPTextEncode", title="Negative prompt", clip=te[0], size=(420, 200),
                 text="blurry, low quality, still frame, frames, watermark, overlay, titles, has blurbox, has subtitles")
    cond = wf.add("LTXVConditioning", positive=pos[0], negative=neg[0], frame_rate=25.0)
    guider = wf.add("CFGGuider", model=patch[0], positive=cond[0], negative=cond[1], cfg=4.0)
    audio_vae = wf.add("LTXVAudioVAELoader", ckpt_name="ltx-2-19b-dev-fp8.safetensors", col=2)
    video_latent = wf.add("EmptyLTXVLatentVideo", width=1280, height=704, length=481, batch_size=1, col=3)
    fps = wf.add("PrimitiveInt", title="Frame rate", value=25, col=2)  # as ComfyUI's LTX-2 template wires it
    audio_latent = wf.add("LTXVEmptyLatentAudio", audio_vae=audio_vae[0], frame_rate=fps[0], frames_number=481,
                          batch_size=1, col=3)
    av = wf.add("LTXVConcatAVLatent", video_latent=video_latent[0], audio_latent=audio_latent[0])
    noise_sampler = noise_and_sampler(wf)
    sigmas = wf.add("LTXVScheduler", latent=av[0], steps=20, max_shift=2.05, base_shift=0.95, stretch=True,
                    terminal=0.1)
    sample = sample_custom(wf, noise_sampler, guider, sigmas, av[0], col=6)
    split = wf.add("LTXVSeparateAVLatent", av_latent=sample[0])
    decode = tiled_decode(wf, split[0], ckpt[2])
    audio = wf.add("LTXVAudioVAEDecode", samples=split[1], audio_vae=audio_vae[0])
    col = decode.col + 1
    video = wf.add("CreateVideo", images=decode[0], audio=audio[0], fps=25.0, col=col)
    wf.add("SaveVideo", video=video[0], filename_prefix="video/radial_ltx2_t2v", format="auto", codec="auto",
           col=col, size=(340, 420))
    return wf


# --- training a length-extension LoRA through the patch (issue 14) -------------------------------
TRAIN_NAME = "Wan 2.1 length-extension LoRA, train at 720p 321 frames"
TRAIN_DATASET = "radial_wan21_720p_321f"  # a LoadTrainingDataset folder (see the note)
TRAIN_NOTE = """## Train a Wan 2.1 length-extension LoRA (4x: 321 frames at 1280x720) with Radial Attention

ComfyUI's own **Train LoRA** trains on the MODEL from **Radial Attention Patch**: attention is radial in the forward *and* the backward pass (and in the recomputation of gradient checkpointing), as the paper tunes its length-extension LoRAs. **Save Radial LoRA** writes the LoRA with the patch's settings in its metadata; **Radial LoRA Loader** applies them when you sample (workflow `Wan 2.1 T2V 14B, 321 frames with LoRA`). ComfyUI's *Save LoRA Weights* cannot store them (it writes no metadata).

**Download:** [wan2.1_t2v_14B_fp8_scaled.safetensors]({unet}) → `models/diffusion_models/` (or the bf16 file from the same folder).

**Dataset (once):** encode your videos at this size with ComfyUI's *Load Video Dataset* / *Make Training Dataset* nodes (the Wan 2.1 VAE, umt5_xxl text encoder) and write them with *Save Training Dataset* into the folder `{dataset}` (321 frames at 1280x720 = latents of 81 x 90 x 160). *Load Training Dataset* reads that folder.

**Radial Attention Patch (the authors' length-extension settings):** `decay_factor` 0 = 0.2 (Wan 2.1), `dense_blocks` 2 (the first two blocks stay dense, in training too), `dense_steps_first` 2 (for sampling with the LoRA: written into the file; training draws random noise levels, so dense steps do not apply to it), block 128. At this size the mask keeps {density} of the attention blocks.

**Train LoRA (our choice; the paper gives no step count or learning rate for Wan):** rank 128 (the rank of the authors' LoRA configuration), learning rate 5e-4 with AdamW (ComfyUI's default; its LoRAs use alpha 1, so the update is scaled by 1/rank: do not go much lower), 2000 steps, batch 1, bf16, gradient checkpointing per block (`checkpoint_depth` 2; depth 1 would recompute the whole model at once and save no memory). One step at this size is a full 14B forward and backward over 291 600 tokens: a large GPU (80 GB+) and hours.
"""


def wan21_train_lora() -> Workflow:
    wf = Workflow(TRAIN_NAME)
    note(wf, TRAIN_NOTE.format(dataset=TRAIN_DATASET, density=density("wan21", 1280, 720, 321),
                               **links(unet="wan2.1_t2v_14B_fp8_scaled.safetensors")))
    unet = unet_loader(wf, "wan2.1_t2v_14B_fp8_scaled.safetensors")
    patch = radial_patch(wf, unet[0], dense_blocks="2", dense_steps_first=2)
    data = wf.add("LoadTrainingDataset", folder_name=TRAIN_DATASET, col=1)
    train = wf.add("TrainLoraNode", model=patch[0], latents=data[0], positive=data[1], batch_size=1,
                   grad_accumulation_steps=1, steps=2000, learning_rate=0.0005, rank=128, optimizer="AdamW",
                   loss_function="MSE", seed=42, training_dtype="bf16", lora_dtype="bf16", algorithm="LoRA",
                   gradient_checkpointing=True, checkpoint_depth=2, existing_lora="[None]", col=3,
                   size=(380, 620))
    wf.add("SaveRadialLora", lora=train[0], model=patch[0], steps=train[2],
           filename_prefix="loras/radial_wan2.1_t2v_14B_4x_length_lora", tuned_frames=321, tuned_width=1280,
           tuned_height=720, col=4, size=(380, 300))
    wf.add("LossGraphNode", loss=train[1], filename_prefix="radial_lora_loss", col=4, size=(380, 360))
    return wf


# --- calibrate, then render -----------------------------------------------------------------------
WAN21_CAL_NAME = "Wan 2.1 T2V 14B, calibrate then render"
HUNYUAN15_CAL_NAME = "HunyuanVideo 1.5 T2V, calibrate then render"

CALIBRATE_HOWTO = """**How it works:** **Radial Attention Calibrate** samples your prompt once, dense, at the size you will render, and at a few probed steps measures how much of the attention energy the radial mask keeps (exact softmax of sampled query rows). It recommends the lowest-density `decay_factor` whose kept energy meets `target` at every probed step in every block not made dense; blocks and steps that cannot meet it become `dense_blocks` / `dense_steps_first`. Those three outputs feed the **Radial Attention Patch** below; the picture shows energy vs frame distance, kept energy vs density and kept energy per block; the report gives the fitted decay rates and the output error radial vs dense. A model whose attention does not decay gets "keep it dense" (all blocks dense) with the reason.

The result is saved as `output/radial_attention/calibration_*.json`: calibrate **once per model and size** (it costs about one dense sampling run), then type the values into the Patch (right-click an input: convert back to a widget) and bypass the Calibrate node (Ctrl+B)."""

WAN21_CAL_NOTE = """## Wan 2.1 T2V 14B, 1280x720, 81 frames: calibrate, then render

**Download** (as in the Wan 2.1 T2V workflow):
- [wan2.1_t2v_14B_fp8_scaled.safetensors]({unet}) → `models/diffusion_models/`
- [umt5_xxl_fp8_e4m3fn_scaled.safetensors]({te}) → `models/text_encoders/`
- [wan_2.1_vae.safetensors]({vae}) → `models/vae/`

""" + CALIBRATE_HOWTO + """

The authors' setting for Wan 2.1 is decay 0.2 with 1 dense block and a quarter of the steps dense; the report says how much energy it keeps on your prompt."""

HUNYUAN15_CAL_NOTE = """## HunyuanVideo 1.5 T2V, 1280x720, 121 frames: calibrate, then render (an untuned family)

HunyuanVideo 1.5 has no published Radial Attention quality figure: its default (decay 0.95, HunyuanVideo's) is a rule, not a measurement. Measure it on your model here.

**Download** (as in the HunyuanVideo 1.5 workflow):
- [hunyuanvideo1.5_720p_t2v_fp16.safetensors]({unet}) → `models/diffusion_models/`
- [qwen_2.5_vl_7b_fp8_scaled.safetensors]({qwen}) → `models/text_encoders/`
- [byt5_small_glyphxl_fp16.safetensors]({byt5}) → `models/text_encoders/`
- [hunyuanvideo15_vae_fp16.safetensors]({vae}) → `models/vae/`

""" + CALIBRATE_HOWTO + """

The Calibrate node probes the same schedule as the render (the `sigmas` of BasicScheduler, CFG 6, euler)."""


def calibrate(wf: Workflow, model: tuple[Node, int], pos: Node, neg: Node, latent: Node, **sampling) -> Node:
    """A Radial Attention Calibrate with its picture and report shown; its defaults otherwise."""
    cal = wf.add("RadialAttentionCalibrate", model=model, positive=pos[0], negative=neg[0], latent_image=latent[0],
                 seed=42, probe_steps="auto", query_rows=256, target=0.95, col=3, **sampling)
    wf.add("PreviewImage", title="Calibration picture", images=cal[0], col=3, size=(400, 420))
    wf.add("PreviewAny", title="Calibration report", source=cal[4], col=3, size=(420, 220))
    return cal


def calibrated_patch(wf: Workflow, model: tuple[Node, int], cal: Node) -> Node:
    return wf.add("RadialAttentionPatch", model=model, decay_factor=cal[1], block_size=128, dense_blocks=cal[2],
                  dense_steps_first=cal[3], dense_steps_last=0, dist1="full", backend="auto", family="auto", col=4)


def wan21_calibrate() -> Workflow:
    wf = Workflow(WAN21_CAL_NAME)
    note(wf, WAN21_CAL_NOTE.format(**WAN21_FILES))
    unet = unet_loader(wf, "wan2.1_t2v_14B_fp8_scaled.safetensors")
    shift = wf.add("ModelSamplingSD3", model=unet[0], shift=8.0)
    _, pos, neg = wan_text(wf, "A red fox trots through fresh snow in a pine forest at sunrise, its breath "
                           "steaming; the camera tracks alongside at ground level, soft golden light.")
    vae = wf.add("VAELoader", vae_name="wan_2.1_vae.safetensors", col=1)
    latent = wf.add("EmptyHunyuanLatentVideo", width=1280, height=720, length=81, batch_size=1, col=2)
    cal = calibrate(wf, shift[0], pos, neg, latent, steps=50, cfg=5.0, sampler_name="uni_pc", scheduler="simple")
    patch = calibrated_patch(wf, shift[0], cal)
    sampler = wf.add("KSampler", model=patch[0], positive=pos[0], negative=neg[0], latent_image=latent[0],
                     seed=42, steps=50, cfg=5.0, sampler_name="uni_pc", scheduler="simple", denoise=1.0, col=4)
    decode = wf.add("VAEDecode", samples=sampler[0], vae=vae[0], col=5)
    save_video(wf, decode[0], 16, "video/radial_wan21_calibrated")
    return wf


def hunyuan15_calibrate() -> Workflow:
    wf = Workflow(HUNYUAN15_CAL_NAME)
    note(wf, height=720, text=HUNYUAN15_CAL_NOTE.format(**links(
        unet="hunyuanvideo1.5_720p_t2v_fp16.safetensors", qwen="qwen_2.5_vl_7b_fp8_scaled.safetensors",
        byt5="byt5_small_glyphxl_fp16.safetensors", vae="hunyuanvideo15_vae_fp16.safetensors")))
    unet = unet_loader(wf, "hunyuanvideo1.5_720p_t2v_fp16.safetensors")
    shift = wf.add("ModelSamplingSD3", model=unet[0], shift=7.0)
    pos, neg = hunyuan15_prompts(wf)
    sigmas = wf.add("BasicScheduler", model=shift[0], scheduler="simple", steps=20, denoise=1.0, col=2)
    latent = wf.add("EmptyHunyuanVideo15Latent", width=1280, height=720, length=121, batch_size=1, col=2)
    cal = calibrate(wf, shift[0], pos, neg, latent, steps=20, cfg=6.0, sampler_name="euler", scheduler="simple",
                    sigmas=sigmas[0])
    patch = calibrated_patch(wf, shift[0], cal)
    guider = wf.add("CFGGuider", model=patch[0], positive=pos[0], negative=neg[0], cfg=6.0, col=4)
    noise_sampler = noise_and_sampler(wf)
    sample = sample_custom(wf, noise_sampler, guider, sigmas, latent[0], col=5)
    vae = wf.add("VAELoader", vae_name="hunyuanvideo15_vae_fp16.safetensors", col=4)
    decode = tiled_decode(wf, sample[0], vae[0])
    save_video(wf, decode[0], 24, "video/radial_hunyuan15_calibrated")
    return wf


RAYLIGHT_NAME = "Wan 2.1 T2V 14B, 720p 321 frames, several GPUs (raylight)"
RAYLIGHT_NOTE = """## Wan 2.1 T2V 14B, 1280x720, 321 frames, on several GPUs with raylight

Needs the **raylight** custom nodes ([komikndr/raylight](https://github.com/komikndr/raylight): Ray, xDiT, yunchang; Linux, NVIDIA GPUs, NCCL). Without them this workflow shows raylight's nodes as missing, and Radial Attention Patch (Ray) is not registered.

**Download** (put each file in the ComfyUI `models/` folder named after the arrow):
- [wan2.1_t2v_14B_fp8_scaled.safetensors]({unet}) → `diffusion_models/`
- [umt5_xxl_fp8_e4m3fn_scaled.safetensors]({te}) → `text_encoders/`
- [wan_2.1_vae.safetensors]({vae}) → `vae/`

**Ray Init Actor:** `GPU` = the number of GPUs, `ulysses_degree` = the same number, `ring_degree` **1** (radial runs under Ulysses only). Wan 2.1-14B has 40 attention heads: 2, 4, 5 or 8 GPUs. `cfg_degree` 2 also splits cond/uncond (then GPU = 2 x ulysses_degree).

**Radial Attention Patch (Ray), recommended settings (the authors' for Wan 2.1 at 4x length):**
- `decay_factor` 0 = family default (0.2 for Wan 2.1)
- `dense_blocks` 1, `dense_steps_first` 12 of 50 steps
- `block_size` 128, `backend` auto

Each GPU runs the radial kernel on the whole sequence for its share of the heads (the mask keeps {density} of the blocks at this length); cross-attention and the dense block and steps stay on raylight's own attention (`XFuser_attention`). 321 frames without a length-extension LoRA drift in content; add one with raylight's Load Lora Model (Ray) if you have it.
"""


def wan21_raylight() -> Workflow:
    """raylight: Ray Init Actor -> Load Diffusion Model (Ray) -> Radial Attention Patch (Ray) -> XFuser
    KSampler (Advanced); text encoding and decoding stay in the ComfyUI process."""
    wf = Workflow(RAYLIGHT_NAME)
    note(wf, RAYLIGHT_NOTE.format(density=density("wan21", 1280, 720, 321), **WAN21_FILES))
    init = wf.add("RayInitializer", ray_cluster_address="local", ray_cluster_namespace="default", GPU=4,
                  ulysses_degree=4, ring_degree=1, cfg_degree=1, dp_degree=1, sync_ulysses=False,
                  clear_vram_after_sampling=False, FSDP=False, FSDP_CPU_OFFLOAD=False,
                  XFuser_attention="TORCH_FLASH", skip_comm_test=False, use_mmap=False, col=1, size=(360, 460))
    unet = wf.add("RayUNETLoader", unet_name="wan2.1_t2v_14B_fp8_scaled.safetensors", weight_dtype="default",
                  ray_actors_init=init[0])
    patch = wf.add("RadialAttentionPatchRay", ray_actors=unet[0], decay_factor=0.0, block_size=128,
                   dense_blocks="1", dense_steps_first=12, dense_steps_last=0, dist1="full", backend="auto",
                   family="auto", precision="exact", size=SIZE_HINTS["RadialAttentionPatch"])
    _, pos, neg = wan_text(wf, "A lighthouse keeper climbs the spiral stairs at dusk, lights the lamp, and the "
                           "beam sweeps across a stormy sea; the camera rises with him, then drifts out over "
                           "the waves.")
    latent = wf.add("EmptyHunyuanLatentVideo", width=1280, height=720, length=321, batch_size=1, col=2)
    sampler = wf.add("XFuserKSamplerAdvanced", add_noise="enable", noise_seed=42, steps=50, cfg=5.0,
                     sampler_name="uni_pc", scheduler="simple", ray_actors=patch[0], positive=pos[0],
                     negative=neg[0], latent_image=latent[0], start_at_step=0, end_at_step=10000,
                     return_with_leftover_noise="disable", denoise=1.0, col=4, size=(360, 520))
    vae = wf.add("VAELoader", vae_name="wan_2.1_vae.safetensors", col=4)
    decode = tiled_decode(wf, sampler[0], vae[0])
    save_video(wf, decode[0], 16, "video/radial_wan21_raylight_321")
    return wf


def _standin(inputs: dict, returns: tuple, names: tuple, optional: dict | None = None) -> type:
    spec = {"required": inputs, **({"optional": optional} if optional else {})}
    return type("RaylightStandIn", (), {"INPUT_TYPES": classmethod(lambda cls: spec), "RETURN_TYPES": returns,
                                        "RETURN_NAMES": names})


def raylight_standins() -> dict:
    """The inputs of the raylight nodes the raylight workflow uses, as raylight defines them
    (komikndr/raylight main, 2026-06-12), for laying the workflow out where raylight is not installed
    (it needs CUDA and NCCL, so the test ComfyUI never has it). With raylight installed, its own
    definitions are used."""
    import comfy.samplers
    import folder_paths

    models = folder_paths.get_filename_list("diffusion_models") + folder_paths.get_filename_list("checkpoints")
    attention = ["AITER", "FA", "FA3", "FLASHINFER", "TORCH_MATH", "TORCH_FLASH", "TORCH_EFFICIENT", "TORCH_CUDNN",
                 "SAGE_AUTO", "SAGE_FP16", "SAGE_FP16_TRITON", "SAGE_FP8", "SAGE_FP8_SM90", "SPARSE_SAGE", "NPU"]
    flag = ("BOOLEAN", {"default": False})
    return {
        "RayInitializer": _standin({
            "ray_cluster_address": ("STRING", {"default": "local"}), "ray_cluster_namespace": ("STRING", {"default": "default"}),
            "GPU": ("INT", {"default": 2}), "ulysses_degree": ("INT", {"default": 2}), "ring_degree": ("INT", {"default": 1}),
            "cfg_degree": ("INT", {"default": 1}), "dp_degree": ("INT", {"default": 1, "min": 0}), "sync_ulysses": flag,
            "clear_vram_after_sampling": flag, "FSDP": flag, "FSDP_CPU_OFFLOAD": flag,
            "XFuser_attention": (attention, {"default": "TORCH_FLASH"}), "skip_comm_test": flag, "use_mmap": flag,
        }, ("RAY_ACTORS_INIT",), ("ray_actors_init",)),
        "RayUNETLoader": _standin({
            "unet_name": (models,), "weight_dtype": (["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2", "bf16", "fp16"],),
            "ray_actors_init": ("RAY_ACTORS_INIT",),
        }, ("RAY_ACTORS",), ("ray_actors",), optional={"lora": ("RAY_LORA", {"default": None})}),
        "XFuserKSamplerAdvanced": _standin({
            "add_noise": (["enable", "disable"],),
            "noise_seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
            "sampler_name": (comfy.samplers.KSampler.SAMPLERS,), "scheduler": (comfy.samplers.KSampler.SCHEDULERS,),
            "ray_actors": ("RAY_ACTORS",), "positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
            "latent_image": ("LATENT",), "start_at_step": ("INT", {"default": 0, "min": 0, "max": 10000}),
            "end_at_step": ("INT", {"default": 10000, "min": 0, "max": 10000}),
            "return_with_leftover_noise": (["disable", "enable"],),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
        }, ("LATENT", "RAY_ACTORS"), ("latent", "ray_actors")),
    }


def node_class(node_classes: dict, type_: str):
    """A node's class from ComfyUI; the pack's Ray node and raylight's nodes also where ComfyUI lacks
    them (registered only with raylight installed)."""
    cls = node_classes.get(type_)
    if cls is not None:
        return cls
    if type_ == "RadialAttentionPatchRay":
        sys.path.insert(0, str(ROOT / "tests"))
        import pack_import

        pack_import.install()
        return pack_import.module("nodes.ray_node").RadialAttentionPatchRay
    standins = raylight_standins()
    if type_ in standins:
        return standins[type_]
    raise KeyError(type_)


WORKFLOWS = [wan21_t2v, wan22_i2v, wan21_long, hunyuan_t2v, hunyuan15_long, ltx2_long, wan21_train_lora, wan21_raylight,
             wan21_calibrate, hunyuan15_calibrate]

# Template-browser thumbnails (<name>.jpg next to <name>.json). The front ends show a custom
# node's template by its file name only, so the card itself must tell the workflows apart at a
# glance: a colour per model family, the model and the length in big type, a badge for what is
# special, and the radial mask the workflow runs (Sparsity Preview renderer).
# name -> (model line, length line, badge, family, width, height, frames)
THUMBNAILS = {
    "Wan 2.1 T2V 14B, 720p 81 frames": ("Wan 2.1 T2V 14B", "720p · 81 frames", "text to video", "wan21", 1280, 720, 81),
    "Wan 2.2 I2V A14B, 720p 81 frames": ("Wan 2.2 I2V A14B", "720p · 81 frames", "image to video · 2 experts",
                                        "wan22_14b", 1280, 720, 81),
    "Wan 2.1 T2V 14B, 321 frames with LoRA": ("Wan 2.1 T2V 14B", "720p · 321 frames", "4x length · LoRA",
                                             "wan21", 1280, 720, 321),
    "HunyuanVideo T2V, 720p 253 frames": ("HunyuanVideo T2V", "720p · 253 frames", "text to video · 2x length",
                                           "hunyuan", 1280, 720, 253),
}
CARD_COLOURS = {"wan21": (52, 120, 246), "wan22_14b": (30, 170, 110), "wan22_5b": (30, 170, 110),
                "hunyuan": (150, 80, 220), "mochi": (220, 120, 40)}
THUMBNAILS.update({  # the new families' long-length workflows (issue 12)
    HUNYUAN15_NAME: ("HunyuanVideo 1.5 T2V", "720p · 241 frames", "text to video · 2x length",
                     "hunyuan15", 1280, 720, 241),
    LTX2_NAME: ("LTX-2 T2V + audio", "704p · 481 frames", "video + audio · 19 s", "ltxav", 1280, 704, 481),
})
CARD_COLOURS.update({"hunyuan15": (120, 60, 200), "ltxav": (220, 60, 90)})
THUMBNAILS[RAYLIGHT_NAME] = ("Wan 2.1 T2V 14B", "720p · 321 frames", "several GPUs · raylight Ulysses",
                            "wan21", 1280, 720, 321)
THUMBNAILS[TRAIN_NAME] = ("Wan 2.1 T2V 14B", "train LoRA · 321 frames", "length-extension LoRA training",
                         "wan21", 1280, 720, 321)
THUMBNAILS[WAN21_CAL_NAME] = ("Wan 2.1 T2V 14B", "calibrate, then render", "measured settings", "wan21",
                              1280, 720, 81)
THUMBNAILS[HUNYUAN15_CAL_NAME] = ("HunyuanVideo 1.5 T2V", "calibrate, then render", "untuned family · measured",
                                  "hunyuan15", 1280, 720, 121)
PREVIEW_COLOUR = (236, 170, 40)


def preview_thumbnail_spec() -> tuple:
    """The Sparsity Preview workflow: its own family and size."""
    wf = json.loads((OUT / "Sparsity Preview, no model needed.json").read_text())
    node = next(n for n in wf["nodes"] if n["type"] == "SparsityPreview")
    family, width, height, frames = node["widgets_values"][:4]
    return ("Sparsity Preview", f"{height}p · {frames} frames", "no model needed", family, width, height, frames)


def thumbnail(headline: str, length: str, badge: str, family: str, width: int, height: int, frames: int):
    """A 512x512 card: a family-coloured band with the model and length in big type, a badge, the
    density, and the mask picture."""
    from PIL import Image, ImageDraw, ImageFont

    sys.path.insert(0, str(ROOT))
    from radial_core import preview

    est = preview.estimate(family, width, height, frames)
    picture = Image.fromarray(est.render(panel_size=300).numpy())
    colour = PREVIEW_COLOUR if headline == "Sparsity Preview" else CARD_COLOURS.get(family, (120, 120, 120))
    card = Image.new("RGB", (512, 512), (24, 26, 32))
    draw = ImageDraw.Draw(card)

    def font(size):
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1: fixed-size bitmap font
            return ImageFont.load_default()

    # the top 48 px stay plain: front end 1.49 lays a "Node graph" badge over the card's corner
    draw.rectangle([0, 0, 512, 48], fill=tuple(c // 2 for c in colour))
    draw.rectangle([0, 48, 512, 196], fill=colour)
    draw.text((18, 56), headline, fill=(255, 255, 255), font=font(44))
    draw.text((18, 110), length, fill=(255, 255, 255), font=font(34))
    draw.text((18, 158), "Radial Attention", fill=(20, 20, 24), font=font(22))
    bw = draw.textlength(badge, font=font(22)) if hasattr(draw, "textlength") else 12 * len(badge)
    draw.rounded_rectangle([18, 210, 18 + bw + 24, 246], radius=10, fill=(250, 250, 250))
    draw.text((30, 214), badge, fill=(20, 20, 24), font=font(22))
    s = est.stats
    draw.text((18, 268), f"mask density {100 * s.density:.0f} %", fill=(235, 235, 235), font=font(24))
    draw.text((18, 300), f"~{s.expected_speedup:.1f}x attention", fill=(246, 201, 69), font=font(24))
    picture.thumbnail((230, 230))
    card.paste(picture, (512 - picture.width - 12, 512 - picture.height - 12))
    return card


# --- layout and serialisation ---------------------------------------------------------------------

def render(wf: Workflow, node_classes: dict) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from workflow_convert import (DYNAMIC_COMBO, UPLOAD_FLAGS, dynamic_default, dynamic_option_specs,
                                  extra_values_after, input_specs, is_widget)

    link_rows: list[list] = []
    out_links: dict[tuple[int, int], list[int]] = {}
    for node in wf.nodes:
        for name, (src, slot) in node.links_in.items():
            lid = len(link_rows) + 1
            out_links.setdefault((src.id, slot), []).append(lid)
            link_rows.append([lid, src.id, slot, node.id, None, None])  # target slot and type filled below

    col_y: dict[int, float] = {}
    result = []
    for order, node in enumerate(wf.nodes):
        entry: dict[str, Any] = {"id": node.id, "type": node.type}
        if node.type == "MarkdownNote":
            inputs_json, outputs_json, widgets = [], [], [node.values["text"]]
            n_widgets = 1
        else:
            cls = node_class(node_classes, node.type)
            specs = input_specs(cls.INPUT_TYPES())
            optional = set((cls.INPUT_TYPES().get("optional") or {}).keys())
            known = {n for n, _, _ in specs}
            unknown = set(node.values) | set(node.links_in)
            unknown -= known
            if unknown:
                raise SystemExit(f"{wf.name}: {node.type} has no input(s) {sorted(unknown)}; inputs: {sorted(known)}")
            inputs_json, widgets = [], []
            pending = list(specs)
            while pending:
                name, kind, opts = pending.pop(0)
                linked = name in node.links_in
                if is_widget(kind, opts):
                    default = dynamic_default(opts) if kind == DYNAMIC_COMBO else opts.get("default")
                    if name not in node.values and not linked and default is None:
                        raise SystemExit(f"{wf.name}: {node.type}.{name} needs a value")
                    value = node.values.get(name, default)
                    widgets.append(value)
                    # a DynamicCombo's chosen option adds its own widgets right after it
                    pending[:0] = [w for w in dynamic_option_specs(name, kind, opts, value) if is_widget(w[1], w[2])]
                    extras = extra_values_after(name, kind, opts)
                    if any(opts.get(flag) for flag in UPLOAD_FLAGS):
                        widgets.extend(["fixed"] * (extras - 1) + ["image"])  # the upload button's value
                    else:
                        widgets.extend(["fixed"] * extras)  # control-after-generate: keep the seed
                    if linked:
                        inputs_json.append({"name": name, "type": kind if isinstance(kind, str) else "COMBO",
                                            "widget": {"name": name}, "link": None})
                else:
                    ent = {"name": name, "type": kind, "link": None}
                    if name in optional:
                        ent["shape"] = 7  # the front end draws optional sockets hollow
                    inputs_json.append(ent)
            for slot, ent in enumerate(inputs_json):
                if ent["name"] in node.links_in:
                    src, src_slot = node.links_in[ent["name"]]
                    row = next(r for r in link_rows if r[3] == node.id and r[1] == src.id and r[2] == src_slot
                               and r[4] is None)
                    row[4] = slot
                    row[5] = ent["type"]
                    ent["link"] = row[0]
            types = list(cls.RETURN_TYPES)
            names = list(getattr(cls, "RETURN_NAMES", None) or types)
            outputs_json = []
            for slot, (otype, oname) in enumerate(zip(types, names)):
                outputs_json.append({"name": oname, "type": otype, "slot_index": slot,
                                     "links": out_links.get((node.id, slot), [])})
            n_widgets = len(widgets)
        default_h = 46 + 24 * (n_widgets + max(len(inputs_json), len(outputs_json)))
        width, height = node.size or SIZE_HINTS.get(node.type) or (340, default_h)
        x = 40 + 420 * node.col + (0 if node.col == 0 else 100)
        y = col_y.get(node.col, 40.0)
        col_y[node.col] = y + height + 70
        entry.update({"pos": [x, y], "size": [width, height], "flags": {}, "order": order, "mode": node.mode,
                      "inputs": inputs_json, "outputs": outputs_json})
        props: dict[str, Any] = {"Node name for S&R": node.type}
        models = [{"name": v, "url": MODELS[v][0], "directory": MODELS[v][1]}
                  for v in node.values.values() if isinstance(v, str) and v in MODELS]
        if models:
            props["models"] = models
        entry["properties"] = props
        entry["widgets_values"] = widgets
        if node.title:
            entry["title"] = node.title
        if node.type == "MarkdownNote":
            entry["color"], entry["bgcolor"] = "#432", "#653"
        result.append(entry)

    for row in link_rows:
        if row[4] is None:
            raise SystemExit(f"{wf.name}: link {row} could not be placed")
    return {
        "last_node_id": len(wf.nodes),
        "last_link_id": len(link_rows),
        "nodes": result,
        "links": link_rows,
        "groups": [],
        "config": {},
        # the ComfyUI whose node definitions wrote the widget values (tests/test_workflows.py)
        "extra": {"ds": {"scale": 0.55, "offset": [40, 40]}, "radial_attention": {"comfyui": _comfyui_version()}},
        "version": 0.4,
    }


def _comfyui_version() -> str:
    import comfyui_version

    return comfyui_version.__version__


def load_node_classes() -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    import conftest  # (tests/conftest.py: loads real ComfyUI and this pack)

    comfy = conftest.load_comfy()
    asyncio.run(comfy.nodes.init_builtin_extra_nodes())
    return comfy.nodes.NODE_CLASS_MAPPINGS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only report files that differ; exit 1 if any")
    args = ap.parse_args()
    classes = load_node_classes()
    stale = []
    for make in WORKFLOWS:
        wf = make()
        text = json.dumps(render(wf, classes), indent=2, ensure_ascii=False) + "\n"
        path = OUT / f"{wf.name}.json"
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if not args.check:
        specs = dict(THUMBNAILS)
        if (OUT / "Sparsity Preview, no model needed.json").exists():
            specs["Sparsity Preview, no model needed"] = preview_thumbnail_spec()
        for name, spec in specs.items():
            thumbnail(*spec).save(OUT / f"{name}.jpg", quality=88)
            print(f"wrote workflows/{name}.jpg")
    if stale:
        print("out of date (run scripts/build_workflows.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
