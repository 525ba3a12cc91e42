"""Radial LoRA Loader, radial half: the settings a LoRA carries reach the Radial Attention Patch.

Real ComfyUI, tiny random-weight Wan 2.1 / HunyuanVideo models, the real radial patch
(nodes/radial_patcher.py) read back with ``get_radial_config``; one run of ComfyUI's real sampler
checks that the node equals "ComfyUI LoRA patch + Radial Attention Patch with the same settings".
"""

from __future__ import annotations

import json

import pytest
import torch

import lora_helpers as H
from lora_helpers import Target
from pack_fixtures import lora_model_fixture, pack_module_fixture

pytestmark = pytest.mark.comfy

D = 128

wan = lora_model_fixture(H.WAN_CONFIG, seed=3)
hunyuan = lora_model_fixture(H.HUNYUAN_CONFIG, seed=3)
lora_node = pack_module_fixture("nodes.lora_node")
patcher = pack_module_fixture("nodes.radial_patcher")


WAN_TARGETS = [
    Target("diffusion_model.blocks.0.self_attn.q", "diffusion_model.blocks.0.self_attn.q.weight", D, D, alpha=4.0)
]
HY_TARGETS = [
    Target("transformer.transformer_blocks.0.attn.to_q", "diffusion_model.double_blocks.0.img_attn.qkv.weight",
           H.HY_H, H.HY_H, rows=(0, H.HY_H))
]


def _wan_lora(path, metadata=None, style="comfyui", targets=WAN_TARGETS):
    tensors, _ = H.make_lora(targets, style)
    return H.write_safetensors(path, tensors, metadata=metadata)


def test_metadata_settings_are_applied(wan, lora_node, patcher, tmp_path):
    meta = {
        "radial_attn.decay_factor": "0.3", "radial_attn.block_size": "64", "radial_attn.dense_blocks": "1,",
        "radial_attn.dense_steps": "3", "radial_attn.dense_steps_last": "1", "radial_attn.dist1": "half",
        "radial_attn.tuned_frames": "161",
    }
    path = _wan_lora(tmp_path / "meta.safetensors", meta)
    out, report = lora_node.load_radial_lora(wan, str(path), 1.0)
    cfg = patcher.get_radial_config(out)
    assert cfg is not None
    assert cfg["decay_factor"] == pytest.approx(0.3) and not cfg["decay_is_default"]
    assert cfg["block_size"] == 64 and cfg["dense_blocks"] == [1]
    assert cfg["dense_steps_first"] == 3 and cfg["dense_steps_last"] == 1 and cfg["dist1"] == "half"
    assert "radial attention applied" in report and "decay_factor=0.3 (metadata)" in report
    assert "tuned for tuned_frames=161" in report
    assert patcher.get_radial_config(wan) is None, "the input MODEL must stay unpatched"
    assert len(out.patches) == 1  # the LoRA patch travels with the radial clone


def test_without_metadata_the_authors_length_extension_defaults(wan, lora_node, patcher, tmp_path):
    path = _wan_lora(tmp_path / "plain.safetensors")
    out, report = lora_node.load_radial_lora(wan, str(path), 1.0)
    cfg = patcher.get_radial_config(out)
    assert cfg["dense_blocks"] == [0, 1] and cfg["dense_steps_first"] == 2 and cfg["dense_steps_last"] == 0
    assert cfg["decay_is_default"] and cfg["decay_factor"] == pytest.approx(0.2)  # Wan 2.1's default
    assert cfg["block_size"] == 128 and cfg["dist1"] == "full"
    assert "dense_blocks=2 (default)" in report


def test_family_from_metadata_picks_wan22_default_decay(wan, lora_node, patcher, tmp_path):
    path = _wan_lora(tmp_path / "wan22.safetensors", {"radial_attn": json.dumps({"family": "wan22_14b"})})
    out, _ = lora_node.load_radial_lora(wan, str(path), 1.0)
    cfg = patcher.get_radial_config(out)
    assert cfg["family"] == "wan22_14b" and cfg["decay_factor"] == pytest.approx(0.8)


def test_sidecar_overrides_metadata(wan, lora_node, patcher, tmp_path):
    path = _wan_lora(tmp_path / "side.safetensors", {"radial_attn.decay_factor": "0.3", "radial_attn.dense_steps": "1"})
    (tmp_path / "side.radial.json").write_text(json.dumps({"radial_attn.decay_factor": 0.6}))
    out, _ = lora_node.load_radial_lora(wan, str(path), 1.0)
    cfg = patcher.get_radial_config(out)
    assert cfg["decay_factor"] == pytest.approx(0.6) and cfg["dense_steps_first"] == 1


def test_diffusers_folder_config_carries_radial_settings(hunyuan, lora_node, patcher, tmp_path):
    tensors, _ = H.make_lora(HY_TARGETS, "diffusers")
    cfg_json = {"r": 4, "lora_alpha": 4, "radial_attn": {"decay_factor": 0.9, "dense_blocks": 1, "dense_steps": 0}}
    folder = H.write_diffusers_folder(tmp_path / "hy_radial", tensors, cfg_json)
    out, report = lora_node.load_radial_lora(hunyuan, str(folder), 1.0)
    cfg = patcher.get_radial_config(out)
    assert cfg["family"] == "hunyuan"
    assert cfg["decay_factor"] == pytest.approx(0.9) and cfg["dense_blocks"] == [0] and cfg["dense_steps_first"] == 0
    assert "alpha 4 / rank 4" in report


def test_existing_radial_patch_is_kept_in_auto_and_replaced_in_replace(wan, lora_node, patcher, tmp_path):
    pre = patcher.apply_radial_patch(wan, decay_factor=0.5, dense_blocks="0")
    path = _wan_lora(tmp_path / "keep.safetensors", {"radial_attn.decay_factor": "0.3"})
    out, report = lora_node.load_radial_lora(pre, str(path), 1.0)
    assert patcher.get_radial_config(out)["decay_factor"] == pytest.approx(0.5)
    assert "already carries it" in report and "were not applied" in report
    assert len(out.patches) == 1
    out2, report2 = lora_node.load_radial_lora(pre, str(path), 1.0, radial_mode="replace")
    assert patcher.get_radial_config(out2)["decay_factor"] == pytest.approx(0.3)
    assert patcher.get_radial_config(pre)["decay_factor"] == pytest.approx(0.5)
    out3, report3 = lora_node.load_radial_lora(wan, str(path), 1.0, radial_mode="lora_only")
    assert patcher.get_radial_config(out3) is None and "not touched" in report3


def test_node_execute_with_loras_folder_and_overrides(comfy, wan, lora_node, patcher, tmp_path):
    import folder_paths

    loras = tmp_path / "loras_node"
    _wan_lora(loras / "ext.safetensors", {"radial_attn.decay_factor": "0.3", "radial_attn.dist1": "half"})
    tensors, _ = H.make_lora(
        [Target("transformer.blocks.1.attn1.to_k", "diffusion_model.blocks.1.self_attn.k.weight", D, D)], "diffusers"
    )
    H.write_diffusers_folder(loras / "diff_folder", tensors, {"r": 4, "lora_alpha": 2})
    folder_paths.add_model_folder_path("loras", str(loras))
    node = lora_node.RadialLoraLoader

    schema = node.define_schema()
    by_id = {i.id: i for i in schema.inputs}
    assert {"ext.safetensors", "diff_folder/", "diff_folder/pytorch_lora_weights.safetensors"} <= set(
        by_id["lora_name"].options
    )
    for inp in schema.inputs:
        assert inp.tooltip, f"input {inp.id} needs a tooltip"
    assert by_id["strength"].min == -100.0 and by_id["strength"].max == 100.0

    res = node.execute(model=wan, lora_name="ext.safetensors", strength=1.0, decay_factor=0.7,
                       dense_steps_first=0, block_size="64")
    out, report = res.args
    cfg = patcher.get_radial_config(out)
    assert cfg["decay_factor"] == pytest.approx(0.7) and cfg["dense_steps_first"] == 0 and cfg["block_size"] == 64
    assert cfg["dist1"] == "half"  # not overridden: from the LoRA
    assert "decay_factor=0.7 (override)" in report

    out2, report2 = node.execute(model=wan, lora_name="diff_folder/", strength=1.0).args
    assert "matched 2 of 2" in report2 and patcher.get_radial_config(out2) is not None
    fp = node.fingerprint_inputs(lora_name="ext.safetensors", strength=1.0)
    (loras / "ext.radial.json").write_text(json.dumps({"radial_attn.dense_steps": 5}))
    assert node.fingerprint_inputs(lora_name="ext.safetensors", strength=1.0) != fp  # side-car counts
    assert node.execute(model=wan, lora_name="ext.safetensors", strength=1.0).args[1].count("dense_steps_first=5") == 1
    with pytest.raises(ValueError, match=r"'nope.safetensors' not found in the loras folders"):
        node.execute(model=wan, lora_name="nope.safetensors", strength=1.0)


def _sample(model, seed=0):
    import comfy.sample

    g = torch.Generator().manual_seed(7)
    pos = [[torch.randn(1, 8, 4096, generator=g), {}]]
    neg = [[torch.randn(1, 8, 4096, generator=g), {}]]
    lat = torch.zeros(1, 16, 6, 16, 16)  # 6 latent frames x 64 tokens: 6 blocks of 64
    noise = comfy.sample.prepare_noise(lat, seed)
    return comfy.sample.sample(model, noise, 2, 1.0, "euler", "simple", pos, neg, lat, denoise=1.0,
                               seed=seed, disable_pbar=True)


def test_sampling_equals_comfy_lora_plus_radial_patch(comfy, wan, lora_node, patcher, tmp_path):
    """End to end with the real sampler: our node == ComfyUI's LoRA loader + the patch node."""
    import comfy.sd

    meta = {"radial_attn.decay_factor": "0.2", "radial_attn.block_size": "64", "radial_attn.dense_blocks": "0",
            "radial_attn.dense_steps": "0"}
    tensors, _ = H.make_lora(WAN_TARGETS, "comfyui")
    path = H.write_safetensors(tmp_path / "e2e.safetensors", tensors, metadata=meta)
    ours, _ = lora_node.load_radial_lora(wan, str(path), 1.0)

    reference, _ = comfy.sd.load_lora_for_models(wan, None, dict(tensors), 1.0, 0.0)
    reference = patcher.apply_radial_patch(reference, decay_factor=0.2, block_size=64, dense_blocks="0")
    lora_dense, _ = comfy.sd.load_lora_for_models(wan, None, dict(tensors), 1.0, 0.0)

    a, b, dense = _sample(ours), _sample(reference), _sample(lora_dense)
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, dense, atol=1e-6), "radial attention changed nothing: the mask kept every block"
