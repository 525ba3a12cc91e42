"""nodes.lora_keys: suffixes, module grouping, key maps, shape checks (pure Python, no ComfyUI)."""


import pytest

from conftest import pack_module

lk = pack_module("nodes.lora_keys")


@pytest.mark.parametrize(
    "key,expected",
    [
        ("diffusion_model.blocks.0.self_attn.q.lora_up.weight", ("diffusion_model.blocks.0.self_attn.q", "up")),
        ("diffusion_model.blocks.0.self_attn.q.lora_down.weight", ("diffusion_model.blocks.0.self_attn.q", "down")),
        ("diffusion_model.blocks.0.self_attn.q.alpha", ("diffusion_model.blocks.0.self_attn.q", "alpha")),
        ("transformer.blocks.0.attn1.to_q.lora_A.weight", ("transformer.blocks.0.attn1.to_q", "down")),
        ("transformer.blocks.0.attn1.to_q.lora_B.weight", ("transformer.blocks.0.attn1.to_q", "up")),
        (
            "base_model.model.blocks.0.attn1.to_q.lora_A.default.weight",
            ("base_model.model.blocks.0.attn1.to_q", "down"),
        ),
        ("lora_unet_blocks_0_self_attn_q.lora_up.weight", ("lora_unet_blocks_0_self_attn_q", "up")),
        ("blocks.0.to_q_lora.up.weight", ("blocks.0.to_q", "up")),
        ("x.lora.down.weight", ("x", "down")),
        ("x.hada_w1_a", ("x", "adapter")),
        ("x.diff_b", ("x", "diff_b")),
        ("transformer.blocks.0.attn1.to_q.lora_B.bias", ("transformer.blocks.0.attn1.to_q", "lora_bias")),
    ],
)
def test_split_lora_key(key, expected):
    assert lk.split_lora_key(key) == expected


def test_split_lora_key_rejects_non_lora_names():
    assert lk.split_lora_key("diffusion_model.blocks.0.self_attn.q.weight") is None
    assert lk.split_lora_key("lora_up.weight") is None  # suffix only, no module


def test_group_modules_and_unknown():
    keys = [
        "a.lora_up.weight", "a.lora_down.weight", "a.alpha",
        "b.lora_B.weight", "b.lora_A.weight",
        "c.alpha",  # alpha only: no payload
        "stray_tensor",
    ]
    mods, unknown = lk.group_modules(keys)
    assert set(mods) == {"a", "b", "c"}
    assert mods["a"].tensors == {"up": "a.lora_up.weight", "down": "a.lora_down.weight", "alpha": "a.alpha"}
    assert mods["a"].has_payload and mods["b"].has_payload and not mods["c"].has_payload
    assert unknown == ["stray_tensor"]


def test_detect_format():
    assert lk.detect_format(["diffusion_model.blocks.0.self_attn.q"]) == "comfyui"
    assert lk.detect_format(["transformer.blocks.0.attn1.to_q"]) == "diffusers"
    assert lk.detect_format(["lora_unet_blocks_0_self_attn_q"]) == "kohya"
    assert lk.detect_format(["base_model.model.blocks.0.attn1.to_q"]) == "peft"


def _wan_shapes(dim=128, ffn=256, blocks=2):
    shapes = {}
    for i in range(blocks):
        for a in ("self_attn", "cross_attn"):
            for p in "qkvo":
                shapes[f"diffusion_model.blocks.{i}.{a}.{p}.weight"] = (dim, dim)
        shapes[f"diffusion_model.blocks.{i}.ffn.0.weight"] = (ffn, dim)
        shapes[f"diffusion_model.blocks.{i}.ffn.2.weight"] = (dim, ffn)
        shapes[f"diffusion_model.blocks.{i}.norm3.weight"] = (dim,)
    shapes["diffusion_model.head.head.weight"] = (64, dim)
    return shapes


def test_wan_extra_key_map_diffusers_peft_kohya():
    m = lk.extra_key_map(_wan_shapes(), "wan")
    q = "diffusion_model.blocks.1.self_attn.q.weight"
    assert m["transformer.blocks.1.attn1.to_q"] == q
    assert m["diffusion_model.blocks.1.attn1.to_q"] == q  # ai-toolkit style
    assert m["base_model.model.blocks.1.attn1.to_q"] == q
    assert m["blocks.1.attn1.to_q"] == q
    assert m["lora_unet_blocks_1_attn1_to_q"] == q
    assert m["lora_transformer_blocks_1_attn1_to_q"] == q
    assert m["blocks.1.self_attn.q"] == q  # unprefixed original names
    assert m["transformer.blocks.0.attn2.to_out.0"] == "diffusion_model.blocks.0.cross_attn.o.weight"
    assert m["transformer.blocks.0.ffn.net.0.proj"] == "diffusion_model.blocks.0.ffn.0.weight"
    assert m["transformer.blocks.0.ffn.net.2"] == "diffusion_model.blocks.0.ffn.2.weight"
    assert m["transformer.blocks.0.norm2"] == "diffusion_model.blocks.0.norm3.weight"
    assert m["transformer.proj_out"] == "diffusion_model.head.head.weight"
    assert lk.extra_key_map(_wan_shapes(), "other") == {}


def _hy_shapes(h=128, mlp=512):
    return {
        "diffusion_model.double_blocks.0.img_attn.qkv.weight": (3 * h, h),
        "diffusion_model.double_blocks.0.txt_attn.qkv.weight": (3 * h, h),
        "diffusion_model.double_blocks.0.img_attn.proj.weight": (h, h),
        "diffusion_model.double_blocks.0.img_mlp.0.weight": (mlp, h),
        "diffusion_model.single_blocks.3.linear1.weight": (3 * h + mlp, h),
        "diffusion_model.single_blocks.3.linear2.weight": (h, h + mlp),
        "diffusion_model.final_layer.adaLN_modulation.1.weight": (2 * h, h),
    }


def test_hunyuan_extra_key_map_splits_fused_weights():
    m = lk.extra_key_map(_hy_shapes(), "hunyuan")
    qkv = "diffusion_model.double_blocks.0.img_attn.qkv.weight"
    assert m["transformer.transformer_blocks.0.attn.to_q"] == (qkv, (0, 0, 128))
    assert m["transformer.transformer_blocks.0.attn.to_k"] == (qkv, (0, 128, 128))
    assert m["transformer.transformer_blocks.0.attn.to_v"] == (qkv, (0, 256, 128))
    txt = "diffusion_model.double_blocks.0.txt_attn.qkv.weight"
    assert m["transformer.transformer_blocks.0.attn.add_k_proj"] == (txt, (0, 128, 128))
    lin1 = "diffusion_model.single_blocks.3.linear1.weight"
    assert m["transformer.single_transformer_blocks.3.attn.to_v"] == (lin1, (0, 256, 128))
    assert m["transformer.single_transformer_blocks.3.proj_mlp"] == (lin1, (0, 384, 512))
    assert m["transformer.single_transformer_blocks.3.proj_out"] == "diffusion_model.single_blocks.3.linear2.weight"
    assert m["transformer.transformer_blocks.0.ff.net.0.proj"] == "diffusion_model.double_blocks.0.img_mlp.0.weight"
    assert m["lora_transformer_single_transformer_blocks_3_attn_to_q"] == (lin1, (0, 0, 128))
    assert m["diffusion_model.transformer_blocks.0.attn.to_q"] == (qkv, (0, 0, 128))
    assert m["double_blocks.0.img_attn.qkv"] == qkv
    assert m["transformer.norm_out.linear"] == (
        "diffusion_model.final_layer.adaLN_modulation.1.weight",
        None,
        "swap_halves",
    )
    assert lk.target_shape(m["transformer.single_transformer_blocks.3.proj_mlp"], _hy_shapes()) == (512, 128)


def test_check_module_shapes_reports_each_problem():
    shapes = {"w": (8, 6)}
    mods, _ = lk.group_modules(["a.lora_up.weight", "a.lora_down.weight", "b.lora_up.weight",
                                "c.lora_up.weight", "c.lora_down.weight", "d.diff"])
    targets = {"a": "w", "b": "w", "c": "w", "d": "w"}
    lora_shapes = {
        "a.lora_up.weight": (8, 4), "a.lora_down.weight": (3, 6),  # rank differs
        "b.lora_up.weight": (8, 4),  # partner missing
        "c.lora_up.weight": (8, 4), "c.lora_down.weight": (4, 5),  # wrong input size
        "d.diff": (8, 5),
    }
    problems = lk.check_module_shapes(mods, targets, lora_shapes, shapes)
    text = "\n".join(problems)
    assert len(problems) == 4, text
    assert "rank differs" in text and "partner is missing" in text and "does not fit w [8, 6]" in text


def test_family_from_image_model():
    assert lk.family_from_image_model("wan2.1") == "wan"
    assert lk.family_from_image_model("hunyuan_video") == "hunyuan"
    assert lk.family_from_image_model("flux") == "other"
    assert lk.family_from_image_model(None) == "other"
