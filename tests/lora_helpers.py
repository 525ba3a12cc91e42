"""Helpers for the Radial LoRA Loader tests: tiny real models and synthetic LoRA files.

Models are ComfyUI's real Wan 2.1 and HunyuanVideo classes at toy sizes with random weights,
loaded through ``comfy.sd.load_diffusion_model_state_dict`` (ComfyUI's own detection). LoRA files
are written with ``safetensors`` in the key format under test; the expected weight changes are
computed here from the raw matrices, independently of the loader's key tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

WAN_CONFIG = dict(
    image_model="wan2.1", model_type="t2v", dim=128, out_dim=16, num_heads=1, ffn_dim=256,
    num_layers=2, patch_size=(1, 2, 2), freq_dim=256, window_size=(-1, -1), qk_norm=True,
    cross_attn_norm=True, eps=1e-6, in_dim=16, text_len=512, text_dim=4096,
)
# HunyuanVideo: hidden 128, one double and one single block, text width 4096, guidance embedder;
# its configuration comes from ComfyUI's own detection (scripts/make_tiny_models.py)
HUNYUAN_CONFIG = dict(context_dim=4096, guidance=True, double=1, single=1, hidden=128)
HY_H = 128  # HunyuanVideo hidden size above
HY_MLP = 512  # hidden * mlp_ratio


def build_model(config: dict, seed: int = 0):
    """A ModelPatcher for a tiny random-weight model, detected and loaded by ComfyUI itself.

    ``config``: a Wan ``unet_config`` (``WAN_CONFIG``), or ``HUNYUAN_CONFIG`` (the arguments of
    ``make_tiny_models.hunyuan_state_dict``, whose model configuration ComfyUI detects)."""
    import comfy.model_detection
    import comfy.sd

    if "image_model" in config:
        cfg = comfy.model_detection.model_config_from_unet_config(dict(config))
        template = cfg.get_model({}, "").diffusion_model.state_dict()
    else:
        from helpers_models import tiny_models_module

        template = tiny_models_module().hunyuan_state_dict(**config)
    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(v.shape, generator=g) * 0.02 for k, v in template.items()}
    patcher = comfy.sd.load_diffusion_model_state_dict(sd)
    assert patcher is not None, "ComfyUI did not detect the tiny model"
    return patcher


def weights(patcher) -> dict[str, torch.Tensor]:
    """Copies of the model's current weights (no patches applied)."""
    return {k: v.detach().clone() for k, v in patcher.model.state_dict().items()}


def patched_weights(patcher) -> dict[str, torch.Tensor]:
    """The weights after ComfyUI applies the patcher's patches (patch_model), then unpatched."""
    patcher.patch_model(device_to=torch.device("cpu"))
    try:
        return weights(patcher)
    finally:
        patcher.unpatch_model(device_to=torch.device("cpu"))


@dataclass
class Target:
    """One LoRA module in a test file and the model weight (rows) it must change."""

    lora_name: str  # module name as written in the file (without suffix)
    model_key: str  # ComfyUI state-dict key, e.g. diffusion_model.blocks.0.self_attn.q.weight
    out_features: int
    in_features: int
    rows: tuple[int, int] | None = None  # slice of a fused weight (start, length)
    rank: int = 4
    alpha: float | None = None  # written as a .alpha tensor when set
    swap_halves: bool = False  # diffusers' norm_out (scale, shift) vs ComfyUI's (shift, scale)


SUFFIXES = {
    "comfyui": (".lora_up.weight", ".lora_down.weight"),
    "kohya": (".lora_up.weight", ".lora_down.weight"),
    "diffusers": (".lora_B.weight", ".lora_A.weight"),
    "peft": (".lora_B.weight", ".lora_A.weight"),
}


def make_lora(targets: list[Target], style: str, seed: int = 1):
    """Random up/down matrices for each target, keyed in ``style``. Returns (tensors, matrices)."""
    up_sfx, down_sfx = SUFFIXES[style]
    g = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    mats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for t in targets:
        up = torch.randn(t.out_features, t.rank, generator=g) * 0.1
        down = torch.randn(t.rank, t.in_features, generator=g) * 0.1
        tensors[t.lora_name + up_sfx] = up
        tensors[t.lora_name + down_sfx] = down
        if t.alpha is not None:
            tensors[t.lora_name + ".alpha"] = torch.tensor(float(t.alpha))
        mats[t.lora_name] = (up, down)
    return tensors, mats


def expected_weights(base: dict, targets: list[Target], mats: dict, strength: float, scale_of) -> dict:
    """base + strength * scale * up @ down on exactly the targeted weights (rows)."""
    out = {k: v.clone() for k, v in base.items()}
    for t in targets:
        up, down = mats[t.lora_name]
        delta = strength * scale_of(t) * (up @ down)
        if t.swap_halves:
            half = delta.shape[0] // 2
            delta = torch.cat([delta[half:], delta[:half]])
        if t.rows is None:
            out[t.model_key] = out[t.model_key] + delta
        else:
            start, length = t.rows
            out[t.model_key][start : start + length] += delta
    return out


def write_safetensors(path: Path, tensors: dict, metadata: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def write_diffusers_folder(folder: Path, tensors: dict, config: dict | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / "pytorch_lora_weights.safetensors", tensors)
    if config is not None:
        (folder / "lora_config.json").write_text(json.dumps(config))
    return folder


def assert_only_targets_changed(actual: dict, expected: dict, base: dict, changed_keys: set[str]):
    """Every weight equals its expectation; exactly ``changed_keys`` differ from the base."""
    assert actual.keys() == expected.keys()
    for k in actual:
        torch.testing.assert_close(actual[k], expected[k], rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
        differs = not torch.equal(actual[k], base[k])
        assert differs == (k in changed_keys), f"{k}: changed={differs}, expected changed={k in changed_keys}"
