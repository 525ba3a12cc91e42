"""Small random-weight video models with ComfyUI's real classes and real key names.

No weights can be downloaded here, so tests and the demo build their own: the real ComfyUI
model class is instantiated on the ``meta`` device with a small configuration to get the exact
key names and shapes, every tensor is filled with seeded random values, and the state dict is
saved as safetensors. Wan and HunyuanVideo files are then loaded by ComfyUI's own loader
(``comfy.sd.load_diffusion_model``: key-based model detection, model config, ModelPatcher).
ComfyUI's Mochi detection hard-codes the full-size configuration, so the small Mochi is built
through the same later steps (``model_config_from_unet_config`` -> ``get_model`` ->
``load_model_weights`` -> ``ModelPatcher``) with a small config; Cosmos 1's detection names its
block count at the full size, so its small model is the configuration ComfyUI detects from its
keys with that one field replaced (``overrides``), loaded through the same later steps.

Import after ComfyUI is importable (tests: the ``comfy`` fixture; scripts: ``demo.py``).

CLI: ``python scripts/make_tiny_models.py OUT_DIR`` writes one file per kind (needs ComfyUI on
``sys.path``, e.g. ``PYTHONPATH=.comfyui``).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

# HunyuanVideo keeps vector_in (pooled CLIP, 768): without it ComfyUI detects HunyuanImage 2.1.
# dim 128: ComfyUI's Wan and HunyuanVideo detection derive heads as dim // 128.
WAN_KINDS = {
    # kind: (model_type, in_dim, out_dim, with image projection, flf tokens)
    "wan_t2v": ("t2v", 16, 16, False),
    "wan_i2v": ("i2v", 36, 16, True),
    "wan22_a14b_i2v": ("t2v", 36, 16, False),  # Wan 2.2 A14B I2V: 36 channels, no CLIP projection
    "wan22_5b": ("t2v", 48, 48, False),
    "wan_vace": ("vace", 16, 16, False),  # VACE: one VACE block after main block 0
    "wan_fun_ref": ("t2v", 16, 16, False),  # Wan Fun with a reference-image conv (ref_conv)
}


def _fill(sd_shapes: dict, seed: int) -> dict:
    """Seeded random tensors: weights ~ N(0, 1/fan_in), norm scales 1, biases 0."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, (shape, dtype) in sorted(sd_shapes.items()):
        if not dtype.is_floating_point:
            out[name] = torch.zeros(shape, dtype=dtype)
            continue
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "bias":
            t = torch.zeros(shape)
        elif ("norm" in name or leaf in ("scale",)) and len(shape) == 1:
            t = torch.ones(shape)
        elif len(shape) >= 2:
            fan_in = math.prod(shape[1:]) if "modulation" not in name else shape[-1]
            t = torch.randn(shape, generator=g) / math.sqrt(max(fan_in, 1))
        else:
            t = torch.randn(shape, generator=g) * 0.02
        out[name] = t.to(torch.float32).contiguous()
    return out


def _shapes(module: torch.nn.Module) -> dict:
    shapes = {}
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        shapes[name] = (tuple(t.shape), t.dtype)
    return shapes


def wan_state_dict(kind: str = "wan_t2v", *, num_layers: int = 2, dim: int = 128, ffn_dim: int = 256, seed: int = 0,
                   text_dim: int = 4096) -> dict:
    import comfy.ldm.wan.model as wan
    import comfy.ops

    model_type, in_dim, out_dim, with_img = WAN_KINDS[kind]
    cls, extra = wan.WanModel, {"model_type": "i2v" if with_img else model_type}
    if model_type == "vace":
        cls, extra = wan.VaceWanModel, {"vace_layers": 1, "vace_in_dim": 96}
    if kind == "wan_fun_ref":
        extra["in_dim_ref_conv"] = 16
    with torch.device("meta"):
        m = cls(
            **extra, patch_size=(1, 2, 2), in_dim=in_dim, dim=dim,
            ffn_dim=ffn_dim, freq_dim=256, text_dim=text_dim, out_dim=out_dim, num_heads=dim // 128,
            num_layers=num_layers, qk_norm=True, cross_attn_norm=True, eps=1e-6,
            operations=comfy.ops.disable_weight_init, device="meta", dtype=torch.float32,
        )
    return _fill(_shapes(m), seed)


# Wan variants of ComfyUI 0.33 (S2V, HuMo and Animate also in 0.3.75): the key that tells each one
# apart in comfy/model_detection.py (shape: its real layout at the tiny width), its input channels,
# and the file's "config" metadata where ComfyUI reads the variant from there (Animate 2, CausalAR).
WAN_VARIANTS = {
    # variant: (key that ComfyUI's detection looks for, its shape(dim), in_dim, CLIP image projection, metadata config)
    "s2v": ("casual_audio_encoder.encoder.final_linear.weight", lambda d: (d, d), 16, False, None),
    "humo": ("audio_proj.audio_proj_glob_1.layer.bias", lambda d: (512,), 16, False, None),
    "animate": ("face_adapter.fuser_blocks.0.k_norm.weight", lambda d: (128,), 36, True, None),
    "animate2": (None, None, 36, True, {"model_type": "animate2"}),
    "scail": ("patch_embedding_pose.weight", lambda d: (d, 20, 1, 2, 2), 20, True, None),
    "scail2": ("patch_embedding_mask.weight", lambda d: (d, 28, 1, 2, 2), 20, True, None),
    "wandancer": ("patch_embedding_global.weight", lambda d: (d, 36, 1, 2, 2), 36, True, None),
    "causal_ar": (None, None, 16, False, {"causal_ar": True}),
    # Fun Camera: the camera adapter's conv (24 Plucker channels x 64 after pixel unshuffle, 2x2);
    # with the CLIP image projection ComfyUI reads it as Wan 2.1 Camera, without as Wan 2.2 Camera
    "camera": ("control_adapter.conv.weight", lambda d: (d, 24 * 64, 2, 2), 32, True, None),
    "camera22": ("control_adapter.conv.weight", lambda d: (d, 24 * 64, 2, 2), 36, False, None),
}


def wan_variant_metadata(variant: str) -> dict | None:
    """The file metadata a Wan variant's checkpoint carries where ComfyUI reads the variant from it."""
    import json

    cfg = WAN_VARIANTS[variant][4]
    return {"config": json.dumps({"transformer": cfg})} if cfg else None


def wan_variant_state_dict(variant: str = "s2v", *, num_layers: int = 2, dim: int = 128, ffn_dim: int = 256,
                           seed: int = 0) -> dict:
    """A small Wan variant, detected by ComfyUI from its keys (and metadata, see
    :func:`wan_variant_metadata`): the Wan keys ComfyUI reads (width from ``head.modulation``, heads
    = dim // 128, block count, input channels) plus the variant's own key. Save with
    ``save(sd, path, metadata=wan_variant_metadata(variant))``."""
    key, shape, in_dim, with_img, _ = WAN_VARIANTS[variant]
    probe = {
        "head.modulation": (1, 2, dim),
        "head.head.weight": (16 * 4, dim),
        "patch_embedding.weight": (dim, in_dim, 1, 2, 2),
        **{f"blocks.{i}.ffn.0.weight": (ffn_dim, dim) for i in range(num_layers)},
        **({"img_emb.proj.0.bias": (1280,)} if with_img else {}),
        **({key: shape(dim)} if key else {}),
    }
    return detected_state_dict(probe, seed, metadata=wan_variant_metadata(variant))


def detected_state_dict(probe: dict[str, tuple[int, ...]], seed: int = 0, metadata: dict | None = None,
                        overrides: dict | None = None) -> dict:
    """A full random-weight state dict for the model ComfyUI detects from ``probe``.

    ``probe`` names the few keys (and shapes) that ComfyUI's model detection reads for a family;
    ComfyUI's own ``detect_unet_config`` turns them into the model configuration (with whatever
    fields that ComfyUI version needs), its model config builds the real class on the ``meta``
    device, and every parameter and buffer of that class is filled with seeded random values.
    No constructor keyword lists of ours, so a ComfyUI update that adds a field keeps working.
    ``overrides``: configuration fields that ComfyUI's detection hard-codes at the full size
    (Cosmos 1's block count), replaced after detection; load such a file with
    :func:`load_with_comfy` and the same ``overrides``.
    """
    return _fill(_shapes(detected_model(probe, metadata, overrides).diffusion_model), seed)


def detected_model(probe: dict[str, tuple[int, ...]], metadata: dict | None = None, overrides: dict | None = None):
    """The ``comfy.model_base`` model (on the ``meta`` device, no weights) that ComfyUI detects
    from ``probe`` (see :func:`detected_state_dict`)."""
    meta_sd = {k: torch.empty(shape, device="meta") for k, shape in probe.items()}
    model_config = _detected_config(meta_sd, metadata, overrides)
    model_config.set_inference_dtype(torch.float32, None)
    with torch.device("meta"):
        return model_config.get_model(meta_sd, "", device="meta")


def _detected_config(sd: dict, metadata: dict | None = None, overrides: dict | None = None):
    """ComfyUI's model config for the state dict ``sd`` (its own key-based detection), with
    ``overrides`` put into the detected configuration before the model config is chosen."""
    import comfy.model_detection as md

    unet_config = md.detect_unet_config(sd, "", metadata=metadata) if metadata else md.detect_unet_config(sd, "")
    if unet_config is None:
        raise RuntimeError(f"ComfyUI's model detection did not recognise the probe keys {sorted(sd)[:4]}...")
    unet_config.update(overrides or {})
    model_config = md.model_config_from_unet_config(unet_config, sd)
    if model_config is None:
        raise RuntimeError(f"ComfyUI has no model config for {unet_config}")
    return model_config


def hunyuan_state_dict(*, in_channels: int = 16, double: int = 1, single: int = 1, hidden: int = 128,
                       context_dim: int = 32, guidance: bool = False, seed: int = 0) -> dict:
    """A small HunyuanVideo (T2V; I2V with ``in_channels=33``), detected by ComfyUI from its keys.

    ``guidance``: with the guidance embedder of the distilled checkpoints (``guidance_in``)."""
    return detected_state_dict(hunyuan_probe(in_channels=in_channels, double=double, single=single, hidden=hidden,
                                             context_dim=context_dim, guidance=guidance), seed)


def hunyuan_probe(*, in_channels: int = 16, double: int = 1, single: int = 1, hidden: int = 128,
                  context_dim: int = 32, guidance: bool = False) -> dict[str, tuple[int, ...]]:
    """The keys (and shapes) ComfyUI's detection reads for a HunyuanVideo of this size."""
    return {
        "img_in.proj.weight": (hidden, in_channels, 1, 2, 2),
        "final_layer.linear.weight": (16 * 4, hidden),
        "vector_in.in_layer.weight": (hidden, 768),
        "txt_in.input_embedder.weight": (hidden, context_dim),
        "txt_in.individual_token_refiner.blocks.0.norm1.weight": (hidden,),
        **{f"double_blocks.{i}.img_attn.qkv.weight": (3 * hidden, hidden) for i in range(double)},
        **{f"single_blocks.{i}.linear1.weight": (hidden, hidden) for i in range(single)},
        **({"guidance_in.in_layer.weight": (hidden, 256)} if guidance else {}),
    }


def hunyuan15_state_dict(*, in_channels: int = 65, double: int = 2, hidden: int = 128, context_dim: int = 32,
                         meanflow: bool = False, seed: int = 0) -> dict:
    """A small HunyuanVideo 1.5, detected by ComfyUI from its keys (ComfyUI 0.33+); the keys are
    :func:`hunyuan15_probe`'s."""
    return detected_state_dict(hunyuan15_probe(in_channels=in_channels, double=double, hidden=hidden,
                                               context_dim=context_dim, meanflow=meanflow), seed)


def hunyuan15_probe(*, in_channels: int = 65, double: int = 2, hidden: int = 128, context_dim: int = 32,
                    meanflow: bool = False) -> dict[str, tuple[int, ...]]:
    """The keys (and shapes) ComfyUI's detection reads for a HunyuanVideo 1.5 of this size.

    The keys that tell it: no ``vector_in``, an image-encoder projection ``vision_in`` (SigLIP
    width 1152, which ComfyUI's config matches on), ``cond_type_embedding``, patch 1x1x1, 32 latent
    channels. ``in_channels`` 65 = T2V / I2V (32 latent + 32 image + 1 mask), 98 = the SR-distilled
    upscaler; ``meanflow`` adds ``time_r_in`` (the step-distilled checkpoints). The ByT5 glyph
    mapper (``byt5_in``, optional in the real files too) is left out: it is 7M parameters.
    ComfyUI derives heads as ``hidden // 128``. The released model: ``hidden=2048, double=54,
    context_dim=3584`` (Qwen2.5-VL-7B's width), see bench/bench_e2e.py.
    """
    return {
        "img_in.proj.weight": (hidden, in_channels, 1, 1, 1),
        "final_layer.linear.weight": (32, hidden),
        "txt_in.input_embedder.weight": (hidden, context_dim),
        "txt_in.individual_token_refiner.blocks.0.norm1.weight": (hidden,),
        "vision_in.proj.0.weight": (1152,),
        "cond_type_embedding.weight": (3, hidden),
        **{f"double_blocks.{i}.img_attn.qkv.weight": (3 * hidden, hidden) for i in range(double)},
        **({"time_r_in.in_layer.weight": (hidden, 256)} if meanflow else {}),
    }


# LTX-Video / LTX-2: ComfyUI reads the block count and the head width (attn2.to_k rows / 32
# heads) from the keys and the rest of the configuration from the file's "config" metadata, as
# the real checkpoints carry it. Tiny: 32 heads of width 4 (video, 128 wide), 8 heads of width 8
# (audio, 64 wide: the two streams differ in width, as in the real LTX-2, 4096 vs 2048).
LTX_TINY_CONFIG = {
    "in_channels": 128, "num_attention_heads": 32, "attention_head_dim": 4, "cross_attention_dim": 128,
    "caption_channels": 64, "audio_num_attention_heads": 8, "audio_attention_head_dim": 8,
    "audio_cross_attention_dim": 64, "audio_in_channels": 128,
    # LTX-2's text connectors (they refine raw text features; a conditioning of width
    # cross_attention_dim + audio_cross_attention_dim counts as already refined and skips them)
    "audio_connector_attention_head_dim": 8, "audio_connector_num_attention_heads": 4,
    "audio_connector_num_layers": 1, "connector_attention_head_dim": 8,
    "connector_num_attention_heads": 4, "connector_num_layers": 1,
}


def ltx_metadata(audio: bool, config: dict | None = None) -> dict:
    """The file's "config" metadata for an LTX model of ``config`` (default: the tiny one)."""
    import json

    cfg = dict(LTX_TINY_CONFIG if config is None else config)
    if not audio:
        cfg = {k: v for k, v in cfg.items() if not k.startswith(("audio_", "connector_"))}
    return {"config": json.dumps({"transformer": cfg})}


def ltx_probe(*, audio: bool = False, num_layers: int = 2, config: dict | None = None) -> dict[str, tuple[int, ...]]:
    """The keys (and shapes) ComfyUI's detection reads for an LTX model of ``config`` (default:
    the tiny one); it reads the rest of the configuration from :func:`ltx_metadata`."""
    cfg = LTX_TINY_CONFIG if config is None else config
    inner = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    audio_inner = cfg.get("audio_num_attention_heads", 0) * cfg.get("audio_attention_head_dim", 0)
    return {
        "adaln_single.emb.timestep_embedder.linear_1.bias": (inner,),
        **{f"transformer_blocks.{i}.attn2.to_k.weight": (inner, cfg["cross_attention_dim"]) for i in range(num_layers)},
        **({"audio_adaln_single.linear.weight": (6 * audio_inner, audio_inner)} if audio else {}),
    }


def ltx_state_dict(*, audio: bool = False, num_layers: int = 2, seed: int = 0) -> dict:
    """A small LTX-Video (``audio=False``, ComfyUI's LTXV) or LTX-2 (``audio=True``, LTXAV).

    Save it with :func:`ltx_metadata` (``save(sd, path, metadata=ltx_metadata(audio))``).
    """
    return detected_state_dict(ltx_probe(audio=audio, num_layers=num_layers), seed, metadata=ltx_metadata(audio))


def kandinsky5_state_dict(*, visual_blocks: int = 2, text_blocks: int = 1, model_dim: int = 128,
                          seed: int = 0) -> dict:
    """A small Kandinsky 5 video model (ComfyUI 0.33+), detected by ComfyUI from its keys.

    ComfyUI reads the width, time width, feed-forward width, visual embedding width (132 = 4 x
    (16 latent + 16 image + 1 mask) channels of a 1x2x2 patch) and the block counts from the keys;
    head width 64 (its rope axes). Text features are 3584 wide (Qwen2.5-VL), pooled 768 (CLIP).
    """
    probe = {
        "visual_transformer_blocks.0.cross_attention.key_norm.weight": (64,),
        "visual_embeddings.in_layer.bias": (model_dim,),
        "visual_embeddings.in_layer.weight": (model_dim, 132),
        "time_embeddings.in_layer.bias": (128,),
        **{f"visual_transformer_blocks.{i}.feed_forward.in_layer.weight": (2 * model_dim, model_dim)
           for i in range(visual_blocks)},
        **{f"text_transformer_blocks.{i}.self_attention.to_query.weight": (model_dim, model_dim)
           for i in range(text_blocks)},
    }
    sd = detected_state_dict(probe, seed)
    sd.pop("time_embeddings.freqs", None)  # a computed buffer, not in the real files
    return sd


def cosmos_predict2_state_dict(*, in_channels: int = 17, num_blocks: int = 2, model_channels: int = 256,
                               seed: int = 0) -> dict:
    """A small Cosmos Predict2, detected by ComfyUI from its keys: ``in_channels`` 17 =
    Video2World (16 latent + a conditioning-mask channel), 16 = Text2Image. The patch embedding
    takes one padding-mask channel more per 1x2x2 patch. ComfyUI's default of 16 heads applies
    (it names heads only for the full widths), so heads are 16 wide (its 3D rope needs >= 16);
    text features 1024 wide (T5).
    """
    probe = {
        "x_embedder.proj.1.weight": (model_channels, (in_channels + 1) * 4),
        **{f"blocks.{i}.mlp.layer1.weight": (4 * model_channels, model_channels) for i in range(num_blocks)},
    }
    sd = detected_state_dict(probe, seed)
    for k in ("pos_embedder.dim_spatial_range", "pos_embedder.dim_temporal_range"):
        sd.pop(k, None)  # computed buffers, not in the real files
    return sd


def minimax_h3_state_dict(*, num_layers: int = 2, hidden: int = 128, heads: int = 4, head_dim: int = 32,
                          text_dim: int = 64, seed: int = 0) -> dict:
    """A small MiniMax H3 (video + audio, ComfyUI 0.33+), detected by ComfyUI from its keys:
    video patch 1x2x2 on 24 channels, audio 32 channels, heads from the qkv and q-norm widths, a
    4-frequency rope (12 x 2 rotated dims of the 32-wide heads)."""
    probe = {
        "video_patch_proj.weight": (hidden, 24 * 4),
        "audio_patch_proj.weight": (hidden, 32),
        **{f"blocks.{i}.attn.q_norm.weight": (head_dim,) for i in range(num_layers)},
        "blocks.0.attn.qkv_proj.weight": (3 * heads * head_dim, hidden),
        "blocks.0.mlp.fc1.weight": (4 * hidden, hidden),
        "token_refiner.blocks.0.attn.q_norm.weight": (head_dim,),
        "final_layer.video_out.weight": (24 * 4, hidden),
        "final_layer.audio_out.weight": (32, hidden),
        "condition_proj.weight": (hidden, text_dim),
        "time_embedder.proj_in.weight": (hidden, 256),
        "time_embedder.proj_out.weight": (hidden // 2, hidden),
        "rope.inv_freq": (4,),
    }
    return detected_state_dict(probe, seed)


def cogvideox_state_dict(*, in_channels: int = 16, version: str = "1.0", num_layers: int = 2, dim: int = 128,
                         time_embed_dim: int = 128, text_dim: int = 4096, ofs: bool = False, seed: int = 0) -> dict:
    """A small CogVideoX (ComfyUI 0.33+), detected by ComfyUI from its keys: heads = width / 64
    (head width 64), time width and block count from ``norm1.linear``; version "1.0" has a 2x2
    Conv2d patch embedding, "1.5" a linear one over 2x2x2 patches (ComfyUI reads temporal patch
    2 from its 2-D weight); no learned position table, so rotary positions (the 5B / 1.5 models).
    ``in_channels`` 16 = T2V, 32 = I2V, 48 = inpainting (CogVideoX-Fun / VOID); ``ofs`` adds the
    1.5 I2V models' OFS embedding (as wide as the time embedding, which it is added to). Text
    features 4096 wide (T5-XXL)."""
    patch = (dim, in_channels, 2, 2) if version == "1.0" else (dim, in_channels * 8)
    probe = {
        **{f"blocks.{i}.norm1.linear.weight": (6 * dim, time_embed_dim) for i in range(num_layers)},
        "patch_embed.proj.weight": patch,
        "patch_embed.text_proj.weight": (dim, text_dim),
        **({"ofs_embedding_linear_1.weight": (time_embed_dim, time_embed_dim)} if ofs else {}),
    }
    return detected_state_dict(probe, seed)


# ComfyUI's Cosmos 1 detection reads the width and input channels from the keys and names the rest
# at the full size (14B: 36 blocks of 40 heads for every width but 7B's 4096): the tiny model keeps
# 40 heads (16 wide at width 640, the least its 3-D rope takes) and 2 of the blocks.
COSMOS1_TINY_OVERRIDES = {"num_blocks": 2}


def cosmos1_state_dict(*, in_channels: int = 16, model_channels: int = 640, seed: int = 0) -> dict:
    """A small Cosmos 1 (Predict1 Text2World: ``in_channels`` 16; Video2World: 17, a conditioning
    mask channel), detected by ComfyUI from its keys (the patch embedding takes one padding-mask
    channel more per 1x2x2 patch) with :data:`COSMOS1_TINY_OVERRIDES`; load it with
    ``load_with_comfy(path, overrides=COSMOS1_TINY_OVERRIDES)``. Text features 1024 wide (T5)."""
    probe = {
        "blocks.block0.blocks.0.block.attn.to_q.0.weight": (model_channels, model_channels),
        "x_embedder.proj.1.weight": (model_channels, (in_channels + 1) * 4),
    }
    sd = detected_state_dict(probe, seed, overrides=COSMOS1_TINY_OVERRIDES)
    for k in ("pos_embedder.dim_spatial_range", "pos_embedder.dim_temporal_range"):
        sd.pop(k, None)  # computed buffers, not in the real files
    return sd


def seedvr2_model():
    """ComfyUI's SeedVR2 (3B, as its detection names it from the key that tells the 3B file) on the
    ``meta`` device, without weights: enough to ask what the pack makes of the model (SeedVR2
    passes through)."""
    import comfy.model_management as mm
    import comfy.model_patcher

    probe = {"blocks.31.mlp.all.proj_in_gate.weight": (1,), "positive_conditioning": (58, 5120),
             "negative_conditioning": (64, 5120)}
    return comfy.model_patcher.ModelPatcher(detected_model(probe), load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


# ComfyUI's Mochi block asserts an x-MLP width of 1536 * 8 = 12288, whatever the hidden size.
MOCHI_TINY = dict(
    image_model="mochi_preview", depth=2, patch_size=2, num_heads=1, hidden_size_x=128,
    hidden_size_y=64, mlp_ratio_x=12288 / 128, mlp_ratio_y=2.0, learn_sigma=False, in_channels=12,
    qk_norm=True, qkv_bias=False, out_bias=True, attn_drop=0.0, patch_embed_bias=True,
    posenc_preserve_area=True, timestep_mlp_bias=True, attend_to_padding=False,
    timestep_scale=1000.0, use_t5=True, t5_feat_dim=64, t5_token_length=256, rope_theta=10000.0,
)


def save(sd: dict, path: str | Path, metadata: dict | None = None) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path), metadata=metadata)
    return path


def load_with_comfy(path: str | Path, dtype: torch.dtype = torch.float32, overrides: dict | None = None):
    """ComfyUI's own diffusion-model loader (what the UNETLoader node calls).

    With ``overrides`` (a file from :func:`detected_state_dict` with the same ``overrides``): the
    loader's own steps (key-based detection, model config, model, weights, ModelPatcher) with the
    detected configuration's full-size fields replaced, as for the small Mochi."""
    import comfy.sd

    if not overrides:
        return comfy.sd.load_diffusion_model(str(path), model_options={"dtype": dtype})
    from safetensors.torch import load_file

    sd = load_file(str(path))
    return _patcher(_detected_config(sd, None, overrides), sd, dtype)


def _patcher(model_config, sd: dict, dtype: torch.dtype):
    """``model_config``'s model with the weights ``sd``, as a ModelPatcher (the loader's last steps)."""
    import comfy.model_management as mm
    import comfy.model_patcher

    model_config.set_inference_dtype(dtype, None)
    model = model_config.get_model(sd, "")
    model.load_model_weights(sd, "")
    return comfy.model_patcher.ModelPatcher(
        model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device()
    )


def tiny_mochi(seed: int = 0, dtype: torch.dtype = torch.float32, path: str | Path | None = None):
    """A small Mochi (ComfyUI's GenmoMochi / AsymmDiTJoint) as a ModelPatcher.

    The weights go through a safetensors file when ``path`` is given.
    """
    import comfy.model_detection
    import comfy.ops
    from comfy.ldm.genmo.joint_model.asymm_models_joint import AsymmDiTJoint

    cfg = dict(MOCHI_TINY)
    with torch.device("meta"):
        meta = AsymmDiTJoint(**{k: v for k, v in cfg.items() if k != "image_model"},
                             operations=comfy.ops.disable_weight_init, device="meta", dtype=torch.float32)
    sd = _fill(_shapes(meta), seed)
    if path is not None:
        from safetensors.torch import load_file

        sd = load_file(str(save(sd, path)))
    model_config = comfy.model_detection.model_config_from_unet_config(cfg, sd)
    if model_config is None:
        raise RuntimeError("ComfyUI did not match the small Mochi config to GenmoMochi")
    return _patcher(model_config, sd, dtype)


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "out/tiny_models")
    for kind in WAN_KINDS:
        print("wrote", save(wan_state_dict(kind), out / f"{kind}.safetensors"))
    print("wrote", save(hunyuan_state_dict(), out / "hunyuan_t2v.safetensors"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
