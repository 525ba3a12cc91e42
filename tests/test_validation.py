"""Queue-time validation through a real ComfyUI server: a bad value on one of the pack's nodes is
refused with HTTP 400 before anything runs, with exactly one error, on the input that is wrong,
naming the value and what is allowed; the server stays up. Runs on whichever ComfyUI the test
interpreter's leg names (0.33 and 0.3.75 report validation differently: nodes/validation.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "browser"))
from radial_server import get_server

pytestmark = pytest.mark.comfy

PATCH = {"decay_factor": 0.0, "block_size": 128, "dense_blocks": "1", "dense_steps_first": 0,
         "dense_steps_last": 0, "dist1": "full", "backend": "auto", "family": "auto"}
PREVIEW = {"family": "wan21", "width": 832, "height": 480, "frames": 81, "block_size": "128",
           "decay_factor": 0.0, "dist1": "full", "text_tokens": -1, "image_size": 256}
LORA = {"strength": 1.0, "radial_mode": "auto", "decay_factor": 0.0, "block_size": "from LoRA",
        "dense_blocks": "", "dense_steps_first": -1, "dense_steps_last": -1, "dist1": "from LoRA",
        "family": "from LoRA", "backend": "auto"}


@pytest.fixture(scope="module")
def server():
    return get_server()


def loader():
    # The MODEL comes from a loader whose file is absent: that node fails validation on its own;
    # the node under test is still validated and reported separately.
    return {"class_type": "UNETLoader", "inputs": {"unet_name": "absent.safetensors", "weight_dtype": "default"}}


def patch_prompt(**change):
    return {"1": loader(),
            "2": {"class_type": "RadialAttentionPatch", "inputs": {"model": ["1", 0], **PATCH, **change}},
            "3": {"class_type": "SparsityPreview", "inputs": {**PREVIEW, "model": ["2", 0]}}}


def preview_prompt(**change):
    return {"2": {"class_type": "SparsityPreview", "inputs": {**PREVIEW, **change}}}


def lora_prompt(server, **change):
    return {"1": loader(),
            "2": {"class_type": "RadialLoraLoader",
                  "inputs": {"model": ["1", 0], "lora_name": first_lora(server), **LORA, **change}},
            "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 1]}}}


def first_lora(server) -> str:
    """A LoRA name the server offers, or one it does not when the loras folder is empty (then the
    prompts that change another input also carry a lora_name error: asked of ComfyUI below)."""
    options = lora_options(server)
    return options[0] if options else "absent_lora.safetensors"


def lora_options(server) -> list:
    info = server.get_json("/object_info/RadialLoraLoader")["RadialLoraLoader"]["input"]["required"]["lora_name"]
    return info[0] if isinstance(info[0], list) else info[1].get("options", [])


def queue(server, prompt):
    status, body = server.request("/prompt", {"prompt": prompt, "client_id": "radial-validation"})
    alive, _ = server.request("/system_stats")
    assert alive == 200, "the server went down after a bad prompt"
    return status, body


def node_errors(body, node_id):
    return body.get("node_errors", {}).get(node_id, {}).get("errors", [])


def text_of(error) -> str:
    return f"{error['message']}: {error['details']}"


BAD = [
    # node, input, bad value, words the one error must contain
    ("patch", "dense_blocks", "abc,-3", ["'abc,-3'", "0,1,39", "Fix"]),
    ("patch", "dense_blocks", "3-1", ["3-1", "1-3"]),
    ("patch", "block_size", 77, ["77", "128", "64"]),
    ("patch", "family", "sdxl", ["sdxl", "wan21", "wan22_14b"]),  # only the Wan families can be named
    ("patch", "family", "hunyuan", ["hunyuan", "auto", "wan22_14b"]),  # detected from the weights
    ("patch", "dist1", "quarter", ["quarter", "full", "half"]),
    ("patch", "backend", "cuda", ["cuda", "triton", "pytorch"]),
    ("patch", "precision", "fp16", ["fp16", "exact", "int8-qk"]),
    ("patch", "decay_factor", 11.0, ["11", "10"]),
    ("patch", "dense_steps_first", 5000, ["5000", "1000"]),
    ("preview", "block_size", "77", ["77", "128", "64"]),
    ("preview", "family", "sdxl", ["sdxl", "wan21"]),
    ("preview", "width", 99999, ["99999", "8192"]),
    ("preview", "frames", 0, ["0", "1"]),
    ("preview", "text_tokens", 5000, ["5000", "4096"]),
    ("preview", "image_size", 64, ["64", "128"]),
    ("lora", "lora_name", "absent_lora.safetensors", ["absent_lora.safetensors"]),
    ("lora", "dense_blocks", "first two", ["'first two'", "none", "0,1,39"]),
    ("lora", "strength", 1000.0, ["1000", "100"]),
    ("lora", "decay_factor", 11.0, ["11", "10"]),  # the same maximum as the patch node's (was 4)
    ("lora", "radial_mode", "always", ["always", "lora_only"]),
    ("lora", "block_size", "96", ["96", "from LoRA", "128"]),
    # finite values only: ComfyUI's own min/max check is false for NaN (nodes/validation.py)
    ("patch", "decay_factor", float("nan"), ["nan", "finite number from 0 to 10", "Fix"]),
    ("patch", "decay_factor", "nan", ["nan", "finite number from 0 to 10", "Fix"]),
    ("patch", "decay_factor", float("inf"), ["inf", "10", "Fix"]),
    ("preview", "decay_factor", float("nan"), ["nan", "finite number from 0 to 10", "Fix"]),
    ("lora", "strength", float("nan"), ["nan", "finite number from -100 to 100", "Fix"]),
    ("lora", "strength", "nan", ["nan", "finite number from -100 to 100", "Fix"]),
    ("lora", "strength", float("-inf"), ["inf", "-100", "Fix"]),
    ("lora", "decay_factor", float("nan"), ["nan", "finite number from 0 to 10", "Fix"]),
    ("lora", "dense_steps_first", float("inf"), ["inf"]),
    ("lora", "dense_steps_first", -5, ["-5", "-1", "-1 = from the LoRA", "Fix"]),
    ("patch", "dense_steps_first", 5000, ["5000", "1000", "Fix"]),
    # dense_blocks: one grammar with an index cap, refused at queue time
    ("patch", "dense_blocks", "0-999999999", ["999999999", "1023", "Fix"]),
    ("lora", "dense_blocks", "0-999999999", ["999999999", "1023", "Fix"]),
    ("lora", "dense_blocks", "0 - x", ["'0 - x'", "0,1,39"]),
]


def build(server, node, **change):
    if node == "patch":
        return patch_prompt(**change)
    if node == "preview":
        return preview_prompt(**change)
    return lora_prompt(server, **change)


@pytest.mark.parametrize("node,name,value,words", BAD, ids=[f"{n}-{i}-{v}" for n, i, v, _ in BAD])
def test_one_bad_value_gives_one_error_on_its_input(server, node, name, value, words):
    status, body = queue(server, build(server, node, **{name: value}))
    assert status == 400, body
    assert body["error"]["type"] == "prompt_outputs_failed_validation", body
    errors = node_errors(body, "2")
    ours = [e for e in errors if e["extra_info"].get("input_name") == name]
    others = [e for e in errors if e not in ours]
    assert len(ours) == 1, f"{len(ours)} errors on {name}: {errors}"
    message = text_of(ours[0])
    for w in words:
        assert w in message, f"{w!r} not in {message!r}"
    # nothing else of the node is blamed (a lora_name error only where the server has no LoRA)
    allowed = set() if lora_options(server) or node != "lora" else {"lora_name"}
    assert {e["extra_info"].get("input_name") for e in others} <= allowed, others


@pytest.mark.parametrize("value", ["exact", "int8-qk", "fp8"])
def test_precision_and_its_old_name_pass_validation(server, value):
    """A workflow saved with precision "fp8" (the old name of "int8-qk") still queues; the
    dropdown offers only the current names."""
    status, body = queue(server, patch_prompt(precision=value))
    assert node_errors(body, "2") == [], body
    info = server.get_json("/object_info/RadialAttentionPatch")["RadialAttentionPatch"]["input"]["optional"]
    spec = info["precision"]
    assert (spec[0] if isinstance(spec[0], list) else spec[1]["options"]) == ["exact", "int8-qk"]


@pytest.mark.parametrize("node", ["patch", "preview", "lora"])
def test_good_values_pass_validation(server, node):
    status, body = queue(server, build(server, node))
    errors = node_errors(body, "2")
    if node == "lora" and not lora_options(server):
        assert [e["extra_info"]["input_name"] for e in errors] == ["lora_name"], errors
    else:
        assert errors == [], errors
    if node == "preview":
        assert status == 200, body


@pytest.mark.parametrize("node", ["patch", "lora"])
@pytest.mark.parametrize("text", ["0 - 3", "none", "5,", " 2 "])
def test_one_dense_blocks_grammar_on_both_nodes(server, node, text):
    """What one node accepts, the other does too (the loader took "0 - 3" and failed at run time)."""
    status, body = queue(server, build(server, node, dense_blocks=text))
    assert [e for e in node_errors(body, "2") if e["extra_info"].get("input_name") == "dense_blocks"] == [], body


def test_two_bad_values_give_two_errors_each_on_its_input(server):
    status, body = queue(server, patch_prompt(block_size=77, dense_blocks="x"))
    assert status == 400
    names = sorted(e["extra_info"]["input_name"] for e in node_errors(body, "2"))
    assert names == ["block_size", "dense_blocks"], node_errors(body, "2")


def test_a_long_paste_is_not_echoed_whole(server):
    status, body = queue(server, patch_prompt(dense_blocks="x" * 5000))
    assert status == 400
    (error,) = node_errors(body, "2")
    assert len(error["details"]) < 400, len(error["details"])


def test_dense_blocks_accepted_at_queue_time_are_read_by_the_patch(comfy):
    """What validation lets through, the patch can read (and what it refuses, the patch refuses)."""
    validation = comfy.pack_module("nodes.validation")
    parse = comfy.pack_module("nodes.radial_patcher").parse_dense_blocks
    for text in ["", "0", "1", "40", "0,1,39", "0-3", "0-3,39", "5,", " 2 ", "0 - 3", "none", "0-1023"]:
        assert validation.dense_blocks_problem(text) is None, text
        parse(text)
    for text in ["abc", "-3", "1,-3", "a-b", "1.5", "3-1", "one", "0-999999999", "1025", "\u0661"]:
        assert validation.dense_blocks_problem(text) is not None, text
        with pytest.raises(ValueError):
            parse(text)
