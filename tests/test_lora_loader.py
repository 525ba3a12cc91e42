"""Radial LoRA Loader, weights: every key format lands on exactly the right weights (real ComfyUI, CPU).

Tiny random-weight Wan 2.1 and HunyuanVideo models from ComfyUI's own classes; synthetic LoRA
files in each format. After ComfyUI applies the patches (``patch_model``), every weight must equal
W + strength * scale * up @ down on the targeted weights (rows, for fused qkv) and W elsewhere.
The radial half is switched off here (``radial_mode="lora_only"``); test_lora_radial.py covers it.
"""

from __future__ import annotations

import pytest
import torch

import lora_helpers as H
from lora_helpers import HY_H, HY_MLP, Target
from pack_fixtures import lora_model_fixture, pack_module_fixture

pytestmark = pytest.mark.comfy

D = 128  # Wan dim
FFN = 256

wan = lora_model_fixture(H.WAN_CONFIG, seed=0)
hunyuan = lora_model_fixture(H.HUNYUAN_CONFIG, seed=0)
lora_node = pack_module_fixture("nodes.lora_node")


def _scale_from_alpha(t: Target) -> float:
    return t.alpha / t.rank if t.alpha is not None else 1.0


def _check(model, lora_node, path, targets, mats, strength, scale_of=_scale_from_alpha):
    base = H.weights(model)
    out, report = lora_node.load_radial_lora(model, str(path), strength, radial_mode="lora_only")
    assert out is not model
    assert model.patches == {}, "the input MODEL must not get patches"
    actual = H.patched_weights(out)
    expected = H.expected_weights(base, targets, mats, strength, scale_of)
    H.assert_only_targets_changed(actual, expected, base, {t.model_key for t in targets})
    # patches, not in-place edits: the shared weights are back to W once unpatched
    for k, v in H.weights(model).items():
        assert torch.equal(v, base[k]), k
    n_tensors = sum(3 if t.alpha is not None else 2 for t in targets)
    assert f"matched {n_tensors} of {n_tensors} LoRA tensors" in report
    return out, report


WAN_CASES = {
    "comfyui": [
        Target("diffusion_model.blocks.0.self_attn.q", "diffusion_model.blocks.0.self_attn.q.weight", D, D, alpha=2.0),
        Target(
            "diffusion_model.blocks.1.cross_attn.o", "diffusion_model.blocks.1.cross_attn.o.weight", D, D, alpha=8.0
        ),
        Target("diffusion_model.blocks.0.ffn.2", "diffusion_model.blocks.0.ffn.2.weight", D, FFN),
    ],
    "kohya": [
        Target("lora_unet_blocks_0_self_attn_k", "diffusion_model.blocks.0.self_attn.k.weight", D, D, alpha=8.0),
        Target("lora_unet_blocks_1_ffn_0", "diffusion_model.blocks.1.ffn.0.weight", FFN, D, rank=2, alpha=1.0),
    ],
    "diffusers": [
        Target("transformer.blocks.0.attn1.to_v", "diffusion_model.blocks.0.self_attn.v.weight", D, D),
        Target("transformer.blocks.1.attn1.to_out.0", "diffusion_model.blocks.1.self_attn.o.weight", D, D),
        Target("transformer.blocks.0.attn2.to_k", "diffusion_model.blocks.0.cross_attn.k.weight", D, D),
        Target("transformer.blocks.1.ffn.net.2", "diffusion_model.blocks.1.ffn.2.weight", D, FFN),
        Target("transformer.blocks.1.ffn.net.0.proj", "diffusion_model.blocks.1.ffn.0.weight", FFN, D),
    ],
    # ai-toolkit writes diffusers module names under ComfyUI's prefix
    "diffusers_comfy_prefix": [
        Target("diffusion_model.blocks.0.attn1.to_q", "diffusion_model.blocks.0.self_attn.q.weight", D, D),
    ],
    "peft": [
        Target("base_model.model.blocks.1.attn1.to_q", "diffusion_model.blocks.1.self_attn.q.weight", D, D),
    ],
    # Kohya-style flattening of diffusers names (OneTrainer and others)
    "kohya_diffusers": [
        Target(
            "lora_transformer_blocks_0_attn1_to_out_0", "diffusion_model.blocks.0.self_attn.o.weight", D, D, alpha=4.0
        ),
    ],
}
_STYLE = {"diffusers_comfy_prefix": "diffusers", "kohya_diffusers": "kohya"}


@pytest.mark.parametrize("case", sorted(WAN_CASES))
def test_wan_formats(case, wan, lora_node, tmp_path):
    targets = WAN_CASES[case]
    tensors, mats = H.make_lora(targets, _STYLE.get(case, case))
    path = H.write_safetensors(tmp_path / f"wan_{case}.safetensors", tensors)
    _check(wan, lora_node, path, targets, mats, strength=0.7)


def test_wan_fun_double_underscore_keys(wan, lora_node, tmp_path):
    """ComfyUI's own convert_lora rewrites Wan-Fun's lora_unet__ keys; the loader goes through it."""
    targets = [
        Target("lora_unet__blocks_0_cross_attn_k", "diffusion_model.blocks.0.cross_attn.k.weight", D, D, alpha=4.0),
    ]
    tensors, mats = H.make_lora(targets, "kohya")
    path = H.write_safetensors(tmp_path / "wan_fun.safetensors", tensors)
    _check(wan, lora_node, path, targets, mats, strength=1.0)


def test_wan_diffusers_folder_with_lora_config(wan, lora_node, tmp_path):
    targets = [
        Target("transformer.blocks.0.attn1.to_q", "diffusion_model.blocks.0.self_attn.q.weight", D, D, rank=8),
        Target("transformer.blocks.1.attn2.to_v", "diffusion_model.blocks.1.cross_attn.v.weight", D, D, rank=8),
    ]
    tensors, mats = H.make_lora(targets, "diffusers")
    folder = H.write_diffusers_folder(tmp_path / "wan_diffusers", tensors, {"r": 8, "lora_alpha": 4})
    _, report = _check(wan, lora_node, folder, targets, mats, strength=1.0, scale_of=lambda t: 4 / 8)
    assert "alpha 4 / rank 8" in report


def test_diffusers_file_with_adapter_metadata_scale(wan, lora_node, tmp_path):
    """diffusers >= 0.34 stores the LoraConfig as JSON under lora_adapter_metadata."""
    import json

    targets = [Target("transformer.blocks.0.attn1.to_k", "diffusion_model.blocks.0.self_attn.k.weight", D, D, rank=4)]
    tensors, mats = H.make_lora(targets, "diffusers")
    meta = {"lora_adapter_metadata": json.dumps({"transformer.r": 4, "transformer.lora_alpha": 16})}
    path = H.write_safetensors(tmp_path / "meta_scale.safetensors", tensors, metadata=meta)
    _check(wan, lora_node, path, targets, mats, strength=1.0, scale_of=lambda t: 4.0)


HY_CASES = {
    "comfyui": [
        Target(
            "diffusion_model.double_blocks.0.img_attn.qkv",
            "diffusion_model.double_blocks.0.img_attn.qkv.weight",
            3 * HY_H,
            HY_H,
            alpha=2.0,
        ),
        Target(
            "diffusion_model.single_blocks.0.linear2",
            "diffusion_model.single_blocks.0.linear2.weight",
            HY_H,
            HY_H + HY_MLP,
        ),
    ],
    "kohya": [
        Target(
            "lora_unet_double_blocks_0_img_mlp_0",
            "diffusion_model.double_blocks.0.img_mlp.0.weight",
            HY_MLP,
            HY_H,
            alpha=4.0,
        ),
        Target(
            "lora_unet_single_blocks_0_linear1",
            "diffusion_model.single_blocks.0.linear1.weight",
            3 * HY_H + HY_MLP,
            HY_H,
            alpha=1.0,
        ),
    ],
    # diffusion-pipe's format, which ComfyUI maps itself
    "diffusion_pipe": [
        Target(
            "transformer.double_blocks.0.img_attn_qkv",
            "diffusion_model.double_blocks.0.img_attn.qkv.weight",
            3 * HY_H,
            HY_H,
        ),
        Target(
            "transformer.double_blocks.0.txt_mlp.fc1", "diffusion_model.double_blocks.0.txt_mlp.0.weight", HY_MLP, HY_H
        ),
    ],
    "diffusers": [
        Target(
            "transformer.transformer_blocks.0.attn.to_q",
            "diffusion_model.double_blocks.0.img_attn.qkv.weight",
            HY_H,
            HY_H,
            rows=(0, HY_H),
        ),
        Target(
            "transformer.transformer_blocks.0.attn.to_k",
            "diffusion_model.double_blocks.0.img_attn.qkv.weight",
            HY_H,
            HY_H,
            rows=(HY_H, HY_H),
        ),
        Target(
            "transformer.transformer_blocks.0.attn.add_v_proj",
            "diffusion_model.double_blocks.0.txt_attn.qkv.weight",
            HY_H,
            HY_H,
            rows=(2 * HY_H, HY_H),
        ),
        Target(
            "transformer.transformer_blocks.0.attn.to_out.0",
            "diffusion_model.double_blocks.0.img_attn.proj.weight",
            HY_H,
            HY_H,
        ),
        Target(
            "transformer.transformer_blocks.0.attn.to_add_out",
            "diffusion_model.double_blocks.0.txt_attn.proj.weight",
            HY_H,
            HY_H,
        ),
        Target(
            "transformer.transformer_blocks.0.ff_context.net.2",
            "diffusion_model.double_blocks.0.txt_mlp.2.weight",
            HY_H,
            HY_MLP,
        ),
        Target(
            "transformer.transformer_blocks.0.norm1.linear",
            "diffusion_model.double_blocks.0.img_mod.lin.weight",
            6 * HY_H,
            HY_H,
        ),
        Target(
            "transformer.single_transformer_blocks.0.attn.to_q",
            "diffusion_model.single_blocks.0.linear1.weight",
            HY_H,
            HY_H,
            rows=(0, HY_H),
        ),
        Target(
            "transformer.single_transformer_blocks.0.attn.to_v",
            "diffusion_model.single_blocks.0.linear1.weight",
            HY_H,
            HY_H,
            rows=(2 * HY_H, HY_H),
        ),
        Target(
            "transformer.single_transformer_blocks.0.proj_mlp",
            "diffusion_model.single_blocks.0.linear1.weight",
            HY_MLP,
            HY_H,
            rows=(3 * HY_H, HY_MLP),
        ),
        Target(
            "transformer.single_transformer_blocks.0.proj_out",
            "diffusion_model.single_blocks.0.linear2.weight",
            HY_H,
            HY_H + HY_MLP,
        ),
        Target(
            "transformer.single_transformer_blocks.0.norm.linear",
            "diffusion_model.single_blocks.0.modulation.lin.weight",
            3 * HY_H,
            HY_H,
        ),
        Target(
            "transformer.norm_out.linear",
            "diffusion_model.final_layer.adaLN_modulation.1.weight",
            2 * HY_H,
            HY_H,
            swap_halves=True,
        ),
    ],
    "peft": [
        Target(
            "base_model.model.transformer_blocks.0.attn.add_q_proj",
            "diffusion_model.double_blocks.0.txt_attn.qkv.weight",
            HY_H,
            HY_H,
            rows=(0, HY_H),
        ),
    ],
}


@pytest.mark.parametrize("case", sorted(HY_CASES))
def test_hunyuan_formats(case, hunyuan, lora_node, tmp_path):
    targets = HY_CASES[case]
    style = {"diffusion_pipe": "diffusers"}.get(case, case)
    tensors, mats = H.make_lora(targets, style)
    path = H.write_safetensors(tmp_path / f"hy_{case}.safetensors", tensors)
    _check(hunyuan, lora_node, path, targets, mats, strength=-0.5)


def test_hunyuan_folder_in_the_radial_authors_layout(hunyuan, lora_node, tmp_path):
    """The authors' HunyuanVideo 4x LoRA folder: diffusers keys + lora_config.json with
    {"lora_params": {"lora_rank", "lora_alpha"}} (their script scales by lora_alpha / lora_rank)."""
    targets = [
        Target(
            "transformer.transformer_blocks.0.attn.to_q",
            "diffusion_model.double_blocks.0.img_attn.qkv.weight",
            HY_H,
            HY_H,
            rows=(0, HY_H),
            rank=8,
        ),
        Target(
            "transformer.single_transformer_blocks.0.proj_out",
            "diffusion_model.single_blocks.0.linear2.weight",
            HY_H,
            HY_H + HY_MLP,
            rank=8,
        ),
    ]
    tensors, mats = H.make_lora(targets, "diffusers")
    cfg = {"lora_params": {"lora_rank": 8, "lora_alpha": 4}}
    folder = H.write_diffusers_folder(tmp_path / "hunyuan_4x_lora", tensors, cfg)
    _check(hunyuan, lora_node, folder, targets, mats, strength=1.0, scale_of=lambda t: 0.5)


def test_hunyuan_diffusers_folder(hunyuan, lora_node, tmp_path):
    targets = [
        Target(
            "transformer.transformer_blocks.0.attn.to_v",
            "diffusion_model.double_blocks.0.img_attn.qkv.weight",
            HY_H,
            HY_H,
            rows=(2 * HY_H, HY_H),
            rank=2,
        ),
        Target(
            "transformer.single_transformer_blocks.0.attn.to_k",
            "diffusion_model.single_blocks.0.linear1.weight",
            HY_H,
            HY_H,
            rows=(HY_H, HY_H),
            rank=2,
        ),
    ]
    tensors, mats = H.make_lora(targets, "diffusers")
    folder = H.write_diffusers_folder(tmp_path / "hy_folder", tensors, {"r": 2, "lora_alpha": 3})
    _check(hunyuan, lora_node, folder, targets, mats, strength=1.0, scale_of=lambda t: 1.5)


def test_strength_zero_leaves_model_unchanged(wan, lora_node, tmp_path):
    targets = WAN_CASES["comfyui"]
    tensors, _ = H.make_lora(targets, "comfyui")
    path = H.write_safetensors(tmp_path / "zero.safetensors", tensors)
    base = H.weights(wan)
    out, report = lora_node.load_radial_lora(wan, str(path), 0.0)
    assert out is wan and "unchanged" in report
    assert wan.patches == {}
    after = H.patched_weights(out)
    assert all(torch.equal(after[k], base[k]) for k in base)


def test_unmatched_tensors_are_counted_and_listed(wan, lora_node, tmp_path):
    targets = WAN_CASES["comfyui"][:1]
    tensors, mats = H.make_lora(targets, "comfyui")
    tensors["diffusion_model.blocks.7.self_attn.q.lora_up.weight"] = torch.zeros(D, 4)  # no block 7
    tensors["diffusion_model.blocks.7.self_attn.q.lora_down.weight"] = torch.zeros(4, D)
    tensors["text_encoders.t5.layer.0.lora_up.weight"] = torch.zeros(8, 4)
    path = H.write_safetensors(tmp_path / "partial.safetensors", tensors)
    base = H.weights(wan)
    out, report = lora_node.load_radial_lora(wan, str(path), 1.0, radial_mode="lora_only")
    assert "matched 3 of 6 LoRA tensors" in report
    assert "not matched (3): diffusion_model.blocks.7.self_attn.q.lora_down.weight" in report
    assert "text_encoders.t5.layer.0.lora_up.weight" in report
    expected = H.expected_weights(base, targets, mats, 1.0, _scale_from_alpha)
    H.assert_only_targets_changed(H.patched_weights(out), expected, base, {targets[0].model_key})


def test_composes_with_comfyui_lora_loader(comfy, wan, lora_node, tmp_path):
    """ComfyUI's LoraLoaderModelOnly first, then ours on the same weight: both deltas add up."""
    import folder_paths

    first = [
        Target("diffusion_model.blocks.0.self_attn.q", "diffusion_model.blocks.0.self_attn.q.weight", D, D, alpha=4.0)
    ]
    t1, m1 = H.make_lora(first, "comfyui", seed=11)
    loras_dir = tmp_path / "loras_compose"
    H.write_safetensors(loras_dir / "first.safetensors", t1)
    folder_paths.add_model_folder_path("loras", str(loras_dir))
    (after_first,) = comfy.nodes.LoraLoaderModelOnly().load_lora_model_only(wan, "first.safetensors", 0.5)

    second = [Target("transformer.blocks.0.attn1.to_q", "diffusion_model.blocks.0.self_attn.q.weight", D, D)]
    t2, m2 = H.make_lora(second, "diffusers", seed=12)
    p2 = H.write_safetensors(tmp_path / "second.safetensors", t2)
    base = H.weights(wan)
    out, _ = lora_node.load_radial_lora(after_first, str(p2), 2.0, radial_mode="lora_only")
    assert len(after_first.patches["diffusion_model.blocks.0.self_attn.q.weight"]) == 1
    assert len(out.patches["diffusion_model.blocks.0.self_attn.q.weight"]) == 2
    expected = H.expected_weights(base, first, m1, 0.5, _scale_from_alpha)
    expected = H.expected_weights(expected, second, m2, 2.0, _scale_from_alpha)
    H.assert_only_targets_changed(H.patched_weights(out), expected, base, {first[0].model_key})


def test_peft_lora_bias_becomes_a_scaled_bias_patch(wan, hunyuan, lora_node, tmp_path):
    """diffusers writes Wan/Hunyuan "diff_b" as PEFT's lora_B.bias, scaled like the LoRA output."""
    targets = [Target("transformer.blocks.0.attn1.to_q", "diffusion_model.blocks.0.self_attn.q.weight", D, D)]
    tensors, mats = H.make_lora(targets, "diffusers")
    bias = torch.randn(D, generator=torch.Generator().manual_seed(5))
    tensors["transformer.blocks.0.attn1.to_q.lora_B.bias"] = bias
    folder = H.write_diffusers_folder(tmp_path / "wan_bias", tensors, {"r": 4, "lora_alpha": 2})
    base = H.weights(wan)
    out, report = lora_node.load_radial_lora(wan, str(folder), 0.5, radial_mode="lora_only")
    assert "matched 3 of 3" in report
    expected = H.expected_weights(base, targets, mats, 0.5, lambda t: 0.5)
    expected["diffusion_model.blocks.0.self_attn.q.bias"] = (
        base["diffusion_model.blocks.0.self_attn.q.bias"] + 0.5 * 0.5 * bias
    )
    H.assert_only_targets_changed(
        H.patched_weights(out), expected, base,
        {"diffusion_model.blocks.0.self_attn.q.weight", "diffusion_model.blocks.0.self_attn.q.bias"},
    )

    hy_targets = [
        Target(
            "transformer.transformer_blocks.0.attn.to_k",
            "diffusion_model.double_blocks.0.img_attn.qkv.weight",
            HY_H,
            HY_H,
            rows=(HY_H, HY_H),
        )
    ]
    tensors, mats = H.make_lora(hy_targets, "diffusers")
    tensors["transformer.transformer_blocks.0.attn.to_k.lora_B.bias"] = bias
    path = H.write_safetensors(tmp_path / "hy_bias.safetensors", tensors)
    base = H.weights(hunyuan)
    out, _ = lora_node.load_radial_lora(hunyuan, str(path), 1.0, radial_mode="lora_only")
    expected = H.expected_weights(base, hy_targets, mats, 1.0, lambda t: 1.0)
    expected["diffusion_model.double_blocks.0.img_attn.qkv.bias"][HY_H : 2 * HY_H] += bias
    H.assert_only_targets_changed(
        H.patched_weights(out), expected, base,
        {"diffusion_model.double_blocks.0.img_attn.qkv.weight", "diffusion_model.double_blocks.0.img_attn.qkv.bias"},
    )


def test_wan_i2v_image_keys_and_embedders(comfy, lora_node, tmp_path):
    """I2V-only weights: diffusers' add_k_proj / add_v_proj and the image embedder."""
    i2v = H.build_model(dict(H.WAN_CONFIG, model_type="i2v", in_dim=36), seed=2)
    assert "diffusion_model.blocks.0.cross_attn.k_img.weight" in i2v.model.state_dict()
    targets = [
        Target("transformer.blocks.0.attn2.add_k_proj", "diffusion_model.blocks.0.cross_attn.k_img.weight", D, D),
        Target("transformer.blocks.1.attn2.add_v_proj", "diffusion_model.blocks.1.cross_attn.v_img.weight", D, D),
        Target(
            "transformer.condition_embedder.image_embedder.ff.net.0.proj",
            "diffusion_model.img_emb.proj.1.weight",
            1280,
            1280,
        ),
        Target("transformer.condition_embedder.time_proj", "diffusion_model.time_projection.1.weight", 6 * D, D),
        Target(
            "transformer.condition_embedder.text_embedder.linear_1", "diffusion_model.text_embedding.0.weight", D, 4096
        ),
        Target("transformer.proj_out", "diffusion_model.head.head.weight", 64, D),
    ]
    tensors, mats = H.make_lora(targets, "diffusers")
    path = H.write_safetensors(tmp_path / "i2v.safetensors", tensors)
    _check(i2v, lora_node, path, targets, mats, strength=1.0)


def test_node_registered_with_comfyui_schema(comfy):
    cls = comfy.nodes.NODE_CLASS_MAPPINGS["RadialLoraLoader"]
    assert comfy.nodes.NODE_DISPLAY_NAME_MAPPINGS.get("RadialLoraLoader") == "Radial LoRA Loader"
    info = cls.INPUT_TYPES()
    assert set(info["required"]) == {"model", "lora_name", "strength"}
    assert {"radial_mode", "decay_factor", "block_size", "dense_blocks", "dense_steps_first",
            "dense_steps_last", "dist1", "family", "backend"} == set(info["optional"])
    assert list(cls.RETURN_TYPES) == ["MODEL", "STRING"]


def test_bf16_lora_on_float32_model(wan, lora_node, tmp_path):
    targets = [Target("lora_unet_blocks_1_self_attn_v", "diffusion_model.blocks.1.self_attn.v.weight", D, D, alpha=2.0)]
    tensors, mats = H.make_lora(targets, "kohya")
    tensors = {k: v.to(torch.bfloat16) for k, v in tensors.items()}
    mats = {k: (u.to(torch.bfloat16).float(), d.to(torch.bfloat16).float()) for k, (u, d) in mats.items()}
    path = H.write_safetensors(tmp_path / "bf16.safetensors", tensors)
    _check(wan, lora_node, path, targets, mats, strength=1.0)


def test_works_with_lowvram_offloading(wan, lora_node, tmp_path):
    """Under ComfyUI's partial (low-VRAM) loading the weights stay W and the patch is computed on the
    fly at each forward (LowVramPatch): only possible because the LoRA is a patch, not an edit."""
    targets = [Target("transformer.blocks.0.attn1.to_q", "diffusion_model.blocks.0.self_attn.q.weight", D, D)]
    tensors, mats = H.make_lora(targets, "diffusers")
    tensors["transformer.blocks.0.attn1.to_q.lora_B.bias"] = torch.ones(D)
    path = H.write_safetensors(tmp_path / "lowvram.safetensors", tensors)
    base = H.weights(wan)
    out, _ = lora_node.load_radial_lora(wan, str(path), 0.8, radial_mode="lora_only")
    expected = H.expected_weights(base, targets, mats, 0.8, lambda t: 1.0)
    w = expected["diffusion_model.blocks.0.self_attn.q.weight"]
    b = base["diffusion_model.blocks.0.self_attn.q.bias"] + 0.8
    x = torch.randn(3, D, generator=torch.Generator().manual_seed(9))
    out.patch_model(device_to=torch.device("cpu"), lowvram_model_memory=1)
    try:
        q = out.model.diffusion_model.blocks[0].self_attn.q
        assert q.weight_function, "ComfyUI did not take the low-VRAM path"
        torch.testing.assert_close(q.weight, base["diffusion_model.blocks.0.self_attn.q.weight"], rtol=0, atol=0)
        torch.testing.assert_close(q(x), x @ w.T + b, rtol=1e-5, atol=1e-5)
    finally:
        out.unpatch_model(device_to=torch.device("cpu"))


def test_which_formats_comfyui_maps_itself(comfy, wan, hunyuan):
    """The pack adds only what ComfyUI lacks: where ComfyUI maps a name, its target is kept."""
    import comfy.lora as comfy_lora

    lora_keys = comfy.pack_module("nodes.lora_keys")
    for model, family in ((wan, "wan"), (hunyuan, "hunyuan")):
        native = comfy_lora.model_lora_keys_unet(model.model, {})
        shapes = {k: tuple(v.shape) for k, v in model.model_state_dict().items()}
        extra = lora_keys.extra_key_map(shapes, family)
        merged = dict(native)
        for k, v in extra.items():
            merged.setdefault(k, v)
        assert all(merged[k] == v for k, v in native.items())
        assert len(merged) > len(native)
    wan_native = comfy_lora.model_lora_keys_unet(wan.model, {})
    assert {"diffusion_model.blocks.0.self_attn.q", "lora_unet_blocks_0_self_attn_q"} <= set(wan_native)
    assert not {"transformer.blocks.0.attn1.to_q", "diffusion_model.blocks.0.attn1.to_q",
                "base_model.model.blocks.0.attn1.to_q", "lora_transformer_blocks_0_attn1_to_q",
                "blocks.0.self_attn.q"} & set(wan_native)
    hy_native = comfy_lora.model_lora_keys_unet(hunyuan.model, {})
    assert {"diffusion_model.double_blocks.0.img_attn.qkv", "lora_unet_double_blocks_0_img_attn_qkv",
            "transformer.double_blocks.0.img_attn_qkv"} <= set(hy_native)
    assert not {"transformer.transformer_blocks.0.attn.to_q", "transformer.single_transformer_blocks.0.proj_mlp",
                "base_model.model.transformer_blocks.0.attn.to_q"} & set(hy_native)
