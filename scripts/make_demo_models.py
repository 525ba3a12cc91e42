"""The demo's random-weight VAE and text encoder, as safetensors files with real key names.

Nothing can be downloaded here, so the demo makes its models:

- a Wan 2.1 VAE (ComfyUI's ``WanVAE``) with base width ``dim`` (96 in the real one): ComfyUI's
  VAELoader reads the width from ``decoder.head.0.gamma``. ``VAEDecode`` turns the sampled
  latents into frames; with random weights they are coloured noise.
- a T5-base text encoder (ComfyUI's own ``comfy.text_encoders.t5.T5`` with its
  ``t5_config_base.json``, 110 M parameters, 768 wide). Wan's real encoder, UMT5-XXL, is 5.7 B
  parameters at a size ComfyUI's loader fixes; T5-base is the smallest T5 ComfyUI's CLIPLoader
  builds (it tells T5-base from the weights, whatever ``type`` says), so ``CLIPLoader`` (type
  ``wan``) -> ``CLIPTextEncode`` runs as in a real Wan workflow. The small Wan model is then given a
  768-wide text input through its file's ``config`` metadata (:func:`wan_text_metadata`), which
  ComfyUI's Wan detection reads (0.33; 0.3.75 ignores it).

Import after ComfyUI is importable.
"""

from __future__ import annotations

from pathlib import Path

import torch

def wan_vae_state_dict(dim: int = 16, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    import comfy.ldm.wan.vae as wan_vae

    with torch.device("meta"):
        m = wan_vae.WanVAE(dim=dim, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                           temperal_downsample=[False, True, True])
    return _filled(m, seed, dtype)


T5_BASE_WIDTH = 768


def t5_base_state_dict(seed: int = 0, dtype: torch.dtype = torch.float16) -> dict:
    """A random-weight T5-base encoder with the keys CLIPLoader detects (``encoder.block...``)."""
    import json

    import comfy.ops
    import comfy.text_encoders.t5 as t5

    config = json.loads((Path(t5.__file__).with_name("t5_config_base.json")).read_text())
    with torch.device("meta"):
        m = t5.T5(config, dtype=torch.float32, device="meta", operations=comfy.ops.disable_weight_init)
    return _filled(m, seed, dtype)


def wan_text_metadata(text_dim: int = T5_BASE_WIDTH) -> dict:
    """Safetensors metadata that sets a Wan model's text width (ComfyUI's Wan detection reads the
    file's ``config`` -> ``transformer`` entries over what it infers from the weights)."""
    import json

    return {"config": json.dumps({"transformer": {"text_dim": int(text_dim)}})}


def wan_reads_text_width() -> bool:
    """Does this ComfyUI's Wan detection take the text width from the file's metadata? (asked of
    its model detection with the keys of a small Wan)."""
    import comfy.model_detection as md

    tm = _tiny_models()
    sd = {k: torch.empty(v.shape, device="meta") for k, v in tm.wan_state_dict(num_layers=1, text_dim=64).items()}
    try:
        config = md.detect_unet_config(sd, "", metadata=wan_text_metadata(64))
    except TypeError:  # a ComfyUI whose detection takes no metadata
        return False
    return bool(config) and config.get("text_dim") == 64


def _filled(module: torch.nn.Module, seed: int, dtype: torch.dtype) -> dict:
    """Seeded random weights for every parameter and buffer (make_tiny_models' rule)."""
    tm = _tiny_models()
    return {k: v.to(dtype) for k, v in tm._fill(tm._shapes(module), seed).items()}


def _tiny_models():
    import importlib.util
    import sys

    mod = sys.modules.get("radial_make_tiny_models")
    if mod is None:
        spec = importlib.util.spec_from_file_location(
            "radial_make_tiny_models", Path(__file__).with_name("make_tiny_models.py")
        )
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    return mod


def save(sd: dict, path: str | Path) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return path
