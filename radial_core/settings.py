"""The pack's settings, each stated once: type, range or choices, default, what 0 / empty means,
the one parser, the tooltip. No ComfyUI.

Everything that takes a setting reads it from here: the node schemas (``nodes/*_node.py``), the
queue-time checks (``nodes/validation.py``), ``apply_radial_patch``, LoRA metadata read and written
(``radial_core.lora.metadata``, Save Radial LoRA), and the HTTP routes (``nodes/routes.py``; the
front end reads :func:`limits_json` through ``GET /radial_attention/limits``). A value is refused
with :class:`SettingError`, whose message names the setting, the value (cut short), the rule and
the fix.

Every float is finite: NaN and infinity are refused by every parser here (ComfyUI's own min/max
check is false for NaN, so it cannot be left to it).

``dense_blocks`` has one grammar (:func:`parse_dense_blocks`), read in time linear in the text into
intervals of block indices, never expanded into a set of every index written: ``0-999999999``
costs what ``0-3`` costs, and is refused because its end is above :data:`DENSE_BLOCK_MAX`.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any

from .families import families

# One decay range everywhere (nodes, routes, LoRA metadata, Save Radial LoRA): 0 to 10, 0 = the
# family's default. The published defaults are 0.2 to 0.95. The window at frame distance d is
# P / 2**bit_length(d) * decay tokens (radial_core.mask, P >= tokens per frame), so at 10 frames up
# to 7 apart already see each other whole: larger values would mostly bring back dense attention,
# which dense_blocks / dense_steps do more directly. The nodes always offered 0-10; LoRA metadata
# stopped at 4, so a model patched with decay 5 trained but could not be saved. Metadata now takes
# what the nodes take, so every patched model's settings save and load.
DECAY_MAX = 10.0
DENSE_STEPS_MAX = 1000
# No supported model has more than 60 transformer blocks (HunyuanVideo: 20 + 40); the cap only
# bounds what a typed value may name, so that an index is never larger than a few digits.
DENSE_BLOCK_MAX = 1023
DENSE_BLOCKS_MAX_CHARS = 8192  # longer texts are refused before they are read
_SHOWN = 40  # characters of a bad value quoted back in a message

FAMILY_KEYS = tuple(families())

logger = logging.getLogger(__name__)
_renames_logged: set[tuple[str, str]] = set()


class SettingError(ValueError):
    """A value a setting does not take. ``str()`` is the whole message: the setting, the value,
    the rule and the fix; ``problem`` is the same without the setting's name (for messages that
    name it already, such as ComfyUI's error on an input)."""

    def __init__(self, name: str, problem: str):
        self.name = name
        self.problem = problem
        super().__init__(f"{name}: {problem}")


def quote(value: Any, limit: int = _SHOWN) -> str:
    """``repr`` of a user value, cut to ``limit`` characters (a message never echoes a whole paste)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


# Text forms of numbers: ASCII digits only. Python's int() and float() also read Arabic-Indic and
# fullwidth digits, underscores, "nan", "inf" and "1e400", and re's \d and $ match non-ASCII digits
# and a trailing newline; none of those is a value a widget or a metadata writer produces.
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,9}", re.ASCII)
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]{1,9}(\.[0-9]{0,20})?|\.[0-9]{1,20})([eE][+-]?[0-9]{1,3})?", re.ASCII)


def _decay_defaults() -> str:
    tuned = [f"{s.label} {s.default_decay:g}" for s in families().values() if s.tuned]
    untuned = [f"{s.label} {s.default_decay:g}" for s in families().values() if not s.tuned]
    return ("the authors' settings: " + ", ".join(tuned)
            + ("; untuned: " + ", ".join(untuned) if untuned else ""))


@dataclass(frozen=True)
class Setting:
    """One setting. ``kind``: "int", "float", "choice" or "text" (dense_blocks)."""

    name: str
    kind: str
    default: Any
    tooltip: str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple = ()
    zero: str = ""  # what 0 (or empty) means, where it means something
    fix: str = ""  # what to type instead of a bad value
    # (old, new) choice names a saved workflow or a caller may still hold: accepted, read as
    # the new one; never offered
    renamed: tuple = ()

    # -- the rule, in words ----------------------------------------------------------------
    def rule(self) -> str:
        if self.kind == "int":
            text = f"a whole number from {self.minimum} to {self.maximum}"
        elif self.kind == "float":
            text = f"a finite number from {self.minimum:g} to {self.maximum:g}"
        elif self.kind == "choice":
            text = "one of " + ", ".join(str(c) for c in self.choices)
        else:
            text = DENSE_BLOCKS_RULE
        return text + (f" ({self.zero})" if self.zero else "")

    def _refuse(self, value: Any, why: str = "") -> SettingError:
        lead = f"{quote(value)} is not allowed" + (f" ({why})" if why else "")
        fix = self.fix or f"e.g. {self.default}"
        return SettingError(self.name, f"{lead}. Allowed: {self.rule()}. Fix: {fix}.")

    # -- parsing -----------------------------------------------------------------------------
    def parse(self, value: Any) -> Any:
        """The value as the pack uses it; raises :class:`SettingError`. Takes what nodes, LoRA
        metadata (text or JSON) and Python callers pass: numbers, or their ASCII text."""
        if self.kind == "text":
            try:
                return parse_dense_blocks(value)
            except SettingError as exc:
                raise SettingError(self.name, exc.problem) from None
        if self.kind == "choice":
            return self._parse_choice(value)
        number = self._number(value)
        if not self.minimum <= number <= self.maximum:
            raise self._refuse(value, "out of range")
        return number

    def _number(self, value: Any):
        if isinstance(value, bool):
            raise self._refuse(value, "a yes/no value")
        if isinstance(value, str):
            text = value.strip()
            pattern = _INT_TEXT if self.kind == "int" else _FLOAT_TEXT
            if not pattern.fullmatch(text):
                raise self._refuse(value, "not a number written in digits")
            value = int(text) if self.kind == "int" else float(text)
        if isinstance(value, float) and not math.isfinite(value):
            raise self._refuse(value, "NaN and infinity are not numbers")
        if self.kind == "int":
            if isinstance(value, float):
                if not value.is_integer():
                    raise self._refuse(value, "not a whole number")
                value = int(value)
            if not isinstance(value, int):
                raise self._refuse(value, "not a number")
            return value
        if not isinstance(value, (int, float)):
            raise self._refuse(value, "not a number")
        return float(value)

    def _parse_choice(self, value: Any):
        if isinstance(value, bool):
            raise self._refuse(value)
        for choice in self.choices:
            if value == choice and type(value) is type(choice):
                return choice
        if isinstance(value, str):
            text = value.strip()
            for choice in self.choices:
                if isinstance(choice, int) and _INT_TEXT.fullmatch(text) and int(text) == choice:
                    return choice
                if isinstance(choice, str) and text.lower() == choice.lower():
                    return choice
            new = self.rename(text)
            if new is not None:
                return new
        elif isinstance(value, int):
            for choice in self.choices:
                if isinstance(choice, int) and value == choice:
                    return choice
        raise self._refuse(value)

    def rename(self, value: Any) -> Any:
        """The current choice an old name stands for (logged once per process), else None."""
        if not isinstance(value, str):
            return None
        for old, new in self.renamed:
            if value.strip().lower() == old:
                if (self.name, old) not in _renames_logged:
                    _renames_logged.add((self.name, old))
                    logger.info("%s %r is the old name of %r (what it runs); read as %r",
                                self.name, old, new, new)
                return new
        return None

    def parse_query(self, raw: str) -> Any:
        """A value as an HTTP query gives it: exact ASCII text, no spaces, no trailing newline."""
        if self.kind in ("int", "float", "choice") and raw != raw.strip():
            raise self._refuse(raw, "spaces or a line break around the value")
        if (self.kind == "choice" and isinstance(self.choices[0], str) and raw not in self.choices
                and raw not in dict(self.renamed)):
            raise self._refuse(raw)
        return self.parse(raw)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is refused (without the setting's name), or None."""
        try:
            self.parse(value)
        except SettingError as exc:
            return exc.problem
        return None

    def as_json(self) -> dict:
        """This setting for ``GET /radial_attention/limits`` (see :func:`limits_json`)."""
        out: dict[str, Any] = {"type": self.kind, "default": self.default, "tooltip": self.tooltip,
                               "rule": self.rule()}
        if self.kind in ("int", "float"):
            out.update(min=self.minimum, max=self.maximum)
            if self.step is not None:
                out["step"] = self.step
        if self.kind == "choice":
            out["choices"] = list(self.choices)
            if self.renamed:
                out["renamed"] = dict(self.renamed)
        if self.kind == "text":
            out.update(max_index=DENSE_BLOCK_MAX, max_chars=DENSE_BLOCKS_MAX_CHARS)
        if self.zero:
            out["zero"] = self.zero
        return out


# ------------------------------------------------------------------------------------------
# dense_blocks: one grammar
# ------------------------------------------------------------------------------------------

DENSE_BLOCKS_RULE = (f"a number N (the first N blocks), block indices and ranges from 0 to {DENSE_BLOCK_MAX} "
                     "such as 0,1,39 or 0-3, none, or empty")


@dataclass(frozen=True)
class DenseBlocks:
    """A parsed ``dense_blocks``: the first ``count`` blocks, or the listed intervals.

    ``intervals``: sorted, merged, inclusive ``(low, high)`` pairs. ``text``: the value written
    back in one canonical spelling (what LoRA metadata stores). Never a set of every index.
    """

    count: int | None = None
    intervals: tuple[tuple[int, int], ...] = ()
    text: str = "0"

    @property
    def empty(self) -> bool:
        return not self.count and not self.intervals

    def highest(self) -> int | None:
        """The highest block index named, or None when none is."""
        if self.count:
            return self.count - 1
        return self.intervals[-1][1] if self.intervals else None

    def __contains__(self, block: int) -> bool:
        if self.count is not None:
            return 0 <= block < self.count
        return any(lo <= block <= hi for lo, hi in self.intervals)

    def problem_for_model(self, num_blocks: int) -> str | None:
        """Why these blocks do not fit a model of ``num_blocks`` blocks, or None."""
        top = self.highest()
        if top is None or top < num_blocks:
            return None
        if self.count is not None:
            return (f"{self.count} first blocks asked, but this model has {num_blocks} blocks. "
                    f"Fix: use a number from 0 to {num_blocks}.")
        return (f"block {top} asked, but this model has blocks 0 to {num_blocks - 1}. "
                f"Fix: list only indices below {num_blocks}.")

    def indices(self, num_blocks: int) -> frozenset[int]:
        """The block indices of a model of ``num_blocks`` blocks (raises :class:`SettingError` when
        one is past its last block). At most ``num_blocks`` entries, whatever the text said."""
        problem = self.problem_for_model(num_blocks)
        if problem is not None:
            raise SettingError("dense_blocks", problem)
        if self.count is not None:
            return frozenset(range(self.count))
        return frozenset(i for lo, hi in self.intervals for i in range(lo, hi + 1))


_NUMBER = re.compile(r"[0-9]+", re.ASCII)
_ITEM = re.compile(r"\s*([0-9]+)\s*(?:-\s*([0-9]+)\s*)?", re.ASCII)


def parse_dense_blocks(value: Any) -> DenseBlocks:
    """``dense_blocks`` -> :class:`DenseBlocks`; raises :class:`SettingError`.

    Grammar: empty, ``none`` or ``0``: no block; one number ``N``: the first N blocks; otherwise a
    comma-separated list of indices ``i`` and ranges ``i-j`` (low to high; spaces allowed around
    numbers and ``-``; a trailing comma makes one number a list: ``5,`` = block 5 only). Indices run
    from 0 to :data:`DENSE_BLOCK_MAX`. Also takes an int (a count) or a list of ints (indices), as
    LoRA metadata in JSON may. Time linear in the text; nothing is expanded.
    """
    name = "dense_blocks"
    if isinstance(value, bool):
        raise SettingError(name, f"{quote(value)} is not allowed. Allowed: {DENSE_BLOCKS_RULE}. Fix: e.g. 1.")
    if value is None:
        return DenseBlocks()
    if isinstance(value, int):
        value = str(value)
    elif isinstance(value, (list, tuple)):
        if not value or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise SettingError(name, f"{quote(value)} is not a list of block indices. Allowed: {DENSE_BLOCKS_RULE}. "
                               "Fix: e.g. [0, 1].")
        value = ",".join(str(v) for v in value) + ("," if len(value) == 1 else "")
    if not isinstance(value, str):
        raise SettingError(name, f"{quote(value)} is not text. Allowed: {DENSE_BLOCKS_RULE}. Fix: e.g. 1.")
    if len(value) > DENSE_BLOCKS_MAX_CHARS:
        raise SettingError(name, f"{quote(value)} is {len(value)} characters long; at most "
                           f"{DENSE_BLOCKS_MAX_CHARS}. Fix: write ranges such as 0-3 instead of every index.")
    text = value.strip()
    if text == "" or text.lower() == "none":
        return DenseBlocks()

    def bad(why: str, fix: str = "e.g. 1 (the first block) or 0,1,39") -> SettingError:
        return SettingError(name, f"{quote(value)} {why}. Allowed: {DENSE_BLOCKS_RULE}. Fix: {fix}.")

    def number(digits: str) -> int:
        # the length test first: a thousand-digit number is refused without being converted
        if len(digits.lstrip("0")) > len(str(DENSE_BLOCK_MAX)) or int(digits) > DENSE_BLOCK_MAX + 1:
            raise bad(f"names block {digits[:12]}{'...' if len(digits) > 12 else ''}, above the highest "
                      f"index {DENSE_BLOCK_MAX}", f"use indices from 0 to {DENSE_BLOCK_MAX} (no model has more blocks)")
        return int(digits)

    if _NUMBER.fullmatch(text):
        count = number(text)
        if count > DENSE_BLOCK_MAX + 1:  # pragma: no cover - number() refuses it
            raise bad("is too large")
        return DenseBlocks(count=count, text=str(count)) if count else DenseBlocks()
    spans: list[tuple[int, int]] = []
    spelled: list[str] = []
    for part in text.split(","):
        if not part.strip():
            continue
        m = _ITEM.fullmatch(part)
        if m is None:
            raise bad("is not a block count or a list of blocks")
        lo = number(m.group(1))
        hi = number(m.group(2)) if m.group(2) is not None else lo
        if lo > DENSE_BLOCK_MAX or hi > DENSE_BLOCK_MAX:
            raise bad(f"names block {max(lo, hi)}, above the highest index {DENSE_BLOCK_MAX}",
                      f"use indices from 0 to {DENSE_BLOCK_MAX}")
        if hi < lo:
            raise bad(f"has the range {lo}-{hi}, which runs backwards", f"write it low to high, e.g. {hi}-{lo}")
        spans.append((lo, hi))
        spelled.append(f"{lo}-{hi}" if m.group(2) is not None else str(lo))
    if not spans:
        raise bad("is not a block count or a list of blocks")
    spans.sort()
    merged: list[tuple[int, int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    canonical = ",".join(spelled) + ("," if len(spelled) == 1 and "-" not in spelled[0] else "")
    return DenseBlocks(intervals=tuple(merged), text=canonical)


# ------------------------------------------------------------------------------------------
# The settings
# ------------------------------------------------------------------------------------------

_S = Setting
SETTINGS: dict[str, Setting] = {s.name: s for s in (
    # the radial mask and patch (Radial Attention Patch; the LoRA loader overrides them)
    _S("decay_factor", "float", 0.0,
       "How fast the attention window shrinks with frame distance; lower is sparser and faster. "
       "0 = the family's default, " + _decay_defaults() + ".",
       minimum=0.0, maximum=DECAY_MAX, step=0.01, zero="0 = the family's default",
       fix="0 for the family's default, or e.g. 0.2 (Wan 2.1), 0.8 (Wan 2.2), 0.95 (HunyuanVideo)"),
    _S("block_size", "choice", 128,
       "Tokens per mask block. 128 is fastest on GPUs; 64 follows the mask more finely.",
       choices=(128, 64), fix="pick 128 or 64"),
    _S("dense_blocks", "text", "1",
       "Transformer blocks that keep dense attention. A number N = the first N blocks (the authors "
       "keep the first block dense); a list such as '0,1,39' or '0-3' = those blocks; empty, 0 or "
       "none = none. HunyuanVideo numbers its double-stream blocks first, then the single-stream "
       f"ones (0-59). Indices run up to {DENSE_BLOCK_MAX}.",
       zero="empty, 0 or none = no dense block", fix="e.g. 1 (the first block)"),
    _S("dense_steps_first", "int", 0,
       "The first N sampling steps of the schedule stay dense (they shape the layout; the authors "
       "keep about a quarter dense, e.g. 12 of 50). Counted across split KSamplerAdvanced passes.",
       minimum=0, maximum=DENSE_STEPS_MAX, zero="0 = none", fix="use 0 for none, e.g. 12 of 50 steps"),
    _S("dense_steps_last", "int", 0,
       "The last N sampling steps of the schedule stay dense (fine detail).",
       minimum=0, maximum=DENSE_STEPS_MAX, zero="0 = none", fix="use 0 for none"),
    _S("dist1", "choice", "full",
       "Wan only: window for neighbouring frames. 'full' = the authors' current code; 'half' = the "
       "paper-era rule earlier ComfyUI ports use (LoRAs trained with those ports expect it).",
       choices=("full", "half"), fix="pick full or half"),
    _S("backend", "choice", "auto",
       "auto: the Triton kernel on a CUDA GPU, else the PyTorch block path. triton: ask for the "
       "kernel (falls back to PyTorch with a warning when it cannot run). pytorch: always the "
       "PyTorch block path.",
       choices=("auto", "triton", "pytorch"), fix="pick auto"),
    _S("family", "choice", "auto",
       "auto: detect from the model. Wan 2.1-14B T2V and Wan 2.2-A14B T2V weights look the same: "
       "set wan22_14b for a Wan 2.2 A14B expert to get its defaults.",
       choices=("auto",) + FAMILY_KEYS, fix="pick auto (detect from the weights)"),
    _S("precision", "choice", "exact",
       "exact: the sparse attention in the model's own dtype (bf16/fp16). int8-qk (opt-in): the "
       "kernel computes Q·K in int8 (per-row and per-tile scales, K smoothed) and P·V in the "
       "model's bf16/fp16 on GPUs with int8 tensor cores (sm 8.0+; measured on Hopper: about 1.1x "
       "faster at 720p), about 1.3e-2 relative error on random inputs; elsewhere it runs exact with one warning. "
       "Workflows saved with its old name fp8 still run it.",
       choices=("exact", "int8-qk"), fix="pick exact or int8-qk", renamed=(("fp8", "int8-qk"),)),
    # the LoRA
    _S("strength", "float", 1.0,
       "How strongly the LoRA changes the model (0 = pass the MODEL through unchanged).",
       minimum=-100.0, maximum=100.0, step=0.01, zero="0 = the MODEL passes through unchanged",
       fix="e.g. 1.0"),
    # the preview (Sparsity Preview, GET /radial_attention/estimate)
    _S("width", "int", 832, "Video width in pixels (ignored when a latent is connected).",
       minimum=16, maximum=8192, step=16, fix="e.g. 1280"),
    _S("height", "int", 480, "Video height in pixels (ignored when a latent is connected).",
       minimum=16, maximum=8192, step=16, fix="e.g. 720"),
    _S("frames", "int", 81, "Video length in pixel frames, e.g. 81 for Wan (4k+1); ignored when a "
       "latent is connected.", minimum=1, maximum=2049, step=4, fix="e.g. 81"),
    _S("text_tokens", "int", -1,
       "Non-video tokens in the same attention sequence (text, reference, audio ...; HunyuanVideo, "
       "Mochi, CogVideoX ...); -1 = the family's usual length, 0 for video-only families such as Wan.",
       minimum=-1, maximum=4096, zero="-1 = the family's usual length", fix="use -1 for the family's usual length"),
    _S("image_size", "int", 640,
       "Side of the mask picture in pixels (the chart and legend are added around it).",
       minimum=128, maximum=2048, step=32, fix="e.g. 640"),
    # Save Radial LoRA (recorded in the file, never applied)
    _S("steps", "int", 0, "Training steps, for the file name (Train LoRA's 'steps' output); 0 = not named.",
       minimum=0, maximum=1000000, zero="0 = not named", fix="use 0"),
    _S("tuned_frames", "int", 0,
       "Pixel frames of the training videos (recorded as radial_attn.tuned_frames); 0 = not recorded.",
       minimum=0, maximum=100000, zero="0 = not recorded", fix="use 0 to record nothing"),
    _S("tuned_width", "int", 0,
       "Width in pixels of the training videos (recorded, not applied); 0 = not recorded.",
       minimum=0, maximum=16384, zero="0 = not recorded", fix="use 0 to record nothing"),
    _S("tuned_height", "int", 0,
       "Height in pixels of the training videos (recorded, not applied); 0 = not recorded.",
       minimum=0, maximum=16384, zero="0 = not recorded", fix="use 0 to record nothing"),
)}

# The settings a LoRA carries (radial_core.lora.metadata) and the Radial LoRA Loader overrides.
LORA_SETTINGS = ("decay_factor", "block_size", "dense_blocks", "dense_steps_first", "dense_steps_last",
                 "dist1", "family")
# The Radial LoRA Loader's overrides: "unset" is a value of its own on the node.
FROM_LORA = "from LoRA"
OVERRIDE_UNSET = {"decay_factor": 0.0, "block_size": FROM_LORA, "dense_blocks": "",
                  "dense_steps_first": -1, "dense_steps_last": -1, "dist1": FROM_LORA, "family": FROM_LORA}


def setting(name: str) -> Setting:
    return SETTINGS[name]


def parse(name: str, value: Any) -> Any:
    """``SETTINGS[name].parse(value)``."""
    return SETTINGS[name].parse(value)


def override_tooltip(name: str, lora_default: Any) -> str:
    """The LoRA loader's tooltip for its override of ``name``."""
    unset = OVERRIDE_UNSET[name]
    shown = repr(unset) if isinstance(unset, str) else f"{unset:g}"
    default = "the family's default" if lora_default is None else lora_default
    return (f"Overrides the LoRA's {name}; {shown} = from the LoRA (default {default}). "
            + SETTINGS[name].tooltip)


def limits_json() -> dict:
    """Every setting, for ``GET /radial_attention/limits``::

        {"settings": {name: {"type": "int" | "float" | "choice" | "text",
                             "default": ..., "tooltip": "...", "rule": "<the rule in words>",
                             "min": ..., "max": ..., "step": ...,     # int and float
                             "choices": [...],                        # choice
                             "max_index": 1023, "max_chars": 8192,    # text (dense_blocks)
                             "zero": "<what 0 / empty means>"},       # where it means something
                      ...},
         "lora_settings": [...names a LoRA carries and the loader overrides...],
         "override_unset": {name: the loader's "from LoRA" value}}

    Floats are finite everywhere; a value outside ``min``/``max`` or ``choices`` is refused by the
    nodes at queue time and by the routes with a 400.
    """
    return {"settings": {name: s.as_json() for name, s in SETTINGS.items()},
            "lora_settings": list(LORA_SETTINGS),
            "override_unset": dict(OVERRIDE_UNSET)}
