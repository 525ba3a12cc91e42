"""Calibration arithmetic (radial_core.calibration) against an independent float64 softmax.

The node's sums (energy per frame distance, per in-frame distance, on the other tokens and inside
each radial mask) must equal the same sums taken from the full ``[S, S]`` float64 softmax with the
token-level mask, for odd sizes, text first and last, batch 2, several decays, blocks 64 and 128.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radial_core import calibration as cal
from radial_core.reference import expand_block_mask


def _reference(q, k, rows, geo, masks, block_size, kpm=None):
    B, H, S, D = q.shape
    s = (q.double() @ k.double().transpose(-1, -2)) / D ** 0.5
    if kpm is not None:
        s = s.masked_fill(~kpm[:, None, None, :], float("-inf"))
    p = torch.softmax(s, dim=-1)[:, :, rows]  # [B, H, R, S]
    e = p.sum(dim=(0, 1))  # [R, S]
    F, T, v0 = geo.frames, geo.tokens_per_frame, geo.video_start
    temporal = np.zeros(F)
    spatial = np.zeros(T)
    tkeys = np.zeros(F)
    skeys = np.zeros(T)
    other = 0.0
    for i, r in enumerate(rows.tolist()):
        fq, rq = divmod(r - v0, T)
        for c in range(S):
            val = float(e[i, c])
            if not v0 <= c < v0 + F * T:
                other += val
                continue
            fk, ck = divmod(c - v0, T)
            temporal[abs(fq - fk)] += val
            spatial[abs(rq - ck)] += val
            tkeys[abs(fq - fk)] += B * H
            skeys[abs(rq - ck)] += B * H
    kept = []
    for m in masks:
        tok = expand_block_mask(m.blocks, block_size, S)[rows]  # [R, S]
        kept.append(float((e * tok.double()).sum()))
    return temporal, tkeys, spatial, skeys, other, float(e.sum()), np.array(kept)


@pytest.mark.parametrize("frames, tpf, text, text_first, block, model", [
    (5, 37, 0, False, 64, "wan"),
    (6, 29, 11, False, 64, "hunyuan"),
    (4, 53, 19, True, 128, "hunyuan"),
    (7, 45, 0, False, 128, "wan"),
])
def test_sums_equal_full_float64_softmax(frames, tpf, text, text_first, block, model):
    g = torch.Generator().manual_seed(frames * 100 + tpf)
    geo = cal.CallGeometry(frames, tpf, text, text_first)
    B, H, D = 2, 3, 16
    S = geo.seq_len
    q = torch.randn(B, H, S, D, generator=g) * 2
    k = torch.randn(B, H, S, D, generator=g) * 2
    kpm = None
    if text:  # the second prompt's text is padded: its last 4 keys take no mass
        kpm = torch.ones(B, S, dtype=torch.bool)
        end = (geo.text_tokens if text_first else S)
        kpm[1, end - 4:end] = False
    rows = cal.sample_rows(geo, 23, torch.Generator().manual_seed(1))
    assert rows.numel() == 23 and bool((rows >= geo.video_start).all())
    decays = (0.1, 0.3, 1.0, 4.0)
    masks = [cal.mask_for(geo, d, block_size=block, model=model, dist1="full") for d in decays]
    got = cal.attention_energy(q, k, rows, geo, masks, block, key_padding_mask=kpm, head_chunk=2)
    t, tk, s, sk, other, total, kept = _reference(q, k, rows, geo, masks, block, kpm)
    np.testing.assert_allclose(got.temporal, t, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.temporal_keys, tk)
    np.testing.assert_allclose(got.spatial, s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.spatial_keys, sk)
    assert got.other == pytest.approx(other, rel=1e-5, abs=1e-6)
    assert got.total == pytest.approx(total, rel=1e-6)
    assert got.total == pytest.approx(B * H * 23, rel=1e-5)  # every softmax row holds one
    np.testing.assert_allclose(got.kept, kept, rtol=1e-5, atol=1e-6)
    assert got.rows == B * H * 23


def test_one_head_at_a_time_gives_the_same_sums():
    """Head chunks of one (the GPU's memory bound at full size) and of all heads agree."""
    g = torch.Generator().manual_seed(3)
    geo = cal.CallGeometry(5, 40, 7, False)
    q, k = (torch.randn(1, 4, geo.seq_len, 8, generator=g) for _ in range(2))
    rows = cal.sample_rows(geo, 17, torch.Generator().manual_seed(2))
    masks = [cal.mask_for(geo, d, block_size=64, model="hunyuan", dist1="full") for d in (0.2, 1.0)]
    a = cal.attention_energy(q, k, rows, geo, masks, 64, head_chunk=1)
    b = cal.attention_energy(q, k, rows, geo, masks, 64, head_chunk=4)
    np.testing.assert_allclose(a.kept, b.kept, rtol=1e-6)
    np.testing.assert_allclose(a.temporal, b.temporal, rtol=1e-6)
    assert a.total == pytest.approx(b.total, rel=1e-6)


def test_fit_rate_recovers_a_planted_exponential():
    keys = np.array([10.0, 20.0, 20.0, 20.0, 20.0])
    energy = keys * np.exp(-0.7 * np.arange(5))
    assert cal.fit_rate(energy, keys) == pytest.approx(0.7)
    assert cal.fit_rate(np.ones(1), np.ones(1)) is None


def test_rule_lowest_density_dense_blocks_and_steps():
    decays, dens = (0.1, 0.5, 1.0), (0.2, 0.4, 0.6)
    kept = {(s, b): np.array([0.90, 0.97, 0.99]) for s in (0, 5, 10) for b in range(4)}
    r = cal.recommend(kept, dens, decays, steps_total=20, target=0.95)
    assert (r.decay, r.dense_blocks, r.dense_steps, r.dense) == (0.5, (), 0, False)
    kept[(0, 2)] = np.array([0.5, 0.6, 0.7])  # block 2 fails at step 0 only
    kept[(5, 3)] = np.array([0.5, 0.6, 0.7])  # block 3 fails at step 5
    kept[(10, 3)] = np.array([0.5, 0.6, 0.7])
    r = cal.recommend(kept, dens, decays, steps_total=20, target=0.95)
    assert r.decay == 0.5 and r.dense_blocks == (3,) and r.dense_steps == 5
    assert r.dense_blocks_text() == "3,"
    assert r.kept_min >= 0.95
    flat = {(s, b): np.array([0.2, 0.4, 0.6]) for s in (0, 5) for b in range(4)}
    r = cal.recommend(flat, dens, decays, steps_total=20, target=0.95, dense_reason="flat")
    assert r.dense and "flat" in r.why


def test_decay_candidates_drop_identical_masks():
    geo = cal.CallGeometry(6, 64, 0, False)
    decays, dens = cal.decay_candidates(geo, block_size=64, model="wan", dist1="full")
    assert len(decays) == len(set(dens)) or len(decays) < len(cal.DECAY_LADDER)
    assert list(decays) == sorted(decays)
