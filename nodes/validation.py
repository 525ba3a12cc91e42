"""Queue-time checks of the pack's node inputs, one error per bad value, on every ComfyUI.

How ComfyUI reports checks (``execution.validate_inputs`` of 0.3.75 and 0.33.0 alike):

* numbers (``min`` / ``max``) and combos are checked by ComfyUI itself, one error on the input,
  unless the input is an argument of the node's ``validate_inputs``;
* a ``validate_inputs`` that returns a message is reported once **per argument**, each error on
  that argument's input. So a node's ``validate_inputs`` takes exactly one input: the one ComfyUI
  cannot check (a text such as ``dense_blocks``), and its message lands on that input alone;
* ComfyUI 0.3.75 checks only combos whose type is their option list (the v1 form); the v3
  ``COMBO`` type goes unchecked there. 0.33 checks ``COMBO`` too, and its v3 input parser
  (``get_finalized_class_inputs``) needs string types. :class:`Choice` is a v3 combo input that
  declares itself in the v1 form on a ComfyUI without that parser, so both versions refuse a
  value outside its options at queue time, with one "Value not in list" error on that input.
"""

from __future__ import annotations

import re

from comfy_api.latest import io

from .comfy_compat import v1_combo_form

DENSE_BLOCKS_HELP = "a number N (the first N blocks), indices and ranges from 0 such as 0,1,39 or 0-3, or empty"
_PART = re.compile(r"^\d+(\s*-\s*\d+)?$")
_SHOWN = 40  # characters of a bad value quoted back


class Choice(io.Combo.Input):
    """A dropdown that ComfyUI checks at queue time on every version (see the module text)."""

    def get_io_type(self):
        return list(self.options) if v1_combo_form() else super().get_io_type()


def quote(value, limit: int = _SHOWN) -> str:
    """``repr`` of a user value, cut to ``limit`` characters (a message never echoes a whole paste)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def dense_blocks_problem(value, *, none_word: bool = False) -> str | None:
    """Why a ``dense_blocks`` text cannot be read (value, what is allowed, the fix), or None.

    ``none_word``: the LoRA loader also takes ``none``. Indices beyond the model's last block are
    checked when the model is known (at run time).
    """
    if value is None:  # linked from another node: known only when it runs
        return None
    text = str(value).strip()
    if not text or (none_word and text.lower() == "none"):
        return None
    parts = [p.strip() for p in text.split(",")]
    good = any(parts) and all(_PART.match(p) for p in parts if p)
    if good:
        for p in parts:
            if "-" in p:
                lo, hi = (int(x) for x in p.split("-"))
                if hi < lo:
                    return (f"the range {p} runs backwards. Fix: write it low to high, e.g. "
                            f"{hi}-{lo}.")
        return None
    return (f"{quote(value)} is not a block count or a list of blocks. Allowed: {DENSE_BLOCKS_HELP}"
            + (", or none" if none_word else "") + ". Fix: e.g. 1 (the first block).")
