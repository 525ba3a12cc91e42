"""Radial settings a LoRA carries (safetensors metadata or side-car config). No ComfyUI.

Every value is read and written by the settings contract's parsers (``radial_core.settings``):
the same ranges, finite numbers and ``dense_blocks`` grammar as the nodes and the routes, so a
patched model's settings can always be saved and a saved file's settings always load.

The keys are documented in docs/lora-format.md; :func:`resolve_radial_settings` is what the
loader applies, :func:`radial_metadata` is what a trainer writes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Mapping

from ..settings import SETTINGS, SettingError, parse_dense_blocks, quote

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
# Families the Radial Attention Patch knows (the settings contract's "family": the one family
# registry, radial_core.families); "auto" = detect from the weights. Only needed to tell Wan
# 2.2-A14B (decay 0.8) from Wan 2.1 (0.2): their weights look the same.
FAMILIES = SETTINGS["family"].choices

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


def _parse_setting(name: str, value: Any) -> Any:
    """One setting by the contract's parser (``radial_core.settings``: the ranges and the grammar
    the nodes use); raises ``SettingError``. ``dense_blocks`` comes back as its canonical text,
    ``decay_factor`` 0 as None (the family's default)."""
    if name not in SETTINGS:
        raise KeyError(name)
    if name == "dense_blocks":
        return parse_dense_blocks(value).text
    parsed = SETTINGS[name].parse(value)
    if name == "decay_factor" and parsed == 0:
        return None
    return parsed


METADATA_FIX = (
    "Fix: correct it in the file's metadata, or put the right value in a side-car NAME.radial.json "
    "beside the file, which wins over the metadata (docs/lora-format.md); ComfyUI's LoraLoaderModelOnly "
    "loads the weights alone."
)


def _expected(name: str) -> str:
    return SETTINGS[name].rule()


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

    A bad metadata value raises ``ValueError`` naming the key, the value, what is expected and
    the fix, whether or not an override replaces that setting: a file with a value outside the
    settings contract is a broken file, refused as a whole (the loader node does so at queue
    time, where it cannot see its other inputs), and the side-car config is where a user corrects
    a downloaded file without rewriting it.
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
        try:
            values[name] = _parse_setting(name, raw)
        except SettingError:
            raise ValueError(
                f"{source}: {RADIAL_PREFIX}{key} = {quote(raw)} is invalid; expected "
                f"{_expected(name)}. {METADATA_FIX}"
            ) from None
        sources[name] = "metadata"
    for name, raw in overrides.items():
        if name not in values:
            raise ValueError(f"unknown radial setting {name!r}; known: {', '.join(values)}")
        try:
            values[name] = _parse_setting(name, raw)
        except SettingError as exc:
            raise ValueError(f"node input {name}: {exc.problem}") from None
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
            if key in SETTINGS:  # tuned_frames, tuned_width, tuned_height: the contract's ranges
                try:
                    value = SETTINGS[key].parse(value)
                except SettingError as exc:
                    raise ValueError(f"{key}: {exc.problem}") from None
            out[RADIAL_PREFIX + key] = str(value)
            continue
        name = _RADIAL_ALIASES.get(key)
        if name is None:
            known = ", ".join(list(_RADIAL_ALIASES) + list(RADIAL_INFO_KEYS))
            raise ValueError(f"unknown radial setting {key!r}; known: {known}")
        try:
            parsed = _parse_setting(name, value)
        except SettingError as exc:
            raise ValueError(f"{key}: {exc.problem}") from None
        out[RADIAL_PREFIX + key] = "0" if parsed is None else str(parsed)
    return out
