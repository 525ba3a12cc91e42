"""Radial LoRA Loader, refusals: each bad LoRA gives a clear error (path + reason) and the MODEL
is left exactly as it was (no patches, same weights, same options). Real ComfyUI, CPU."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import lora_helpers as H
from lora_helpers import Target

pytestmark = pytest.mark.comfy

D = 128


@pytest.fixture(scope="module")
def wan(comfy):
    return H.build_model(H.WAN_CONFIG, seed=5)


@pytest.fixture(scope="module")
def lora_node(comfy):
    return comfy.pack_module("nodes.lora_node")


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
    _assert_refused(wan, lora_node, path, "radial_attn.block_size = '96' is invalid", "expected 64 or 128")
    # the same file loads when the node overrides the bad setting, or leaves attention alone
    out, _ = lora_node.load_radial_lora(wan, str(path), 1.0, overrides={"block_size": "128"})
    assert len(out.patches) == 1
    out, _ = lora_node.load_radial_lora(wan, str(path), 1.0, radial_mode="lora_only")
    assert len(out.patches) == 1


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
