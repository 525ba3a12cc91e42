"""`make demo` end to end, small: scripts/demo.py runs the bundled graph through ComfyUI's prompt
executor (UNETLoader -> Radial Attention Patch -> KSampler -> VAEDecode -> CreateVideo -> SaveVideo,
and the Sparsity Preview -> SaveImage) in a fresh process, dense and radial, and reports what it
measured: two video files, the mask and one summary picture."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import script_module

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.comfy


def test_workflow_is_api_format_with_the_patch_node():
    wf = json.loads((ROOT / "workflows" / "api" / "demo_wan_tiny.json").read_text())
    kinds = {v["class_type"] for v in wf.values()}
    assert {"UNETLoader", "CLIPLoader", "CLIPTextEncode", "RadialAttentionPatch", "KSampler", "VAELoader",
            "VAEDecode", "CreateVideo", "SaveVideo", "SparsityPreview", "SaveImage"} <= kinds
    # conditioning comes from the text encoder nodes, not from a node made for another purpose
    sampler_inputs = [v["inputs"] for v in wf.values() if v["class_type"] == "KSampler"]
    for inputs in sampler_inputs:
        for side in ("positive", "negative"):
            assert wf[inputs[side][0]]["class_type"] == "CLIPTextEncode"
    patch = next(v for v in wf.values() if v["class_type"] == "RadialAttentionPatch")
    for name in ("decay_factor", "block_size", "dense_blocks", "dense_steps_first", "dense_steps_last",
                 "dist1", "backend"):
        assert name in patch["inputs"]


def test_demo_runs_the_workflow_dense_and_radial(tmp_path, comfy):
    if not script_module("make_demo_models").wan_reads_text_width():
        import comfyui_version

        pytest.skip(f"ComfyUI {comfyui_version.__version__}'s Wan detection ignores a model file's config "
                    "metadata, which the demo uses for its small Wan's 768-wide text input (0.33 reads it)")
    # 128x128 px, 33 frames -> 9 latent frames x 64 tokens: a sparse mask (density 0.64)
    cmd = [sys.executable, str(ROOT / "scripts" / "demo.py"), "--width", "128", "--height", "128",
           "--length", "33", "--steps", "2", "--layers", "2", "--dim", "128", "--ffn", "256",
           "--out", str(tmp_path)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["tokens"] == 9 * 64
    assert 0 < summary["density"] < 1
    assert summary["dense_seconds"] > 0 and summary["radial_seconds"] > 0
    assert summary["relative_difference"] > 0  # the radial run really used the sparse mask
    videos = [Path(p) for p in summary["videos"]]
    assert len(videos) == 2 and all(p.suffix == ".mp4" and p.stat().st_size > 1000 for p in videos)
    from PIL import Image

    with Image.open(summary["picture"]) as pic:  # mask + both frames side by side
        assert pic.width > 2 * 360 and pic.height > 300
    assert Path(summary["mask"]).exists()
    out = proc.stdout
    for words in ("mask density", "dense  (ComfyUI's", "radial (", "speedup", "videos:", "picture:",
                  "CLIPLoader (type wan) + CLIPTextEncode"):
        assert words in out, words
    assert "Radial Attention: Wan 2.1 T2V" in proc.stderr + out  # the patch's one info line
