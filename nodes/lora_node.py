"""The "Radial LoRA Loader" node: a length-extension LoRA plus the radial attention it was tuned for.

This module: the node, choosing and reading the LoRA (``radial_core.lora.file``), and the radial
half. The weights go through ComfyUI's own LoRA machinery in ``lora_apply`` (patches on a clone),
so the LoRA stacks with other LoRA loaders and with weight offloading. The radial settings come
from the LoRA's metadata or side-car config (``radial_core.lora.metadata``), node overrides, or the
authors' length-extension defaults, and are handed to the Radial Attention Patch
(``apply_radial_patch`` in ``nodes/radial_patcher.py``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import folder_paths
from comfy_api.latest import io

from ..radial_core import settings as S
from ..radial_core.lora import file as lora_file, metadata as lora_radial
from .lora_apply import apply_lora, prepare_lora
from .model_family import FAMILY_CHOICES
from .radial_patcher import apply_radial_patch, get_radial_config
from .validation import Choice, choice_input, number_input, text_input

logger = logging.getLogger(__name__)

CATEGORY = "Radial Attention"
FROM_LORA = S.FROM_LORA
RADIAL_MODES = ("auto", "replace", "lora_only")


# ------------------------------------------------------------------------------------------
# Choosing and reading the LoRA
# ------------------------------------------------------------------------------------------


def lora_choices() -> list[str]:
    """Safetensors files in ComfyUI's ``loras`` folders plus diffusers-style folders (``name/``)."""
    files = [f for f in folder_paths.get_filename_list("loras") if f.lower().endswith(".safetensors")]
    return lora_file.list_lora_folders(files) + files


def resolve_lora_path(lora_name: str) -> str:
    """Full path of a ``loras`` entry (file or ``folder/``); clear error when it is not there."""
    if lora_name.endswith("/"):
        for base in folder_paths.get_folder_paths("loras"):
            candidate = os.path.join(base, lora_name.rstrip("/"))
            if os.path.isdir(candidate):
                return candidate
    else:
        path = folder_paths.get_full_path("loras", lora_name)
        if path is not None:
            return path
    # the folders are not listed: the message reaches any HTTP client (ComfyUI's history)
    count = len(folder_paths.get_folder_paths("loras"))
    raise ValueError(
        f"LoRA {lora_name!r} not found in the loras folders ({count} configured: models/loras and those "
        "extra_model_paths.yaml adds); put the file (or the diffusers folder with "
        "pytorch_lora_weights.safetensors) there and refresh, or pick another one"
    )


def shown_name(path: str | os.PathLike) -> str:
    """A LoRA path as messages show it: relative to the loras folder that holds it (a message may
    reach any HTTP client and the readout, so it never names the server's folders), else as given
    (a script's own path)."""
    full = os.path.abspath(str(path))
    for base in folder_paths.get_folder_paths("loras"):
        base = os.path.abspath(base)
        if full == base or full.startswith(base.rstrip(os.sep) + os.sep):
            rel = os.path.relpath(full, base).replace(os.sep, "/")
            return rel + ("/" if os.path.isdir(full) and not rel.endswith("/") else "")
    return str(path)


def scrub_paths(text: str) -> str:
    """``text`` with every loras folder's absolute path removed (file names stay, relative)."""
    for base in folder_paths.get_folder_paths("loras"):
        base = os.path.abspath(base).rstrip(os.sep)
        text = text.replace(base + os.sep, "").replace(base, "loras")
    return text


def shown_error(exc: lora_file.LoraFileError) -> str:
    """A :class:`LoraFileError`'s message with its path as :func:`shown_name` writes it."""
    return f"Cannot use the LoRA {shown_name(exc.path)}: {exc.reason}"


_SOURCE_CACHE: dict[str, tuple[tuple, lora_file.LoraSource]] = {}


def _fingerprint(path: str) -> tuple:
    p = Path(path)
    files = (
        sorted(p.iterdir())
        if p.is_dir()
        else [p, p.with_name(p.name[: -len(".safetensors")] + lora_file.SIDECAR_SUFFIX)]
    )
    out = []
    for f in files:
        try:
            st = f.stat()
            out.append((str(f), st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((str(f), None, None))
    return tuple(out)


def read_lora(path: str) -> lora_file.LoraSource:
    """Read (and check) a LoRA, reusing the last one read while its files are unchanged."""
    fp = _fingerprint(path)
    hit = _SOURCE_CACHE.get(path)
    if hit is not None and hit[0] == fp:
        return hit[1]
    source = lora_file.load_lora_source(path)
    _SOURCE_CACHE.clear()  # keep at most one LoRA in memory, like ComfyUI's LoraLoader
    _SOURCE_CACHE[path] = (fp, source)
    return source


# ------------------------------------------------------------------------------------------
# Radial settings
# ------------------------------------------------------------------------------------------


def radial_entries(source: lora_file.LoraSource) -> dict[str, Any]:
    """Radial keys from the safetensors metadata, overridden by the side-car config."""
    merged = lora_radial.collect_radial_entries(source.metadata)
    merged.update(lora_radial.collect_radial_entries(source.config))
    return {lora_radial.RADIAL_PREFIX + k: v for k, v in merged.items()}


def planned_settings(lora_name: str, overrides: dict | None = None) -> dict:
    """The radial settings the node will apply for ``lora_name`` (one of :func:`lora_choices`) and
    these node overrides, read from the file's header and side-car only (no tensor is loaded).

    For the front end (``GET /radial_attention/lora_settings``). Raises ``ValueError`` with the
    reason: an unknown name, an unreadable file, bad radial metadata or a bad override.
    """
    if lora_name not in lora_choices():
        raise ValueError(f"lora_name {lora_name!r} is not in the loras folders: pick one from the list "
                         "(refresh after adding a file)")
    path = Path(resolve_lora_path(lora_name))
    try:
        weights = lora_file._weights_in_folder(path) if path.is_dir() else path
        header = lora_file.read_safetensors_header(weights)
        cfg_path = lora_file.find_config(weights)
        config = lora_file._read_json(cfg_path) if cfg_path is not None else {}
    except lora_file.LoraFileError as exc:
        raise ValueError(shown_error(exc)) from None
    entries = lora_radial.collect_radial_entries(header.metadata)
    entries.update(lora_radial.collect_radial_entries(config))
    settings = lora_radial.resolve_radial_settings(
        {lora_radial.RADIAL_PREFIX + k: v for k, v in entries.items()}, overrides, source=lora_name)
    return {"lora_name": lora_name, "values": settings.values, "sources": settings.sources,
            "info": settings.info, "from_file": any(v == "metadata" for v in settings.sources.values()),
            "text": settings.describe()}


def _describe_existing(cfg: dict) -> str:
    keys = (
        "variant",
        "decay_factor",
        "block_size",
        "dense_blocks_text",
        "dense_steps_first",
        "dense_steps_last",
        "dist1",
    )
    return ", ".join(f"{k}={cfg[k]}" for k in keys if k in cfg)


def node_overrides(
    decay_factor, block_size, dense_blocks, dense_steps_first, dense_steps_last, dist1, family=FROM_LORA
) -> dict:
    """Node inputs -> settings that replace the LoRA's (the "from LoRA" value of each input,
    ``radial_core.settings.OVERRIDE_UNSET``, or None, means none). Every other value is checked by
    the settings contract's parser: a bad one raises ``SettingError`` (NaN included)."""
    given = {"decay_factor": decay_factor, "block_size": block_size, "dense_blocks": dense_blocks,
             "dense_steps_first": dense_steps_first, "dense_steps_last": dense_steps_last,
             "dist1": dist1, "family": family}
    out: dict[str, Any] = {}
    for name, value in given.items():
        unset = S.OVERRIDE_UNSET[name]
        if value is None or (isinstance(value, str) and value.strip() == str(unset)):
            continue
        if not isinstance(value, str) and not isinstance(value, bool) and value == unset:
            continue
        if name == "dense_blocks":
            S.parse_dense_blocks(value)  # checked here; the LoRA's settings read the text
            out[name] = value
        else:
            out[name] = S.parse(name, value)
    return out


def load_radial_lora(
    model,
    lora_path: str,
    strength: float,
    *,
    radial_mode: str = "auto",
    overrides: dict | None = None,
    backend: str = "auto",
):
    """The node's work, callable from scripts: returns (new ModelPatcher, report text).

    Every check runs before the model is cloned: on any error the input MODEL is untouched.
    """
    if radial_mode not in RADIAL_MODES:
        raise ValueError(f"radial_mode must be one of {RADIAL_MODES}; got {radial_mode!r}")
    strength = S.parse("strength", strength)  # NaN would give an all-NaN model
    if strength == 0:
        text = f"Radial LoRA: {os.path.basename(lora_path.rstrip('/'))}: strength 0, MODEL passed through unchanged"
        logger.info(text)
        return model, text

    name = shown_name(lora_path)
    try:
        source = read_lora(lora_path)
    except lora_file.LoraFileError as exc:
        raise lora_file.LoraFileError(shown_name(exc.path), exc.reason) from None
    settings = None
    if radial_mode != "lora_only":
        settings = lora_radial.resolve_radial_settings(radial_entries(source), overrides, source=name)
    try:
        prepared = prepare_lora(model, source)
    except lora_file.LoraFileError as exc:
        raise lora_file.LoraFileError(shown_name(exc.path), scrub_paths(exc.reason)) from None
    report = prepared.report
    report.strength = strength

    out = apply_lora(model, prepared, strength)
    if settings is None:
        report.radial_note = "radial attention: not touched (radial_mode = lora_only)"
    else:
        existing = get_radial_config(out) if radial_mode == "auto" else None
        if existing is not None:
            report.radial_note = (
                f"radial attention: the MODEL already carries it ({_describe_existing(existing)}); kept as "
                f"is, the LoRA's settings ({settings.describe()}) were not applied (radial_mode 'replace' "
                "applies them instead)"
            )
        else:
            try:
                out = apply_radial_patch(out, backend=backend, **settings.values)
            except ValueError as e:
                raise ValueError(
                    f"{name}: its radial settings do not fit this model: {e} "
                    f"(settings: {settings.describe()}). Set that input on the node to override the LoRA's "
                    "value, or fix the LoRA's metadata (docs/lora-format.md)."
                ) from None
            applied = get_radial_config(out)
            if applied is None:
                report.radial_note = "radial attention: not applied, this model family is not supported (see the log)"
            else:
                report.radial_note = (
                    f"radial attention applied to {applied.get('variant', 'the model')}: {settings.describe()}"
                )
    text = report.text()
    logger.info("%s", text)
    return out, text


# ------------------------------------------------------------------------------------------
# The node
# ------------------------------------------------------------------------------------------


def _override_tooltip(name: str) -> str:
    return S.override_tooltip(name, lora_radial.LENGTH_EXTENSION_DEFAULTS[name])


class RadialLoraLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RadialLoraLoader",
            display_name="Radial LoRA Loader",
            category=CATEGORY,
            description=(
                "Loads a length-extension LoRA (ComfyUI, diffusers/PEFT or Kohya keys; file or diffusers "
                "folder) through ComfyUI's LoRA patches and applies the Radial Attention Patch with the "
                "settings stored in the LoRA (or the authors' defaults: 2 dense blocks, 2 dense steps)."
            ),
            inputs=[
                io.Model.Input(
                    "model",
                    tooltip="The video model to apply the LoRA to (any family the Radial Attention Patch supports; "
                    "its family is detected from the weights).",
                ),
                Choice(
                    "lora_name",
                    options=lora_choices(),
                    tooltip="A .safetensors LoRA from the loras folder, or a diffusers folder (name/) holding "
                    "pytorch_lora_weights.safetensors and lora_config.json.",
                ),
                number_input("strength"),
                Choice(
                    "radial_mode", options=list(RADIAL_MODES), default="auto", optional=True,
                    tooltip="auto: apply radial attention with the LoRA's settings unless the MODEL already has "
                    "it; replace: apply the LoRA's settings even then; lora_only: apply only the weights.",
                ),
                # the overrides: the contract's ranges, plus each input's "from LoRA" value
                number_input("decay_factor", optional=True, also="0 = from the LoRA",
                             tooltip=_override_tooltip("decay_factor")),
                choice_input("block_size", options=[FROM_LORA, "128", "64"], default=FROM_LORA, optional=True,
                             tooltip=_override_tooltip("block_size")),
                text_input("dense_blocks", default="", optional=True, tooltip=_override_tooltip("dense_blocks")),
                number_input("dense_steps_first", minimum=-1, default=-1, optional=True, also="-1 = from the LoRA",
                             tooltip=_override_tooltip("dense_steps_first")),
                number_input("dense_steps_last", minimum=-1, default=-1, optional=True, also="-1 = from the LoRA",
                             tooltip=_override_tooltip("dense_steps_last")),
                choice_input("dist1", options=[FROM_LORA, "full", "half"], default=FROM_LORA, optional=True,
                             tooltip=_override_tooltip("dist1")),
                choice_input("family", options=[FROM_LORA, *FAMILY_CHOICES], default=FROM_LORA, optional=True,
                             tooltip=_override_tooltip("family")),
                choice_input("backend", optional=True),
            ],
            outputs=[
                io.Model.Output(tooltip="The model with the LoRA patches and radial attention."),
                io.String.Output("report", tooltip="What was matched and which radial settings were applied."),
            ],
        )

    @classmethod
    def execute(
        cls,
        model,
        lora_name: str,
        strength: float,
        radial_mode: str = "auto",
        decay_factor: float = 0.0,
        block_size: str = FROM_LORA,
        dense_blocks: str = "",
        dense_steps_first: int = -1,
        dense_steps_last: int = -1,
        dist1: str = FROM_LORA,
        family: str = FROM_LORA,
        backend: str = "auto",
    ) -> io.NodeOutput:
        try:
            path = resolve_lora_path(lora_name)
            overrides = node_overrides(
                decay_factor, block_size, dense_blocks, dense_steps_first, dense_steps_last, dist1, family
            )
            out, text = load_radial_lora(
                model, path, strength, radial_mode=radial_mode, overrides=overrides, backend=backend
            )
        except lora_file.LoraFileError as exc:
            # ComfyUI names an exception by its module path, a file path for a custom node: the
            # dialog reads "ValueError: Cannot use the LoRA <name>: <reason>; <what to do>", the
            # name relative to the loras folder (the dialog and history reach any HTTP client).
            raise ValueError(scrub_paths(str(exc))) from None
        except ValueError as exc:
            raise ValueError(scrub_paths(str(exc))) from None
        return io.NodeOutput(out, text)

    @classmethod
    def validate_inputs(cls, lora_name: str | None = None) -> bool | str:
        # One argument only: ComfyUI reports a failed check once per argument (nodes/validation.py).
        # The file is checked here, from its header and side-car (no tensor is read), so a bad
        # radial value in a downloaded LoRA is refused before anything runs; ComfyUI no longer
        # checks lora_name against its list, planned_settings does. dense_blocks is checked by
        # its text_input bound, numbers and dropdowns by ComfyUI, each on its own input.
        if lora_name is None:  # linked from another node: checked when it runs
            return True
        try:
            planned_settings(lora_name)
        except ValueError as exc:
            return scrub_paths(str(exc))
        return True

    @classmethod
    def fingerprint_inputs(cls, lora_name=None, **kwargs):
        """Re-run when the LoRA's files change on disk (size/mtime of the file, side-car, folder)."""
        try:
            return _fingerprint(resolve_lora_path(lora_name))
        except (ValueError, TypeError, OSError):
            return lora_name
