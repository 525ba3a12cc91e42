"""radial_core.lora.file: safe reading and refusal of bad files (pure Python + safetensors)."""

import json

import pytest
import torch
from safetensors.torch import save_file

from radial_core.lora import file as lf


def _write(path, tensors=None, metadata=None):
    tensors = tensors or {"a.lora_up.weight": torch.ones(4, 2), "a.lora_down.weight": torch.ones(2, 3)}
    save_file(tensors, str(path), metadata=metadata)
    return path


def test_reads_tensors_and_metadata(tmp_path):
    p = _write(tmp_path / "l.safetensors", metadata={"radial_attn.decay_factor": "0.2"})
    src = lf.load_lora_source(p)
    assert set(src.tensors) == {"a.lora_up.weight", "a.lora_down.weight"}
    assert src.metadata == {"radial_attn.decay_factor": "0.2"}
    assert src.kind == "file" and src.config == {} and src.config_path is None


def test_sidecar_config_for_a_single_file(tmp_path):
    p = _write(tmp_path / "l.safetensors")
    (tmp_path / "l.radial.json").write_text(json.dumps({"radial_attn": {"decay_factor": 0.8}}))
    src = lf.load_lora_source(p)
    assert src.config == {"radial_attn": {"decay_factor": 0.8}}
    assert src.config_path.endswith("l.radial.json")


def test_diffusers_folder(tmp_path):
    folder = tmp_path / "my_lora"
    folder.mkdir()
    _write(folder / "pytorch_lora_weights.safetensors")
    (folder / "lora_config.json").write_text(json.dumps({"r": 2, "lora_alpha": 1}))
    for chosen in (folder, folder / "pytorch_lora_weights.safetensors"):
        src = lf.load_lora_source(chosen)
        assert src.kind == "diffusers-folder"
        assert src.config == {"r": 2, "lora_alpha": 1}
        assert src.weights_path.endswith("pytorch_lora_weights.safetensors")
    assert lf.list_lora_folders(
        ["my_lora/pytorch_lora_weights.safetensors", "x.safetensors", "a/b/adapter_model.safetensors"]
    ) == ["a/b/", "my_lora/"]


def test_folder_without_weights_or_with_bad_config(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(lf.LoraFileError, match="folder holds no LoRA weights"):
        lf.load_lora_source(empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    _write(bad / "pytorch_lora_weights.safetensors")
    (bad / "lora_config.json").write_text("{not json")
    with pytest.raises(lf.LoraFileError, match=r"lora_config.json: config is not valid JSON"):
        lf.load_lora_source(bad)


def test_truncated_file_is_refused_with_path_and_reason(tmp_path):
    p = _write(tmp_path / "t.safetensors")
    data = p.read_bytes()
    p.write_bytes(data[:-5])
    with pytest.raises(lf.LoraFileError) as e:
        lf.load_lora_source(p)
    assert str(p) in str(e.value) and "truncated" in str(e.value) and "download it again" in str(e.value)
    p.write_bytes(data[:20])  # cut inside the header
    with pytest.raises(lf.LoraFileError, match="truncated: header needs"):
        lf.load_lora_source(p)


def test_pickle_and_garbage_are_refused(tmp_path):
    pt = tmp_path / "l.pt"
    torch.save({"a": torch.ones(2)}, pt)
    with pytest.raises(lf.LoraFileError, match="not a safetensors file.*convert it"):
        lf.load_lora_source(pt)
    renamed = tmp_path / "renamed.safetensors"
    renamed.write_bytes(pt.read_bytes())
    with pytest.raises(lf.LoraFileError, match="not a safetensors file"):
        lf.load_lora_source(renamed)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"abc")
    with pytest.raises(lf.LoraFileError, match="only 3 bytes"):
        lf.load_lora_source(tiny)
    with pytest.raises(lf.LoraFileError, match="no such file"):
        lf.load_lora_source(tmp_path / "missing.safetensors")


def test_header_size_mismatch_and_empty(tmp_path):
    p = _write(tmp_path / "h.safetensors")
    data = bytearray(p.read_bytes())
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    name = next(k for k in header if k != "__metadata__")
    header[name]["shape"] = [99, 2]
    raw = json.dumps(header).encode()
    raw += b" " * (n - len(raw)) if len(raw) <= n else b""
    fixed = len(raw).to_bytes(8, "little") + raw + bytes(data[8 + n :])
    p.write_bytes(fixed)
    with pytest.raises(lf.LoraFileError, match=rf"tensor '{name}'.*needs"):
        lf.load_lora_source(p)
    empty = tmp_path / "e.safetensors"
    save_file({}, str(empty))
    with pytest.raises(lf.LoraFileError, match="holds no tensors"):
        lf.load_lora_source(empty)


def test_peft_folder_with_adapter_config(tmp_path):
    folder = tmp_path / "peft_out"
    folder.mkdir()
    _write(folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(json.dumps({"r": 2, "lora_alpha": 4}))
    src = lf.load_lora_source(folder)
    assert src.kind == "diffusers-folder" and src.config["lora_alpha"] == 4
    assert src.config_path.endswith("adapter_config.json")
