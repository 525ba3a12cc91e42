"""Safe reading of LoRA files: one safetensors file, or a diffusers-style folder.

Only safetensors is read (no pickle). The header is checked against the file size before any
tensor is loaded, so a truncated download is refused with its path and the reason instead of
failing half-way inside the safetensors library. No ``comfy`` import.

Layouts:

* ``name.safetensors`` (any key format), optionally with a side-car ``name.radial.json``;
* a folder holding ``pytorch_lora_weights.safetensors`` (diffusers) or ``adapter_model.safetensors``
  (PEFT) and a ``lora_config.json`` / ``adapter_config.json`` giving rank and alpha (and, if the
  trainer wrote them, the radial settings).
"""

from __future__ import annotations

import json
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

WEIGHT_FILE_NAMES = ("pytorch_lora_weights.safetensors", "adapter_model.safetensors")
CONFIG_FILE_NAMES = ("lora_config.json", "adapter_config.json")
SIDECAR_SUFFIX = ".radial.json"
_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl")

# safetensors dtype name -> bytes per element (bool counts as 1)
_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
}
_MAX_HEADER = 100 * 1024 * 1024
# A LoRA's weights are floating point: an integer or bool tensor is a mask, an index or a damaged
# file, and ComfyUI would add it to the model's weights as if it were a delta.
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})
_FLOAT_FIX = ("a LoRA's tensors must be floating point (F16, BF16 or F32); re-export the LoRA from "
              "its trainer, or pick the LoRA file itself")
_FINITE_FIX = ("the LoRA's weights hold NaN or infinite values (its training diverged or the file is "
               "damaged); download it again, or use a checkpoint of the LoRA from before the divergence")


class LoraFileError(ValueError):
    """A LoRA that cannot be used; the message names the path, the reason and what to do.

    The node re-raises it as a plain ``ValueError`` (ComfyUI's error dialog shows an exception's
    module path as its type name, which for a custom node is a file path).
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Cannot use the LoRA {self.path}: {reason}")


@dataclass
class SafetensorsHeader:
    tensors: dict[str, dict[str, Any]]  # name -> {"dtype", "shape", "data_offsets"}
    metadata: dict[str, str]
    data_start: int


def read_safetensors_header(path: str | os.PathLike) -> SafetensorsHeader:
    """Parse and check a safetensors header without loading tensor data."""
    p = Path(path)
    if not p.is_file():
        raise LoraFileError(p, "no such file; put it in a loras folder and pick it again")
    lower = p.name.lower()
    if lower.endswith(_PICKLE_SUFFIXES):
        raise LoraFileError(
            p,
            "not a safetensors file (pickle-based formats can run code and are not loaded); "
            "convert it to .safetensors, e.g. with safetensors.torch.save_file",
        )
    size = p.stat().st_size
    with p.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise LoraFileError(p, f"not a safetensors file: only {size} bytes long; download it again")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > _MAX_HEADER:
            raise LoraFileError(
                p, "not a safetensors file (it does not start with a safetensors header; a renamed pickle "
                ".pt/.ckpt?); download the .safetensors version, or convert it with safetensors.torch.save_file"
            )
        if 8 + n > size:
            raise LoraFileError(
                p, f"truncated: header needs {8 + n} bytes but the file has {size}; download it again"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LoraFileError(p, "not a safetensors file (its header is not JSON); download it again") from None
    if not isinstance(header, dict):
        raise LoraFileError(p, "not a safetensors file (header is not a JSON object); download it again")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise LoraFileError(p, "malformed safetensors metadata (not an object); re-save the file with safetensors")
    data_len = size - 8 - n
    end_max = 0
    for name, info in header.items():
        try:
            dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
            numel = 1
            for s in shape:
                numel *= int(s)
        except (KeyError, TypeError, ValueError):
            raise LoraFileError(p, f"malformed safetensors entry for tensor {name!r}; download it again") from None
        if dtype not in FLOAT_DTYPES:
            raise LoraFileError(p, f"tensor {name!r} is {dtype}, not floating point; {_FLOAT_FIX}")
        width = _DTYPE_BYTES.get(dtype)
        if width is not None and end - start != numel * width:
            raise LoraFileError(
                p,
                f"tensor {name!r}: {dtype}{list(shape)} needs {numel * width} bytes, header gives "
                f"{end - start}; the file is damaged: download it again",
            )
        end_max = max(end_max, end)
    if end_max > data_len:
        raise LoraFileError(
            p,
            f"truncated: tensor data needs {end_max} bytes after the header but only {data_len} are there "
            f"(file size {size}); download it again",
        )
    return SafetensorsHeader(tensors=header, metadata={str(k): v for k, v in metadata.items()}, data_start=8 + n)


def load_safetensors(path: str | os.PathLike):
    """Check the header, then load all tensors on the CPU. Returns (tensors, metadata)."""
    header = read_safetensors_header(path)
    if not header.tensors:
        raise LoraFileError(path, "the file holds no tensors, so it is no LoRA; pick the LoRA file itself")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, RuntimeError) as e:
        raise LoraFileError(path, f"safetensors could not read it ({e}); download it again") from None
    check_finite(path, tensors)
    return tensors, header.metadata


def check_finite(path: str | os.PathLike, tensors: dict) -> None:
    """Refuse a LoRA with a non-floating or non-finite tensor (checked once, when it is read)."""
    import torch

    for name, t in tensors.items():
        if not t.is_floating_point():
            raise LoraFileError(path, f"tensor {name!r} is {t.dtype}, not floating point; {_FLOAT_FIX}")
        # isfinite has no float8 kernel on every torch: compare in float16, which holds every float8
        values = t if t.element_size() > 1 else t.to(torch.float16)
        if values.numel() and not bool(torch.isfinite(values).all()):
            bad = "NaN" if bool(torch.isnan(values).any()) else "infinite"
            raise LoraFileError(path, f"tensor {name!r} holds {bad} values; {_FINITE_FIX}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LoraFileError(path, f"config is not valid JSON ({e}); fix or delete it") from None
    if not isinstance(data, dict):
        raise LoraFileError(path, "config must be a JSON object; fix or delete it")
    return data


@dataclass
class LoraSource:
    """A LoRA as read from disk."""

    path: str  # what the user chose (file or folder)
    weights_path: str
    tensors: dict
    metadata: dict[str, str]
    config: dict[str, Any] = field(default_factory=dict)  # lora_config.json / side-car
    config_path: str | None = None
    kind: str = "file"  # "file" | "diffusers-folder"


def _weights_in_folder(folder: Path) -> Path:
    for name in WEIGHT_FILE_NAMES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("*.safetensors"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise LoraFileError(
            folder, f"folder holds no LoRA weights: expected {' or '.join(WEIGHT_FILE_NAMES)}"
        )
    raise LoraFileError(
        folder,
        f"folder holds {len(found)} .safetensors files and none is named {WEIGHT_FILE_NAMES[0]}; "
        "choose the file itself instead of the folder",
    )


def find_config(weights: Path) -> Path | None:
    """The side-car config of a weights file, if any."""
    sidecar = weights.with_name(weights.name[: -len(".safetensors")] + SIDECAR_SUFFIX) if weights.name.endswith(
        ".safetensors"
    ) else None
    if sidecar is not None and sidecar.is_file():
        return sidecar
    if weights.name in WEIGHT_FILE_NAMES:
        for name in CONFIG_FILE_NAMES:
            if (weights.parent / name).is_file():
                return weights.parent / name
    return None


def load_lora_source(path: str | os.PathLike) -> LoraSource:
    """Read a LoRA file or diffusers folder, checking it first. Raises :class:`LoraFileError`."""
    p = Path(path)
    if p.is_dir():
        weights = _weights_in_folder(p)
        kind = "diffusers-folder"
    elif p.is_file():
        weights = p
        kind = "file"
    else:
        raise LoraFileError(p, "no such file or folder; put it in a loras folder and pick it again")
    tensors, metadata = load_safetensors(weights)
    cfg_path = find_config(weights)
    if cfg_path is not None and kind == "file" and weights.name in WEIGHT_FILE_NAMES:
        kind = "diffusers-folder"
    config = _read_json(cfg_path) if cfg_path is not None else {}
    return LoraSource(
        path=str(p),
        weights_path=str(weights),
        tensors=tensors,
        metadata=metadata,
        config=config,
        config_path=str(cfg_path) if cfg_path is not None else None,
        kind=kind,
    )


def list_lora_folders(files: list[str]) -> list[str]:
    """Diffusers-style folders among ComfyUI's ``loras`` listing (relative paths), e.g.
    ``["my_lora/pytorch_lora_weights.safetensors"] -> ["my_lora/"]``."""
    folders = []
    for f in files:
        norm = f.replace("\\", "/")
        head, _, tail = norm.rpartition("/")
        if head and tail in WEIGHT_FILE_NAMES:
            folders.append(head + "/")
    return sorted(set(folders))
