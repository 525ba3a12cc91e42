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
* ComfyUI's own number check is ``val < min`` / ``val > max``, false for NaN: a NaN float would
  pass it. :func:`number_input` gives each number input bounds (:class:`FloatBound`,
  :class:`IntBound`) that ComfyUI's comparison finds NaN outside of, and whose text in ComfyUI's
  message carries the rule and the fix. So NaN and +-inf are refused at queue time with one error
  on that input, without a ``validate_inputs`` argument (which would report twice).
* A node whose one ``validate_inputs`` argument is taken (the LoRA loader checks its file there)
  checks a text the same way: :func:`text_input` gives it a ``min`` (:class:`TextBound`) that
  ComfyUI's ``val < min`` consults, so ComfyUI's own "smaller than min" error lands on that input
  with the parser's reason, rule and fix.

The ranges, defaults, tooltips and parsers are the settings contract's
(``radial_core.settings``); nothing here states a limit of its own.
"""

from __future__ import annotations

import math
import threading

from comfy_api.latest import io

from ..radial_core import settings as S
from .comfy_compat import v1_combo_form


class Choice(io.Combo.Input):
    """A dropdown that ComfyUI checks at queue time on every version (see the module text)."""

    def get_io_type(self):
        if not v1_combo_form():
            return super().get_io_type()
        return self.options if isinstance(self.options, Options) else list(self.options)


class Options(list):
    """A dropdown's options: the front end offers (JSON) only these, while ComfyUI's queue-time
    check (``val not in options``) also takes a setting's old names, so a workflow saved with one
    still runs (the setting's parser reads it as the new name). One subclass per setting (the old
    names on the class): ComfyUI copies schemas with ``type(obj)(items)``."""

    renamed: tuple = ()

    @classmethod
    def of(cls, setting: S.Setting, options) -> "Options":
        old = tuple(o for o, _ in setting.renamed)
        return type(f"{setting.name}_options", (cls,), {"renamed": old})(options)

    def __contains__(self, value):
        return list.__contains__(self, value) or value in self.renamed


def _bound_text(bound, number: str) -> str:
    s = bound.setting
    if s is None:
        return number
    rule = s.rule() + (f", or {bound.also}" if bound.also else "")
    return f"{number} ({s.name} takes {rule}; NaN and infinity are refused. Fix: {s.fix or s.default})"


class FloatBound(float):
    """A float input's ``min`` or ``max``: a plain number to the front end (JSON) and to arithmetic,
    but ComfyUI's ``val < min`` / ``val > max`` is true for a NaN ``val`` (Python asks a float
    subclass on the right first), and ComfyUI's message shows the setting's rule and fix."""

    def __new__(cls, value, setting: S.Setting | None = None, also: str = ""):
        obj = super().__new__(cls, value)
        obj.setting = setting
        obj.also = also  # a node's own extra value, e.g. "-1 = from the LoRA"
        return obj

    def __gt__(self, other):  # other < self: the min check
        if isinstance(other, float) and math.isnan(other):
            return True
        return float.__gt__(self, other)

    def __lt__(self, other):  # other > self: the max check
        if isinstance(other, float) and math.isnan(other):
            return True
        return float.__lt__(self, other)

    def __format__(self, spec):
        return _bound_text(self, f"{float(self):g}") if not spec else float.__format__(self, spec)


class IntBound(int):
    """An int input's ``min`` or ``max``: ComfyUI's message about it shows the rule and the fix."""

    def __new__(cls, value, setting: S.Setting | None = None, also: str = ""):
        obj = super().__new__(cls, value)
        obj.setting = setting
        obj.also = also  # a node's own extra value, e.g. "-1 = from the LoRA"
        return obj

    def __format__(self, spec):
        return _bound_text(self, str(int(self))) if not spec else int.__format__(self, spec)


# The reason of the last refusal, read back by the message ComfyUI formats right after its
# comparison (no await between the two, and validation runs on one thread at a time); kept off the
# bound itself because ComfyUI deep-copies schemas and a thread-local cannot be copied.
_REFUSED = threading.local()


class TextBound(str):
    """A text input's ``min``: an empty string to the front end (JSON), but ComfyUI's queue-time
    ``val < min`` is true when the setting's parser refuses ``val`` (Python asks a ``str``
    subclass on the right first), and ComfyUI's message shows the parser's reason and fix."""

    def __new__(cls, setting: str):
        obj = super().__new__(cls, "")
        obj.setting = setting
        return obj

    def __gt__(self, other):  # other < self: ComfyUI's min check
        if not isinstance(other, str):
            return False
        _REFUSED.text = S.SETTINGS[self.setting].problem(other)
        return _REFUSED.text is not None

    def __lt__(self, other):  # other > self: no max check on a text
        return False

    def __format__(self, spec):
        if spec:
            return str.__format__(self, spec)
        why = getattr(_REFUSED, "text", None)
        return f"the {self.setting} rule. {why}" if why else f"the {self.setting} rule"


class TextInput(io.String.Input):
    """``io.String.Input`` whose value ComfyUI checks at queue time with the contract's parser."""

    def as_dict(self):
        return super().as_dict() | {"min": TextBound(self.id)}


def text_input(name: str, *, default=None, tooltip=None, **kwargs) -> TextInput:
    """A text input for the contract's setting ``name``, refused at queue time by its parser
    (one error, on this input) without a ``validate_inputs`` argument; ``default`` replaces the
    contract's where a node gives a value a meaning of its own (the loader's empty "from the LoRA")."""
    s = S.SETTINGS[name]
    return TextInput(name, default=str(s.default) if default is None else default,
                     tooltip=tooltip or s.tooltip, **kwargs)


def number_input(name: str, *, setting: str | None = None, minimum=None, default=None, tooltip=None,
                 also: str = "", **kwargs):
    """``io.Float.Input`` / ``io.Int.Input`` for the contract's setting ``setting`` (default
    ``name``): its range, step, default and tooltip; ``minimum``, ``default`` and ``tooltip``
    replace the contract's where a node gives a value a meaning of its own, which ``also`` states
    for the messages (the LoRA loader's "-1 = from the LoRA")."""
    s = S.SETTINGS[setting or name]
    lo = s.minimum if minimum is None else minimum
    if s.kind == "float":
        return io.Float.Input(name, default=s.default if default is None else default,
                              min=FloatBound(lo, s, also), max=FloatBound(s.maximum, s, also),
                              step=s.step, tooltip=tooltip or s.tooltip, **kwargs)
    extra = {"step": s.step} if s.step is not None else {}
    return io.Int.Input(name, default=s.default if default is None else default,
                        min=IntBound(lo, s, also), max=IntBound(s.maximum, s, also),
                        tooltip=tooltip or s.tooltip, **extra, **kwargs)


def choice_input(name: str, *, options=None, default=None, tooltip=None, **kwargs) -> Choice:
    """A :class:`Choice` for the contract's setting ``name`` (``options`` narrows or extends it)."""
    s = S.SETTINGS[name]
    opts = list(s.choices if options is None else options)
    d = s.default if default is None else default
    if d not in opts and str(d) in opts:  # options written as text, such as "128"
        d = str(d)
    if s.renamed:
        opts = Options.of(s, opts)
    return Choice(name, options=opts, default=d, tooltip=tooltip or s.tooltip, **kwargs)


def dense_blocks_problem(value, *, none_word: bool = True) -> str | None:
    """Why a ``dense_blocks`` text cannot be read (value, what is allowed, the fix), or None.

    The one grammar of ``radial_core.settings.parse_dense_blocks`` (``none`` included on every
    node). Indices beyond the model's last block are checked when the model is known (at run
    time); indices above ``DENSE_BLOCK_MAX`` are refused here.
    """
    if value is None:  # linked from another node: known only when it runs
        return None
    return S.SETTINGS["dense_blocks"].problem(value)
