"""Radial Attention Calibrate through ComfyUI's real sampler on small random-weight models (CPU).

- planted decay: a tiny Wan built through ComfyUI's detection whose self-attention is made to
  decay with frame distance at a known rate (its queries and keys carry a frame code whose dot
  product is ``-rate * |frame distance|``): the recommendation keeps at least the target and
  tightens (lower work) as the rate grows; with flat attention the node says "keep it dense";
- real families through ComfyUI's detection: the node runs, draws its picture, saves its JSON,
  and the recommended values wire into Radial Attention Patch and sample.
"""

from __future__ import annotations

import json

import pytest
import torch

import helpers_models as hm

pytestmark = pytest.mark.comfy


@pytest.fixture(scope="module")
def cn(comfy):
    return comfy.pack_module("nodes.calibrate_node")


@pytest.fixture(scope="module")
def rp(comfy):
    return comfy.pack_module("nodes.radial_patcher")


# ------------------------------------------------------------------------------ planted decay
def _plant(model, rate: float, frames: int, tpf: int):
    """Make the tiny Wan's video self-attention decay as exp(-rate * |frame distance|).

    Forward hooks replace the normalised q and k projections of every block by a frame code and
    turn RoPE into the identity, so that the attention logit between a token of frame i and one
    of frame j is ``-rate * |i - j|`` plus a constant: with ``u_c(i) = +1 if i <= c else -1`` for
    the thresholds c, ``sum_c u_c(i) u_c(j) = (F - 1) - 2 |i - j|``. Inside a frame every key
    weighs the same. Returns the hook handles (remove them after)."""
    dm = model.model.diffusion_model
    heads = dm.num_heads
    hd = dm.dim // heads
    code = torch.zeros(frames, hd)
    for c in range(frames - 1):
        code[:, c] = torch.where(torch.arange(frames) <= c, 1.0, -1.0)
    code = code * (rate / 2 * hd ** 0.5) ** 0.5  # the softmax scale 1/sqrt(hd) undoes the root
    per_token = code.repeat_interleave(tpf, dim=0).repeat(1, heads)  # [F*T, dim], every head alike

    def qk(_mod, _inp, out):
        if out.shape[1] != frames * tpf:
            return out  # cross-attention keys (text)
        return per_token.to(out.dtype)[None].expand_as(out).clone()

    def identity_rope(_mod, _inp, out):
        eye = torch.zeros_like(out)
        eye[..., 0, 0] = 1
        eye[..., 1, 1] = 1
        return eye

    handles = [dm.rope_embedder.register_forward_hook(identity_rope)]
    for blk in dm.blocks:
        handles.append(blk.self_attn.norm_q.register_forward_hook(qk))
        handles.append(blk.self_attn.norm_k.register_forward_hook(qk))
    return handles


def _calibrate(cn, model, kind, frames, h, w, tmp_path, *, steps=2, target=0.9, probe="auto"):
    lat = {"samples": hm.latent(kind, frames, h, w)}
    with torch.inference_mode():
        return cn.run_calibration(model, hm.conditioning(kind, seed=1), hm.conditioning(kind, seed=2), lat,
                                  seed=0, steps=steps, cfg=1.0, query_rows=64, target=target,
                                  probe_steps=probe, output_dir=str(tmp_path))


def test_planted_decay_recommendation_keeps_target_and_tightens(cn, tmp_path):
    base = hm.load_model("wan_t2v")
    frames, h, w = 8, 32, 32  # 8 frames x 256 tokens, block 64: a radial mask with room to thin
    results = {}
    for rate in (0.4, 0.7, 1.5):
        m = base.clone()
        handles = _plant(m, rate, frames, (h // 2) * (w // 2))
        try:
            res = _calibrate(cn, _block64(cn, m), "wan_t2v", frames, h, w, tmp_path, target=0.93)
        finally:
            for hd in handles:
                hd.remove()
        rec = res.session.rec
        assert not rec.dense, res.report
        assert rec.kept_min >= 0.93
        rt = res.payload["figures"]["temporal_rate_per_frame"]
        assert rt == pytest.approx(rate, rel=0.15), res.report
        results[rate] = rec.work
        assert res.image.shape[0] == 1 and res.image.shape[-1] == 3
    assert results[1.5] < results[0.7] < results[0.4]  # a faster decay: a sparser mask


def _block64(cn, model):
    """The model patched with block 64: the calibration starts from the patch's block size."""
    return cn.apply_radial_patch(model, block_size=64)


def test_flat_attention_keeps_it_dense_and_says_why(cn, tmp_path):
    base = hm.load_model("wan_t2v")
    m = base.clone()
    handles = _plant(m, 0.0, 8, 256)  # a zero code: every key gets the same weight
    try:
        res = _calibrate(cn, _block64(cn, m), "wan_t2v", 8, 32, 32, tmp_path, target=0.9)
    finally:
        for hd in handles:
            hd.remove()
    assert res.session.rec.dense
    assert "keep it dense" in res.report and "does not decay" in res.report
    assert res.dense_blocks == str(cn.detect_family(base).num_blocks)  # every block: Patch stays dense


# ------------------------------------------------------------------------------ real families
def test_wan21_through_the_node_saves_and_wires_into_the_patch(cn, rp, tmp_path):
    base = hm.load_model("wan_t2v")
    res = _calibrate(cn, base, "wan_t2v", 8, 16, 16, tmp_path, target=0.6)
    saved = json.loads(open(res.path).read())
    assert saved["family"] == "wan21" and saved["recommendation"]["decay_factor"] == res.decay_factor
    back = cn.read_calibration(res.path)
    assert back["decay_factor"] == res.decay_factor and back["dense_blocks"] == res.dense_blocks
    assert set(res.payload["figures"]["output_relative_error"]) == {"0", "1"}
    assert set(saved["figures"]["kept_per_step_and_block"]) == {"0", "1"}
    patched = rp.apply_radial_patch(base, decay_factor=res.decay_factor, dense_blocks=res.dense_blocks,
                                    dense_steps_first=res.dense_steps)
    out = hm.sample(patched, "wan_t2v", hm.latent("wan_t2v", 8, 16, 16), steps=2)
    assert torch.isfinite(out).all()


# ------------------------------------------------------------------------------ the benchmark
def test_bench_calibrate_smoke_and_skip_without_cuda(tmp_path):
    """bench/bench_calibrate.py: its code path on a tiny Wan (CPU, subprocess as on the GPU
    machine), and the plain run says it needs CUDA and exits 0 where there is none."""
    import subprocess
    import sys

    from conftest import ROOT, comfyui_dir

    out = tmp_path / "cal.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_calibrate.py"), "--smoke", "--steps", "2",
                           "--comfyui", str(comfyui_dir()), "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["dense_s"] > 0 and got["calibrate_s"] > 0 and got["probes"] == [0, 1]
    if not torch.cuda.is_available():
        proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_calibrate.py")], capture_output=True,
                              text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 0 and "no CUDA" in proc.stdout


def test_saved_result_reads_back_through_the_loader_node_and_into_lora_metadata(cn, rp, comfy, tmp_path, monkeypatch):
    """Radial Attention Load Calibration gives back what Calibrate saved; a Patch driven by those
    values hands them to Save Radial LoRA's metadata."""
    import folder_paths

    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path))
    base = hm.load_model("wan_t2v")
    res = _calibrate(cn, base, "wan_t2v", 8, 16, 16, tmp_path, target=0.6)
    out = cn.RadialAttentionLoadCalibration.execute("latest").result
    assert out[:3] == (res.decay_factor, res.dense_blocks, res.dense_steps)
    assert out == cn.RadialAttentionLoadCalibration.execute(res.path).result
    with pytest.raises(ValueError, match="not a Radial Attention calibration"):
        cn.read_calibration(str(tmp_path / "nothing.json"))
    patched = rp.apply_radial_patch(base, decay_factor=out[0], dense_blocks=out[1], dense_steps_first=out[2])
    save = comfy.pack_module("nodes.lora_save_node")
    meta = save.radial_settings_metadata(rp.get_radial_config(patched))
    assert float(meta["radial_attn.decay_factor"]) == res.decay_factor
    assert int(meta["radial_attn.dense_steps"]) == res.dense_steps


def test_sigmas_input_and_no_video_calls(cn, comfy, tmp_path):
    """A SIGMAS schedule sets the probed steps; a single-frame latent (an image: nothing the patch
    would make sparse) gets "keep it dense" with the reason, and still a picture."""
    import comfy.samplers

    base = hm.load_model("wan_t2v")
    sigmas = comfy.samplers.calculate_sigmas(base.get_model_object("model_sampling"), "simple", 3)
    lat = {"samples": hm.latent("wan_t2v", 8, 16, 16)}
    with torch.inference_mode():
        res = cn.run_calibration(base, hm.conditioning("wan_t2v", seed=1), hm.conditioning("wan_t2v", seed=2), lat,
                                 sigmas=sigmas, cfg=1.0, query_rows=32, target=0.6, output_dir=str(tmp_path))
    assert res.session.probes == (0, 1, 2) and set(res.session.cal.by_step()) == {0, 1, 2}
    one = {"samples": hm.latent("wan_t2v", 1, 16, 16)}
    with torch.inference_mode():
        res = cn.run_calibration(base, hm.conditioning("wan_t2v", seed=1), hm.conditioning("wan_t2v", seed=2), one,
                                 steps=1, cfg=1.0, output_dir=str(tmp_path))
    assert res.session.rec.dense and "no attention call was probed" in res.report
    assert res.image.shape[-1] == 3
