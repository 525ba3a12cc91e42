"""Radial settings a LoRA carries (safetensors metadata or side-car config). No ComfyUI (the family list is the registry's, radial_core.families).

The keys are documented in docs/lora-format.md; :func:`resolve_radial_settings` is what the
loader applies, :func:`radial_metadata` is what a trainer writes.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from ..families import families

logger = logging.getLogger(__name__)

RADIAL_PREFIX = "radial_attn."

# What the Radial Attention authors use for length extension with a LoRA: the first 2 blocks and
# the first 2 sampling steps stay dense. decay_factor None = the patch's family default.
LENGTH_EXTENSION_DEFAULTS: dict[str, Any] = {
    "decay_factor": None,
    "block_size": 128,
    "dense_blocks": "2",
    "dense_steps_first": 2,
    "dense_steps_last": 0,
    "dist1": "full",
    "family": "auto",
}
# Families the Radial Attention Patch knows (the family registry, radial_core.families);
# "auto" = detect from the weights. Only needed to tell Wan 2.2-A14B (decay 0.8) from Wan 2.1
# (0.2): their weights look the same.
FAMILY_VALUES = ("auto", *families())

# metadata key (after "radial_attn.") -> setting name
_RADIAL_ALIASES = {
    "decay_factor": "decay_factor",
    "block_size": "block_size",
    "dense_blocks": "dense_blocks",
    "dense_layers": "dense_blocks",
    "dense_steps": "dense_steps_first",
    "dense_steps_first": "dense_steps_first",
    "dense_timesteps": "dense_steps_first",
    "dense_steps_last": "dense_steps_last",
    "dist1": "dist1",
    "family": "family",
}
# Informational keys: reported, never applied.
RADIAL_INFO_KEYS = ("tuned_frames", "tuned_width", "tuned_height", "base_model", "version")


_DENSE_PART = re.compile(r"^\d+(-\d+)?$")


def _parse_dense_blocks(value: Any) -> str:
    """Count ("2"), list ("0,1,39", ranges "0-3", "5," = block 5 only), int or JSON list."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        if value < 0:
            raise ValueError
        return str(value)
    if isinstance(value, (list, tuple)):
        items = [int(v) for v in value]
        if any(i < 0 for i in items):
            raise ValueError
        return ",".join(str(i) for i in items) + ("," if len(items) == 1 else "")
    text = str(value).strip()
    if text.lower() in ("", "none"):
        return "0"
    parts = [p.strip() for p in text.split(",")]
    if not all(_DENSE_PART.match(p) for p in parts if p) or not any(parts):
        raise ValueError
    return text


def _parse_setting(name: str, value: Any) -> Any:
    """Validate one setting; raises ValueError (message filled in by the caller)."""
    if name == "decay_factor":
        f = float(value)
        if not (0.0 < f <= 4.0) or math.isnan(f):
            raise ValueError
        return f
    if name == "block_size":
        i = int(str(value).strip())
        if i not in (64, 128):
            raise ValueError
        return i
    if name == "dense_blocks":
        return _parse_dense_blocks(value)
    if name in ("dense_steps_first", "dense_steps_last"):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        i = int(str(value).strip()) if not isinstance(value, (int, float)) else int(value)
        if i < 0 or i > 10000:
            raise ValueError
        return i
    if name == "dist1":
        s = str(value).strip().lower()
        if s not in ("full", "half"):
            raise ValueError
        return s
    if name == "family":
        s = str(value).strip().lower()
        if s not in FAMILY_VALUES:
            raise ValueError
        return s
    raise KeyError(name)


_EXPECTED = {
    "decay_factor": "a number in (0, 4], e.g. 0.2 (Wan 2.1), 0.8 (Wan 2.2), 0.95 (HunyuanVideo)",
    "block_size": "64 or 128",
    "dense_blocks": 'a count of first blocks ("2") or a list of block indices ("0,1,39", "0-3", "5,")',
    "dense_steps_first": "a whole number of first sampling steps >= 0",
    "dense_steps_last": "a whole number of last sampling steps >= 0",
    "dist1": '"full" or "half"',
    "family": "one of " + ", ".join(FAMILY_VALUES),
}


def collect_radial_entries(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Pull the ``radial_attn`` entries out of safetensors metadata or a side-car dict.

    Accepted spellings: flat ``"radial_attn.decay_factor": "0.2"`` keys, or one key
    ``"radial_attn"`` holding an object (or, in safetensors metadata, its JSON text).
    Returns ``{short key: raw value}``.
    """
    out: dict[str, Any] = {}
    if not metadata:
        return out
    blob = metadata.get("radial_attn")
    if isinstance(blob, str):
        try:
            blob = json.loads(blob)
        except json.JSONDecodeError:
            raise ValueError(
                f'metadata "radial_attn" is not valid JSON: {blob[:80]!r}. Write an object such as '
                '{"decay_factor": 0.2, "dense_blocks": 2}, or flat "radial_attn.<key>" entries.'
            ) from None
    if blob is not None:
        if not isinstance(blob, Mapping):
            raise ValueError(f'metadata "radial_attn" must be an object; got {blob!r}.')
        out.update({str(k): v for k, v in blob.items()})
    for k, v in metadata.items():
        if isinstance(k, str) and k.startswith(RADIAL_PREFIX):
            out[k[len(RADIAL_PREFIX) :]] = v
    return out


@dataclass
class RadialSettings:
    """Settings for ``apply_radial_patch`` plus where each came from."""

    values: dict[str, Any]
    sources: dict[str, str]  # setting -> "metadata" | "override" | "default"
    info: dict[str, Any]  # informational metadata (tuned_frames...)
    ignored: list[str]  # unknown radial_attn.* keys

    def describe(self) -> str:
        parts = []
        for k, v in self.values.items():
            shown = "family default" if v is None else v
            parts.append(f"{k}={shown} ({self.sources[k]})")
        if self.info:
            parts.append("tuned for " + ", ".join(f"{k}={v}" for k, v in self.info.items()))
        return ", ".join(parts)


def resolve_radial_settings(
    metadata: Mapping[str, Any] | None,
    overrides: Mapping[str, Any] | None = None,
    source: str = "LoRA metadata",
) -> RadialSettings:
    """Metadata settings, then node overrides on top, then the length-extension defaults.

    A bad metadata value raises ``ValueError`` naming the key, the value and what is expected,
    unless an override replaces that setting.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    entries = collect_radial_entries(metadata)
    values = dict(LENGTH_EXTENSION_DEFAULTS)
    sources = {k: "default" for k in values}
    info: dict[str, Any] = {}
    ignored: list[str] = []
    for key, raw in entries.items():
        if key in RADIAL_INFO_KEYS:
            info[key] = raw
            continue
        name = _RADIAL_ALIASES.get(key)
        if name is None:
            ignored.append(key)
            continue
        if name in overrides:
            continue
        try:
            values[name] = _parse_setting(name, raw)
        except (TypeError, ValueError):
            raise ValueError(
                f"{source}: {RADIAL_PREFIX}{key} = {raw!r} is invalid; expected {_EXPECTED[name]}. "
                "Fix the LoRA's metadata (see docs/lora-format.md) or set this setting on the node."
            ) from None
        sources[name] = "metadata"
    for name, raw in overrides.items():
        if name not in values:
            raise ValueError(f"unknown radial setting {name!r}; known: {', '.join(values)}")
        try:
            values[name] = _parse_setting(name, raw)
        except (TypeError, ValueError):
            raise ValueError(f"node input {name} = {raw!r} is invalid; expected {_EXPECTED[name]}.") from None
        sources[name] = "override"
    if ignored:
        logger.warning(
            "%s: unknown radial keys ignored: %s (known: %s)",
            source,
            ", ".join(RADIAL_PREFIX + k for k in ignored),
            ", ".join(RADIAL_PREFIX + k for k in list(_RADIAL_ALIASES) + list(RADIAL_INFO_KEYS)),
        )
    return RadialSettings(values=values, sources=sources, info=info, ignored=ignored)


def radial_metadata(**settings: Any) -> dict[str, str]:
    """Safetensors metadata for a trainer to store with a LoRA, validated like the loader reads it.

    ``radial_metadata(decay_factor=0.2, dense_blocks=2, dense_steps=2, tuned_frames=161)`` ->
    ``{"radial_attn.decay_factor": "0.2", ...}``; pass it as ``metadata=`` to
    ``safetensors.torch.save_file``. Accepts the keys of docs/lora-format.md (without the prefix).
    """
    out: dict[str, str] = {}
    for key, value in settings.items():
        if value is None:
            continue
        if key in RADIAL_INFO_KEYS:
            out[RADIAL_PREFIX + key] = str(value)
            continue
        name = _RADIAL_ALIASES.get(key)
        if name is None:
            known = ", ".join(list(_RADIAL_ALIASES) + list(RADIAL_INFO_KEYS))
            raise ValueError(f"unknown radial setting {key!r}; known: {known}")
        try:
            parsed = _parse_setting(name, value)
        except (TypeError, ValueError):
            raise ValueError(f"{key} = {value!r} is invalid; expected {_EXPECTED[name]}.") from None
        out[RADIAL_PREFIX + key] = str(parsed)
    return out
