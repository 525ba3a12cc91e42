"""LoRA scale from a config: ``alpha / rank`` as PEFT and diffusers compute it.

Sources the node reads: a diffusers folder's ``lora_config.json`` / PEFT ``adapter_config.json``,
the JSON that diffusers stores under ``lora_adapter_metadata`` in the safetensors metadata, and
the Radial Attention authors' ``{"lora_params": {"lora_rank", "lora_alpha"}}``. Pure Python.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class PeftScale:
    """alpha / rank as PEFT computes it: ``lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA),
    with optional per-module ``rank_pattern`` / ``alpha_pattern``."""

    rank: int | None
    alpha: float
    use_rslora: bool = False
    rank_pattern: tuple[tuple[str, int], ...] = ()
    alpha_pattern: tuple[tuple[str, float], ...] = ()
    source: str = ""

    def scale_for(self, module: str, actual_rank: int) -> float:
        rank = _pattern_value(self.rank_pattern, module)
        rank = int(rank) if rank is not None else (self.rank or actual_rank)
        alpha = _pattern_value(self.alpha_pattern, module)
        alpha = float(alpha) if alpha is not None else self.alpha
        return alpha / math.sqrt(rank) if self.use_rslora else alpha / rank

    def alpha_tensor_value(self, module: str, actual_rank: int) -> float:
        """The ``.alpha`` value that makes ComfyUI's ``alpha / rank`` equal :meth:`scale_for`."""
        return self.scale_for(module, actual_rank) * actual_rank


def _pattern_value(patterns: tuple[tuple[str, Any], ...], module: str):
    for pat, value in patterns:
        if module == pat or module.endswith("." + pat):
            return value
        try:
            if re.fullmatch(rf"(.*\.)?{pat}", module):
                return value
        except re.error:
            continue
    return None


def parse_peft_config(cfg: Mapping[str, Any], source: str) -> PeftScale | None:
    """Read rank and alpha from a LoRA config dict; ``None`` when it names no alpha.

    Accepts PEFT's names (``r``, ``lora_alpha``, ``use_rslora``, ``rank_pattern``,
    ``alpha_pattern``), the short ``rank`` / ``alpha``, diffusers' component prefix
    (``transformer.r``...) and the Radial Attention authors' ``{"lora_params": {"lora_rank",
    "lora_alpha"}}``.
    """
    flat = {}
    for k, v in cfg.items():
        flat[k.split(".", 1)[1] if k.startswith("transformer.") else k] = v
    # The Radial Attention authors' lora_config.json nests them: {"lora_params": {"lora_rank": 128,
    # "lora_alpha": 64}} (their hunyuan_t2v_inference.py scales the LoRA by lora_alpha / lora_rank).
    nested = flat.get("lora_params")
    if isinstance(nested, Mapping):
        flat = {**flat, **nested}
    alpha = flat.get("lora_alpha", flat.get("alpha", flat.get("network_alpha")))
    rank = flat.get("r", flat.get("rank", flat.get("lora_rank", flat.get("network_dim"))))
    if alpha is None:
        return None
    try:
        alpha_f = float(alpha)
        rank_i = int(rank) if rank is not None else None
    except (TypeError, ValueError):
        raise ValueError(
            f"{source}: rank/alpha must be numbers; got rank={rank!r}, alpha={alpha!r}. "
            "Write e.g. {\"r\": 16, \"lora_alpha\": 16}."
        ) from None
    if rank_i is not None and rank_i <= 0:
        raise ValueError(f"{source}: rank must be a positive integer; got {rank!r}.")

    def pairs(name):
        value = flat.get(name) or {}
        if not isinstance(value, Mapping):
            raise ValueError(f"{source}: {name} must be an object of module pattern -> number; got {value!r}.")
        return tuple((str(k), v) for k, v in value.items())

    return PeftScale(
        rank=rank_i,
        alpha=alpha_f,
        use_rslora=bool(flat.get("use_rslora", False)),
        rank_pattern=pairs("rank_pattern"),
        alpha_pattern=pairs("alpha_pattern"),
        source=source,
    )
