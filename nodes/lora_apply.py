"""Applying a LoRA through ComfyUI's own machinery: map, check, convert, patch a clone.

``prepare_lora`` builds ComfyUI's key map (``comfy.lora.model_lora_keys_unet``) plus the names
ComfyUI lacks (``nodes.lora_keys``), refuses LoRAs that match nothing or do not fit, adds
the config scale (``radial_core.lora.scale``) and lets ``comfy.lora.load_lora`` build the patches.
``apply_lora`` adds them to a clone with ``ModelPatcher.add_patches``: patches, not edits, so the
LoRA stacks with other LoRA loaders and with ComfyUI's weight offloading.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch

import comfy.lora
import comfy.lora_convert

from ..radial_core.lora import file as lora_file, scale as lora_scale
from ..radial_core.lora.file import LoraFileError
from . import lora_keys

logger = logging.getLogger(__name__)

MAX_LISTED_UNMATCHED = 5


def _swap_halves(diff: torch.Tensor) -> torch.Tensor:
    """diffusers' final norm emits (scale, shift); ComfyUI's HunyuanVideo emits (shift, scale)."""
    half = diff.shape[0] // 2
    return torch.cat([diff[half:], diff[:half]], dim=0)


_TRANSFORMS = {"swap_halves": _swap_halves}


def _comfy_target(target: Any) -> Any:
    """A ``lora_keys`` target -> the key form ``ModelPatcher.add_patches`` reads."""
    if isinstance(target, tuple) and len(target) == 3 and isinstance(target[2], str):
        return (target[0], target[1], _TRANSFORMS[target[2]])
    return target


@dataclass
class LoraReport:
    path: str
    key_format: str = ""
    total_tensors: int = 0
    matched_tensors: int = 0
    matched_modules: int = 0
    patched_weights: int = 0
    unmatched: list[str] = field(default_factory=list)
    scale_note: str = ""
    radial_note: str = ""
    strength: float = 1.0

    def text(self) -> str:
        lines = [
            f"Radial LoRA: {os.path.basename(self.path.rstrip('/'))} ({self.key_format} keys), "
            f"strength {self.strength:g}",
            f"matched {self.matched_tensors} of {self.total_tensors} LoRA tensors "
            f"({self.matched_modules} modules -> {self.patched_weights} model weights)",
        ]
        if self.unmatched:
            shown = ", ".join(self.unmatched[:MAX_LISTED_UNMATCHED])
            more = len(self.unmatched) - MAX_LISTED_UNMATCHED
            lines.append(f"not matched ({len(self.unmatched)}): {shown}" + (f" and {more} more" if more > 0 else ""))
        if self.scale_note:
            lines.append(self.scale_note)
        if self.radial_note:
            lines.append(self.radial_note)
        return "\n".join(lines)


@dataclass
class PreparedLora:
    """Everything checked and converted; nothing applied to any model yet."""

    patches: dict
    report: LoraReport


def _peft_scale(source: lora_file.LoraSource) -> tuple[lora_scale.PeftScale | None, str]:
    """rank/alpha from the side-car config or diffusers' ``lora_adapter_metadata``, and where from."""
    if source.config:
        scale = lora_scale.parse_peft_config(source.config, source.config_path or source.path)
        if scale is not None:
            return scale, os.path.basename(source.config_path or source.path)
    meta = source.metadata.get("lora_adapter_metadata")
    if meta:
        try:
            cfg = json.loads(meta)
        except json.JSONDecodeError:
            logger.warning("%s: lora_adapter_metadata is not JSON; ignored", source.weights_path)
            return None, ""
        if isinstance(cfg, dict):
            label = f"{source.weights_path} (lora_adapter_metadata)"
            return lora_scale.parse_peft_config(cfg, label), "lora_adapter_metadata"
    return None, ""


def prepare_lora(model, source: lora_file.LoraSource) -> PreparedLora:
    """Map, check and convert a LoRA for ``model`` (a ModelPatcher). Raises LoraFileError."""
    lora_sd = comfy.lora_convert.convert_lora(dict(source.tensors))
    model_shapes = {k: tuple(v.shape) for k, v in model.model_state_dict().items()}
    image_model = getattr(model.model, "model_config", None)
    image_model = image_model.unet_config.get("image_model") if image_model is not None else None
    family = lora_keys.family_from_image_model(image_model)

    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    for name, target in lora_keys.extra_key_map(model_shapes, family).items():
        key_map.setdefault(name, target)

    modules, _unknown = lora_keys.group_modules(lora_sd.keys())
    targets = {n: key_map[n] for n, m in modules.items() if n in key_map and m.has_payload}
    report = LoraReport(path=source.path, key_format=lora_keys.detect_format(modules), total_tensors=len(lora_sd))
    matched_names = {k for n in targets for k in modules[n].tensors.values()}
    report.matched_tensors = len(matched_names)
    report.matched_modules = len(targets)
    report.unmatched = sorted(k for k in lora_sd if k not in matched_names)

    if not targets:
        sample = ", ".join(sorted(lora_sd)[:3]) or "(no tensors)"
        raise LoraFileError(
            source.path,
            f"none of its {len(lora_sd)} tensors matches a weight of this {image_model or 'unknown'} model "
            f"(first keys: {sample}). Supported key formats: ComfyUI (diffusion_model.blocks.N.self_attn.q."
            "lora_down.weight), diffusers/PEFT (transformer.blocks.N.attn1.to_q.lora_A.weight), Kohya "
            "(lora_unet_blocks_N_self_attn_q.lora_down.weight); is it a LoRA for another model?",
        )

    lora_shapes = {k: tuple(v.shape) for k, v in lora_sd.items() if hasattr(v, "shape")}
    problems = lora_keys.check_module_shapes(modules, targets, lora_shapes, model_shapes)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise LoraFileError(source.path, "mismatched shapes: " + "; ".join(problems[:3]) + more)

    scale, scale_from = _peft_scale(source)
    if scale is not None:
        added = 0
        for name in targets:
            t = modules[name].tensors
            if "alpha" not in t and "up" in t:
                rank = int(lora_sd[t["down"]].shape[0])
                lora_sd[f"{name}.alpha"] = torch.tensor(scale.alpha_tensor_value(name, rank))
                added += 1
        report.scale_note = (
            f"scale from {scale_from}: alpha {scale.alpha:g} / rank "
            f"{scale.rank if scale.rank is not None else '(per tensor)'}{' (rsLoRA)' if scale.use_rslora else ''}"
            f" on {added} modules without alpha tensors"
        )
    elif any("alpha" not in modules[n].tensors and "up" in modules[n].tensors for n in targets):
        report.scale_note = "no alpha in the file and no lora_config.json: scale 1.0 (PEFT convention)"

    to_load = {n: _comfy_target(t) for n, t in targets.items()}
    patches = comfy.lora.load_lora(lora_sd, to_load, log_missing=False)
    # PEFT lora_bias (".lora_B.bias"): a bias delta scaled like the LoRA's output
    for name, target in targets.items():
        t = modules[name].tensors
        if "lora_bias" not in t:
            continue
        bias = lora_sd[t["lora_bias"]].float()
        if "alpha" in t and "down" in t:
            bias = bias * (float(lora_sd[t["alpha"]]) / lora_sd[t["down"]].shape[0])
        elif scale is not None and "down" in t:
            bias = bias * scale.scale_for(name, int(lora_sd[t["down"]].shape[0]))
        patches[_comfy_target(lora_keys.bias_target(target))] = ("diff", (bias,))
    return PreparedLora(patches=patches, report=report)


def apply_lora(model, prepared: PreparedLora, strength: float):
    """Clone ``model`` and add the prepared patches; the input model is never modified."""
    out = model.clone()
    added = out.add_patches(prepared.patches, strength)
    prepared.report.patched_weights = len({k if isinstance(k, str) else k[0] for k in added})
    missing = [k for k in prepared.patches if k not in set(added)]
    if missing:
        logger.warning(
            "Radial LoRA: %d patches found no model weight: %s", len(missing), missing[:MAX_LISTED_UNMATCHED]
        )
    return out
