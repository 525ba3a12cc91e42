"""Radial Attention Patch through ComfyUI's real sampler on small random-weight models (CPU).

Every test loads a real ComfyUI model class (Wan and HunyuanVideo from safetensors through
ComfyUI's loader, Mochi through its model config), applies the patch, and samples with
``comfy.sample.sample`` (what KSampler / KSamplerAdvanced call); a test-side subclass of the
override (``helpers_models.observe``) reports each attention decision.
"""

from __future__ import annotations

import logging

import pytest
import torch

import helpers_models as hm
from radial_core.reference import dense_masked_attention

pytestmark = pytest.mark.comfy


@pytest.fixture(scope="module")
def rp(comfy):
    return comfy.pack_module("nodes.radial_patcher")


# fp32 on the CPU is exact to rounding; on CUDA the Triton kernel computes fp32 inputs with TF32
# tensor-core products (about 3e-4 per call), which a few blocks and steps then carry along.
ON_CUDA = torch.cuda.is_available()
CALL_TOL = 5e-3 if ON_CUDA else 1e-5
RUN_TOL = 2e-2 if ON_CUDA else 1e-4


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _check_sparse_events(events, block_size, tol=CALL_TOL):
    assert events, "no sparse attention call happened"
    for e in events:
        ref = dense_masked_attention(e["q"], e["k"], e["v"], e["block_mask"], block_size,
                                     key_padding_mask=e["key_padding_mask"], dtype=torch.float64)
        assert torch.isfinite(e["out"]).all()
        err = _rel(e["out"], ref)
        assert err < tol, (
            f"sparse call (block {e['block']}, step {e['step']}) differs from the masked reference: {err:.2e}"
        )


# ------------------------------------------------------------------------------------- equality
@pytest.mark.parametrize("kind, frames", [("wan_t2v", 4), ("hunyuan_t2v", 4), ("mochi", 4)])
def test_all_kept_mask_equals_unpatched(rp, kind, frames):
    """A mask that keeps every block (4 frames x 256 tokens, huge decay) changes nothing."""
    base = hm.load_model(kind)
    lat = hm.latent(kind, frames, 32, 32)
    ref_out = hm.sample(base, kind, lat, steps=2)
    rec = hm.Recorder(keep_tensors=True)
    p = hm.with_observer(rp.apply_radial_patch(base, decay_factor=10.0, dense_blocks=""), rec)
    out = hm.sample(p, kind, lat, steps=2)
    sparse = rec.sparse()
    assert len(sparse) == 2 * 2  # 2 steps x 2 blocks, cfg 1 (one forward per step)
    assert all(bool(e["block_mask"].all()) for e in sparse)
    assert _rel(out, ref_out) < RUN_TOL


@pytest.mark.parametrize(
    "kind, text_len, real_tokens",
    [("wan_t2v", 8, None), ("wan_i2v", 8, None), ("wan22_5b", 8, None), ("hunyuan_t2v", 8, 5),
     ("hunyuan_i2v", 8, None), ("mochi", 8, None)],
)
def test_radial_mask_sparse_calls_equal_the_masked_reference(rp, kind, text_len, real_tokens):
    base = hm.load_model(kind)
    lat = hm.latent(kind, 8, 16, 16)  # 8 frames x 64 tokens: the radial mask is sparse
    rec = hm.Recorder(keep_tensors=True)
    p = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks=""), rec)
    pos = hm.conditioning(kind, seed=1, text_len=text_len, real_tokens=real_tokens)
    out = hm.sample(p, kind, lat, steps=2, positive=pos)
    dense_out = hm.sample(base, kind, lat, steps=2, positive=pos)
    sparse = rec.sparse()
    assert len(sparse) == 2 * 2
    for e in sparse:
        assert e["frames"] == 8 and e["tokens_per_frame"] == 64
        assert float(e["block_mask"].float().mean()) < 0.6  # really sparse
    if kind.startswith("hunyuan"):
        assert rec.dense("token refiner"), "HunyuanVideo's text refiner must stay dense"
    if kind == "hunyuan_t2v":
        assert all(e["text_tokens"] == text_len for e in sparse)
        # The model's own text mask says where its text sits: the padded keys must fall in the
        # part of the sequence that the radial mask treats as text (rows and columns all kept).
        e = sparse[0]
        kpm, bm = e["key_padding_mask"], e["block_mask"]
        assert kpm is not None and int((~kpm).sum()) == text_len - real_tokens
        video = e["frames"] * e["tokens_per_frame"]
        text_span = (0, text_len) if e["text_first"] else (video, video + text_len)
        padded = torch.nonzero(~kpm[0]).flatten()
        assert ((padded >= text_span[0]) & (padded < text_span[1])).all()
        text_blocks = range(text_span[0] // 64, (text_span[1] - 1) // 64 + 1)
        assert all(bm[b].all() and bm[:, b].all() for b in text_blocks)
    if kind == "mochi":
        assert all(e["text_tokens"] == text_len for e in sparse)  # Mochi crops to the real tokens
    _check_sparse_events(sparse, 64)
    assert torch.isfinite(out).all()
    assert _rel(out, dense_out) > 1e-6  # the sparse mask did change the computation


# --------------------------------------------------------------------------- blocks and steps
def test_dense_blocks_and_steps_are_honoured(rp):
    base = hm.load_model("wan_t2v")
    lat = hm.latent("wan_t2v", 8, 16, 16)
    rec = hm.Recorder()
    p = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks="1",
                                               dense_steps_first=1, dense_steps_last=1), rec)
    hm.sample(p, "wan_t2v", lat, steps=4)
    sparse = rec.sparse()
    assert sorted((e["step"], e["block"]) for e in sparse) == [(1, 1), (2, 1)]
    assert len(rec.dense("dense block")) == 4
    assert len(rec.dense("dense step")) == 2 * 1  # steps 0 and 3, block 1 (block 0 is a dense block)

    rec2 = hm.Recorder()
    p2 = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks="0,1"), rec2)
    hm.sample(p2, "wan_t2v", lat, steps=2)
    assert not rec2.sparse() and len(rec2.dense("dense block")) == 4


def test_split_passes_and_two_experts_count_steps_of_the_whole_schedule(rp):
    """KSamplerAdvanced-style split (Wan 2.2 A14B: high-noise then low-noise expert)."""
    base = hm.load_model("wan_t2v")
    lat = hm.latent("wan_t2v", 8, 16, 16)
    rec_hi, rec_lo = hm.Recorder(), hm.Recorder()
    hi = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks="", dense_steps_first=3,
                                                family="wan22_14b"), rec_hi)
    lo = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks="", dense_steps_first=3,
                                                family="wan22_14b"), rec_lo)
    # no prompt ties the passes together: pass 2 finds its place from its own sigmas
    mid = hm.sample(hi, "wan_t2v", lat, steps=5, start_step=0, last_step=2, force_full_denoise=False)
    hm.sample(lo, "wan_t2v", mid, steps=5, start_step=2, last_step=5)
    assert not rec_hi.sparse() and {e["step"] for e in rec_hi.dense("dense step")} == {0, 1}
    assert {e["step"] for e in rec_lo.dense("dense step")} == {2}
    assert sorted({e["step"] for e in rec_lo.sparse()}) == [3, 4]


def test_vace_blocks_follow_their_main_block(rp):
    """Wan VACE runs its VACE block's self-attention right after main block 0 (same tokens)."""
    base = hm.load_model("wan_vace")
    lat = hm.latent("wan_vace", 8, 16, 16)
    rec = hm.Recorder(keep_tensors=True)
    p = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks="1"), rec)
    hm.sample(p, "wan_vace", lat, steps=2)
    assert len(rec.dense("dense block")) == 2 * 2  # main block 0 + its VACE block, per step
    assert [e["block"] for e in rec.sparse()] == [1, 1]
    _check_sparse_events(rec.sparse(), 64)


def test_wan_reference_image_joins_the_sequence_as_a_frame(rp):
    """Wan Fun's reference image (ref_conv) is prepended to the video tokens: one more frame."""
    base = hm.load_model("wan_fun_ref")
    lat = hm.latent("wan_fun_ref", 8, 16, 16)
    pos = hm.conditioning("wan_fun_ref", seed=1)
    pos[0][1]["reference_latents"] = [torch.randn(1, 16, 1, 16, 16)]
    rec = hm.Recorder(keep_tensors=True)
    p = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks=""), rec)
    hm.sample(p, "wan_fun_ref", lat, steps=2, positive=pos)
    frames = sorted({e["frames"] for e in rec.sparse()})
    assert frames == [9]  # 8 video frames + the reference image (cfg 1: the positive only)
    _check_sparse_events(rec.sparse(), 64)


# --------------------------------------------------------------------------- composition
def test_cross_attention_untouched_and_earlier_override_serves_dense_calls(rp):
    base = hm.load_model("wan_i2v")
    seen = []

    def earlier(func, *args, **kwargs):  # e.g. a SageAttention patch installed before ours
        q, k = args[0], args[1]
        seen.append((q.shape[1], k.shape[1]))
        return func(*args, **kwargs)

    m = base.clone()
    m.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = earlier
    rec = hm.Recorder()
    p = hm.with_observer(rp.apply_radial_patch(m, block_size=64, dense_blocks=""), rec)
    lat = hm.latent("wan_i2v", 8, 16, 16)
    hm.sample(p, "wan_i2v", lat, steps=2)
    cross = rec.dense("cross-attention")
    assert len(cross) == 2 * 2 * 2  # steps x blocks x (text + image cross-attention)
    assert len(rec.sparse()) == 2 * 2
    assert len(seen) == len(rec.dense())  # every dense call, and only those, went through it
    assert all(lq != lk for lq, lk in seen)


@pytest.mark.parametrize("kind", ["wan_t2v", "hunyuan_t2v", "mochi"])
def test_cfg_batch_of_two(rp, kind):
    base = hm.load_model(kind)
    lat = hm.latent(kind, 8, 16, 16)
    rec = hm.Recorder(keep_tensors=True)
    p = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks=""), rec)
    out = hm.sample(p, kind, lat, steps=2, cfg=4.0, negative=hm.conditioning(kind, seed=3, text_len=8))
    sparse = rec.sparse()
    assert len(sparse) == 2 * 2 and all(e["q"].shape[0] == 2 for e in sparse)  # one batched call
    _check_sparse_events(sparse, 64)
    assert torch.isfinite(out).all()


def test_cfg_with_different_text_lengths(rp):
    base = hm.load_model("wan_t2v")
    lat = hm.latent("wan_t2v", 8, 16, 16)
    rec = hm.Recorder(keep_tensors=True)
    p = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks=""), rec)
    # different text lengths: ComfyUI runs cond and uncond as separate calls; both go sparse
    out = hm.sample(p, "wan_t2v", lat, steps=2, cfg=4.0,
                    negative=hm.conditioning("wan_t2v", seed=3, text_len=5))
    assert len(rec.sparse()) == 2 * 2 * 2
    _check_sparse_events(rec.sparse(), 64)
    assert torch.isfinite(out).all()


# --------------------------------------------------------------------------- fallbacks
def test_single_frame_falls_back_with_one_warning(rp, caplog):
    base = hm.load_model("wan_t2v")
    lat = hm.latent("wan_t2v", 1, 16, 16)
    ref_out = hm.sample(base, "wan_t2v", lat, steps=3)
    rec = hm.Recorder()
    p = hm.with_observer(rp.apply_radial_patch(base, dense_blocks=""), rec)
    with caplog.at_level(logging.WARNING):
        out = hm.sample(p, "wan_t2v", lat, steps=3)
    warns = [r for r in caplog.records if "single-frame" in r.getMessage()]
    assert len(warns) == 1
    assert len(rec.dense("single-frame")) == 3 * 2
    assert _rel(out, ref_out) < 1e-6


def test_one_info_line_per_run(rp, caplog):
    base = hm.load_model("hunyuan_t2v")
    p = rp.apply_radial_patch(base, block_size=64, dense_blocks="1")
    with caplog.at_level(logging.INFO):
        hm.sample(p, "hunyuan_t2v", hm.latent("hunyuan_t2v", 8, 16, 16), steps=3)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Radial Attention: HunyuanVideo")]
    assert len(lines) == 1
    for part in (
        "HunyuanVideo T2V",
        "8 frames x 64 tokens",
        "+ 8 text",
        "mask density",
        "dense blocks [0]",
        "dense steps first 0 / last 0",
        "backend triton (float32, cuda)" if ON_CUDA else "backend pytorch (float32, cpu)",
        "latent [1, 16, 8, 16, 16]",
    ):
        assert part in lines[0], (part, lines[0])


def test_second_order_sampler_calls_belong_to_their_step(rp):
    """DPM-2 evaluates the model twice per step (at the step's sigma and at a midpoint); both
    calls count as that step. (Heun's second call sits exactly on the next step's sigma and
    counts as that step.)"""
    base = hm.load_model("wan_t2v")
    rec = hm.Recorder()
    p = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks="", dense_steps_first=1), rec)
    hm.sample(p, "wan_t2v", hm.latent("wan_t2v", 8, 16, 16), steps=3, sampler="dpm_2")
    steps_sparse = [e["step"] for e in rec.sparse()]
    steps_dense = [e["step"] for e in rec.dense("dense step")]
    assert set(steps_dense) == {0} and len(steps_dense) == 2 * 2  # two evaluations x two blocks
    assert set(steps_sparse) == {1, 2}


@pytest.mark.parametrize("kind, key, skipped", [("wan_t2v", ("double_block", 0), 0),
                                               ("hunyuan_t2v", ("double_block", 0), 0),
                                               ("hunyuan_t2v", ("single_block", 0), 1)])
def test_a_skipped_block_does_not_shift_the_block_count(rp, kind, key, skipped):
    """SkipLayerGuidance-style block replacements that skip a block (patches_replace["dit"]):
    the blocks after it keep their own index."""
    base = hm.load_model(kind)
    rec = hm.Recorder()
    p = rp.apply_radial_patch(base, block_size=64, dense_blocks="")

    def skip(args, extra):  # what ComfyUI's SkipLayerGuidanceDiT installs
        return args

    p.set_model_patch_replace(skip, "dit", key[0], key[1])
    p = hm.with_observer(p, rec)
    hm.sample(p, kind, hm.latent(kind, 8, 16, 16), steps=2)
    blocks = [e["block"] for e in rec.sparse()]
    assert blocks == [1 - skipped] * 2, blocks  # two blocks, one skipped, two steps


def test_a_skipped_vace_main_block_keeps_its_vace_block_in_place(rp):
    base = hm.load_model("wan_vace")
    rec = hm.Recorder()
    p = rp.apply_radial_patch(base, block_size=64, dense_blocks="")
    p.set_model_patch_replace(lambda args, extra: args, "dit", "double_block", 0)
    p = hm.with_observer(p, rec)
    hm.sample(p, "wan_vace", hm.latent("wan_vace", 8, 16, 16), steps=1)
    assert [e["block"] for e in rec.sparse()] == [0, 1]  # block 0's VACE block, then block 1


@pytest.mark.parametrize("kind, h, w, tpf", [("wan_t2v", 15, 17, 72), ("hunyuan_t2v", 14, 18, 63)])
def test_any_size_works(rp, kind, h, w, tpf):
    """Wan pads a 15 x 17 latent to its 2 x 2 patch: 8 x 9 = 72 tokens per frame. HunyuanVideo
    (which needs even sizes) at 14 x 18: 63 tokens per frame, not a multiple of the block."""
    base = hm.load_model(kind)
    rec = hm.Recorder(keep_tensors=True)
    p = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks=""), rec)
    out = hm.sample(p, kind, hm.latent(kind, 7, h, w), steps=1)
    assert out.shape[-3:] == (7, h, w) and torch.isfinite(out).all()
    sparse = rec.sparse()
    assert len(sparse) == 2 and all(e["frames"] == 7 and e["tokens_per_frame"] == tpf for e in sparse)
    _check_sparse_events(sparse, 64)


def test_torch_compiled_model_keeps_radial_attention(rp):
    """A torch.compile'd diffusion model (as ComfyUI's TorchCompileModel node installs it, through
    an object patch); the override runs outside the compiled graph."""
    base = hm.load_model("wan_t2v")
    rec = hm.Recorder(keep_tensors=True)
    p = rp.apply_radial_patch(base, block_size=64, dense_blocks="")
    p.add_object_patch("diffusion_model", torch.compile(p.get_model_object("diffusion_model"), backend="eager"))
    p = hm.with_observer(p, rec)
    try:
        out = hm.sample(p, "wan_t2v", hm.latent("wan_t2v", 8, 16, 16), steps=2)
        assert torch.isfinite(out).all()
        assert [e["block"] for e in rec.sparse()] == [0, 1, 0, 1]
        _check_sparse_events(rec.sparse(), 64)
        # while loaded, the compiled wrapper sits in the model: patching it again still works
        assert rp.get_radial_config(rp.apply_radial_patch(base))["family"] == "wan21"
    finally:
        import comfy.model_management

        comfy.model_management.unload_all_models()  # puts the uncompiled model back


def test_an_override_installed_after_ours_is_reported(rp, caplog):
    base = hm.load_model("wan_t2v")
    p = rp.apply_radial_patch(base, dense_blocks="")
    later = []

    def sage_like(func, *args, **kwargs):  # another pack's override, set after ours, not chaining
        later.append(1)
        return func(*args, **kwargs)

    p.model_options["transformer_options"]["optimized_attention_override"] = sage_like
    with caplog.at_level(logging.WARNING):
        out = hm.sample(p, "wan_t2v", hm.latent("wan_t2v", 4, 16, 16), steps=2)
    assert torch.isfinite(out).all() and later
    assert len([r for r in caplog.records if "did not run in this model call" in r.getMessage()]) == 1


def test_a_cache_that_skips_forwards_is_not_reported(rp, caplog, comfy):
    """ComfyUI's EasyCache skips whole model calls: no false warning about the override."""
    import comfy.patcher_extension as pe

    base = hm.load_model("wan_t2v")
    p = rp.apply_radial_patch(base, dense_blocks="")

    def skip_forward(executor, x, *args, **kwargs):  # a DIFFUSION_MODEL wrapper that skips
        return torch.zeros_like(x)

    p.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, "test-skip", skip_forward)
    with caplog.at_level(logging.WARNING):
        hm.sample(p, "wan_t2v", hm.latent("wan_t2v", 4, 16, 16), steps=2)
    assert not [r for r in caplog.records if "did not run" in r.getMessage()]
