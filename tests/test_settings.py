"""The settings contract (radial_core/settings.py): each setting is stated once, and the node
schemas ComfyUI serves, the routes, LoRA metadata and the front end's source of limits
(``GET /radial_attention/limits``) agree with it. ``dense_blocks`` is one bounded grammar: a huge
range is refused at once, on every path a user can type or download it, without the server's
memory growing. Real ComfyUI server (tests/browser/radial_server.py), real safetensors files."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from radial_core import settings as S
from radial_core.lora import metadata as lora_meta

sys.path.insert(0, str(Path(__file__).resolve().parent / "browser"))
from radial_server import get_server

HUGE = "0-999999999"  # was expanded into a Python set before any check: about 74 GB


# ---------------------------------------------------------------------------- the contract alone
@pytest.mark.parametrize("text,count,intervals", [
    ("", None, ()), ("none", None, ()), (" 0 ", None, ()), ("2", 2, ()), ("1024", 1024, ()),
    ("0,1,39", None, ((0, 1), (39, 39))), ("5,", None, ((5, 5),)), ("0 - 3, 39", None, ((0, 3), (39, 39))),
    ("3-5,0-4", None, ((0, 5),)), ("0-1023", None, ((0, 1023),)),
])
def test_dense_blocks_grammar(text, count, intervals):
    d = S.parse_dense_blocks(text)
    assert (d.count, d.intervals) == (count, intervals)
    assert S.parse_dense_blocks(d.text) == d  # the canonical text reads back the same


@pytest.mark.parametrize("text,words", [
    (HUGE, ["999999999", "1023", "Fix"]), ("1025", ["1025", "1023"]), ("0-1024", ["1024", "1023"]),
    ("9" * 5000, ["above the highest index 1023"]), ("3-1", ["3-1", "1-3"]), ("abc,-3", ["'abc,-3'", "Fix"]),
    ("1.5", ["'1.5'"]), ("\u0661\u0662", ["Allowed"]), ("\uff18", ["Allowed"]), ("1,x", ["'1,x'"]),
    ("0," * 5000, ["characters long", "8192"]),
])
def test_dense_blocks_refusals_name_value_rule_and_fix(text, words):
    with pytest.raises(S.SettingError) as e:
        S.parse_dense_blocks(text)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert len(str(e.value)) < 400


def test_dense_blocks_time_is_linear_in_the_text_and_nothing_is_expanded():
    start = time.perf_counter()
    for _ in range(100):
        with pytest.raises(S.SettingError):
            S.parse_dense_blocks(HUGE)
    assert time.perf_counter() - start < 0.05  # 100 refusals
    longest = ",".join(f"{i}-{i}" for i in range(0, 1020, 3))[: S.DENSE_BLOCKS_MAX_CHARS]
    longest = longest[: longest.rfind(",")]
    start = time.perf_counter()
    d = S.parse_dense_blocks(longest)
    assert time.perf_counter() - start < 0.05 and len(d.intervals) > 300
    # a model's indices: never more than its own blocks, whatever the text said
    assert S.parse_dense_blocks("0-1023").indices(2000) == frozenset(range(1024))
    assert S.parse_dense_blocks("1000").problem_for_model(40)


@pytest.mark.parametrize("name", [n for n, s in S.SETTINGS.items() if s.kind in ("int", "float")])
def test_every_number_is_finite_and_in_range(name):
    s = S.SETTINGS[name]
    assert s.parse(s.minimum) == s.minimum and s.parse(s.maximum) == s.maximum and s.parse(s.default) == s.default
    bad = [s.minimum - 1, s.maximum + 1, float("nan"), float("inf"), float("-inf"), "nan", "inf", True,
           "\u0661", "\uff18", "1_0", "1e400"]
    for value in bad:
        with pytest.raises(S.SettingError) as e:
            s.parse(value)
        assert name in str(e.value) and "Allowed" in str(e.value) and "Fix" in str(e.value)
    for raw in (f"{s.default}\n", f" {s.default}"):
        with pytest.raises(S.SettingError):
            s.parse_query(raw)


def test_one_decay_range_everywhere():
    """Nodes, routes, metadata and the writer all take 0-10 (the metadata used to stop at 4)."""
    assert (S.SETTINGS["decay_factor"].minimum, S.SETTINGS["decay_factor"].maximum) == (0.0, S.DECAY_MAX) == (0.0, 10.0)
    meta = lora_meta.radial_metadata(decay_factor=5.0)  # a model patched with decay 5 can be saved
    assert lora_meta.resolve_radial_settings(meta).values["decay_factor"] == 5.0
    assert lora_meta.resolve_radial_settings({"radial_attn.decay_factor": "10"}).values["decay_factor"] == 10.0
    with pytest.raises(ValueError):
        lora_meta.resolve_radial_settings({"radial_attn.decay_factor": "10.01"})


@pytest.mark.parametrize("name", S.LORA_SETTINGS)
def test_lora_metadata_reads_each_setting_by_the_contract(name):
    s = S.SETTINGS[name]
    key = {"dense_steps_first": "dense_steps"}.get(name, name)
    good = {"int": lambda: [s.minimum, s.maximum], "float": lambda: [s.maximum],
            "choice": lambda: list(s.choices), "text": lambda: ["0-3", "1023,"]}[s.kind]()
    for value in good:
        values = lora_meta.resolve_radial_settings({f"radial_attn.{key}": str(value)}).values
        assert values[name] == (str(value) if s.kind == "text" else value)
    bad = {"int": lambda: [s.maximum + 1, "nan"], "float": lambda: [s.maximum + 0.5, "nan", "inf"],
           "choice": lambda: ["not-a-choice"], "text": lambda: [HUGE, "0 - x"]}[s.kind]()
    for value in bad:
        with pytest.raises(ValueError, match="expected " + s.rule().replace("(", r"\(").replace(")", r"\)")):
            lora_meta.resolve_radial_settings({f"radial_attn.{key}": str(value)})
    assert lora_meta.FAMILIES == S.SETTINGS["family"].choices


def test_precision_is_named_by_what_it_runs_and_reads_its_old_name(caplog):
    s = S.SETTINGS["precision"]
    assert s.choices == ("exact", "int8-qk") and "fp8" not in s.rule()
    assert S.parse("precision", "int8-qk") == "int8-qk" and S.parse("precision", "exact") == "exact"
    S._renames_logged.clear()
    with caplog.at_level("INFO", logger=S.logger.name):
        # a saved workflow's, a Python caller's or a query's old value: read as the new one
        assert [S.parse("precision", v) for v in ("fp8", "FP8", " fp8")] == ["int8-qk"] * 3
        assert s.parse_query("fp8") == "int8-qk"
    lines = [r for r in caplog.records if "old name" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelname == "INFO", lines
    assert S.limits_json()["settings"]["precision"]["renamed"] == {"fp8": "int8-qk"}
    for bad in ("fp16", "int8", "", 8):
        with pytest.raises(S.SettingError, match="exact, int8-qk"):
            S.parse("precision", bad)


def test_lora_metadata_with_a_precision_key_still_loads():
    # LoRA metadata carries no precision (it is the node's): an old file's key is ignored, never an error
    for value in ("fp8", "int8-qk"):
        res = lora_meta.resolve_radial_settings({"radial_attn.precision": value, "radial_attn.decay_factor": "0.3"})
        assert res.values["decay_factor"] == 0.3 and "precision" in res.ignored


# ---------------------------------------------------------------------------- through the server
@pytest.fixture(scope="module")
def server():
    return get_server()


# node -> {input: (setting, "from LoRA" value or None)}; every input of every node but the
# model/latent/LoRA links, the LoRA file list, the LoRA loader's radial_mode and the file prefix
NODE_INPUTS = {
    "RadialAttentionPatch": {n: None for n in ("decay_factor", "block_size", "dense_blocks", "dense_steps_first",
                                               "dense_steps_last", "dist1", "backend", "family", "precision")},
    "SparsityPreview": {n: None for n in ("width", "height", "frames", "block_size", "decay_factor", "dist1",
                                          "text_tokens", "image_size")},
    "RadialLoraLoader": {"strength": None, "backend": None, **{n: S.OVERRIDE_UNSET[n] for n in S.LORA_SETTINGS}},
    "SaveRadialLora": {n: None for n in ("steps", "tuned_frames", "tuned_width", "tuned_height")},
}


def input_specs(server, node: str) -> dict:
    info = server.get_json(f"/object_info/{node}")[node]["input"]
    return {**info.get("required", {}), **info.get("optional", {})}


def combo_options(spec) -> list:
    return spec[0] if isinstance(spec[0], list) else spec[1]["options"]


@pytest.mark.comfy
def test_limits_route_serves_the_contract(server):
    for prefix in ("", "/api"):
        status, lim = server.request(f"{prefix}/radial_attention/limits")
        assert status == 200, lim
        assert {k: lim[k] for k in ("settings", "lora_settings", "override_unset")} == S.limits_json()
    for name, entry in lim["settings"].items():
        assert entry["tooltip"] and "default" in entry and entry["type"] in ("int", "float", "choice", "text"), name
        if entry["type"] in ("int", "float"):
            assert math.isfinite(entry["min"]) and math.isfinite(entry["max"]), name
        if entry["type"] == "choice":
            assert entry["default"] in entry["choices"], name
    # the readout's older keys say the same
    for name in ("width", "height", "frames", "text_tokens", "decay_factor"):
        assert lim[name] == [lim["settings"][name]["min"], lim["settings"][name]["max"]], name
    assert lim["block_sizes"] == lim["settings"]["block_size"]["choices"]
    assert lim["dist1"] == lim["settings"]["dist1"]["choices"]


@pytest.mark.comfy
@pytest.mark.parametrize("node", list(NODE_INPUTS))
def test_node_schemas_agree_with_the_contract(server, node):
    """What ComfyUI serves for each input (the front end's widgets) is the contract's setting."""
    specs = input_specs(server, node)
    lim = server.get_json("/radial_attention/limits")["settings"]
    for name, unset in NODE_INPUTS[node].items():
        spec, entry = specs[name], lim[name]
        opts = spec[1] if len(spec) > 1 else {}
        assert entry["tooltip"] in opts.get("tooltip", ""), (node, name)
        if entry["type"] in ("int", "float"):
            assert spec[0] == entry["type"].upper(), (node, name)
            # the LoRA loader's "from LoRA" value (-1 steps) widens the minimum by that one value
            low = min(entry["min"], unset) if unset is not None else entry["min"]
            assert (opts["min"], opts["max"]) == (low, entry["max"]), (node, name, opts)
            assert opts["default"] == (entry["default"] if unset is None else unset), (node, name)
            if "step" in entry:
                assert opts.get("step") == entry["step"], (node, name)
        elif entry["type"] == "choice":
            options = [o for o in combo_options(spec) if o != S.FROM_LORA]
            assert options and set(options) <= {str(c) for c in entry["choices"]} | set(entry["choices"]), (node, name)
            if name not in ("family",):  # the patch offers only the families the weights cannot tell apart
                assert sorted(map(str, options)) == sorted(map(str, entry["choices"])), (node, name)
        else:
            assert spec[0] == "STRING", (node, name)


@pytest.mark.comfy
def test_estimate_route_takes_the_contract_ranges(server):
    base = dict(family="wan21", width=832, height=480, frames=81)
    for name in ("width", "height", "frames", "text_tokens", "decay_factor"):
        s = S.SETTINGS[name]
        small = {"frames": 1} if name != "frames" else {}
        assert server.request(f"/radial_attention/estimate?{urlencode({**base, **small, name: s.maximum})}")[0] in (
            200,
            400,
        )
        status, body = server.request(f"/radial_attention/estimate?{urlencode({**base, name: s.maximum + 1})}")
        assert status == 400 and name in body["error"] and "Fix" in body["error"], body


# ---------------------------------------------------------------------------- a huge dense_blocks
def server_rss_mb(server) -> float:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def timed(server, path, data=None):
    start = time.perf_counter()
    status, body = server.request(path, data)
    return time.perf_counter() - start, status, body


@pytest.mark.comfy
def test_huge_dense_blocks_is_refused_at_once_everywhere(server, server_loras):
    """On the Patch and the LoRA loader (queue time: HTTP 400, one error on dense_blocks), in a
    LoRA's metadata (queue time: one error on lora_name), as the loader override of the readout
    route and in the metadata the route reads: refused in under 50 ms, and the server's memory
    does not grow (it grew by 2 GB for 0-30000000)."""
    if server.proc is None or not Path(f"/proc/{server.proc.pid}/status").exists():
        pytest.skip("the server's memory is read from /proc (Linux)")
    plain = server_loras("radial_settings_plain.safetensors")
    meta = server_loras("radial_settings_huge_meta.safetensors", {"radial_attn.dense_blocks": HUGE})
    model = {"class_type": "UNETLoader", "inputs": {"unet_name": "absent.safetensors", "weight_dtype": "default"}}
    patch = {"1": model, "2": {"class_type": "RadialAttentionPatch", "inputs": {
        "model": ["1", 0], "decay_factor": 0.0, "block_size": 128, "dense_blocks": HUGE, "dense_steps_first": 0,
        "dense_steps_last": 0, "dist1": "full", "backend": "auto", "family": "auto"}},
        "3": {"class_type": "SparsityPreview", "inputs": {
            "family": "wan21", "width": 832, "height": 480, "frames": 81, "block_size": "128", "decay_factor": 0.0,
            "dist1": "full", "text_tokens": -1, "image_size": 256, "model": ["2", 0]}}}
    def lora(name, **inputs):
        return {"1": model, "2": {"class_type": "RadialLoraLoader", "inputs": {
            "model": ["1", 0], "lora_name": name, "strength": 1.0, **inputs}},
            "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 1]}}}

    cases = {
        "patch": ("/prompt", {"prompt": patch, "client_id": "radial-settings"}),
        "loader": ("/prompt", {"prompt": lora(plain, dense_blocks=HUGE), "client_id": "radial-settings"}),
        # the file is refused as a whole, whatever the node's inputs: an override cannot rescue it
        "loader, metadata": ("/prompt", {"prompt": lora(meta, dense_blocks="1"), "client_id": "radial-settings"}),
        "route override": (
            f"/radial_attention/lora_settings?{urlencode({'lora_name': plain, 'dense_blocks': HUGE})}",
            None,
        ),
        "metadata": (f"/radial_attention/lora_settings?{urlencode({'lora_name': meta})}", None),
    }
    for path, data in cases.values():  # warm: first requests import and list files
        server.request(path, data)
    before = server_rss_mb(server)
    for what, (path, data) in cases.items():
        seconds = []
        for _ in range(3):
            took, status, body = timed(server, path, data)
            seconds.append(took)
            assert status == 400, (what, body)
            if data is not None:
                errors = body["node_errors"]["2"]["errors"]
                wrong = "lora_name" if what == "loader, metadata" else "dense_blocks"
                assert [e["extra_info"].get("input_name") for e in errors] == [wrong], errors
                shown = f"{errors[0]['message']}: {errors[0]['details']}"
                assert "999999999" in shown and "1023" in shown and "Fix" in shown, errors
                assert str(server.dir) not in shown, errors  # no server path
            else:
                assert "dense_blocks" in body["error"] and "1023" in body["error"], (what, body)
                assert str(server.dir) not in body["error"], body  # no server path
        assert min(seconds) < 0.05, (what, seconds)
    grown = server_rss_mb(server) - before
    assert grown < 16, f"the server's memory grew by {grown:.1f} MB"
    assert server.request("/system_stats")[0] == 200
