"""The attention planner alone: one call plus the run's state -> "sparse with this mask" or
"dense, because ...". No ComfyUI: the pack is imported as a package (conftest.pack_module), the
forward context and configuration are built by hand, and nothing is sampled."""

from __future__ import annotations

import pytest
import torch

from conftest import pack_module


@pytest.fixture(scope="module")
def m():
    class M:
        plan = pack_module("nodes.attention_plan")
        run_state = pack_module("nodes.run_state")
        steps = pack_module("nodes.step_tracker")
        family = pack_module("nodes.model_family")

    return M


def _wan(m, **kw):
    fam = m.family.ModelFamily(family="wan21", variant="Wan 2.1 T2V", mask_model="wan", patch_size=(1, 2, 2),
                               num_blocks=3, layout="wan")
    args = dict(decay_factor=0.2, decay_is_default=True, block_size=64, dense_blocks=frozenset(),
                dense_blocks_text="", dense_steps_first=0, dense_steps_last=0, dist1="full", backend="auto")
    args.update(kw)
    return m.plan.RadialConfig(fam, **args)


def _fwd(m, frames=8, tpf=64, batch=1, step=None, calls=0):
    step = step if step is not None else m.steps.StepInfo(3, False, "")
    return m.run_state.ForwardContext(batch=batch, latent_shape=(batch, 16, frames, 16, 16), frames=frames,
                                      tokens_per_frame=tpf, extra_frames=0, context_len=None, step=step,
                                      schedule=(0, 1, 2), calls=calls)


def _call(m, L, batch=1, width=128, heads=1, dtype=torch.float32, **kw):
    q, k, v = (torch.zeros(batch, L, width, dtype=dtype) for _ in range(3))
    return m.plan.parse_call((q, k, v), {"heads": heads, **kw})


def test_a_video_self_attention_call_goes_sparse_with_the_radial_mask(m):
    cfg = _wan(m)
    fwd = _fwd(m)
    plan = m.plan.plan_call(_call(m, 8 * 64), fwd, cfg, {})
    assert plan.sparse and plan.reason == "" and plan.video
    assert (plan.block, plan.step, plan.frames, plan.tokens_per_frame, plan.text_tokens) == (0, 3, 8, 64, 0)
    want = pack_module("radial_core.mask").radial_block_mask(8, 64, block_size=64, decay_factor=0.2)
    assert torch.equal(plan.mask.blocks, want) and not bool(plan.mask.blocks.all())
    assert plan.mask is m.plan.plan_call(_call(m, 8 * 64), _fwd(m), cfg, {}).mask  # one shared mask
    assert plan.backend == "pytorch" and "CUDA" in plan.backend_reason  # this CPU: radial_core's choice
    assert fwd.calls == 0, "planning must not move the block count"


@pytest.mark.parametrize("change, reason, warn, video", [
    ({"L": 8 * 64, "k_len": 7}, "cross-attention", False, False),
    ({"L": 8 * 64 + 3}, "do not match the video", True, False),
    ({"L": 8 * 64, "dense_blocks": frozenset({0})}, "dense block", False, True),
    ({"L": 8 * 64, "step": ("dense", "dense step (one of the first 1)")}, "dense step", False, True),
    ({"L": 1 * 64, "frames": 1}, "single-frame input", True, True),
    ({"L": 8 * 64, "dtype": torch.float64}, "dtype torch.float64", True, True),
    ({"L": 8 * 64, "calls": 3}, "more video self-attention calls than the model's 3 blocks", True, True),
    ({"L": 8 * 64, "mask": torch.zeros(1, 1, 8 * 64, 8 * 64)}, "not a key-padding mask", True, True),
])
def test_each_dense_reason(m, change, reason, warn, video):
    cfg = _wan(m, dense_blocks=change.get("dense_blocks", frozenset()))
    step = None
    if "step" in change:
        step = m.steps.StepInfo(0, True, change["step"][1])
    fwd = _fwd(m, frames=change.get("frames", 8), step=step, calls=change.get("calls", 0))
    L = change["L"]
    call = _call(m, L, dtype=change.get("dtype", torch.float32),
                 **({"mask": change["mask"]} if "mask" in change else {}))
    if "k_len" in change:
        call = m.plan.parse_call((call.q, torch.zeros(1, change["k_len"], 128), torch.zeros(1, change["k_len"], 128)),
                                 {"heads": 1})
    plan = m.plan.plan_call(call, fwd, cfg, {})
    assert not plan.sparse and reason in plan.reason
    assert (plan.warn, plan.video) == (warn, video)
    assert fwd.calls == change.get("calls", 0)


def test_comfyuis_block_index_names_the_block(m):
    cfg = _wan(m, dense_blocks=frozenset({2}))
    fwd = _fwd(m)  # the count says block 0
    plan = m.plan.plan_call(_call(m, 8 * 64), fwd, cfg, {"block_index": 2, "total_blocks": 3})
    assert plan.block == 2 and plan.reason == "dense block"


def test_not_a_call_and_gradient_calls(m):
    cfg = _wan(m)
    assert m.plan.plan_call(None, _fwd(m), cfg, {}).reason == "unrecognised attention call"
    q = torch.zeros(1, 8 * 64, 128, requires_grad=True)
    call = m.plan.parse_call((q, q, q), {"heads": 1})
    with torch.enable_grad():
        assert m.plan.plan_call(call, _fwd(m), cfg, {}).sparse  # training stays sparse


def test_plans_are_frozen(m):
    plan = m.plan.plan_call(_call(m, 8 * 64), _fwd(m), _wan(m), {})
    with pytest.raises(Exception):
        plan.reason = "x"
    assert plan.dense_because("a sparse-kernel error", True).reason == "a sparse-kernel error"
