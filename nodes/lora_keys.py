"""LoRA key formats: recognise them and map them onto ComfyUI's model weight names.

Pure Python (no ``comfy`` import, no torch): the node feeds in the model's weight names and shapes
and gets back extra entries for ComfyUI's own LoRA key map (``comfy.lora.model_lora_keys_unet``).
ComfyUI 0.3.75 already maps, for Wan and HunyuanVideo,

* ``diffusion_model.<comfy module>`` (the ComfyUI/original format),
* ``lora_unet_<comfy module with "_">`` (Kohya / musubi-tuner),
* for HunyuanVideo also diffusion-pipe's ``transformer.double_blocks.N.img_attn_qkv`` style;

it does **not** map the diffusers/PEFT module names (``transformer.blocks.N.attn1.to_q``,
``transformer.transformer_blocks.N.attn.to_q``, ``single_transformer_blocks``...), nor PEFT's
``base_model.model.`` prefix, nor Kohya keys built from diffusers names. Those are added here.
The diffusers names follow the public diffusers conversion scripts for Wan and HunyuanVideo
(``convert_wan_to_diffusers.py``, ``convert_hunyuan_video_to_diffusers.py``); this module
restates the name correspondence, it does not reuse their code.

The LoRA scale from configs lives in ``radial_core.lora.scale``, the radial metadata in
``radial_core.lora.metadata`` (neither needs ComfyUI); this module knows ComfyUI's names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

# --------------------------------------------------------------------------------------------
# Tensor-name suffixes
# --------------------------------------------------------------------------------------------

# suffix -> role. The suffix list mirrors what ComfyUI's weight adapters read
# (comfy/weight_adapter/*.py and comfy/lora.py: load_lora). Longest suffixes are tried first.
_SUFFIX_ROLES: dict[str, str] = {
    ".lora_up.weight": "up",
    ".lora_down.weight": "down",
    ".lora_mid.weight": "mid",
    "_lora.up.weight": "up",
    "_lora.down.weight": "down",
    ".lora_B.weight": "up",
    ".lora_A.weight": "down",
    ".lora_B.default.weight": "up",
    ".lora_A.default.weight": "down",
    ".lora.up.weight": "up",
    ".lora.down.weight": "down",
    ".lora_linear_layer.up.weight": "up",
    ".lora_linear_layer.down.weight": "down",
    ".lora_B": "up",
    ".lora_A": "down",
    # PEFT lora_bias (diffusers writes a Wan/Hunyuan "diff_b" as this): a bias delta that PEFT
    # scales like the LoRA output. ComfyUI does not read it; the node turns it into a bias patch.
    ".lora_B.bias": "lora_bias",
    ".alpha": "alpha",
    ".dora_scale": "dora_scale",
    ".reshape_weight": "reshape",
    ".diff": "diff",
    ".diff_b": "diff_b",
    ".set_weight": "set_weight",
    ".w_norm": "w_norm",
    ".b_norm": "b_norm",
    # LyCORIS adapters ComfyUI applies itself; we only need to recognise them.
    ".hada_w1_a": "adapter",
    ".hada_w1_b": "adapter",
    ".hada_w2_a": "adapter",
    ".hada_w2_b": "adapter",
    ".hada_t1": "adapter",
    ".hada_t2": "adapter",
    ".lokr_w1": "adapter",
    ".lokr_w2": "adapter",
    ".lokr_w1_a": "adapter",
    ".lokr_w1_b": "adapter",
    ".lokr_w2_a": "adapter",
    ".lokr_w2_b": "adapter",
    ".lokr_t2": "adapter",
    ".a1.weight": "adapter",
    ".a2.weight": "adapter",
    ".b1.weight": "adapter",
    ".b2.weight": "adapter",
    ".oft_blocks": "adapter",
    ".rescale": "adapter",
}
_SUFFIXES_LONGEST_FIRST = sorted(_SUFFIX_ROLES, key=len, reverse=True)

# Roles that carry a weight change by themselves (a module with only "alpha" changes nothing).
_PAYLOAD_ROLES = {"up", "down", "diff", "diff_b", "set_weight", "w_norm", "b_norm", "adapter", "lora_bias"}


def split_lora_key(key: str) -> tuple[str, str] | None:
    """``"x.lora_up.weight" -> ("x", "up")``; ``None`` for a name no LoRA format uses."""
    for suffix in _SUFFIXES_LONGEST_FIRST:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)], _SUFFIX_ROLES[suffix]
    return None


@dataclass
class LoraModule:
    """All tensors of one LoRA module (one targeted weight)."""

    name: str
    tensors: dict[str, str] = field(default_factory=dict)  # role -> tensor name

    @property
    def has_payload(self) -> bool:
        return any(role in _PAYLOAD_ROLES for role in self.tensors)


def group_modules(keys: Iterable[str]) -> tuple[dict[str, LoraModule], list[str]]:
    """Group tensor names by module. Returns (modules, names that fit no LoRA format).

    A ``.lora_A``/``.lora_B`` pair written both with and without ``.weight`` is kept once
    (ComfyUI reads the first form it finds; so do we).
    """
    modules: dict[str, LoraModule] = {}
    unknown: list[str] = []
    for key in keys:
        parts = split_lora_key(key)
        if parts is None:
            unknown.append(key)
            continue
        name, role = parts
        mod = modules.setdefault(name, LoraModule(name))
        if role == "adapter":
            mod.tensors[f"adapter:{key}"] = key
        else:
            mod.tensors.setdefault(role, key)
    return modules, unknown


def detect_format(module_names: Iterable[str]) -> str:
    """A short human name for the key style of a LoRA (for the report only)."""
    names = list(module_names)
    if not names:
        return "empty"
    counts: dict[str, int] = {}
    for n in names:
        if n.startswith(("lora_unet_", "lora_transformer_", "lycoris_")):
            style = "kohya"
        elif n.startswith("base_model.model."):
            style = "peft"
        elif re.search(r"(^|\.)(attn1|attn2|attn|transformer_blocks|single_transformer_blocks)\.", n) or (
            ".to_q" in n or ".to_out" in n or ".ff.net." in n or ".ffn.net." in n
        ):
            style = "diffusers"
        elif n.startswith("diffusion_model."):
            style = "comfyui"
        else:
            style = "original-unprefixed"
        counts[style] = counts.get(style, 0) + 1
    return max(counts, key=counts.get)


# --------------------------------------------------------------------------------------------
# Model families and the diffusers names of their weights
# --------------------------------------------------------------------------------------------


def family_from_image_model(image_model: str | None) -> str:
    """ComfyUI ``unet_config["image_model"]`` -> ``"wan"``, ``"hunyuan"`` or ``"other"``."""
    if not image_model:
        return "other"
    if image_model.startswith("wan"):
        return "wan"
    if image_model == "hunyuan_video":
        return "hunyuan"
    return "other"


# Offsets are ComfyUI's (dim, start, length) triple: the patch applies to weight.narrow(...).
Offset = tuple[int, int, int]
# A map target: a model key, or (key, offset) / (key, offset, transform name) as ComfyUI's
# add_patches reads them; the node turns a transform name into a function.
Target = Any

_WAN_BLOCK = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "self_attn.norm_q": "attn1.norm_q",
    "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
    "cross_attn.k_img": "attn2.add_k_proj",
    "cross_attn.v_img": "attn2.add_v_proj",
    "cross_attn.norm_k_img": "attn2.norm_added_k",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
    "norm3": "norm2",  # diffusers calls the cross-attention norm "norm2"
    "before_proj": "proj_in",  # VACE blocks
    "after_proj": "proj_out",
}
_WAN_TOP = {
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
    "vace_patch_embedding": "vace_patch_embedding",
}

_HY_DOUBLE = {
    "img_attn.proj": "attn.to_out.0",
    "txt_attn.proj": "attn.to_add_out",
    "img_mod.lin": "norm1.linear",
    "txt_mod.lin": "norm1_context.linear",
    "img_mlp.0": "ff.net.0.proj",
    "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj",
    "txt_mlp.2": "ff_context.net.2",
}
_HY_SINGLE = {
    "linear2": "proj_out",
    "modulation.lin": "norm.linear",
}
_HY_REFINER = {
    "self_attn.proj": "attn.to_out.0",
    "mlp.0": "ff.net.0.proj",
    "mlp.2": "ff.net.2",
    "adaLN_modulation.1": "norm_out.linear",
    "norm1": "norm1",
    "norm2": "norm2",
}
_HY_TOP = {
    "img_in.proj": "x_embedder.proj",
    "txt_in.input_embedder": "context_embedder.proj_in",
    "txt_in.t_embedder.in_layer": "context_embedder.time_text_embed.timestep_embedder.linear_1",
    "txt_in.t_embedder.out_layer": "context_embedder.time_text_embed.timestep_embedder.linear_2",
    "txt_in.c_embedder.in_layer": "context_embedder.time_text_embed.text_embedder.linear_1",
    "txt_in.c_embedder.out_layer": "context_embedder.time_text_embed.text_embedder.linear_2",
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "final_layer.linear": "proj_out",
}

_BLOCK_RE = re.compile(r"^(blocks|vace_blocks|double_blocks|single_blocks)\.(\d+)\.(.+)$")
_REFINER_RE = re.compile(r"^txt_in\.individual_token_refiner\.blocks\.(\d+)\.(.+)$")


def _split3(prefix: str, names: tuple[str, str, str], rows: int) -> list[tuple[str, Offset]]:
    if rows % 3:
        return []
    h = rows // 3
    return [(f"{prefix}{n}", (0, i * h, h)) for i, n in enumerate(names)]


def _wan_aliases(module: str, shapes: Mapping[str, tuple]) -> list[tuple[str, Any]]:
    m = _BLOCK_RE.match(module)
    if m:
        kind, idx, rest = m.groups()
        if kind in ("blocks", "vace_blocks") and rest in _WAN_BLOCK:
            return [(f"{kind}.{idx}.{_WAN_BLOCK[rest]}", None)]
        return []
    if module in _WAN_TOP:
        return [(_WAN_TOP[module], None)]
    return []


def _hunyuan_aliases(module: str, shapes: Mapping[str, tuple]) -> list[tuple[str, Any]]:
    """Diffusers names of one HunyuanVideo module; fused qkv weights get one alias per slice."""
    shape = shapes.get(f"diffusion_model.{module}.weight")
    m = _BLOCK_RE.match(module)
    if m:
        kind, idx, rest = m.groups()
        if kind == "double_blocks":
            pre = f"transformer_blocks.{idx}."
            if rest == "img_attn.qkv" and shape:
                return _split3(pre, ("attn.to_q", "attn.to_k", "attn.to_v"), shape[0])
            if rest == "txt_attn.qkv" and shape:
                return _split3(pre, ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"), shape[0])
            if rest in _HY_DOUBLE:
                return [(pre + _HY_DOUBLE[rest], None)]
            return []
        if kind == "single_blocks":
            pre = f"single_transformer_blocks.{idx}."
            if rest == "linear1" and shape:
                out_shape = shapes.get(f"diffusion_model.single_blocks.{idx}.linear2.weight")
                if not out_shape:
                    return []
                h = out_shape[0]
                mlp = shape[0] - 3 * h
                if mlp <= 0:
                    return []
                return [
                    (pre + "attn.to_q", (0, 0, h)),
                    (pre + "attn.to_k", (0, h, h)),
                    (pre + "attn.to_v", (0, 2 * h, h)),
                    (pre + "proj_mlp", (0, 3 * h, mlp)),
                ]
            if rest in _HY_SINGLE:
                return [(pre + _HY_SINGLE[rest], None)]
        return []
    m = _REFINER_RE.match(module)
    if m:
        idx, rest = m.groups()
        pre = f"context_embedder.token_refiner.refiner_blocks.{idx}."
        if rest == "self_attn.qkv" and shape:
            return _split3(pre, ("attn.to_q", "attn.to_k", "attn.to_v"), shape[0])
        if rest in _HY_REFINER:
            return [(pre + _HY_REFINER[rest], None)]
        return []
    if module in _HY_TOP:
        return [(_HY_TOP[module], None)]
    if module == "final_layer.adaLN_modulation.1":
        # diffusers' AdaLayerNormContinuous emits (scale, shift); the original emits (shift, scale).
        return [("norm_out.linear", "swap_halves")]
    return []


_DIFFUSERS_PREFIXES = ("transformer.", "diffusion_model.", "base_model.model.", "")
_ORIGINAL_PREFIXES = ("transformer.", "base_model.model.", "")
_KOHYA_PREFIXES = ("lora_unet_", "lora_transformer_", "lycoris_")


def extra_key_map(model_shapes: Mapping[str, tuple], family: str) -> dict[str, Target]:
    """LoRA module name -> ComfyUI map target, for the names ComfyUI does not map itself.

    ``model_shapes``: the model's state-dict names (``diffusion_model.…``) and shapes. The caller
    merges the result *under* ComfyUI's own map (ComfyUI's entries win on a clash).
    """
    if family == "wan":
        alias_fn = _wan_aliases
    elif family == "hunyuan":
        alias_fn = _hunyuan_aliases
    else:
        return {}
    out: dict[str, Target] = {}
    for key in model_shapes:
        if not (key.startswith("diffusion_model.") and key.endswith(".weight")):
            continue
        module = key[len("diffusion_model.") : -len(".weight")]
        for prefix in _ORIGINAL_PREFIXES:
            out.setdefault(prefix + module, key)
        for name, extra in alias_fn(module, model_shapes):
            if extra is None:
                target: Target = key
            elif isinstance(extra, str):
                target = (key, None, extra)
            else:
                target = (key, extra)
            for prefix in _DIFFUSERS_PREFIXES:
                out.setdefault(prefix + name, target)
            flat = name.replace(".", "_")
            for prefix in _KOHYA_PREFIXES:
                out.setdefault(prefix + flat, target)
    return out


def target_key(target: Target) -> str:
    return target if isinstance(target, str) else target[0]


def bias_target(target: Target) -> Target:
    """The same target on the weight's bias (same rows / transform)."""
    key = target_key(target)
    bias = key[: -len(".weight")] + ".bias"
    return bias if isinstance(target, str) else (bias, *target[1:])


def target_offset(target: Target) -> Offset | None:
    if isinstance(target, str) or len(target) < 2:
        return None
    return target[1]


def target_shape(target: Target, model_shapes: Mapping[str, tuple]) -> tuple | None:
    """Shape the LoRA delta must have for this target (the narrowed slice for fused weights)."""
    shape = model_shapes.get(target_key(target))
    if shape is None:
        return None
    off = target_offset(target)
    if off is None:
        return tuple(shape)
    dim, _start, length = off
    shape = list(shape)
    shape[dim] = length
    return tuple(shape)


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def check_module_shapes(
    modules: Mapping[str, LoraModule],
    targets: Mapping[str, Target],
    lora_shapes: Mapping[str, tuple],
    model_shapes: Mapping[str, tuple],
) -> list[str]:
    """Problems (one line each) with the matched modules' tensor shapes; empty when all fit.

    Checks, per module: the up/down pair is complete, up's rank (dim 1) equals down's rank
    (dim 0), up's rows equal the target's output size and down's columns its input size; a
    ``diff`` has the target's shape. ComfyUI itself would only log such a patch and skip it.
    """
    problems: list[str] = []
    for name, target in targets.items():
        mod = modules[name]
        t = mod.tensors
        want = target_shape(target, model_shapes)
        key = target_key(target)
        if ("up" in t) != ("down" in t):
            have = t.get("up") or t.get("down")
            missing = "down (lora_A / lora_down)" if "up" in t else "up (lora_B / lora_up)"
            problems.append(f"{have}: its {missing} partner is missing")
            continue
        if "up" in t:
            up, down = tuple(lora_shapes[t["up"]]), tuple(lora_shapes[t["down"]])
            if len(up) < 2 or len(down) < 2:
                problems.append(f"{t['up']} {list(up)} / {t['down']} {list(down)}: LoRA matrices must be 2-D or more")
                continue
            if up[1] != down[0]:
                problems.append(
                    f"{t['up']} {list(up)} and {t['down']} {list(down)}: rank differs (up has {up[1]} "
                    f"columns, down has {down[0]} rows)"
                )
                continue
            if want is not None and "mid" not in t and "reshape" not in t:
                if up[0] != want[0] or _numel(down[1:]) != _numel(want[1:]):
                    problems.append(
                        f"{t['up']} {list(up)} @ {t['down']} {list(down)} does not fit {key} {list(want)}"
                    )
        if "lora_bias" in t and want is not None:
            b = tuple(lora_shapes[t["lora_bias"]])
            bias_key = key[: -len(".weight")] + ".bias" if key.endswith(".weight") else None
            if bias_key not in model_shapes:
                problems.append(f"{t['lora_bias']}: a bias delta, but {key} has no bias")
            elif b != (want[0],):
                problems.append(f"{t['lora_bias']} {list(b)} does not fit the bias of {key} ({want[0]} outputs)")
        if "diff" in t and want is not None:
            d = tuple(lora_shapes[t["diff"]])
            if d != tuple(want):
                problems.append(f"{t['diff']} {list(d)} does not fit {key} {list(want)}")
    return problems
