"""The pack's Ulysses sequence-parallel call (nodes/sequence_parallel.py) on CPU.

Layout checks run in-process; the distributed runs spawn 2, 3 and 4 gloo ranks (tests/sp_ranks.py)
and compare every rank's output with the one-process override, bit for bit: no padding, a padded
tail, 3 ranks, HunyuanVideo-like joint text (raylight's per-rank ``[text_r | video_r]`` in the
double blocks, ``[text | video]`` in the single ones), raylight's CFG split (one cond of the
model call's batch per group), and an LTX-2-like width (video goes sparse,
the audio width stays on raylight's path although the local call has fewer heads).
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import sp_ranks
from conftest import pack_module

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available in this torch build")


@pytest.fixture(scope="module")
def sp():
    return pack_module("nodes.sequence_parallel")


@pytest.mark.parametrize("per_rank", [False, True])
@pytest.mark.parametrize("text_first", [False, True])
@pytest.mark.parametrize("n, text, video", [(2, 0, 384), (3, 0, 385), (4, 7, 390), (3, 5, 12)])
def test_gather_order_round_trips(sp, per_rank, text_first, n, text, video):
    segs = (("text", text), ("video", video)) if text else (("video", video),)
    chunk = lambda x: -(-x // n)  # noqa: E731
    padded = n * sum(chunk(x) for _, x in segs) if per_rank else n * chunk(text + video)
    layout = sp.SPLayout(n, padded, segs, per_rank, text_first)
    assert layout.valid()
    gathered = torch.arange(padded, dtype=torch.float32).view(1, padded, 1, 1)
    canon = sp.to_canonical(gathered, layout)
    assert canon.shape[1] == text + video and len(set(canon.flatten().tolist())) == text + video
    back = sp.from_canonical(canon, layout)
    kept = back.flatten() != 0
    assert torch.equal(back.flatten()[kept], gathered.flatten()[kept])
    assert int(kept.sum()) >= text + video - 1  # position 0 holds the value 0
    if text and per_rank:  # the first video token sits after rank 0's text chunk
        first_video = canon.flatten()[text if text_first else 0].item()
        assert first_video == chunk(text)


CASES_2 = [
    # the written-out all-to-all (serves where yunchang is not installed): yunchang's layout, both ways
    {"all_to_all": True},
    dict(kind="plain", frames=6, tpf=64, heads=4),  # no padding
    dict(kind="plain", frames=5, tpf=61, heads=4),  # 305 tokens: padded tail
    dict(kind="plain", frames=6, tpf=64, heads=4, fwd_batch=2),  # a CFG-parallel group's half of the batch
    dict(kind="joint", block_type="double", frames=6, tpf=64, text=13, heads=4),
    dict(kind="joint", block_type="single", frames=6, tpf=64, text=13, heads=4),
    dict(kind="joint", block_type="double", frames=5, tpf=61, text=9, heads=4, text_first=True),
    dict(kind="plain", ltx=True, frames=6, tpf=64, heads=4),  # LTX-2 video: sparse
    dict(kind="plain", ltx=True, frames=6, tpf=64, heads=4, width=2 * 16, expect_dense=True),  # its audio
]
CASES_3 = [dict(kind="plain", frames=5, tpf=61, heads=6), dict(kind="joint", block_type="double", frames=5,
                                                             tpf=61, text=7, heads=6)]
CASES_4 = [dict(kind="plain", frames=7, tpf=50, heads=8),
           dict(kind="joint", block_type="double", frames=6, tpf=64, text=13, heads=8)]


@pytest.mark.parametrize("n, cases", [(2, CASES_2), (3, CASES_3), (4, CASES_4)], ids=["2-ranks", "3-ranks", "4-ranks"])
def test_ulysses_ranks_match_the_one_process_override_bit_for_bit(n, cases, tmp_path):
    _spawn(n, tmp_path, cases)


def _spawn(n, tmp_path, cases):
    mp.spawn(sp_ranks.run_rank, args=(n, str(tmp_path / "gloo-init"), cases), nprocs=n, join=True)


def _fake_raylight(monkeypatch, name, **attrs):
    import sys
    import types

    mod = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(mod, key, value)
    monkeypatch.setitem(sys.modules, name, mod)
    return mod


def test_raylight_attention_is_bound_once_and_late_modules_at_the_first_model_call(sp, monkeypatch):
    wan = "raylight.diffusion_models.wan.xdit_context_parallel"
    ltx = "raylight.diffusion_models.lightricks.xdit_context_parallel"
    original = lambda *a, **k: "raylight"  # noqa: E731
    mod = _fake_raylight(monkeypatch, wan, xfuser_optimized_attention=original)
    assert sp.rebind_raylight(import_missing=False) == [wan]
    bound = mod.xfuser_optimized_attention
    assert isinstance(bound, sp.RadialUlyssesAttention) and bound.original is original and bound.kind == "plain"
    sp.rebind_raylight(import_missing=False)
    assert mod.xfuser_optimized_attention is bound, "bound once, never wrapped twice"
    # raylight imports a family's module when it injects USP at model load: the wrapper binds it
    late = _fake_raylight(monkeypatch, ltx, xfuser_optimized_attention=original)
    seen = {}
    out = sp._DiffusionModelWrapper()(lambda *a, **k: seen.setdefault("topts", sp._CURRENT.get()), 1,
                                      transformer_options={"x": 1})
    assert isinstance(late.xfuser_optimized_attention, sp.RadialUlyssesAttention)
    assert out == {"x": 1} and sp._CURRENT.get() is None, "the call's options only while it runs"
    # outside a patched model call every call is raylight's
    assert bound(None, None, None, 1) == "raylight"


def test_a_raylight_without_the_name_keeps_its_attention_and_says_so_once(sp, monkeypatch, caplog):
    name = "raylight.diffusion_models.flux.xdit_context_parallel"
    _fake_raylight(monkeypatch, name)
    monkeypatch.setattr(sp, "_TOLD", set())
    with caplog.at_level("WARNING"):
        assert name not in sp.rebind_raylight(import_missing=False)
        sp.rebind_raylight(import_missing=False)
    told = [r.getMessage() for r in caplog.records if name in r.getMessage()]
    assert len(told) == 1 and sp.RAYLIGHT_TESTED in told[0], told
