"""The newer video families (HunyuanVideo 1.5, LTX-Video, LTX-2, Kandinsky 5, Cosmos Predict2 and
Cosmos 1, CogVideoX 1.0 / 1.5, MiniMax H3, the Wan variants) through ComfyUI's real sampler.

Per family: a tiny random-weight model from a state dict with the real key names, detected by
ComfyUI's own loader (tests/family_cases.py), patched, sampled with ``comfy.sample.sample``.
Checked: detection (family, variant, blocks), an all-kept mask equals the unpatched model, every
sparse call equals the masked dense reference, the calls that must stay dense stay dense (counted),
a CFG batch of two, odd latent sizes. A family the running ComfyUI lacks is skipped with a reason
naming its version (family_cases.require_family asks ComfyUI's supported_models).
"""

from __future__ import annotations

import logging

import pytest
import torch

import family_cases as fc
import helpers_models as hm
from pack_fixtures import pack_module_fixture
from radial_core import radial_block_mask
from radial_core.families import families
from radial_core.reference import dense_masked_attention

pytestmark = pytest.mark.comfy

ON_CUDA = torch.cuda.is_available()
CALL_TOL = 5e-3 if ON_CUDA else 1e-5
RUN_TOL = 2e-2 if ON_CUDA else 1e-4
STEPS = 2
AUDIO_REASON = "audio-stream attention"


rp = pack_module_fixture("nodes.radial_patcher")
mf = pack_module_fixture("nodes.model_family")
compat = pack_module_fixture("nodes.comfy_compat")
_PACK = {}


@pytest.fixture(autouse=True)
def pack_modules(compat):
    _PACK["compat"] = compat
    yield


def _case(kind: str) -> fc.Case:
    case = fc.CASES[kind]
    fc.require_family(case)
    dm = fc.load(case).model.diffusion_model
    if not _PACK["compat"].blocks_get_transformer_options(dm):  # ComfyUI 0.3.75's Wan 2.2 S2V
        pytest.skip(f"ComfyUI {fc.comfy_version()}: " + _PACK["compat"].UNREACHABLE % type(dm).__name__)
    return case


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = fc.output_tensor(a).double(), fc.output_tensor(b).double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _check_sparse_events(events, block_size):
    assert events, "no sparse attention call happened"
    for e in events:
        ref = dense_masked_attention(e["q"], e["k"], e["v"], e["block_mask"], block_size,
                                     key_padding_mask=e["key_padding_mask"], dtype=torch.float64)
        assert torch.isfinite(e["out"]).all()
        if ON_CUDA:  # on the GPU machine every sparse call must have run the Triton kernel
            assert e["backend"] == "triton", f"sparse call (block {e['block']}) ran on {e['backend']!r}"
        err = float((e["out"].double() - ref).norm() / ref.norm())
        assert err < CALL_TOL, (
            f"sparse call (block {e['block']}, step {e['step']}) differs from the reference: {err:.2e}"
        )


def _lat(case: fc.Case, frames: int, th: int, tw: int, **kw):
    """A latent of ``frames`` token frames of ``th`` x ``tw`` tokens: the smallest that patchifies
    to it (odd for a 2 x 2 patch; 2 ``frames`` - 1 latent frames for CogVideoX 1.5's temporal patch
    of 2), or the exact multiple where ComfyUI cannot take others (Kandinsky 5 pads but does not
    crop back; Cosmos Predict2 in 0.3.75 and Cosmos 1 assert even sizes)."""
    pt, ph, pw = families()[case.family].patch
    if case.even_latent:
        return fc.latent(case, frames * pt, th * ph, tw * pw, **kw)
    return fc.latent(case, frames * pt - (pt - 1), th * ph - (ph - 1), tw * pw - (pw - 1), **kw)


def _refiner_blocks(model) -> int:
    return len(model.model.diffusion_model.txt_in.individual_token_refiner.blocks)


def _expected_dense(case: fc.Case, model, forwards: int) -> dict[str, int]:
    """Dense calls per reason for ``forwards`` model calls with no dense blocks / steps."""
    b = fc.video_blocks(case, model)
    if case.family == "hunyuan15":  # the text refiner; text and image tokens join the joint sequence
        return {"token refiner": forwards * _refiner_blocks(model)}
    if case.family == "ltxv":  # text cross-attention in every block
        return {"cross-attention": forwards * b}
    if case.family == "ltxav":  # per block: video text, audio text, audio->video, video->audio
        return {"cross-attention": forwards * b * 4, AUDIO_REASON: forwards * b}
    if case.family == "kandinsky5":  # the text blocks' self-attention; text cross-attention
        text_blocks = len(model.model.diffusion_model.text_transformer_blocks)
        return {"token refiner": forwards * text_blocks, "cross-attention": forwards * b}
    if case.family in ("minimax_h3", "cogvideox", "cogvideox15"):  # one joint sequence, no other attention
        return {}
    if case.kind == "wan21_camera":  # Wan 2.1 Fun Camera is I2V: image + text cross-attention
        return {"cross-attention": forwards * b * 2}
    if case.family in (
        "cosmos_predict2",
        "cosmos1",
        "wan21",
        "wan22_s2v",
        "wan22_14b",
    ):  # text cross-attention in every block
        return {"cross-attention": forwards * b}  # (S2V's audio injector passes no transformer_options)
    if case.family == "wan21_humo":  # text cross-attention and the gathered audio cross-attention
        return {"cross-attention": forwards * b * 2}
    if case.family in ("wan22_animate", "wan_animate2", "wan21_scail", "wan22_dancer"):  # I2V cross-attention:
        return {"cross-attention": forwards * b * 2}  # image + text (face adapter, music: no override)
    raise KeyError(case.family)


def _assert_dense_counts(rec: hm.Recorder, expected: dict[str, int]) -> None:
    got = {}
    for e in rec.dense():
        got[e["reason"]] = got.get(e["reason"], 0) + 1
    for reason, n in expected.items():
        have = sum(v for k, v in got.items() if reason in k)
        assert have == n, f"dense calls for {reason!r}: {have}, expected {n} (all: {got})"
    unexpected = {k: v for k, v in got.items() if not any(r in k for r in expected)}
    assert not unexpected, f"unexpected dense calls: {unexpected}"


KINDS = list(fc.CASES)


# ------------------------------------------------------------------------------------- detection
@pytest.mark.parametrize("kind", KINDS)
def test_detected_from_the_weights(mf, rp, kind):
    case = _case(kind)
    model = fc.load(case)
    fam = mf.detect_family(model)
    assert fam is not None, f"{case.comfy_class} not detected"
    spec = families()[case.family]
    assert (fam.family, fam.variant, fam.num_blocks) == (case.family, case.variant, fc.video_blocks(case, model))
    assert fam.patch_size == spec.patch and fam.mask_model == spec.mask_model
    cfg = rp.get_radial_config(rp.apply_radial_patch(model))
    assert cfg["family"] == case.family and cfg["decay_factor"] == spec.default_decay
    assert spec.tuned or spec.defaults_rule.startswith("untuned")


# ------------------------------------------------------------------------------------- equality
@pytest.mark.parametrize("kind", KINDS)
def test_all_kept_mask_equals_unpatched(rp, kind):
    """4 frames x 256 tokens at a huge decay: every block kept, the result is the model's own."""
    case = _case(kind)
    base = fc.load(case)
    lat = _lat(case, 4, 16, 16)
    ref_out = fc.sample(base, case, lat, steps=STEPS)
    rec = hm.Recorder()
    p = hm.with_observer(rp.apply_radial_patch(base, decay_factor=10.0, dense_blocks=""), rec)
    out = fc.sample(p, case, lat, steps=STEPS)
    sparse = rec.sparse()
    assert len(sparse) == STEPS * fc.video_blocks(case, base)
    text, frames = fc.joint_tokens(case, 8, lat=lat), 4 + fc.front_frames(case)
    assert all((e["frames"], e["tokens_per_frame"], e["text_tokens"]) == (frames, 256, text) for e in sparse)
    assert bool(radial_block_mask(frames, 256, text_tokens=text, decay_factor=10.0, text_first=sparse[0]["text_first"],
                                  model=families()[case.family].mask_model).all())
    assert _rel(out, ref_out) < RUN_TOL


@pytest.mark.parametrize("kind", KINDS)
def test_sparse_calls_equal_the_masked_reference_and_dense_calls_are_counted(rp, kind):
    case = _case(kind)
    base = fc.load(case)
    lat = _lat(case, 8, 8, 8)  # 8 frames x 64 tokens: the radial mask is sparse
    rec = hm.Recorder(keep_tensors=True)
    p = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks=""), rec)
    pos = fc.conditioning(case, seed=1, text_len=8)
    out = fc.sample(p, case, lat, steps=STEPS, positive=pos)
    dense_out = fc.sample(base, case, lat, steps=STEPS, positive=pos)
    sparse = rec.sparse()
    assert len(sparse) == STEPS * fc.video_blocks(case, base)
    text, frames = fc.joint_tokens(case, 8, lat=lat), 8 + fc.front_frames(case)
    for e in sparse:
        assert (e["frames"], e["tokens_per_frame"], e["text_tokens"]) == (frames, 64, text)
        assert float(e["block_mask"].float().mean()) < 0.6  # really sparse
    _check_sparse_events(sparse, 64)
    _assert_dense_counts(rec, _expected_dense(case, base, STEPS))
    assert torch.isfinite(fc.output_tensor(out)).all()
    assert _rel(out, dense_out) > 1e-6  # the sparse mask did change the computation


@pytest.mark.parametrize("kind", KINDS)
def test_cfg_batch_of_two(rp, kind):
    case = _case(kind)
    base = fc.load(case)
    rec = hm.Recorder(keep_tensors=True)
    p = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks=""), rec)
    out = fc.sample(p, case, _lat(case, 8, 8, 8), steps=STEPS, cfg=4.0,
                    negative=fc.conditioning(case, seed=3, text_len=8))
    sparse = rec.sparse()
    calls = 1 if case.cfg_batched else 2  # one batched call, or cond and uncond apart (batch 1)
    assert len(sparse) == calls * STEPS * fc.video_blocks(case, base)
    assert all(e["q"].shape[0] == 2 // calls for e in sparse)
    _check_sparse_events(sparse, 64)
    _assert_dense_counts(rec, _expected_dense(case, base, calls * STEPS))
    assert torch.isfinite(fc.output_tensor(out)).all()


@pytest.mark.parametrize("kind", KINDS)
def test_odd_latent_size(rp, kind, caplog):
    """7 frames of 9 x 11 tokens (latent 9 x 11 with patch 1, 17 x 21 with 2 x 2; see _lat):
    99 tokens per frame, not a block multiple. The run's log line names the sequence's other
    token group as the family registry does ("text", "reference + motion", "pose", ...)."""
    case = _case(kind)
    base = fc.load(case)
    rec = hm.Recorder(keep_tensors=True)
    p = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks=""), rec)
    lat = _lat(case, 7, 9, 11)
    with caplog.at_level(logging.INFO):
        out = fc.sample(p, case, lat, steps=1)
    video = out.unbind()[0] if getattr(out, "is_nested", False) else out
    lat_video = lat.unbind()[0] if getattr(lat, "is_nested", False) else lat
    assert video.shape == lat_video.shape and torch.isfinite(video).all()
    sparse = rec.sparse()
    frames, text = 7 + fc.front_frames(case), fc.joint_tokens(case, 8, lat=lat)
    assert len(sparse) == fc.video_blocks(case, base)
    assert all((e["frames"], e["tokens_per_frame"], e["text_tokens"]) == (frames, 99, text) for e in sparse)
    _check_sparse_events(sparse, 64)
    shape_lines = [r.getMessage() for r in caplog.records if f"{frames} frames x 99 tokens" in r.getMessage()]
    assert len(shape_lines) == 1, shape_lines
    other = families()[case.family].other_tokens
    assert (f"x 99 tokens + {text} {other}" if text else "x 99 tokens = ") in shape_lines[0], shape_lines[0]


@pytest.mark.parametrize("kind", KINDS)
def test_dense_first_block_and_step(rp, kind):
    case = _case(kind)
    base = fc.load(case)
    rec = hm.Recorder()
    p = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks="1", dense_steps_first=1), rec)
    fc.sample(p, case, _lat(case, 8, 8, 8), steps=3)
    assert sorted((e["step"], e["block"]) for e in rec.sparse()) == [
        (s, b) for s in (1, 2) for b in range(1, fc.video_blocks(case, base))
    ]
    assert len(rec.dense("dense block")) == 3
    assert len(rec.dense("dense step")) == fc.video_blocks(case, base) - 1


# ------------------------------------------------------------------------------ family specifics
@pytest.mark.parametrize("real_tokens, vision_tokens", [(5, 0), (None, 9)])
def test_hunyuan15_text_padding_and_image_tokens_join_the_text(rp, real_tokens, vision_tokens):
    """HunyuanVideo 1.5 puts [image-encoder tokens | text] before the video in ComfyUI 0.33; padded
    text (5 of 8 real) arrives as a key-padding mask; all non-video tokens are dense rows/columns.
    (Both at once fails inside ComfyUI 0.33 itself: its text mask does not cover the image tokens.)"""
    case = _case("hunyuan15_t2v")
    base = fc.load(case)
    rec = hm.Recorder(keep_tensors=True)
    p = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks=""), rec)
    pos = fc.conditioning(case, seed=1, text_len=8, real_tokens=real_tokens, vision_tokens=vision_tokens)
    fc.sample(p, case, _lat(case, 8, 8, 8), steps=STEPS, positive=pos)
    sparse = rec.sparse()
    assert len(sparse) == STEPS * fc.video_blocks(case, base)
    for e in sparse:
        assert e["text_tokens"] == vision_tokens + 8 and e["frames"] == 8
        kpm = e["key_padding_mask"]
        if real_tokens is None:
            assert kpm is None
            continue
        assert kpm is not None and int((~kpm).sum()) == 3  # the 3 padded text tokens only
        text = kpm[:, :8] if e["text_first"] else kpm[:, 8 * 64:]
        assert not text[:, -3:].any() and text[:, :5].all()
    _check_sparse_events(sparse, 64)


def test_ltx2_audio_only_latent_frames_are_not_video(rp):
    """LTX-2 with a longer audio stream (48 audio latents): the audio self-attention stays dense
    with its own reason whatever its length; the video calls stay radial."""
    case = _case("ltxav")
    base = fc.load(case)
    rec = hm.Recorder()
    p = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks=""), rec)
    fc.sample(p, case, _lat(case, 8, 8, 8, audio_frames=64), steps=1)  # 64 audio tokens = one frame's worth
    assert len(rec.sparse()) == fc.video_blocks(case, base)
    assert len(rec.dense(AUDIO_REASON)) == fc.video_blocks(case, base)


def test_readme_family_table_matches_the_registry(mf):
    """The README's family table is checked against the one family registry: a row for every
    family (its label up to the parenthesis, in bold), with the registry's default decay
    ("decay 0 (= X)"), "untuned" where no published quality figure backs the defaults (``tuned``
    / ``defaults_rule``), and a row saying "passes through" for every variant the pack leaves dense."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Usage per model family"):]
    section = section[:section.index("\n## ")]
    rows = [line for line in section.splitlines() if line.startswith("| **")]
    for key, spec in families().items():
        name = spec.label.split(" (")[0]
        row = next((r for r in rows if r.startswith(f"| **{name}**")), None)
        assert row, f"README's family table has no row for {name} ({key})"
        decay = re.search(r"decay 0 \(= ([0-9.]+)\)", row)
        assert decay and float(decay.group(1)) == spec.default_decay, f"README's row for {name}: decay {decay}"
        assert ("untuned" in row) == (not spec.tuned), f"README's row for {name} and its 'untuned' disagree"
    for cls in mf.PASS_THROUGH:
        short = cls.split("_", 1)[-1]  # WAN21_CausalAR -> CausalAR; SeedVR2
        assert any(short in r and "passes through" in r for r in rows), f"README has no pass-through row for {cls}"


def test_one_adapter_per_registry_family(mf):
    """nodes/model_family.py holds one adapter per family of the registry, in its order, with the
    registry's label; a ComfyUI class is named by one family's adapter, except the class that
    CogVideoX 1.0 and 1.5 share (the first adapter tells them apart); no passed-through class has
    an adapter; file-name pieces are lower case (the readout lower-cases the file name)."""
    assert [a.key for a in mf.ADAPTERS] == list(families())
    named: dict[str, list[str]] = {}
    for a in mf.ADAPTERS:
        assert mf.adapter(a.key) is a and a.label == families()[a.key].label
        assert all(piece == piece.lower() for piece in a.file_names), a.key
        for cls in a.classes:
            named.setdefault(cls, []).append(a.key)
    assert {cls: keys for cls, keys in named.items() if len(keys) > 1} == {"CogVideoX": ["cogvideox", "cogvideox15"]}
    assert not set(named) & set(mf.PASS_THROUGH)
    with pytest.raises(ValueError, match="unknown model family"):
        mf.adapter("sd15")


def test_a_variant_whose_blocks_get_no_transformer_options_passes_through(mf, compat, rp, caplog):
    """Where the model's forward does not hand transformer_options to its blocks (ComfyUI 0.3.75's
    Wan 2.2 S2V) no override can reach its attention: detection passes it through with that reason,
    read from the model's code (and on a ComfyUI whose S2V does, it is patched)."""
    import logging

    case = fc.CASES["wan22_s2v"]
    fc.require_family(case)
    model = fc.load(case)
    reaches = compat.blocks_get_transformer_options(model.model.diffusion_model)
    assert reaches == (fc.comfy_version() != "0.3.75"), fc.comfy_version()
    with caplog.at_level(logging.INFO):
        fam = mf.detect_family(model)
    assert (fam is not None) == reaches
    if not reaches:
        assert any("does not hand transformer_options" in r.getMessage() for r in caplog.records)


def _require_model_class(cls: str, what: str) -> None:
    import comfy.model_base as mb

    if not hasattr(mb, cls):
        pytest.skip(f"ComfyUI {fc.comfy_version()} has no {cls} ({what}): the model needs a newer ComfyUI "
                    f"(0.33 has it)")


def _passes_through(mf, rp, model, cls: str, caplog):
    """``model`` (comfy.model_base class ``cls``) passes through: detection returns None and logs
    the registry's reason, the patch configures nothing. Returns what the patch gave back."""
    assert type(model.model).__name__ == cls
    with caplog.at_level(logging.INFO):
        assert mf.detect_family(model) is None
        patched = rp.apply_radial_patch(model)
    reason = mf.PASS_THROUGH[cls]
    assert any(f"{cls} passes through" in r.getMessage() and reason in r.getMessage() for r in caplog.records)
    assert rp.get_radial_config(patched) is None
    return patched


def test_wan_causal_ar_passes_through_with_its_reason(mf, rp, caplog):
    """Causal autoregressive Wan (ComfyUI's WAN21_CausalAR, detected from a file whose metadata says
    causal_ar) is the one Wan variant radial attention cannot serve: detection returns None and
    logs why (the registry's reason), the patch leaves the model as it is, and sampling it gives
    exactly the unpatched result."""
    _require_model_class("WAN21_CausalAR", "causal autoregressive Wan")
    tm = hm.tiny_models_module()
    path = tm.save(tm.wan_variant_state_dict("causal_ar"), hm._TMP / "wan_causal_ar.safetensors",
                   metadata=tm.wan_variant_metadata("causal_ar"))
    model = tm.load_with_comfy(path)
    patched = _passes_through(mf, rp, model, "WAN21_CausalAR", caplog)
    case = fc.CASES["wan_flowrvs"]  # any Wan 2.1 text conditioning
    lat = fc.latent(case, 3, 8, 8)
    assert torch.equal(fc.sample(patched, case, lat, steps=1), fc.sample(model, case, lat, steps=1))


def test_seedvr2_passes_through_with_its_reason(mf, rp, caplog):
    """SeedVR2 (ComfyUI's video restoration DiT, detected from the key of the 3B file) attends only
    within 3-D windows and its window calls get no transformer_options: detection returns None and
    logs the registry's reason, and the patch hands back the model itself."""
    _require_model_class("SeedVR2", "video restoration")
    model = hm.tiny_models_module().seedvr2_model()
    assert _passes_through(mf, rp, model, "SeedVR2", caplog) is model


def test_animate2_pose_branch_is_radial_and_the_per_frame_generation_dense(rp):
    """Wan Animate 2 with its pose branch on (ComfyUI 0.33's WanAnimate2Model): the pose video's own
    self-attention (F - 1 frames of the video's grid) is radial; the generation attends frame by
    frame (one frame's queries against [video | its pose frame]): F dense calls per block, plus
    the image and text cross-attention of both branches."""
    case = _case("wan_animate2")
    base = fc.load(case)

    def with_pose(frames, th, tw):
        lat = _lat(case, frames, th, tw)
        pose = torch.randn(1, 16, frames - 1, *lat.shape[3:], generator=torch.Generator().manual_seed(3))
        conds = [[[c[0], {**c[1], "pose_video_latent": pose}] for c in fc.conditioning(case, seed=s)] for s in (1, 2)]
        return lat, conds[0], conds[1]

    lat, pos, neg = with_pose(8, 8, 8)
    rec = hm.Recorder(keep_tensors=True)
    p = hm.with_observer(rp.apply_radial_patch(base, block_size=64, dense_blocks=""), rec)
    out = fc.sample(p, case, lat, steps=STEPS, positive=pos, negative=neg)
    assert torch.isfinite(out).all()
    b = fc.video_blocks(case, base)
    sparse = rec.sparse()
    assert len(sparse) == STEPS * b and all((e["frames"], e["tokens_per_frame"], e["text_tokens"]) == (7, 64, 0)
                                           for e in sparse)
    _check_sparse_events(sparse, 64)
    _assert_dense_counts(rec, {"cross-attention": STEPS * b * (8 + 2 + 2)})
    # all blocks kept (4 pose frames x 256 tokens at a huge decay): the model's own result
    lat, pos, neg = with_pose(5, 16, 16)
    ref = fc.sample(base, case, lat, steps=STEPS, positive=pos, negative=neg)
    rec = hm.Recorder()
    p = hm.with_observer(rp.apply_radial_patch(base, decay_factor=10.0, dense_blocks=""), rec)
    all_kept = fc.sample(p, case, lat, steps=STEPS, positive=pos, negative=neg)
    assert len(rec.sparse()) == STEPS * b and all(e["frames"] == 4 for e in rec.sparse())
    assert bool(radial_block_mask(4, 256, decay_factor=10.0).all())
    assert _rel(all_kept, ref) < RUN_TOL


@pytest.mark.parametrize("family, node_module, node", [
    ("hunyuan15", "comfy_extras.nodes_hunyuan", "EmptyHunyuanVideo15Latent"),
    ("ltxv", "comfy_extras.nodes_lt", "EmptyLTXVLatentVideo"),
    ("ltxav", "comfy_extras.nodes_lt", "EmptyLTXVLatentVideo"),
    ("kandinsky5", "comfy_extras.nodes_hunyuan", "EmptyHunyuanLatentVideo"),  # as its templates do
    ("cosmos_predict2", "comfy_extras.nodes_cosmos", "CosmosPredict2ImageToVideoLatent"),
    ("cosmos1", "comfy_extras.nodes_cosmos", "EmptyCosmosLatentVideo"),
    ("minimax_h3", "comfy_extras.nodes_minimax_h3", "EmptyMiniMaxH3LatentAV"),
])
def test_preview_geometry_matches_comfyuis_empty_latent(comfy, family, node_module, node):
    """The family table's pixel -> latent rule (the Sparsity Preview's geometry) gives the latent
    that ComfyUI's own empty-latent node makes, for lengths on and off its frame grid (MiniMax H3:
    plus its audio rows, which join the joint sequence)."""
    import importlib
    import inspect

    from radial_core.geometry import geometry_from_pixels

    try:
        cls = getattr(importlib.import_module(node_module), node)
    except (ImportError, AttributeError):
        pytest.skip(f"ComfyUI {fc.comfy_version()} has no {node_module}.{node}")
    params = inspect.signature(cls.execute).parameters
    for frames in (5, 22, 121, 124, 125, 241):
        kwargs = {"width": 1344, "height": 768, "length": frames}
        if "batch_size" in params:
            kwargs["batch_size"] = 1
        if "vae" in params:
            kwargs["vae"] = None  # only used to encode start / end images
        samples = cls.execute(**kwargs).result[0]["samples"]
        streams = samples.unbind() if getattr(samples, "is_nested", False) else [samples]
        video = streams[0]
        geo = geometry_from_pixels(family, 1344, 768, frames, text_tokens=0)
        _, ph, pw = families()[family].patch
        assert geo.num_frames == video.shape[2], (family, frames)
        assert (geo.height_tokens, geo.width_tokens) == (video.shape[3] // ph, video.shape[4] // pw)
        audio_rows = 2 * streams[1].shape[-1] if family == "minimax_h3" else 0  # stereo: 2 rows each
        assert geo.text_tokens == audio_rows
