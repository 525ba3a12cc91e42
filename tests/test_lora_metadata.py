"""radial_core.lora.scale and radial_core.lora.metadata: LoRA scale from configs and the radial
metadata a LoRA carries (pure Python, no ComfyUI)."""

import logging
import math

import pytest

from radial_core.lora import metadata as lr
from radial_core.lora import scale as ls


def test_peft_scale_plain_rslora_and_patterns():
    s = ls.parse_peft_config({"r": 16, "lora_alpha": 8}, "cfg")
    assert s.scale_for("blocks.0.attn1.to_q", 16) == pytest.approx(0.5)
    assert s.alpha_tensor_value("blocks.0.attn1.to_q", 16) == pytest.approx(8.0)
    rs = ls.parse_peft_config({"r": 16, "lora_alpha": 8, "use_rslora": True}, "cfg")
    assert rs.scale_for("x", 16) == pytest.approx(8 / math.sqrt(16))
    pat = ls.parse_peft_config(
        {"r": 16, "lora_alpha": 16, "rank_pattern": {"attn1.to_q": 4}, "alpha_pattern": {"attn1.to_q": 8}}, "cfg"
    )
    assert pat.scale_for("transformer.blocks.0.attn1.to_q", 4) == pytest.approx(2.0)
    assert pat.scale_for("transformer.blocks.0.attn1.to_k", 16) == pytest.approx(1.0)
    diffusers_meta = ls.parse_peft_config({"transformer.r": 4, "transformer.lora_alpha": 2}, "meta")
    assert diffusers_meta.scale_for("x", 4) == pytest.approx(0.5)
    authors = ls.parse_peft_config({"lora_params": {"lora_rank": 128, "lora_alpha": 64}}, "cfg")
    assert authors.rank == 128 and authors.scale_for("x", 128) == pytest.approx(0.5)
    assert ls.parse_peft_config({"r": 4}, "cfg") is None
    with pytest.raises(ValueError, match="rank/alpha must be numbers"):
        ls.parse_peft_config({"r": "sixteen", "lora_alpha": 8}, "cfg")
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        ls.parse_peft_config({"r": 0, "lora_alpha": 8}, "cfg")


def test_radial_defaults_without_metadata():
    s = lr.resolve_radial_settings({})
    assert s.values == {
        "decay_factor": None, "block_size": 128, "dense_blocks": "2",
        "dense_steps_first": 2, "dense_steps_last": 0, "dist1": "full", "family": "auto",
    }
    assert set(s.sources.values()) == {"default"}


def test_radial_flat_and_json_metadata_and_overrides():
    meta = {
        "radial_attn.decay_factor": "0.2", "radial_attn.block_size": "64",
        "radial_attn.dense_blocks": "0,1,39", "radial_attn.dense_steps": "3",
        "radial_attn.dist1": "half", "radial_attn.tuned_frames": "161", "ss_network_dim": "16",
    }
    s = lr.resolve_radial_settings(meta)
    assert s.values == {
        "decay_factor": 0.2, "block_size": 64, "dense_blocks": "0,1,39",
        "dense_steps_first": 3, "dense_steps_last": 0, "dist1": "half", "family": "auto",
    }
    assert s.sources["decay_factor"] == "metadata" and s.sources["dense_steps_last"] == "default"
    assert s.info == {"tuned_frames": "161"}
    blob = {"radial_attn": '{"decay_factor": 0.8, "dense_layers": 1, "dense_timesteps": 0}'}
    s2 = lr.resolve_radial_settings(blob, overrides={"decay_factor": 0.5, "dist1": "half"})
    assert s2.values["decay_factor"] == 0.5 and s2.sources["decay_factor"] == "override"
    assert s2.values["dense_blocks"] == "1" and s2.values["dense_steps_first"] == 0
    assert s2.values["dist1"] == "half"
    assert "decay_factor=0.5 (override)" in s2.describe()


@pytest.mark.parametrize(
    "raw,expected",
    [("2", "2"), (" 0,1,39 ", "0,1,39"), ("0-3,39", "0-3,39"), ("5,", "5,"), ("none", "0"), (3, "3"),
     ([5], "5,"), ([0, 1], "0,1")],
)
def test_dense_blocks_forms(raw, expected):
    assert lr.resolve_radial_settings({"radial_attn": {"dense_blocks": raw}}).values["dense_blocks"] == expected


def test_family_setting():
    s = lr.resolve_radial_settings({"radial_attn.family": "WAN22_14B"})
    assert s.values["family"] == "wan22_14b" and s.sources["family"] == "metadata"


@pytest.mark.parametrize(
    "key,value",
    [
        ("family", "sdxl"),
        ("dense_blocks", "1-"),
        ("decay_factor", "-0.1"),
        ("decay_factor", "abc"),
        ("block_size", "96"),
        ("dense_blocks", "two"),
        ("dense_steps", "-1"),
        ("dense_steps", "2.5"),
        ("dist1", "quarter"),
        # the settings contract's limits (radial_core.settings): finite, the nodes' ranges, capped indices
        ("decay_factor", "nan"),
        ("decay_factor", "inf"),
        ("decay_factor", "10.5"),
        ("dense_steps", "1001"),
        ("dense_blocks", "0-999999999"),
        ("dense_blocks", "0 - x"),
        ("dense_steps", "\u0661\u0662"),
    ],
)
def test_radial_bad_metadata_names_key_value_and_fix(key, value):
    with pytest.raises(ValueError) as e:
        lr.resolve_radial_settings({f"radial_attn.{key}": value}, source="/x/l.safetensors")
    msg = str(e.value)
    assert f"radial_attn.{key}" in msg and repr(value) in msg and "expected" in msg and "/x/l.safetensors" in msg


def test_radial_bad_metadata_is_refused_even_when_overridden():
    """A value outside the contract marks a broken file: refused as a whole, as the loader node
    refuses it when the prompt is queued (before it can see its overrides)."""
    with pytest.raises(ValueError, match=r"block_size = '96' is invalid.*radial\.json"):
        lr.resolve_radial_settings({"radial_attn.block_size": "96"}, overrides={"block_size": "128"})
    s = lr.resolve_radial_settings({"radial_attn.block_size": "64"}, overrides={"block_size": "128"})
    assert s.values["block_size"] == 128 and s.sources["block_size"] == "override"


def test_radial_bad_json_blob_and_unknown_keys(caplog):
    with pytest.raises(ValueError, match="not valid JSON"):
        lr.resolve_radial_settings({"radial_attn": "{oops"})
    with caplog.at_level(logging.WARNING):
        s = lr.resolve_radial_settings({"radial_attn.decay": "0.2"})
    assert s.ignored == ["decay"] and "radial_attn.decay" in caplog.text


def test_radial_metadata_writer_round_trips():
    meta = lr.radial_metadata(decay_factor=0.2, block_size=64, dense_blocks=[5], dense_steps=2, dist1="half",
                              family="wan22_14b", tuned_frames=161, dense_steps_last=None)
    assert meta == {
        "radial_attn.decay_factor": "0.2", "radial_attn.block_size": "64", "radial_attn.dense_blocks": "5,",
        "radial_attn.dense_steps": "2", "radial_attn.dist1": "half", "radial_attn.family": "wan22_14b",
        "radial_attn.tuned_frames": "161",
    }
    s = lr.resolve_radial_settings(meta)
    assert s.values == {"decay_factor": 0.2, "block_size": 64, "dense_blocks": "5,", "dense_steps_first": 2,
                        "dense_steps_last": 0, "dist1": "half", "family": "wan22_14b"}
    with pytest.raises(ValueError, match="unknown radial setting 'decay'"):
        lr.radial_metadata(decay=0.2)
    with pytest.raises(ValueError, match=r"block_size: 96 is not allowed. Allowed: one of 128, 64"):
        lr.radial_metadata(block_size=96)
    # what the patch takes, the writer takes (decay up to 10: one range everywhere)
    assert lr.radial_metadata(decay_factor=5.0) == {"radial_attn.decay_factor": "5.0"}
    for bad in (float("nan"), float("inf"), 10.5):
        with pytest.raises(ValueError, match="decay_factor: .*Allowed: a finite number from 0 to 10"):
            lr.radial_metadata(decay_factor=bad)
