"""Radial Attention Calibrate on the real families through ComfyUI's own detection (tiny
random-weight models, CPU): the node runs, draws its picture, saves its result, and the values it
recommends connect to Radial Attention Patch, which then samples. A family this ComfyUI lacks
skips naming the version (tests/family_cases.py)."""

from __future__ import annotations

import json

import pytest
import torch

import family_cases as fc
import helpers_models as hm

pytestmark = pytest.mark.comfy

# kind -> (loader, latent, conditioning): the classic tiny models of helpers_models, the newer
# families of family_cases
KINDS = ["wan_t2v", "wan22_5b", "wan22_14b", "hunyuan_t2v", "hunyuan15_t2v", "ltxav"]


@pytest.fixture(scope="module")
def nodes(comfy):
    return comfy.pack_module("nodes.calibrate_node"), comfy.pack_module("nodes.patch_node")


def _setup(kind):
    if kind in fc.CASES:
        case = fc.CASES[kind]
        model = fc.load(case)  # skips where this ComfyUI has no such model
        lat = fc.latent(case, 5, 8, 8)
        pos = fc.conditioning(case, seed=1)
        neg = fc.conditioning(case, seed=2)
        return model, lat, pos, neg, (lambda m: fc.sample(m, case, lat, steps=2, positive=pos, negative=neg))
    hk = "wan_t2v" if kind == "wan22_14b" else kind
    model = hm.load_model(hk)
    lat = hm.latent(hk, 5, 16, 16)
    pos, neg = hm.conditioning(hk, seed=1), hm.conditioning(hk, seed=2)
    return model, lat, pos, neg, (lambda m: hm.sample(m, hk, lat, steps=2, positive=pos, negative=neg))


@pytest.mark.parametrize("kind", KINDS)
def test_family_through_the_node_and_into_the_patch(nodes, kind, tmp_path, monkeypatch):
    cn, pn = nodes
    model, lat, pos, neg, sample = _setup(kind)
    import folder_paths

    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path))
    start = model
    if kind == "wan22_14b":  # Wan 2.2 A14B looks like Wan 2.1: the patch's family says which
        start = pn.RadialAttentionPatch.execute(model, 0.0, 64, "", 0, 0, "full", "auto", "wan22_14b").result[0]
    with torch.inference_mode():
        out = cn.RadialAttentionCalibrate.execute(start, pos, neg, {"samples": lat}, 0, 2, 1.0, "euler", "simple",
                                                  "auto", 32, 0.9)
    image, decay, dense_blocks, dense_steps, report = out.result
    assert image.ndim == 4 and image.shape[0] == 1 and image.shape[-1] == 3 and float(image.std()) > 0
    assert isinstance(decay, float) and decay > 0 and isinstance(dense_blocks, str) and isinstance(dense_steps, int)
    assert "Radial Attention Calibrate" in report and "Saved:" in report
    saved = list((tmp_path / "radial_attention").glob("calibration_*.json"))
    assert len(saved) == 1
    data = json.loads(saved[0].read_text())
    want = "wan22_14b" if kind == "wan22_14b" else None
    if want:
        assert data["family"] == want
    assert data["recommendation"]["decay_factor"] == decay
    assert data["figures"]["kept_min"], "no attention call was measured"
    if kind == "wan22_14b":
        assert data["settings"]["block_size"] == 64  # the patch's settings are the start point
    # the recommended values wire into the Patch node, which samples
    patched = pn.RadialAttentionPatch.execute(model, decay, 128, dense_blocks, dense_steps, 0, "full",
                                              "auto").result[0]
    res = sample(patched)
    assert torch.isfinite(fc.output_tensor(res)).all()
