"""Radial LoRA Loader, refusals: each bad LoRA gives a clear error (path + reason) and the MODEL
is left exactly as it was (no patches, same weights, same options). Real ComfyUI, CPU."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import lora_helpers as H
from lora_helpers import Target
from pack_fixtures import lora_model_fixture, pack_module_fixture

pytestmark = pytest.mark.comfy

D = 128

wan = lora_model_fixture(H.WAN_CONFIG, seed=5)
lora_node = pack_module_fixture("nodes.lora_node")


Q = Target("diffusion_model.blocks.0.self_attn.q", "diffusion_model.blocks.0.self_attn.q.weight", D, D, alpha=4.0)


def _good_tensors():
    return H.make_lora([Q], "comfyui")[0]


def _assert_refused(model, lora_node, path, *fragments, **kw):
    base = H.weights(model)
    options = copy.deepcopy({k: v for k, v in model.model_options.items() if k != "transformer_options"})
    topts_keys = set(model.model_options.get("transformer_options", {}))
    with pytest.raises(ValueError) as e:
        lora_node.load_radial_lora(model, str(path), 1.0, **kw)
    msg = str(e.value)
    assert str(path) in msg, msg
    for f in fragments:
        assert f in msg, f"{f!r} not in: {msg}"
    assert model.patches == {}
    assert set(model.model_options.get("transformer_options", {})) == topts_keys
    assert {k: v for k, v in model.model_options.items() if k != "transformer_options"} == options
    after = H.weights(model)
    assert all(torch.equal(after[k], base[k]) for k in base)
    return msg


def test_matches_nothing(wan, lora_node, tmp_path):
    hy_keys = H.make_lora(
        [Target("transformer.transformer_blocks.0.attn.to_q", "x", H.HY_H, H.HY_H)], "diffusers"
    )[0]
    path = H.write_safetensors(tmp_path / "hunyuan_lora.safetensors", hy_keys)
    _assert_refused(wan, lora_node, path, "none of its 2 tensors matches a weight of this wan2.1 model",
                    "transformer.transformer_blocks.0.attn.to_q.lora_A.weight", "Supported key formats")
    junk = H.write_safetensors(tmp_path / "junk.safetensors", {"foo": torch.zeros(3), "bar.weight": torch.zeros(2, 2)})
    _assert_refused(wan, lora_node, junk, "none of its 2 tensors matches")


def test_rank_mismatch(wan, lora_node, tmp_path):
    t = _good_tensors()
    t["diffusion_model.blocks.0.self_attn.q.lora_down.weight"] = torch.zeros(3, D)
    path = H.write_safetensors(tmp_path / "rank.safetensors", t)
    _assert_refused(wan, lora_node, path, "mismatched shapes", "rank differs",
                    "diffusion_model.blocks.0.self_attn.q.lora_up.weight [128, 4]")


def test_delta_does_not_fit_the_weight(wan, lora_node, tmp_path):
    big = H.make_lora([Target("diffusion_model.blocks.0.self_attn.q", "x", 256, 256)], "comfyui")[0]
    path = H.write_safetensors(tmp_path / "big.safetensors", big)
    _assert_refused(wan, lora_node, path, "does not fit diffusion_model.blocks.0.self_attn.q.weight [128, 128]")


def test_missing_partner(wan, lora_node, tmp_path):
    t = _good_tensors()
    del t["diffusion_model.blocks.0.self_attn.q.lora_down.weight"]
    path = H.write_safetensors(tmp_path / "half.safetensors", t)
    _assert_refused(wan, lora_node, path, "partner is missing")


def test_not_safetensors(wan, lora_node, tmp_path):
    pt = tmp_path / "pickled.pt"
    torch.save(_good_tensors(), pt)
    _assert_refused(wan, lora_node, pt, "not a safetensors file", "convert it")
    renamed = tmp_path / "renamed.safetensors"
    renamed.write_bytes(pt.read_bytes())
    _assert_refused(wan, lora_node, renamed, "not a safetensors file")


def test_truncated(wan, lora_node, tmp_path):
    path = H.write_safetensors(tmp_path / "cut.safetensors", _good_tensors())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    _assert_refused(wan, lora_node, path, "truncated", "download it again")


def test_bad_radial_metadata(wan, lora_node, tmp_path):
    path = H.write_safetensors(tmp_path / "meta.safetensors", _good_tensors(), {"radial_attn.block_size": "96"})
    _assert_refused(wan, lora_node, path, "radial_attn.block_size = '96' is invalid", "expected one of 128, 64",
                    "radial.json")
    # a broken file stays refused under an override (the node refuses it at queue time, before it
    # can see its other inputs); a side-car config corrects it, and lora_only ignores the settings
    _assert_refused(wan, lora_node, path, "radial_attn.block_size = '96' is invalid", overrides={"block_size": "128"})
    path.with_name("meta.radial.json").write_text('{"radial_attn.block_size": "128"}')
    out, _ = lora_node.load_radial_lora(wan, str(path), 1.0)
    assert len(out.patches) == 1
    path.with_name("meta.radial.json").unlink()
    out, _ = lora_node.load_radial_lora(wan, str(path), 1.0, radial_mode="lora_only")
    assert len(out.patches) == 1


@pytest.mark.parametrize("key,value,rule", [
    ("dense_blocks", "0-999999999", "from 0 to 1023"),  # was expanded into a set: 74 GB
    ("decay_factor", "nan", "a finite number from 0 to 10"),
    ("decay_factor", "inf", "a finite number from 0 to 10"),
    ("dense_steps", "1001", "from 0 to 1000"),
])
def test_metadata_outside_the_contract(wan, lora_node, tmp_path, key, value, rule):
    import time
    path = H.write_safetensors(tmp_path / "contract.safetensors", _good_tensors(), {f"radial_attn.{key}": value})
    start = time.perf_counter()
    _assert_refused(wan, lora_node, path, f"radial_attn.{key} = {value!r} is invalid", rule)
    assert time.perf_counter() - start < 2.0  # reading the file and its header, nothing expanded


def test_dense_blocks_past_the_model(wan, lora_node, tmp_path):
    path = H.write_safetensors(tmp_path / "deep.safetensors", _good_tensors(), {"radial_attn.dense_blocks": "0,1,39"})
    _assert_refused(wan, lora_node, path, "radial settings do not fit this model", "dense_blocks", "override")


def test_bad_lora_config(wan, lora_node, tmp_path):
    tensors = H.make_lora([Target("transformer.blocks.0.attn1.to_q", "x", D, D)], "diffusers")[0]
    folder = H.write_diffusers_folder(tmp_path / "badcfg", tensors, {"r": "x", "lora_alpha": 4})
    _assert_refused(wan, lora_node, folder, "rank/alpha must be numbers")
    (folder / "lora_config.json").write_text("{broken")
    _assert_refused(wan, lora_node, folder, "lora_config.json", "not valid JSON")


def test_bad_radial_mode(wan, lora_node, tmp_path):
    path = H.write_safetensors(tmp_path / "mode.safetensors", _good_tensors())
    with pytest.raises(ValueError, match=r"radial_mode must be one of .*got 'sometimes'"):
        lora_node.load_radial_lora(wan, str(path), 1.0, radial_mode="sometimes")
    assert wan.patches == {}


def test_folder_chosen_without_weights(wan, lora_node, tmp_path):
    folder = tmp_path / "empty_lora"
    folder.mkdir()
    (folder / "lora_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 4}))
    _assert_refused(wan, lora_node, folder, "folder holds no LoRA weights")


def test_bias_delta_of_wrong_size(wan, lora_node, tmp_path):
    tensors = H.make_lora([Target("transformer.blocks.0.attn1.to_q", "x", D, D)], "diffusers")[0]
    tensors["transformer.blocks.0.attn1.to_q.lora_B.bias"] = torch.zeros(D + 1)
    path = H.write_safetensors(tmp_path / "bias.safetensors", tensors)
    _assert_refused(wan, lora_node, path, "lora_B.bias [129] does not fit the bias")


@pytest.mark.parametrize("damage,fragments", [
    ("int64", ["is I64, not floating point", "re-export the LoRA"]),
    ("bool", ["is BOOL, not floating point", "re-export the LoRA"]),
    ("nan", ["holds NaN values", "download it again"]),
    ("inf", ["holds infinite values", "download it again"]),
])
def test_tensors_must_be_floating_point_and_finite(wan, lora_node, tmp_path, damage, fragments):
    """A file whose tensors are integers, bools, NaN or inf was "matched 36 of 36" and applied."""
    t = _good_tensors()
    key = "diffusion_model.blocks.0.self_attn.q.lora_up.weight"
    if damage == "int64":
        t[key] = torch.ones(t[key].shape, dtype=torch.int64)
    elif damage == "bool":
        t[key] = torch.ones(t[key].shape, dtype=torch.bool)
    else:
        t[key] = t[key].clone()
        t[key][1, 2] = float(damage)
    path = H.write_safetensors(tmp_path / f"{damage}.safetensors", t)
    msg = _assert_refused(wan, lora_node, path, repr(key), *fragments)
    assert msg.startswith(f"Cannot use the LoRA {path}: tensor {key!r}"), msg


@pytest.mark.parametrize("strength", [float("nan"), float("inf"), "nan"])
def test_strength_must_be_finite(wan, lora_node, tmp_path, strength):
    path = H.write_safetensors(tmp_path / "ok.safetensors", _good_tensors())
    with pytest.raises(ValueError, match=r"strength: .*NaN and infinity are not numbers|strength: .*not a number"):
        lora_node.load_radial_lora(wan, str(path), strength)
    assert wan.patches == {}


# ------------------------------------------------------------------ what ComfyUI's error dialog shows
@pytest.fixture(scope="module")
def prompt_run(comfy, tmp_path_factory):
    """Runs UNETLoader (a tiny random-weight Wan file) -> Radial LoRA Loader -> PreviewAny through
    ComfyUI's own validation and executor; returns (valid, node_errors, execution_error events)."""
    import asyncio

    import folder_paths
    from comfy.model_detection import model_config_from_unet_config
    from safetensors.torch import save_file

    from conftest import script_module

    if "PreviewAny" not in comfy.nodes.NODE_CLASS_MAPPINGS:
        path = str(comfy.dir / "comfy_extras" / "nodes_preview_any.py")
        assert asyncio.run(comfy.nodes.load_custom_node(path, module_parent="comfy_extras"))
    models = tmp_path_factory.mktemp("diffusion_models")
    cfg = model_config_from_unet_config(dict(H.WAN_CONFIG))
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(v.shape, generator=g) * 0.02
          for k, v in cfg.get_model({}, "").diffusion_model.state_dict().items()}
    save_file(sd, str(models / "tiny_wan_dialog_test.safetensors"))
    folder_paths.add_model_folder_path("diffusion_models", str(models))
    headless = script_module("comfy_headless")

    def run(lora_name: str):
        prompt = {
            "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "tiny_wan_dialog_test.safetensors",
                                                         "weight_dtype": "default"}},
            "2": {"class_type": "RadialLoraLoader",
                  "inputs": {"model": ["1", 0], "lora_name": lora_name, "strength": 1.0, "backend": "pytorch"}},
            "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 1]}},
        }
        valid, _, outputs, node_errors = headless.validate(prompt)
        if not valid:
            return False, node_errors, []
        executor = headless.new_executor()
        executor.execute(prompt, "lora-dialog", {}, outputs)
        return True, node_errors, [d for e, d in executor.status_messages if e == "execution_error"]

    return run


HEADER_DAMAGE = {"truncate", "pickle", "int64"}


@pytest.mark.parametrize("damage,reason,fix", [
    ("truncate", "truncated", "download it again"),
    ("pickle", "not a safetensors file", "convert it"),
    ("empty", "holds no tensors", "pick the LoRA file itself"),
    ("int64", "is I64, not floating point", "re-export the LoRA"),
    ("nan", "holds NaN values", "download it again"),
])
def test_a_corrupt_lora_reads_as_plain_words_in_comfyuis_error(prompt_run, comfy, tmp_path, damage, reason, fix):
    import folder_paths

    loras = tmp_path / "loras"
    path = H.write_safetensors(loras / f"{damage}_lora.safetensors", _good_tensors())
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-64])
    elif damage == "pickle":
        torch.save(_good_tensors(), path)
    elif damage == "int64":
        H.write_safetensors(path, {k: v.to(torch.int64) for k, v in _good_tensors().items()})
    elif damage == "nan":
        H.write_safetensors(path, {k: torch.full_like(v, float("nan")) for k, v in _good_tensors().items()})
    else:
        H.write_safetensors(path, {})
    folder_paths.add_model_folder_path("loras", str(loras))
    try:
        valid, node_errors, errors = prompt_run(path.name)
    finally:
        folder_paths.folder_names_and_paths["loras"][0].remove(str(loras))
    if damage in HEADER_DAMAGE:  # seen in the header: refused when queued, one error on lora_name
        assert not valid
        refused = node_errors["2"]["errors"]
        assert [e["extra_info"]["input_name"] for e in refused] == ["lora_name"], refused
        message = refused[0]["details"].removeprefix("lora_name - ")
    else:  # seen in the tensors: refused when the loader reads them
        assert valid, node_errors
        assert len(errors) == 1 and errors[0]["node_type"] == "RadialLoraLoader", errors
        # a built-in exception type, not "/.../custom_nodes/radial-attention.radial_core.lora.file.LoraFileError"
        assert errors[0]["exception_type"] == "ValueError", errors[0]["exception_type"]
        message = errors[0]["exception_message"]
    # named relative to the loras folder: the dialog and the history reach any HTTP client
    assert message.startswith(f"Cannot use the LoRA {path.name}: "), message
    assert str(loras) not in message, message
    assert reason in message and fix in message, message
