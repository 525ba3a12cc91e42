"""The pack's HTTP route against a running ComfyUI (started as a subprocess on 127.0.0.1)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest

from radial_core import radial_block_mask
from radial_core.geometry import geometry_from_pixels

sys.path.insert(0, str(Path(__file__).resolve().parent / "browser"))
from radial_server import get_server

pytestmark = pytest.mark.comfy

ROUTE = "/radial_attention/estimate"


@pytest.fixture(scope="module")
def server():
    return get_server()


def estimate(server, prefix: str = "", **params):
    return server.request(f"{prefix}{ROUTE}?{urlencode(params)}")


GOOD = dict(family="wan21", width=1280, height=720, frames=81, block_size=128, decay_factor=0.2,
            dist1="full", text_tokens=-1)


def test_good_request_matches_radial_core(server):
    status, body = estimate(server, **GOOD)
    assert status == 200, body
    mask = radial_block_mask(21, 3600, decay_factor=0.2, model="wan", dist1="full")
    assert body["num_frames"] == 21 and body["tokens_per_frame"] == 3600 and body["text_tokens"] == 0
    assert body["num_blocks"] == mask.shape[0] == 591
    assert body["kept_blocks"] == int(mask.sum())
    assert body["density"] == pytest.approx(int(mask.sum()) / 591**2, rel=1e-12)
    assert 0 < body["flop_density"] < 1 and body["flops_saved"] == pytest.approx(1 - body["flop_density"])
    assert body["expected_speedup"] > 1
    assert len(body["distance_density"]) == 21 and body["distance_density"][0] == 1.0
    assert "density" in body["summary"]


def test_api_prefix_and_family_defaults(server):
    # ComfyUI mirrors every route under /api (what the front end's api.fetchApi calls)
    status, body = estimate(server, prefix="/api", family="hunyuan", width=960, height=544,
                            frames=129)
    assert status == 200, body
    geo = geometry_from_pixels("hunyuan", 960, 544, 129)
    assert (body["num_frames"], body["tokens_per_frame"], body["text_tokens"]) == (33, 2040, 256)
    assert geo.text_tokens == 256
    assert body["decay_factor"] == 0.95 and body["model"] == "hunyuan"
    # the text where this ComfyUI puts HunyuanVideo's (first in 0.33, last in 0.3.75; the families
    # route says the same)
    _, fams = server.request("/radial_attention/families")
    assert body["text_first"] is fams["families"]["hunyuan"]["text_first"]
    mask = radial_block_mask(33, 2040, text_tokens=256, decay_factor=0.95, model="hunyuan",
                             text_first=body["text_first"])
    assert body["kept_blocks"] == int(mask.sum())
    if not body["text_first"]:
        assert body["kept_blocks"] == 71704  # the spec's public figure (text last)


def test_families_route_serves_the_registry(server):
    """GET /radial_attention/families: the family registry (radial_core.families) with each
    family's ComfyUI classes and file-name pieces (its adapter, nodes/model_family.py), the text
    position resolved for the running ComfyUI, and the Wan variants that pass through."""
    import pack_import
    from radial_core.families import families

    mf = pack_import.module("nodes.model_family")
    registry = families()
    for prefix in ("", "/api"):
        status, body = server.request(f"{prefix}/radial_attention/families")
        assert status == 200, body
        assert list(body["families"]) == list(registry)
        for key, spec in registry.items():
            entry = body["families"][key]
            adapter = mf.adapter(key)
            want = {k: v for k, v in spec.as_dict().items() if k != "text_first"}
            want.update(comfy_classes=list(adapter.classes), file_names=list(adapter.file_names))
            assert {k: v for k, v in entry.items() if k != "text_first"} == want, key
            assert isinstance(entry["text_first"], bool)
            if spec.text_first is not None:
                assert entry["text_first"] is spec.text_first
        assert body["pass_through"] == mf.PASS_THROUGH
    _, limits = server.request("/radial_attention/limits")
    assert limits["families"] == list(registry)


def test_changed_widget_changes_answer(server):
    _, a = estimate(server, **GOOD)
    _, b = estimate(server, **{**GOOD, "frames": 161})
    _, c = estimate(server, **{**GOOD, "decay_factor": 0.8})
    assert b["num_frames"] == 41 and b["density"] < a["density"]
    assert c["density"] > a["density"]


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"family": "sdxl"}, "family must be a key of"),
        ({"family": None}, "family must be a key of"),
        ({"width": "abc"}, "width must be a whole number"),
        ({"width": "12.5"}, "width must be a whole number"),
        ({"width": "nan"}, "width must be a whole number"),
        ({"width": "1e400"}, "width must be a whole number"),
        ({"width": "1e308"}, "width must be a whole number"),
        ({"width": "inf"}, "width must be a whole number"),
        ({"frames": "1e3"}, "frames must be a whole number"),
        ({"frames": "81.0"}, "frames must be a whole number"),
        ({"decay_factor": "1e308"}, "decay_factor must be a finite number from 0 to 10"),
        ({"decay_factor": "nan"}, "decay_factor must be a finite number from 0 to 10"),
        ({"width": 99999999}, "width must be a whole number in [16, 8192]"),
        ({"height": -5}, "height must be a whole number in [16, 8192]"),
        ({"frames": 0}, "frames must be a whole number in [1, 2049]"),
        ({"frames": None}, "missing parameter 'frames'"),
        ({"block_size": 100}, "block_size must be one of 128, 64"),
        ({"decay_factor": -1}, "decay_factor must be a finite number from 0 to 10"),
        ({"decay_factor": "inf"}, "decay_factor must be a finite number from 0 to 10"),
        ({"decay_factor": "x"}, "decay_factor must be a finite number from 0 to 10"),
        ({"dist1": "quarter"}, "dist1 must be one of full, half"),
        ({"text_tokens": 10**9}, "text_tokens must be a whole number in [-1, 4096]"),
        # ASCII digits only: int() reads Arabic-Indic and fullwidth digits, re's $ a trailing newline
        ({"width": "\u0661\u0662\u0668\u0660"}, "width must be a whole number in [16, 8192], written in ASCII digits"),
        ({"frames": "\uff18\uff11"}, "frames must be a whole number"),
        ({"width": "1280\n"}, "width must be a whole number"),
        ({"width": " 1280"}, "width must be a whole number"),
        ({"decay_factor": "0.2\n"}, "decay_factor must be a finite number"),
        ({"decay_factor": "\u0660.\u0662"}, "decay_factor must be a finite number"),
        ({"block_size": "128\n"}, "block_size must be one of 128, 64"),
        ({"block_size": "\u0661\u0662\u0668"}, "block_size must be one of 128, 64"),
        ({"dist1": "full\n"}, "dist1 must be one of full, half"),
        ({"width": 8192, "height": 8192, "frames": 2049}, "too large for a preview"),
        ({"width": 8192, "height": 8192, "frames": 2049}, "at most 16 frames at this size"),
    ],
)
def test_bad_requests_get_400_with_a_message(server, change, needle):
    params = {**GOOD, **change}
    params = {k: v for k, v in params.items() if v is not None}
    status, body = estimate(server, **params)
    assert status == 400, body
    assert needle in body["error"], body


@pytest.mark.parametrize("name", ["width", "frames", "family", "decay_factor", "block_size", "dist1"])
def test_unbounded_input_is_never_echoed(server, name):
    long = "9" * 400 if name in ("width", "frames", "decay_factor") else "x" * 400
    for raw in (long, "1e308"):
        status, body = estimate(server, **{**GOOD, name: raw})
        assert status == 400, body
        assert len(body["error"]) < 200 and "9" * 30 not in body["error"] and "x" * 30 not in body["error"], body


@pytest.mark.parametrize("block_size,advice,not_said", [
    (128, "at most 16 frames at this size and block size 128", "block size 128 (it fits)"),
    (64, "at most 8 frames at this size and block size 64", "block size 128 (it fits)"),
])
def test_too_large_advice_fits_the_values_given(server, block_size, advice, not_said):
    status, body = estimate(server, **{**GOOD, "width": 8192, "height": 8192, "frames": 2049,
                                       "block_size": block_size})
    assert status == 400 and advice in body["error"] and not_said not in body["error"], body
    # block size 128 is advised exactly when the size is at block 64 and 128 would fit
    status, body = estimate(server, **{**GOOD, "family": "hunyuan", "frames": 1000, "block_size": 64})
    assert status == 400 and "block size 128 (it fits)" in body["error"], body
    # and the frame count it advises does fit
    frames = int(re.search(r"at most (\d+) frames", body["error"]).group(1))
    assert estimate(server, **{**GOOD, "family": "hunyuan", "frames": frames, "block_size": 64})[0] == 200
    assert estimate(server, **{**GOOD, "family": "hunyuan", "frames": frames + 4, "block_size": 64})[0] == 400


def test_limits_route_gives_the_ranges_the_estimate_route_accepts(server):
    status, lim = server.request("/api/radial_attention/limits")
    assert status == 200, lim
    assert lim["families"] and set(lim["block_sizes"]) == {64, 128}
    for name in ("width", "height", "frames", "text_tokens"):
        lo, hi = lim[name]
        for value, ok in ((lo, True), (hi, True), (lo - 1, False), (hi + 1, False)):
            params = {**GOOD, name: value}
            if name != "frames":
                params["frames"] = 1  # keep the biggest sizes small enough for a preview
            status, body = estimate(server, **params)
            assert (status == 200) == ok or "too large" in body.get("error", ""), (name, value, body)
    lo, hi = lim["decay_factor"]
    assert estimate(server, **{**GOOD, "decay_factor": hi})[0] == 200
    assert estimate(server, **{**GOOD, "decay_factor": hi + 0.5})[0] == 400


def test_repeated_answers_are_identical(server):
    params = {**GOOD, "frames": 321}  # 4x length: 2279 x 2279 blocks
    status, first = estimate(server, **params)
    status2, again = estimate(server, **params)
    assert status == status2 == 200 and again == first


def test_answers_are_cached(comfy):
    """The route's figures are computed once per parameter set (speed: bench/bench_preview.py)."""
    routes = comfy.pack_module("nodes.routes")
    query = {k: str(v) for k, v in {**GOOD, "frames": 161}.items()}
    before = routes._estimate_cached.cache_info()
    first = routes.estimate_json(query)
    again = routes.estimate_json(query)
    after = routes._estimate_cached.cache_info()
    assert again == first
    assert after.misses - before.misses <= 1 and after.hits - before.hits >= 1


def test_preview_prompt_through_the_server(server):
    """The node queued over HTTP: image saved for the UI, summary shown by ComfyUI's PreviewAny."""
    prompt = {
        "1": {"class_type": "SparsityPreview",
              "inputs": {"family": "wan21", "width": 832, "height": 480, "frames": 81,
                         "block_size": "128", "decay_factor": 0.0, "dist1": "full",
                         "text_tokens": -1, "image_size": 256}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}},
    }
    entry = server.run_prompt(prompt)
    assert entry["status"]["status_str"] == "success", entry["status"]
    images = entry["outputs"]["1"]["images"]
    assert len(images) == 1 and images[0]["filename"].endswith(".png")
    status, _ = server.request(f"/view?filename={images[0]['filename']}&type=temp&subfolder={images[0]['subfolder']}")
    assert status == 200
    text = entry["outputs"]["2"]["text"][0]
    mask = radial_block_mask(21, 1560, decay_factor=0.2)
    assert f"kept {int(mask.sum()):,}" in text


def lora_settings(server, **params):
    return server.request(f"/api/radial_attention/lora_settings?{urlencode(params)}")


def test_lora_settings_route_says_what_the_loader_will_apply(server, server_loras):
    tuned = server_loras("radial_route_test_tuned.safetensors",
                           {"radial_attn.decay_factor": "0.25", "radial_attn.dense_steps": "1"})
    plain = server_loras("radial_route_test_plain.safetensors")
    status, body = lora_settings(server, lora_name=tuned)
    assert status == 200, body
    assert body["values"]["decay_factor"] == 0.25 and body["sources"]["decay_factor"] == "metadata"
    assert body["values"]["dense_steps_first"] == 1 and body["sources"]["dense_steps_first"] == "metadata"
    assert body["values"]["dense_blocks"] == "2" and body["sources"]["dense_blocks"] == "default"
    assert body["from_file"] is True
    status, body = lora_settings(server, lora_name=plain)
    assert status == 200 and body["from_file"] is False
    assert set(body["sources"].values()) == {"default"}, body
    # the node's overrides win, as when it runs
    status, body = lora_settings(server, lora_name=tuned, dense_blocks="3", block_size="64", dense_steps_first="-1")
    assert status == 200, body
    assert body["values"]["dense_blocks"] == "3" and body["sources"]["dense_blocks"] == "override"
    assert body["values"]["block_size"] == 64 and body["sources"]["dense_steps_first"] == "metadata"


@pytest.mark.parametrize("name", ["absent.safetensors", "../../../etc/passwd", "x" * 5000, ""])
def test_lora_settings_route_refuses_names_not_in_the_list(server, name):
    status, body = lora_settings(server, lora_name=name)
    assert status == 400, body
    assert "lora_name" in body["error"] and len(body["error"]) < 200, body


@pytest.mark.parametrize("override,value,words", [
    ("decay_factor", "abc", ["decay_factor", "'abc'", "Fix"]),  # was answered 200, the override dropped
    ("decay_factor", "NaN", ["decay_factor", "'NaN'", "finite"]),
    ("decay_factor", "nan", ["decay_factor", "finite"]),
    ("decay_factor", "11", ["decay_factor", "'11'", "from 0 to 10"]),
    ("decay_factor", "0.5\n", ["decay_factor", "line break"]),
    ("dense_steps_first", "\u0661\u0662", ["dense_steps_first", "from 0 to 1000"]),
    ("dense_steps_first", "\uff18\uff11", ["dense_steps_first"]),
    ("dense_steps_last", "2\n", ["dense_steps_last", "line break"]),
    ("dense_steps_last", "1001", ["dense_steps_last", "1001", "from 0 to 1000"]),
    ("dense_steps_first", "2.5", ["dense_steps_first", "'2.5'"]),
    ("block_size", "96", ["block_size", "'96'", "128, 64"]),
    ("dist1", "quarter", ["dist1", "'quarter'", "full, half"]),
    ("family", "sdxl", ["family", "'sdxl'"]),
    ("dense_blocks", "0-999999999", ["dense_blocks", "999999999", "1023"]),
    ("dense_blocks", "first two", ["dense_blocks", "'first two'", "0,1,39"]),
])
def test_lora_settings_route_refuses_every_bad_override(server, server_loras, override, value, words):
    name = server_loras("radial_route_test_override.safetensors")
    status, body = lora_settings(server, lora_name=name, **{override: value})
    assert status == 400, body
    for w in words:
        assert w in body["error"], (w, body)
    assert "Fix" in body["error"] and len(body["error"]) < 400, body
    assert server.request("/system_stats")[0] == 200


@pytest.mark.parametrize("override,unset", [("decay_factor", "0"), ("dense_steps_first", "-1"),
                                            ("block_size", "from LoRA"), ("dense_blocks", "")])
def test_lora_settings_route_takes_the_from_lora_values(server, server_loras, override, unset):
    name = server_loras("radial_route_test_unset.safetensors")
    status, body = lora_settings(server, lora_name=name, **{override: unset})
    assert status == 200 and body["sources"][override] == "default", body


@pytest.mark.parametrize("damage,reason", [
    ("int64", "is I64, not floating point"),
    ("meta", "radial_attn.decay_factor = 'nan' is invalid"),
])
def test_lora_settings_route_names_the_file_relative_to_the_loras_folder(server, server_loras, damage, reason):
    """A refused LoRA is named as the node's list names it, never by its path on the server."""
    import torch
    from safetensors.torch import save_file

    name = server_loras("radial_route_test_damaged.safetensors")
    path = server.dir / "models" / "loras" / name
    if damage == "int64":
        save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(4, 8, dtype=torch.int64)},
                  str(path))
    else:
        save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(4, 8)}, str(path),
                  metadata={"radial_attn.decay_factor": "nan"})
    status, body = lora_settings(server, lora_name=name)
    assert status == 400, body
    assert reason in body["error"] and name in body["error"], body
    assert str(server.dir) not in body["error"] and "/models/loras" not in body["error"], body


@pytest.mark.parametrize("path", [
    f"{ROUTE}?{urlencode({**GOOD, 'frames': 99999})}",
    "/radial_attention/lora_settings?" + urlencode({"lora_name": "absent.safetensors"}),
])
def test_the_readout_gets_a_refusal_as_an_answer(server, path):
    """The front-end readout (header X-Radial-Readout: 1) gets a refused query as 200 with the same
    {error}: the browser logs no failed request while a value is being typed; everyone else a 400."""
    import json
    import urllib.request

    status, plain = server.request(path)
    assert status == 400, plain
    req = urllib.request.Request(server.url + path, headers={"X-Radial-Readout": "1"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
        assert json.loads(r.read()) == plain
