"""A toy text encoder for the demo: UTF-8 bytes -> random-weight embedding -> 4096-wide features.

Wan's real text encoder (UMT5-XXL, 5.7B parameters) cannot be downloaded here and ComfyUI's
loaders only accept it at full size. This stand-in has the right output shape for Wan
(``[1, L, 4096]``) and random weights, saved as safetensors: different prompts give different
conditioning, but the model understands nothing of them. The demo says so when it runs.
"""

from __future__ import annotations

from pathlib import Path

import torch

WIDTH = 4096
HIDDEN = 64
MAX_TOKENS = 64


def make_weights(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "byte_embedding": torch.randn(257, HIDDEN, generator=g),  # 256 byte values + padding
        "position_embedding": torch.randn(MAX_TOKENS, HIDDEN, generator=g) * 0.1,
        "proj_in": torch.randn(HIDDEN, 256, generator=g) / HIDDEN**0.5,
        "proj_out": torch.randn(256, WIDTH, generator=g) / 16.0,
    }


def save_weights(path: str | Path, seed: int = 0) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(make_weights(seed), str(path))
    return path


def encode(prompt: str, weights_path: str | Path) -> torch.Tensor:
    """``[1, L, 4096]`` features of ``prompt`` (L = its UTF-8 length, 1 to 64)."""
    from safetensors.torch import load_file

    w = load_file(str(weights_path))
    ids = torch.tensor(list(prompt.encode("utf-8"))[:MAX_TOKENS] or [256], dtype=torch.long)
    h = w["byte_embedding"][ids] + w["position_embedding"][: len(ids)]
    return (torch.tanh(h @ w["proj_in"]) @ w["proj_out"]).unsqueeze(0).contiguous()
