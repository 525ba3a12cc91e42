"""bench/bench_e2e.py --smoke: the end-to-end benchmark's code path on tiny models on the CPU.

The benchmark builds each model through ComfyUI's own detection (a meta-device probe of the real
key names, ``detect_unet_config`` -> ``model_config_from_unet_config`` -> ``get_model``), samples
one euler step through ``comfy.sample.sample`` unpatched and after ``apply_radial_patch``; the
smoke cases are the same code at tiny sizes (sizes: ``SMOKE`` in the script). It runs in a
subprocess, as on the GPU machine, and reports its rows as JSON.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys


import family_cases as fc


def _run_smoke(cases: list[str], tmp_path) -> dict:
    from conftest import ROOT, comfyui_dir

    out = tmp_path / "e2e.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_e2e.py"), "--smoke", "--cases", ",".join(cases),
                           "--comfyui", str(comfyui_dir()), "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["case"]: r for r in json.loads(out.read_text())["rows"]}
    assert sorted(rows) == sorted(cases), rows
    for r in rows.values():
        # tiny sequences: every block is kept, so radial equals dense up to bf16 rounding
        assert r["density"] == 1.0 and r["finite"] and r["rel_diff"] < 0.02, r
        # dense_blocks "" (the benchmark's setting): every block's video self-attention is sparse,
        # once per step; nothing else (text cross-attention, LTX-2's audio and audio-video calls)
        assert r["sparse_calls_per_step"] == r["blocks"], r
        assert r["dense_s"] > 0 and r["radial_s"] > 0 and math.isfinite(r["rel_diff"])
    return rows


def test_bench_e2e_smoke_wan(comfy, tmp_path):
    """The Wan 2.1 smoke case (both ComfyUI versions)."""
    r = _run_smoke(["smoke"], tmp_path)["smoke"]
    assert (r["comfy_class"], r["model"], r["blocks"]) == ("WAN21_T2V", "WAN21", 1), r
    assert r["tokens"] == r["video_tokens"] == 3 * 4 * 4 and r["audio_tokens"] == 0, r  # 64x64x9, patch 1x2x2


def test_bench_e2e_smoke_hunyuan15(comfy, tmp_path):
    """The HunyuanVideo 1.5 case, tiny: ComfyUI's detection picks HunyuanVideo15 from the same probe
    builder the full-size case uses (skipped, naming the version, on a ComfyUI without it)."""
    fc.require_family(fc.CASES["hunyuan15_t2v"])
    hy = _run_smoke(["smoke_hy15"], tmp_path)["smoke_hy15"]
    assert (hy["comfy_class"], hy["model"], hy["blocks"]) == ("HunyuanVideo15", "HunyuanVideo15", 2), hy
    # 64x64x9 at VAE stride 4x16x16, patch 1x1x1: 3 x 4 x 4 video tokens, + 256 text tokens
    assert hy["video_tokens"] == 48 and hy["tokens"] == 48 + 256 and hy["audio_tokens"] == 0, hy


def test_bench_e2e_smoke_ltx2(comfy, tmp_path):
    """The LTX-2 (video + audio) case, tiny: ComfyUI's detection picks LTXAV from the same probe
    builder and metadata the full-size case uses; the latent is the packed video + audio
    NestedTensor, the text the refined (connector-skipping) width (skipped, naming the version, on
    a ComfyUI without LTXAV: 0.3.75)."""
    fc.require_family(fc.CASES["ltxav"])
    ltx = _run_smoke(["smoke_ltx2"], tmp_path)["smoke_ltx2"]
    assert (ltx["comfy_class"], ltx["model"], ltx["blocks"]) == ("LTXAV", "LTXAV", 2), ltx
    # 64x64x17 at VAE stride 8x32x32: 3 x 2 x 2 video tokens; 17 frames at 25 fps = 17 audio latents
    assert ltx["video_tokens"] == ltx["tokens"] == 12 and ltx["audio_tokens"] == 17, ltx


def test_bench_e2e_smoke_rejects_full_size_cases(tmp_path):
    """--smoke with a full-size case: one message naming the case and the choices (no model built)."""
    from conftest import ROOT

    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_e2e.py"), "--smoke", "--cases", "ltx2_481"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode != 0 and "ltx2_481" in proc.stderr and "smoke_ltx2" in proc.stderr, proc.stderr[-2000:]
