"""Radial Attention Patch: configuration, family detection, step/block bookkeeping (no sampling).

Real ComfyUI in-process (fixture ``comfy``), real model classes loaded from safetensors by
ComfyUI's loader (tests/helpers_models.py).
"""

from __future__ import annotations

import logging

import pytest
import torch

import helpers_models as hm

pytestmark = pytest.mark.comfy


@pytest.fixture(scope="module")
def mods(comfy):
    class M:
        patcher = comfy.pack_module("nodes.radial_patcher")
        family = comfy.pack_module("nodes.model_family")
        steps = comfy.pack_module("nodes.step_tracker")
        run_state = comfy.pack_module("nodes.run_state")
        override = comfy.pack_module("nodes.attention_override")
        plan = comfy.pack_module("nodes.attention_plan")
        node = comfy.pack_module("nodes.patch_node")

    return M


# ---------------------------------------------------------------------------- family detection
@pytest.mark.parametrize(
    "kind, family, variant, mask_model, layout, blocks",
    [
        ("wan_t2v", "wan21", "Wan 2.1 T2V", "wan", "wan", 2),
        ("wan_i2v", "wan21", "Wan 2.1 I2V", "wan", "wan", 2),
        ("wan22_a14b_i2v", "wan22_14b", "Wan 2.2 A14B I2V", "wan", "wan", 2),
        ("wan22_5b", "wan22_5b", "Wan 2.2 TI2V-5B", "wan", "wan", 2),
        ("hunyuan_t2v", "hunyuan", "HunyuanVideo T2V", "hunyuan", "joint", 2),
        ("hunyuan_i2v", "hunyuan", "HunyuanVideo I2V", "hunyuan", "joint", 2),
        ("mochi", "mochi", "Mochi 1", "hunyuan", "joint", 2),
        ("wan_vace", "wan21", "Wan 2.1 VACE", "wan", "wan", 2),
    ],
)
def test_family_detected_from_the_model(mods, kind, family, variant, mask_model, layout, blocks):
    fam = mods.family.detect_family(hm.load_model(kind))
    assert fam is not None, f"{kind} not detected"
    assert (fam.family, fam.variant, fam.mask_model, fam.layout, fam.num_blocks) == (
        family, variant, mask_model, layout, blocks)


def test_family_defaults_follow_the_authors():
    from radial_core.families import default_decay as d

    assert (d("wan21"), d("wan22_14b"), d("hunyuan")) == (0.2, 0.8, 0.95)


def test_unknown_model_passes_through_with_one_warning(mods, comfy, caplog):
    import comfy.model_patcher

    other = comfy.model_patcher.ModelPatcher(torch.nn.Linear(2, 2), torch.device("cpu"), torch.device("cpu"))
    with caplog.at_level(logging.WARNING):
        out = mods.patcher.apply_radial_patch(other)
    warnings = [r for r in caplog.records if "not a video model" in r.getMessage()]
    assert len(warnings) == 1
    assert out is other
    assert mods.patcher.get_radial_config(out) is None
    assert "optimized_attention_override" not in out.model_options.get("transformer_options", {})


# ---------------------------------------------------------------------------- configuration
def test_apply_clones_and_configures(mods):
    base = hm.load_model("wan_t2v")
    before = dict(base.model_options.get("transformer_options", {}))
    p = mods.patcher.apply_radial_patch(base, dense_blocks="1", dense_steps_first=2, block_size=64, dist1="half")
    assert p is not base
    assert base.model_options.get("transformer_options", {}) == before  # the input is untouched
    cfg = mods.patcher.get_radial_config(p)
    assert cfg["family"] == "wan21" and cfg["decay_factor"] == 0.2 and cfg["decay_is_default"]
    assert cfg["dense_blocks"] == [0] and cfg["dense_steps_first"] == 2 and cfg["block_size"] == 64
    assert cfg["dist1"] == "half"
    # keyed wrappers, no single-slot unet wrapper
    assert p.get_wrappers("outer_sample", "radial_attention")
    assert p.get_wrappers("apply_model", "radial_attention")
    assert "model_function_wrapper" not in p.model_options
    # the config survives ComfyUI's clone (deep copy of model_options) and holds no tensors
    c = p.clone()
    assert mods.patcher.get_radial_config(c) == cfg
    assert not any(isinstance(v, torch.Tensor) for v in cfg.values())


def test_reapplying_replaces_not_stacks(mods):
    base = hm.load_model("wan_t2v")
    seen = []

    def earlier(func, *args, **kwargs):
        seen.append(1)
        return func(*args, **kwargs)

    m = base.clone()
    m.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = earlier
    p1 = mods.patcher.apply_radial_patch(m, decay_factor=0.5)
    p2 = mods.patcher.apply_radial_patch(p1, decay_factor=0.3)
    ov = p2.model_options["transformer_options"]["optimized_attention_override"]
    assert ov.previous is earlier  # the other pack's override, not our first patch
    assert len(p2.get_wrappers("apply_model", "radial_attention")) == 1
    assert mods.patcher.get_radial_config(p2)["decay_factor"] == 0.3


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"block_size": 96}, ["block_size", "96", "128, 64"]),
        ({"dist1": "quarter"}, ["dist1", "quarter"]),
        ({"backend": "cuda"}, ["backend", "cuda"]),
        ({"dense_steps_first": -1}, ["dense_steps_first", "-1"]),
        ({"decay_factor": -0.5}, ["decay_factor", "-0.5", "Fix"]),
        ({"dense_blocks": "a,b"}, ["dense_blocks", "'a,b'", "Fix"]),
        ({"dense_blocks": "0,7"}, ["dense_blocks", "7", "blocks 0 to 1"]),
        ({"dense_blocks": "3"}, ["dense_blocks", "3", "2 blocks"]),
        ({"family": "hunyuan"}, ["family", "hunyuan", "Wan 2.1 T2V"]),
    ],
)
def test_bad_values_name_the_value_and_the_fix(mods, kwargs, words):
    with pytest.raises(ValueError) as err:
        mods.patcher.apply_radial_patch(hm.load_model("wan_t2v"), **kwargs)
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_family_override_for_wan22_a14b(mods):
    p = mods.patcher.apply_radial_patch(hm.load_model("wan_t2v"), family="wan22_14b")
    cfg = mods.patcher.get_radial_config(p)
    assert cfg["family"] == "wan22_14b" and cfg["decay_factor"] == 0.8


def test_node_schema_and_execute(mods):
    node = mods.node.RadialAttentionPatch
    schema = node.define_schema()
    assert schema.node_id == "RadialAttentionPatch"
    assert schema.display_name == "Radial Attention Patch"
    assert schema.category == "Radial Attention"
    for inp in schema.inputs:
        assert inp.tooltip, f"input {inp.id} has no tooltip"
    # every family of the registry is named, each default decay with "untuned" where it applies
    from radial_core.families import families

    decay_tip = next(i.tooltip for i in schema.inputs if i.id == "decay_factor")
    tuned_part, untuned_part = decay_tip.split("untuned", 1)
    for spec in families().values():
        assert spec.label in schema.description
        assert f"{spec.label} {spec.default_decay:g}" in (tuned_part if spec.tuned else untuned_part), spec.label
    names = [i.id for i in schema.inputs]
    for n in ("model", "decay_factor", "block_size", "dense_blocks", "dense_steps_first",
              "dense_steps_last", "dist1", "backend"):
        assert n in names
    # validate_inputs takes dense_blocks only; ComfyUI checks the rest (tests/test_validation.py)
    assert node.validate_inputs(dense_blocks="0,x") != True  # noqa: E712 - message expected
    assert node.validate_inputs(dense_blocks="0,1") is True
    out = node.execute(hm.load_model("hunyuan_t2v"), 0.0, 128, "1", 0, 0, "full", "auto")
    cfg = mods.patcher.get_radial_config(out.result[0])
    assert cfg["family"] == "hunyuan" and cfg["decay_factor"] == 0.95


# ---------------------------------------------------------------------------- steps and blocks
def test_dense_blocks_text(mods):
    p = mods.patcher.parse_dense_blocks
    assert p("") == frozenset() and p("0") == frozenset()
    assert p("2") == {0, 1}
    assert p("0,1,39") == {0, 1, 39}
    assert p("5,") == {5}
    assert p("0-3, 39") == {0, 1, 2, 3, 39}
    for bad in ("x", "-1", "3-1", "1.5"):
        with pytest.raises(ValueError):
            p(bad)


def test_local_step_and_second_order_calls(mods):
    s = (1.0, 0.75, 0.5, 0.25, 0.0)
    ls = mods.steps.local_step
    assert [ls(s, x) for x in (1.0, 0.75, 0.5, 0.25)] == [0, 1, 2, 3]
    assert ls(s, 0.6) == 1  # a second-order sampler's intermediate call belongs to its step
    assert ls(s, 2.0) is None


def test_a_pass_is_placed_in_its_schedule_by_its_own_sigmas(mods):
    """No ledger: each pass of a split schedule finds its place from its sigmas alone (a pass 1
    served from ComfyUI's cache never ran here)."""
    st = mods.steps
    full = (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)  # a whole schedule of 5 steps

    def schedules(total):  # what ComfyUI's schedulers would give: here one linear one
        return [tuple(round(1.0 - i / total, 6) for i in range(total)) + (0.0,)], []

    p1 = st.locate_pass(full[:4], 4, 3, starts_schedule=True, schedules=schedules)  # steps 0-2
    assert (p1.before, p1.after) == (0, 2) and not p1.ends_schedule
    p2 = st.locate_pass(full[3:], 4, 3, starts_schedule=False, schedules=schedules)  # steps 3-4
    assert (p2.before, p2.after) == (3, 0) and p2.ends_schedule
    assert st.step_info(p2, 0.4, 4, 0).dense and st.step_info(p2, 0.4, 4, 0).global_index == 3
    assert not st.step_info(p2, 0.2, 4, 0).dense
    assert st.step_info(p2, 0.2, 0, 1).dense  # the last step of the schedule
    assert st.step_info(p1, 0.6, 0, 3).dense  # step 2 is one of the last 3, though pass 1 ends at 0.4
    assert not st.step_info(p1, 0.8, 0, 3).dense
    mid = st.locate_pass(full[1:4], 2, 0, starts_schedule=False, schedules=schedules)  # a middle pass
    assert (mid.before, mid.after) == (1, 2)
    # only what the dense window needs is looked up: a pass 3 steps in with dense_steps_first 2
    far = st.locate_pass(full[3:], 2, 0, starts_schedule=False, schedules=schedules)
    assert far.before is None and far.after == 0
    info = st.step_info(far, 0.4, 2, 0)
    assert not info.dense and info.global_index is None and info.decided
    # hand-made sigmas no scheduler gives: outside the dense first steps unless they start at full noise
    odd = (0.7, 0.33, 0.0)
    assert st.locate_pass(odd, 4, 0, starts_schedule=False, schedules=schedules).before is None
    assert st.locate_pass(odd, 4, 0, starts_schedule=True, schedules=schedules).before == 0


def test_comfy_schedulers_place_a_split_pass(mods):
    import comfy.samplers as cs

    ms = hm.load_model("wan_t2v").get_model_object("model_sampling")
    for name in ("simple", "karras", "beta", "ddim_uniform"):
        full = cs.calculate_sigmas(ms, name, 8)
        p2 = mods.steps.pass_steps(full[3:], ms, 5, 0)
        assert (p2.before, p2.after) == (3, 0), name
        p1 = mods.steps.pass_steps(full[:4], ms, 5, 6)
        assert (p1.before, p1.after) == (0, 5), name
    # KSampler with denoise 0.5 samples the tail of a 16-step schedule: its steps count from there
    full16 = cs.calculate_sigmas(ms, "simple", 16)
    assert mods.steps.pass_steps(full16[-9:], ms, 10, 0).before == 8


def test_vace_call_schedule(mods):
    assert mods.run_state.call_schedule(3) == (0, 1, 2)
    assert mods.run_state.call_schedule(3, (0, 2), 2) == (0, 0, 0, 1, 2, 2, 2)


# ---------------------------------------------------------------------------- masks
def test_key_padding_from_masks(mods):
    kp = mods.plan.key_padding_from_mask
    L = 6
    assert kp(None, 2, L) == (True, None)
    add = torch.zeros(1, 1, L)
    add[..., 4:] = -torch.finfo(torch.float32).max
    ok, m = kp(add, 2, L)
    assert ok and m.shape == (2, L) and m[:, :4].all() and not m[:, 4:].any()
    ok, m = kp(torch.zeros(1, 1, L), 2, L)
    assert ok and m is None  # nothing padded
    b = torch.ones(2, 1, 1, L, dtype=torch.bool)
    b[1, ..., 5] = False
    ok, m = kp(b, 2, L)
    assert ok and m[0].all() and not m[1, 5]
    assert kp(torch.zeros(1, 1, L, L), 1, L)[0] is False  # query-dependent
    bias = torch.zeros(1, 1, L)
    bias[..., 0] = 0.5
    assert kp(bias, 1, L)[0] is False  # a real bias


# ---------------------------------------------------------------------------- fallbacks (direct)
def _direct_setup(comfy, mods, frames=4, batch=2):
    rs = comfy.pack_module("nodes.run_state")
    p = mods.patcher.apply_radial_patch(hm.load_model("wan_t2v"), dense_blocks="", block_size=64)
    ov = p.model_options["transformer_options"]["optimized_attention_override"]
    run = rs.RunState(None)
    fwd = rs.open_forward(run, ov.config.family, torch.zeros(batch, 16, frames, 16, 16), torch.tensor([1.0]),
                          None, {}, {}, 0, 0)
    return {"optimized_attention_override": ov, rs.RUN_KEY: run, rs.FWD_KEY: fwd}, run


def _fwd(topts):
    """The forward context the wrapper put into this call's transformer_options."""
    return topts["radial_attention_forward"]


@pytest.mark.parametrize("case", ["float64", "odd_length"])
def test_fallbacks_warn_once_and_match_dense(comfy, mods, caplog, case):
    import comfy.ldm.modules.attention as attn

    topts, run = _direct_setup(comfy, mods)
    g = torch.Generator().manual_seed(0)
    L = 4 * 64 if case != "odd_length" else 4 * 64 + 3
    dtype = torch.float64 if case == "float64" else torch.float32
    words = {"float64": "dtype torch.float64", "odd_length": "do not match"}[case]
    outs = []
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            _fwd(topts).calls = 0
            q, k, v = (torch.randn(2, L, 128, generator=g, dtype=dtype) for _ in range(3))
            out = attn.attention_pytorch(q, k, v, heads=1, transformer_options=topts)
            want = attn.attention_pytorch(q, k, v, heads=1, transformer_options={})
            outs.append(float((out - want).abs().max()))
    assert max(outs) == 0.0
    assert len([r for r in caplog.records if words in r.getMessage()]) == 1
    assert run.sparse_calls == 0


def test_outside_a_sampler_the_override_is_dense(comfy, mods):
    import comfy.ldm.modules.attention as attn

    p = mods.patcher.apply_radial_patch(hm.load_model("wan_t2v"), dense_blocks="")
    ov = p.model_options["transformer_options"]["optimized_attention_override"]
    q = torch.randn(1, 256, 128)
    out = attn.attention_pytorch(q, q, q, heads=1, transformer_options={"optimized_attention_override": ov})
    assert torch.equal(out, attn.attention_pytorch(q, q, q, heads=1, transformer_options={}))


def test_direct_sparse_call_layouts(comfy, mods):
    """[B, L, H*D] in, same layout out; skip_reshape [B, H, L, D] in, [B, L, H*D] out."""
    import comfy.ldm.modules.attention as attn
    from radial_core.reference import dense_masked_attention

    topts, run = _direct_setup(comfy, mods, frames=8)
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 8 * 64, 256, generator=g) for _ in range(3))
    out = attn.attention_pytorch(q, k, v, heads=2, transformer_options=topts)
    assert out.shape == q.shape and run.sparse_calls == 1
    q4, k4, v4 = (t.view(2, -1, 2, 128).transpose(1, 2) for t in (q, k, v))
    mask = (
        comfy.pack_module("radial_core.mask")
        .radial_mask(8, 64, text_tokens=0, block_size=64, decay_factor=0.2, model="wan", dist1="full")
        .blocks
    )
    ref = dense_masked_attention(q4, k4, v4, mask, 64).transpose(1, 2).reshape(2, -1, 256)
    assert float((out.double() - ref).norm() / ref.norm()) < 1e-5
    _fwd(topts).calls = 0
    out2 = attn.attention_pytorch(q4, k4, v4, heads=2, skip_reshape=True, transformer_options=topts)
    assert out2.shape == q.shape and torch.allclose(out2, out, atol=1e-6)


def test_joint_layout_batch_of_two_with_padding(comfy, mods):
    """HunyuanVideo-style call: [B, H, L, D], video then text, additive key mask per batch row."""
    import comfy.ldm.modules.attention as attn
    from radial_core.reference import dense_masked_attention

    rs = comfy.pack_module("nodes.run_state")
    p = mods.patcher.apply_radial_patch(hm.load_model("hunyuan_t2v"), dense_blocks="", block_size=64)
    ov = p.model_options["transformer_options"]["optimized_attention_override"]
    run = rs.RunState(None)
    fwd = rs.open_forward(run, ov.config.family, torch.zeros(2, 16, 8, 16, 16), torch.tensor([1.0]),
                          torch.zeros(2, 10, 32), {}, {}, 0, 0)
    topts = {"optimized_attention_override": ov, rs.RUN_KEY: run, rs.FWD_KEY: fwd}
    g = torch.Generator().manual_seed(3)
    L = 8 * 64 + 10
    q, k, v = (torch.randn(2, 1, L, 128, generator=g) for _ in range(3))
    mask = torch.zeros(2, 1, 1, L)
    mask[0, ..., -3:] = -torch.finfo(torch.float32).max  # row 0: 7 real text tokens
    mask[1, ..., -6:] = -torch.finfo(torch.float32).max  # row 1: 4 real text tokens
    out = attn.attention_pytorch(q, k, v, 1, mask=mask, skip_reshape=True, transformer_options=topts)
    assert run.sparse_calls == 1 and out.shape == (2, L, 128)
    m = (
        comfy.pack_module("radial_core.mask")
        .radial_mask(8, 64, text_tokens=10, block_size=64, decay_factor=0.95, model="hunyuan", dist1="full")
        .blocks
    )
    kpm = mask[:, 0, 0] == 0
    ref = dense_masked_attention(q, k, v, m, 64, key_padding_mask=kpm).transpose(1, 2).reshape(2, L, 128)
    assert float((out.double() - ref).norm() / ref.norm()) < 1e-5
    # the text refiner's own self-attention (text only) is not a video call
    _fwd(topts).calls = 0
    t = torch.randn(2, 1, 10, 128, generator=g)
    attn.attention_pytorch(t, t, t, 1, skip_reshape=True, transformer_options=topts)
    assert run.sparse_calls == 1 and _fwd(topts).calls == 0


def test_scale_kwarg_is_honoured_and_gqa_goes_dense(comfy, mods):
    """Newer ComfyUI may pass scale= and enable_gqa= through to the override."""
    from radial_core.reference import dense_masked_attention

    topts, run = _direct_setup(comfy, mods, frames=8, batch=1)
    ov = topts["optimized_attention_override"]
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 8 * 64, 128, generator=g) for _ in range(3))
    calls = []

    def dense(*args, **kwargs):
        calls.append(kwargs)
        return torch.zeros(1, 8 * 64, 128)

    out = ov(dense, q, k, v, heads=1, scale=0.05, transformer_options=topts)
    mask = (
        comfy.pack_module("radial_core.mask")
        .radial_mask(8, 64, text_tokens=0, block_size=64, decay_factor=0.2, model="wan", dist1="full")
        .blocks
    )
    ref = dense_masked_attention(*(t.view(1, -1, 1, 128).transpose(1, 2) for t in (q, k, v)), mask, 64,
                                 scale=0.05).transpose(1, 2).reshape(1, -1, 128)
    assert not calls and float((out.double() - ref).norm() / ref.norm()) < 1e-5
    _fwd(topts).calls = 0
    ov(dense, q, k, v, heads=1, enable_gqa=True, transformer_options=topts)
    assert len(calls) == 1 and run.sparse_calls == 1


@pytest.mark.parametrize(
    "change, words",
    [
        ({"dense_blocks": "0,x"}, ["dense_blocks", "'0,x'"]),
        ({"dense_steps_first": 5000}, ["dense_steps_first", "5000"]),
        ({"block_size": 96}, ["block_size", "96", "128, 64"]),
        ({"backend": "cuda"}, ["backend", "cuda"]),
        ({"decay_factor": -1.0}, ["decay_factor", "-1.0"]),
        ({"family": "sdxl"}, ["family", "sdxl"]),
    ],
)
def test_comfyui_validation_reports_bad_inputs(comfy, mods, tmp_path, change, words):
    """ComfyUI's own prompt validation (what the server runs before queueing) rejects bad inputs
    with the input named, before anything executes."""
    import asyncio

    import execution

    folder = tmp_path / "diffusion_models"
    folder.mkdir()
    (folder / "placeholder.safetensors").touch()
    fp = comfy.folder_paths
    fp.add_model_folder_path("diffusion_models", str(folder), is_default=True)
    fp.filename_list_cache.clear()
    try:
        inputs = {"model": ["1", 0], "decay_factor": 0.0, "block_size": 128, "dense_blocks": "1",
                  "dense_steps_first": 0, "dense_steps_last": 0, "dist1": "full", "backend": "auto"}
        inputs.update(change)
        prompt = {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": "placeholder.safetensors",
                                                               "weight_dtype": "default"}},
                  "2": {"class_type": "RadialAttentionPatch", "inputs": inputs}}
        ok, errors, _ = asyncio.run(execution.validate_inputs("t", prompt, "2", {}))
        assert not ok
        text = str(errors)
        for w in words:
            assert w in text, (w, text)
        for key in change:  # the same prompt with the good value passes
            inputs[key] = {"dense_blocks": "1", "dense_steps_first": 0, "block_size": 128, "decay_factor": 0.0,
                           "backend": "auto", "family": "auto"}[key]
        ok, errors, _ = asyncio.run(execution.validate_inputs("t", prompt, "2", {}))
        assert ok, errors
    finally:
        fp.folder_names_and_paths["diffusion_models"][0].remove(str(folder))
        fp.filename_list_cache.clear()


def test_attention_over_frame_groups_folded_into_the_batch_is_not_a_block(comfy, mods):
    """HuMo-style audio attention: q reshaped to [B * frames, H, T, D] against 16 audio tokens;
    with T = 16 its lengths match, but it is no video self-attention and no block."""
    import comfy.ldm.modules.attention as attn

    topts, run = _direct_setup(comfy, mods, frames=4, batch=1)
    g = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(4, 1, 64, 128, generator=g) for _ in range(3))
    attn.attention_pytorch(q, k, v, 1, skip_reshape=True, skip_output_reshape=True, transformer_options=topts)
    assert _fwd(topts).calls == 0 and run.sparse_calls == 0
