"""Tiny random-weight models of the newer video families (ComfyUI 0.33+), for tests/test_families.py.

Each case is built the way a user's file is: a state dict with the real key names (from
scripts/make_tiny_models.py), saved as safetensors and loaded by ComfyUI's own
``load_diffusion_model`` (key-based detection, model config, ModelPatcher). Whether a ComfyUI
version has a family is asked of that ComfyUI: its ``supported_models`` must hold the class the
family's adapter names (``nodes/model_family.py``, ``ADAPTERS``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import helpers_models as hm
from radial_core.families import families


@dataclass(frozen=True)
class Case:
    kind: str  # test id
    family: str  # key of the family registry (radial_core.families)
    comfy_class: str  # the comfy.supported_models class ComfyUI must pick
    variant: str  # ModelFamily.variant the pack reports
    build: str  # make_tiny_models function
    build_kwargs: tuple = ()
    blocks_attr: str = "double_blocks"  # the diffusion model's list of video blocks (see video_blocks)
    text_dim: int = 32
    audio: str = ""  # the audio latent's layout: "ltx" (B, 8, T, 16) or "minimax" (B, 32, 2, T)
    cfg_batched: bool = True  # ComfyUI runs cond and uncond as one batch of two
    base_class: str = ""  # its comfy.model_base class, when named otherwise
    even_latent: bool = False  # ComfyUI cannot take a latent that is not a patch multiple
    config: tuple = ()  # the file's "config" metadata (transformer settings), as real files carry it
    extras: str = ""  # the Wan variant's conditioning (see extra_conds): reference / motion / pose / audio
    overrides: str = ""  # the make_tiny_models table of configuration fields that ComfyUI's detection
    # names at the full size (Cosmos 1's block count), replaced after its detection (load_with_comfy)


CASES = {
    "hunyuan15_t2v": Case("hunyuan15_t2v", "hunyuan15", "HunyuanVideo15", "HunyuanVideo 1.5",
                          "hunyuan15_state_dict"),
    "hunyuan15_sr": Case("hunyuan15_sr", "hunyuan15", "HunyuanVideo15_SR_Distilled",
                         "HunyuanVideo 1.5 SR (distilled)", "hunyuan15_state_dict",
                         (("in_channels", 98), ("meanflow", True))),
    "ltxv": Case("ltxv", "ltxv", "LTXV", "LTX-Video", "ltx_state_dict", text_dim=64,
                 blocks_attr="transformer_blocks"),
    "ltxav": Case("ltxav", "ltxav", "LTXAV", "LTX-2 (video + audio)", "ltx_state_dict",
                  (("audio", True),), text_dim=2 * 64, audio="ltx",
                  blocks_attr="transformer_blocks"),  # video + audio text, refined
    "kandinsky5": Case("kandinsky5", "kandinsky5", "Kandinsky5", "Kandinsky 5 video", "kandinsky5_state_dict",
                       text_dim=3584, even_latent=True,
                       blocks_attr="visual_transformer_blocks"),
    "cosmos_predict2": Case("cosmos_predict2", "cosmos_predict2", "CosmosI2VPredict2",
                            "Cosmos Predict2 Video2World", "cosmos_predict2_state_dict", text_dim=1024,
                            base_class="CosmosPredict2", blocks_attr="blocks",
                            even_latent=True),  # ComfyUI 0.3.75's Cosmos Predict2 asserts even sizes
    "wan_flowrvs": Case("wan_flowrvs", "wan21", "WAN21_FlowRVS", "Wan 2.1 FlowRVS (video segmentation)",
                        "wan_state_dict", (("kind", "wan_t2v"),), text_dim=4096, blocks_attr="blocks",
                        config=(("model_type", "flow_rvs"),)),
    # Wan variants: their conditioning as ComfyUI's own nodes attach it (extra_conds), so every test
    # runs with the variant's extra token groups in the sequence
    "wan22_s2v": Case("wan22_s2v", "wan22_s2v", "WAN22_S2V", "Wan 2.2 S2V", "wan_variant_state_dict",
                      (("variant", "s2v"),), text_dim=4096, blocks_attr="blocks", extras="s2v",
                      even_latent=True),  # S2V's reference / motion embeddings floor, their rope rounds
    "wan21_humo": Case("wan21_humo", "wan21_humo", "WAN21_HuMo", "HuMo", "wan_variant_state_dict",
                       (("variant", "humo"),), text_dim=4096, blocks_attr="blocks", extras="humo",
                       even_latent=True),  # HuMo's audio gather reshapes the reference frame like a video frame
    "wan22_animate": Case("wan22_animate", "wan22_animate", "WAN22_Animate", "Wan 2.2 Animate",
                          "wan_variant_state_dict", (("variant", "animate"), ("num_layers", 5)), text_dim=4096,
                          blocks_attr="blocks", extras="animate",  # 5 blocks: one face-adapter block
                          even_latent=True),  # Animate adds unpadded pose embeddings to the padded video
    "wan_animate2": Case("wan_animate2", "wan_animate2", "WAN_Animate2", "Wan Animate 2", "wan_variant_state_dict",
                         (("variant", "animate2"),), text_dim=4096, blocks_attr="blocks"),
    "wan21_scail": Case("wan21_scail", "wan21_scail", "WAN21_SCAIL", "SCAIL", "wan_variant_state_dict",
                        (("variant", "scail"),), text_dim=4096, blocks_attr="blocks", extras="scail"),
    "wan21_scail2": Case("wan21_scail2", "wan21_scail", "WAN21_SCAIL2", "SCAIL-2", "wan_variant_state_dict",
                         (("variant", "scail2"),), text_dim=4096, blocks_attr="blocks", extras="scail"),
    "wan22_dancer": Case("wan22_dancer", "wan22_dancer", "WAN22_WanDancer", "WanDancer", "wan_variant_state_dict",
                         (("variant", "wandancer"),), text_dim=4096, blocks_attr="blocks", extras="dancer"),
    "wan21_camera": Case("wan21_camera", "wan21", "WAN21_Camera", "Wan 2.1 Fun Camera", "wan_variant_state_dict",
                         (("variant", "camera"),), text_dim=4096, blocks_attr="blocks"),
    "wan22_camera": Case("wan22_camera", "wan22_14b", "WAN22_Camera", "Wan 2.2 Fun Camera", "wan_variant_state_dict",
                         (("variant", "camera22"),), text_dim=4096, blocks_attr="blocks",
                         base_class="WAN21_Camera"),
    # CogVideoX: no cross-attention, one joint [text | video] self-attention per block
    "cogvideox_t2v": Case("cogvideox_t2v", "cogvideox", "CogVideoX_T2V", "CogVideoX T2V", "cogvideox_state_dict",
                          text_dim=4096, blocks_attr="blocks", base_class="CogVideoX"),
    "cogvideox15_i2v": Case("cogvideox15_i2v", "cogvideox15", "CogVideoX_I2V", "CogVideoX 1.5 I2V",
                            "cogvideox_state_dict", (("version", "1.5"), ("in_channels", 32), ("ofs", True)),
                            text_dim=4096, blocks_attr="blocks", base_class="CogVideoX"),
    "cogvideox15_inpaint": Case("cogvideox15_inpaint", "cogvideox15", "CogVideoX_Inpaint",
                                "CogVideoX 1.5 inpainting", "cogvideox_state_dict",
                                (("version", "1.5"), ("in_channels", 48)), text_dim=4096, blocks_attr="blocks",
                                base_class="CogVideoX"),  # CogVideoX-Fun V1.5 / VOID
    # Cosmos 1 (Predict1): its patch embedding asserts even sizes
    "cosmos1_t2w": Case("cosmos1_t2w", "cosmos1", "CosmosT2V", "Cosmos 1 Text2World", "cosmos1_state_dict",
                        text_dim=1024, blocks_attr="blocks", base_class="CosmosVideo", even_latent=True,
                        overrides="COSMOS1_TINY_OVERRIDES"),
    "cosmos1_v2w": Case("cosmos1_v2w", "cosmos1", "CosmosI2V", "Cosmos 1 Video2World", "cosmos1_state_dict",
                        (("in_channels", 17),), text_dim=1024, blocks_attr="blocks", base_class="CosmosVideo",
                        even_latent=True, overrides="COSMOS1_TINY_OVERRIDES"),
    "minimax_h3": Case("minimax_h3", "minimax_h3", "MiniMaxH3", "MiniMax H3 (video + audio)",
                       "minimax_h3_state_dict", text_dim=64, audio="minimax", blocks_attr="blocks",
                       cfg_batched=False),  # the model takes batch 1: ComfyUI runs cond, uncond apart
}


def require_family(case: Case) -> None:
    """Skip, naming the ComfyUI version, when this ComfyUI has no model class for the family."""
    import comfy.supported_models as sm

    names = {m.__name__ for m in sm.models}
    if case.comfy_class not in names:
        pytest.skip(f"ComfyUI {comfy_version()} has no {case.comfy_class} model ({families()[case.family].label}): "
                    f"the family needs a newer ComfyUI (0.33 has it)")


def comfy_version() -> str:
    try:
        from comfyui_version import __version__ as version
    except ImportError:  # very old trees
        return "(version unknown)"
    return version


_MODELS: dict = {}


def load(case: Case):
    """The case's ModelPatcher, built once per session through a safetensors file."""
    if case.kind in _MODELS:
        return _MODELS[case.kind]
    require_family(case)
    tm = hm.tiny_models_module()
    sd = getattr(tm, case.build)(**dict(case.build_kwargs))
    meta = tm.ltx_metadata(bool(case.audio)) if case.build == "ltx_state_dict" else None
    if case.build == "wan_variant_state_dict":
        meta = tm.wan_variant_metadata(dict(case.build_kwargs)["variant"])
    if case.config:
        import json

        meta = {"config": json.dumps({"transformer": dict(case.config)})}
    path = tm.save(sd, hm._TMP / f"{case.kind}.safetensors", metadata=meta)
    model = tm.load_with_comfy(path, overrides=getattr(tm, case.overrides) if case.overrides else None)
    want = case.base_class or case.comfy_class
    assert type(model.model).__name__ == want and type(model.model.model_config).__name__ == case.comfy_class, (
        f"ComfyUI detected {type(model.model.model_config).__name__} / {type(model.model).__name__}, not "
        f"{case.comfy_class} / {want}")
    _MODELS[case.kind] = model
    return model


def video_blocks(case: Case, model) -> int:
    """Blocks with one video self-attention each, counted in the model ComfyUI built (ComfyUI
    0.3.75 builds Cosmos Predict2 with its default 10 blocks at widths it does not know)."""
    return len(getattr(model.model.diffusion_model, case.blocks_attr))


def conditioning(case: Case, *, seed: int = 0, text_len: int = 8, real_tokens: int | None = None,
                 vision_tokens: int = 0):
    """CONDITIONING with random text features (and, for HunyuanVideo 1.5 I2V, image-encoder
    tokens as CLIPVisionEncode gives them)."""
    g = torch.Generator().manual_seed(seed)
    pooled = case.family in ("hunyuan15", "kandinsky5")
    extra = {"pooled_output": torch.randn(1, 768, generator=g)} if pooled else {}
    if real_tokens is None and case.family in ("ltxv", "ltxav"):
        real_tokens = text_len  # LTX's forward takes the text mask the T5 / Gemma encoders give
    if real_tokens is not None:
        m = torch.zeros(1, text_len, dtype=torch.long)
        m[:, :real_tokens] = 1
        extra["attention_mask"] = m
    if vision_tokens:
        class _Vision:  # the attribute HunyuanVideo 1.5 reads of a CLIP_VISION_OUTPUT
            last_hidden_state = torch.randn(1, vision_tokens, 1152, generator=g)
        extra["clip_vision_output"] = _Vision()
    return [[torch.randn(1, text_len, case.text_dim, generator=g), extra]]


def latent(case: Case, frames: int, height: int, width: int, batch: int = 1, audio_frames: int = 12):
    """An empty latent of the family's channels; with audio a NestedTensor (video, audio) as
    ComfyUI's LTXVConcatAVLatent / EmptyMiniMaxH3LatentAV make it (LTX-2 audio: 8 channels x
    ``audio_frames`` x 16 bins; MiniMax H3: 32 channels x 2 (stereo) x ``audio_frames``)."""
    video = torch.zeros(batch, families()[case.family].latent_channels, frames, height, width)
    if not case.audio:
        return video
    import comfy.nested_tensor

    audio = (torch.zeros(batch, 8, audio_frames, 16) if case.audio == "ltx"
             else torch.zeros(batch, 32, 2, audio_frames))
    return comfy.nested_tensor.NestedTensor([video, audio])


def joint_tokens(case: Case, text_len: int, audio_frames: int = 12, lat=None) -> int:
    """Tokens besides the video frames in the video self-attention sequence: the text of the joint
    families; MiniMax H3 also packs its audio there (2 rows per audio latent); the Wan variants'
    reference / motion / pose tokens (counted here from the latent ``lat`` the way each model's
    own embedding makes them, see extra_conds)."""
    if case.extras:
        return _extra_tokens(case, lat)
    if not families()[case.family].text_tokens:
        return 0
    return text_len + (2 * audio_frames if case.audio == "minimax" else 0)


def front_frames(case: Case) -> int:
    """Conditioning frames that join the sequence as frames (SCAIL's reference frame, in front)."""
    return 1 if case.extras == "scail" else 0


# ------------------------------------------------------------------- Wan variants' conditioning
def _grid(lat) -> tuple[int, int, int]:
    return int(lat.shape[2]), int(lat.shape[3]), int(lat.shape[4])


def _pose_latent(lat):
    """The pose video's latent as WanSCAILToVideo makes it: half the video's resolution."""
    f, h, w = _grid(lat)
    return torch.randn(1, 16, f, (h + 1) // 2, (w + 1) // 2, generator=torch.Generator().manual_seed(7))


def extra_conds(case: Case, lat) -> dict:
    """The conditioning entries ComfyUI's nodes for the variant attach (WanSoundImageToVideo,
    WanHuMoImageToVideo, WanAnimateToVideo, WanSCAILToVideo, the WanDancer nodes), at the
    latent's size, with random values; the model's extra_conds turns them into model inputs."""
    if not case.extras:
        return {}
    g = torch.Generator().manual_seed(5)
    f, h, w = _grid(lat)
    ref = torch.randn(1, 16, 1, h, w, generator=g)
    if case.extras == "s2v":  # reference image, 19 motion latents, wav2vec features (25 layers x 1024)
        return {"reference_latents": [ref], "reference_motion": torch.randn(1, 16, 19, h, w, generator=g),
                "audio_embed": torch.randn(1, 25, 1024, 4 * f, generator=g)}
    if case.extras == "humo":  # reference image, whisper features per latent frame (8 x 5 x 1280)
        return {"reference_latents": [ref], "audio_embed": torch.randn(1, f, 8, 5, 1280, generator=g)}
    if case.extras == "animate":  # the pose video's latents (added to frames 1..F-1)
        return {"pose_video_latent": torch.randn(1, 16, f - 1, h, w, generator=g)}
    if case.extras == "scail":  # reference image in front, pose video at half resolution after
        return {"reference_latents": [ref], "pose_video_latent": _pose_latent(lat)}
    if case.extras == "dancer":  # music features (35 per frame); WanDancer's music injector splits each
        # frame's tokens into 8 groups, so ComfyUI takes music only when tokens per frame divide by 8
        tokens = -(-h // 2) * -(-w // 2)
        return {"audio_embed": torch.randn(1, 4 * f, 35, generator=g)} if tokens % 8 == 0 else {}
    raise KeyError(case.extras)


def _extra_tokens(case: Case, lat) -> int:
    """Tokens after the video frames, as each model's embedding makes them (convolutions without
    padding on the unpadded conditioning latents; SCAIL pads its pose latents to the patch)."""
    if lat is None:
        raise ValueError("the Wan variants' extra tokens depend on the latent: pass lat")
    f, h, w = _grid(lat)
    if case.extras == "s2v":  # reference frame + motion frames (frame packer: 1 + 1 at 1/2 + 4 at 1/4)
        return 2 * (h // 2) * (w // 2) + (h // 4) * (w // 4) + 4 * (h // 8) * (w // 8)
    if case.extras == "humo":
        return (h // 2) * (w // 2)
    if case.extras == "scail":
        _, _, _, ph, pw = _pose_latent(lat).shape
        return f * -(-ph // 2) * -(-pw // 2)
    return 0  # Animate, WanDancer: video tokens only


def _with_extras(cond, extras: dict):
    return [[c[0], {**c[1], **extras}] for c in cond]


def output_tensor(out) -> torch.Tensor:
    """The sampled latent as one tensor (the streams of a NestedTensor concatenated)."""
    if getattr(out, "is_nested", False):
        return torch.cat([t.flatten(1) for t in out.unbind()], dim=1)
    return out


def sample(model, case: Case, lat, **kw):
    positive = kw.pop("positive", None) or conditioning(case, seed=1)
    negative = kw.pop("negative", None) or conditioning(case, seed=2)
    extras = extra_conds(case, lat)
    if extras:  # both: ComfyUI batches cond and uncond only when their inputs match in shape
        positive, negative = _with_extras(positive, extras), _with_extras(negative, extras)
    return hm.sample(model, case.kind, lat, positive=positive, negative=negative, **kw)
