"""The demo's small random-weight VAE, as a safetensors file with real key names.

Wan's VAE cannot be downloaded here, so the demo makes a Wan 2.1 VAE (ComfyUI's ``WanVAE``) with
base width ``dim`` (96 in the real one): ComfyUI's VAELoader reads the width from
``decoder.head.0.gamma``. ``VAEDecode`` turns the sampled latents into frames; with random
weights they are coloured noise. Import after ComfyUI is importable.
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


def _filled(module: torch.nn.Module, seed: int, dtype: torch.dtype) -> dict:
    """Seeded random weights for every parameter and buffer (make_tiny_models' rule)."""
    tm = _tiny_models()
    return {k: v.to(dtype) for k, v in tm._fill(tm._shapes(module), seed).items()}


def _tiny_models():
    import importlib.util
    import sys

    mod = sys.modules.get("radial_make_tiny_models")
    if mod is None:
        spec = importlib.util.spec_from_file_location("radial_make_tiny_models", Path(__file__).with_name("make_tiny_models.py"))
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
