"""radial_core.radial_block_mask against the specification (../shared/docs/radial-mask-spec.md)."""

import math
import random

import pytest
import torch

from radial_core import mask_density, radial_block_mask
from mask_reference import previous_block_mask, random_builder_cases, spec_block_mask

# The public figures of the spec: (F, T, text, block, decay, model, dist1) -> (nb, kept blocks)
PUBLIC_FIGURES = [
    ((18, 3840, 0, 128, 0.2, "wan", "half"), (540, 76798)),
    ((18, 3840, 0, 128, 0.2, "wan", "full"), (540, 83728)),
    ((33, 2040, 256, 128, 0.95, "hunyuan", "full"), (528, 71704)),
    ((31, 880, 0, 128, 0.2, "wan", "full"), (214, 13710)),
]


def _mask(F, T, text=0, b=128, decay=1.0, model="wan", dist1="full"):
    return radial_block_mask(F, T, text_tokens=text, block_size=b, decay_factor=decay, model=model, dist1=dist1)


@pytest.mark.parametrize("args,expected", PUBLIC_FIGURES)
def test_public_figures(args, expected):
    m = _mask(*args)
    assert m.dtype == torch.bool and m.device.type == "cpu"
    assert tuple(m.shape) == (expected[0], expected[0])
    assert int(m.sum()) == expected[1]


def test_public_sparsity_figure():
    m = _mask(18, 3840, 0, 128, 0.2, "wan", "half")
    assert round(1 - mask_density(m), 4) == 0.7366


# Shapes where T is / is not a multiple of the block, block 64, text lengths, tiny videos.
HAND_PICKED = [
    (1, 1, 0, 128, 1.0, "wan", "full"),
    (1, 300, 77, 128, 1.0, "hunyuan", "full"),
    (2, 130, 0, 128, 0.2, "wan", "half"),
    (3, 45, 0, 64, 1.0, "wan", "full"),
    (3, 256, 226, 128, 0.95, "hunyuan", "full"),
    (5, 200, 0, 64, 0.5, "wan", "half"),
    (6, 127, 256, 128, 0.8, "hunyuan", "full"),
    (7, 64, 0, 64, 1.0, "wan", "full"),
    (9, 128, 0, 128, 1.0, "hunyuan", "full"),
    (9, 390, 77, 64, 0.3, "hunyuan", "full"),
    (11, 520, 0, 128, 0.2, "wan", "full"),
    (12, 33, 0, 128, 1.0, "wan", "full"),
    (17, 16, 5, 64, 1.0, "hunyuan", "full"),
]


@pytest.mark.parametrize("args", HAND_PICKED)
def test_matches_literal_spec(args):
    assert torch.equal(_mask(*args), spec_block_mask(*args))


def _random_cases(n, seed=1234):
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        F = rng.randint(1, 12)
        T = rng.choice([rng.randint(1, 64), rng.randint(65, 300), rng.randint(300, 700)])
        b = rng.choice([64, 128])
        model = rng.choice(["wan", "hunyuan"])
        text = rng.choice([0, 0, 77, 226, 256, rng.randint(1, 300)]) if model == "hunyuan" else 0
        decay = rng.choice([0.2, 0.5, 0.8, 0.95, 1.0, 1.7])
        dist1 = rng.choice(["full", "half"])
        cases.append((F, T, text, b, decay, model, dist1))
    return cases


@pytest.mark.parametrize("args", _random_cases(40))
def test_matches_literal_spec_random(args):
    assert torch.equal(_mask(*args), spec_block_mask(*args))


def _text_first_cases(n, seed=99):
    rng = random.Random(seed)
    cases = [
        (9, 390, 77, 64, 0.3),
        (5, 300, 128, 128, 0.95),
        (4, 200, 64, 64, 0.2),
        (6, 127, 256, 128, 0.95),
        (3, 256, 226, 128, 0.95),
        (2, 130, 1, 128, 1.0),
    ]
    for _ in range(n):
        cases.append((rng.randint(1, 12), rng.choice([rng.randint(1, 64), rng.randint(65, 500)]),
                      rng.choice([77, 226, 256, rng.randint(1, 300)]), rng.choice([64, 128]),
                      rng.choice([0.2, 0.8, 0.95, 1.0])))
    return cases


@pytest.mark.parametrize("F,T,text,b,decay", _text_first_cases(12))
def test_text_first_matches_literal_spec(F, T, text, b, decay):
    """[text | video] (HunyuanVideo in ComfyUI 0.5+): the frames' blocks sit after the text."""
    got = radial_block_mask(F, T, text_tokens=text, block_size=b, decay_factor=decay, model="hunyuan", text_first=True)
    want = spec_block_mask(F, T, text, b, decay, "hunyuan", "full", text_first=True)
    assert torch.equal(got, want)
    lead = -(-text // b)
    assert got[:lead].all() and got[:, :lead].all()
    if (F * T + text) % b:  # the block holding the end of the video is dense (as video-first)
        assert got[-1].all() and got[:, -1].all()
    if text % b == 0:  # block-aligned text: the video blocks are those of the video-first mask
        after = radial_block_mask(F, T, text_tokens=text, block_size=b, decay_factor=decay, model="hunyuan")
        vb = (F * T) // b  # whole video blocks (video-first makes the border block dense)
        assert torch.equal(got[lead:lead + vb, lead:lead + vb], after[:vb, :vb])


def _equivalence_cases(n, seed=2026):
    """Random shapes for the numpy builder against the previous torch builder (both fast): long
    videos up to 128 frames, odd and tiny token counts, text after or before the video, both
    models, both dist1 rules, both block sizes, decays from very sparse to dense."""
    cases = [
        (127, 3599, 0, 128, 1.0, "wan", "full", False),
        (127, 3599, 0, 64, 1.0, "wan", "full", False),
        (128, 3600, 0, 64, 0.2, "wan", "half", False),
        (33, 3600, 256, 128, 0.95, "hunyuan", "full", True),
        (40, 1, 3, 64, 1.0, "hunyuan", "full", True),
        (9, 64, 0, 64, 1.0, "wan", "full", False),
        (4, 16127, 0, 128, 0.5, "wan", "half", False),
        (3, 16300, 77, 64, 1.0, "hunyuan", "full", True),
    ]  # int16 / int32
    return random_builder_cases(n, seed, cases)


def test_matches_previous_builder_random():
    """The block decision is unchanged by the numpy rewrite of the builder (issue 13, item 3):
    bit for bit against the previous torch builder, kept in tests/mask_reference.py."""
    cases = _equivalence_cases(80)
    mismatched = [
        c
        for c in cases
        if not torch.equal(
            radial_block_mask(
                c[0],
                c[1],
                text_tokens=c[2],
                block_size=c[3],
                decay_factor=c[4],
                model=c[5],
                dist1=c[6],
                text_first=c[7],
            ),
            previous_block_mask(*c),
        )
    ]
    assert not mismatched, f"{len(mismatched)} of {len(cases)} shapes differ, e.g. {mismatched[:3]}"


def test_interval_painters_agree():
    """The run-length painter (ordered intervals) and the scatter fallback set the same blocks;
    the run-length painter refuses intervals out of order instead of painting them wrongly."""
    import numpy as np

    from radial_core import mask as mask_module

    rng = np.random.default_rng(5)
    size = 5000
    first = np.sort(rng.integers(0, size - 40, 700))
    length = rng.integers(0, 40, 700)
    length[rng.random(700) < 0.3] = 0
    length[::50] = 45  # some intervals reach over later ones
    want = np.zeros(size, dtype=np.bool_)
    for f, n in zip(first, length):
        want[f:f + n] = True
    got = np.zeros(size, dtype=np.bool_)
    mask_module._paint_scatter(got, first, length)
    assert np.array_equal(got, want)
    kept = length > 0  # the run-length painter takes non-empty intervals, a chunk at a time
    first, length = first[kept], length[kept]
    n = first.size
    assert np.array_equal(mask_module._paint_runs(size, [(first, length)], n), want)
    # chunks that end right after an interval reaching over the next ones, and an empty chunk
    cuts = [0, *(np.flatnonzero(length == 45)[:4] + 1), n]
    cuts.insert(2, cuts[1])
    chunks = [(first[a:z], length[a:z]) for a, z in zip(cuts, cuts[1:])]
    assert np.array_equal(mask_module._paint_runs(size, chunks, n), want)  # runs carried across chunks
    assert mask_module._paint_runs(size, [(first[::-1].copy(), length[::-1].copy())], n) is None
    assert mask_module._paint_runs(size, [(first[200:], length[200:]), (first[:200], length[:200])], n) is None


@pytest.mark.parametrize("F,T,text,b", [(7, 300, 0, 128), (5, 333, 77, 64), (13, 200, 256, 128), (2, 5, 0, 64)])
def test_shape_and_structure(F, T, text, b):
    for model in ("wan", "hunyuan"):
        m = _mask(F, T, text, b, 0.5, model)
        nb = math.ceil((F * T + text) / b)
        assert m.shape == (nb, nb)
        assert bool(m.diagonal().all()), "every query block must see its own block"
        border = (F * T) // b
        assert bool(m[border:].all()) and bool(m[:, border:].all())
        if model == "wan":  # attention sink: the blocks of frame 0 are seen by every query
            assert bool(m[:, : max(1, T // b)].all())


@pytest.mark.parametrize("F,T,text", [(10, 256, 0), (8, 512, 256), (12, 128, 128)])
def test_symmetric_when_aligned(F, T, text):
    """HunyuanVideo (no sink) on block-aligned frames gives a symmetric mask."""
    m = _mask(F, T, text, 128, 0.7, "hunyuan")
    assert torch.equal(m, m.T)


def test_density_decreases_with_decay_and_length():
    d = [mask_density(_mask(21, 3600, 0, 128, dec)) for dec in (2.0, 1.0, 0.5, 0.2)]
    assert d == sorted(d, reverse=True) and d[0] > d[-1]
    long = [mask_density(_mask(F, 3600, 0, 128, 1.0)) for F in (21, 41, 81)]
    assert long == sorted(long, reverse=True)


def test_all_kept_with_large_decay_short_video():
    # two frames: distance <= 1 everywhere, dist1="full" keeps everything
    assert bool(_mask(2, 1560, 0, 128, 1.0, "wan", "full").all())


def test_cache_returns_independent_copies():
    a = _mask(5, 300)
    a[:] = False
    b = _mask(5, 300)
    assert bool(b.diagonal().all())


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        (dict(num_frames=0, tokens_per_frame=10), "num_frames"),
        (dict(num_frames=3, tokens_per_frame=0), "tokens_per_frame"),
        (dict(num_frames=3, tokens_per_frame=10, block_size=96), "block_size"),
        (dict(num_frames=3, tokens_per_frame=10, model="mochi"), "model"),
        (dict(num_frames=3, tokens_per_frame=10, dist1="quarter"), "dist1"),
        (dict(num_frames=3, tokens_per_frame=10, decay_factor=0), "decay_factor"),
        (dict(num_frames=3, tokens_per_frame=10, decay_factor=float("nan")), "decay_factor"),
        (dict(num_frames=3, tokens_per_frame=10, text_tokens=-1), "text_tokens"),
        (dict(num_frames=2.5, tokens_per_frame=10), "num_frames"),
    ],
)
def test_bad_arguments(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        radial_block_mask(**kwargs)


# --- geometry ------------------------------------------------------------------------------
from radial_core.families import default_decay  # noqa: E402
from radial_core.geometry import geometry_from_latent, geometry_from_pixels  # noqa: E402


def test_geometry_matches_spec_examples():
    g = geometry_from_pixels("wan21", 1280, 768, 69)
    assert (g.num_frames, g.tokens_per_frame, g.text_tokens) == (18, 3840, 0)
    g = geometry_from_pixels("hunyuan", 960, 544, 129)
    assert (g.num_frames, g.tokens_per_frame, g.text_tokens) == (33, 2040, 256)
    g = geometry_from_pixels("wan22_5b", 1280, 704, 121)
    assert (g.num_frames, g.tokens_per_frame) == (31, 880)
    assert int(g.block_mask(decay_factor=0.2).sum()) == 13710
    g = geometry_from_pixels("wan21", 1280, 720, 81)
    assert (g.num_frames, g.tokens_per_frame, g.seq_len) == (21, 3600, 75600)


def test_geometry_odd_sizes_pad_to_patch():
    g = geometry_from_latent((5, 33, 47), (1, 2, 2))
    assert (g.num_frames, g.height_tokens, g.width_tokens) == (5, 17, 24)
    assert default_decay("wan21") == 0.2 and default_decay("hunyuan") == 0.95


@pytest.mark.parametrize("bad", [dict(family="sd15"), dict(width=0), dict(frames=-3), dict(width=4)])
def test_geometry_bad_input(bad):
    args = dict(family="wan21", width=832, height=480, frames=81)
    args.update(bad)
    with pytest.raises(ValueError):
        geometry_from_pixels(**args)
