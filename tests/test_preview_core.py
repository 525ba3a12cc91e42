"""radial_core.preview: figures and picture of the radial mask (no ComfyUI)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from radial_core import radial_block_mask
from radial_core import preview as P
from radial_core.families import default_decay, families
from radial_core.geometry import geometry_from_pixels

ROOT = Path(__file__).resolve().parents[1]


def brute_force_stats(mask, F, T, text, b):
    """Token-level expansion of the block mask (small shapes only) and block-centre distances."""
    S = F * T + text
    nb = mask.shape[0]
    tok = mask.repeat_interleave(b, 0).repeat_interleave(b, 1)[:S, :S]
    flop_density = tok.double().mean().item()
    frame_of_block = []
    for k in range(nb):
        mid = min(k * b + b // 2, S - 1)
        frame_of_block.append(mid // T if mid < F * T else -1)
    kept = [0] * F
    total = [0] * F
    for i in range(nb):
        for j in range(nb):
            fi, fj = frame_of_block[i], frame_of_block[j]
            if fi < 0 or fj < 0:
                continue
            d = abs(fi - fj)
            total[d] += 1
            kept[d] += int(mask[i, j])
    dist = [k / t if t else 0.0 for k, t in zip(kept, total)]
    return flop_density, dist


@pytest.mark.parametrize(
    "F,T,text,b,decay,model,dist1",
    [
        (7, 300, 0, 128, 0.2, "wan", "full"),  # T not a multiple of the block
        (9, 200, 77, 64, 0.95, "hunyuan", "full"),  # text not a multiple of the block
        (5, 128, 226, 128, 0.8, "wan", "half"),
        (3, 60, 0, 128, 1.0, "wan", "full"),  # tiny: frames smaller than a block
        (1, 1000, 256, 64, 1.0, "hunyuan", "full"),  # a single frame
    ],
)
def test_stats_equal_brute_force(F, T, text, b, decay, model, dist1):
    mask = radial_block_mask(F, T, text_tokens=text, block_size=b, decay_factor=decay, model=model,
                             dist1=dist1)
    s = P.mask_stats(mask, F, T, text_tokens=text, block_size=b)
    nb = mask.shape[0]
    assert s.num_blocks == nb == -(-(F * T + text) // b)
    assert s.tokens == F * T + text
    assert s.kept_blocks == int(mask.sum())
    assert s.density == pytest.approx(int(mask.sum()) / nb**2, rel=1e-12)
    flop_density, dist = brute_force_stats(mask, F, T, text, b)
    assert s.flop_density == pytest.approx(flop_density, rel=1e-12)
    assert s.flops_saved == pytest.approx(1 - flop_density, rel=1e-12)
    assert s.expected_speedup == pytest.approx(P.KERNEL_RATE_RATIO / flop_density, rel=1e-12)
    assert s.distance_density == pytest.approx(dist, abs=1e-6)
    assert len(s.distance_density) == F


def test_spec_figure_and_speedup():
    # the spec's public figure: Wan 2.1 768x1280x69, decay 0.2, half -> 76 798 kept, sparsity 0.7366
    mask = radial_block_mask(18, 3840, decay_factor=0.2, model="wan", dist1="half")
    s = P.mask_stats(mask, 18, 3840)
    assert s.num_blocks == 540 and s.kept_blocks == 76798
    assert round(s.flops_saved, 4) == 0.7366  # S = 540 * 128 exactly: block and FLOP density agree
    assert s.expected_speedup == pytest.approx(P.KERNEL_RATE_RATIO / (1 - 0.73661), rel=1e-3)
    # the diagonal and the attention sink are fully kept; far distances are thinned
    assert s.distance_density[0] == 1.0
    assert min(s.distance_density[2:]) < 0.3


def test_dense_mask_has_no_savings():
    mask = torch.ones(4, 4, dtype=torch.bool)  # 2 x 100 tokens + 30 text at block 64
    s = P.mask_stats(mask, 2, 100, text_tokens=30, block_size=64)
    assert s.density == 1.0 and s.flop_density == pytest.approx(1.0, rel=1e-12)
    assert s.flops_saved == pytest.approx(0.0, abs=1e-12)
    assert s.expected_speedup == pytest.approx(P.KERNEL_RATE_RATIO)
    assert s.distance_density == [1.0, 1.0]


def test_wrong_mask_shape_is_a_clear_error():
    mask = radial_block_mask(4, 256)
    with pytest.raises(ValueError, match=r"mask must be \[10, 10\] for 4 frames x 300 tokens .*got \[8, 8\]"):
        P.mask_stats(mask, 4, 300)


def test_estimate_per_family_uses_geometry_and_defaults():
    for family in families():
        est = P.estimate(family, 832, 480, 81)
        geo = geometry_from_pixels(family, 832, 480, 81)
        s = est.stats
        assert (s.num_frames, s.tokens_per_frame, s.text_tokens) == (
            geo.num_frames, geo.tokens_per_frame, geo.text_tokens)
        assert est.decay_factor == default_decay(family) and est.model == geo.mask_model
        assert s.text_first == geo.text_first == bool(families()[family].text_first)
        mask = radial_block_mask(geo.num_frames, geo.tokens_per_frame, text_tokens=geo.text_tokens,
                                 decay_factor=default_decay(family), model=geo.mask_model,
                                 text_first=geo.text_first)
        assert s.kept_blocks == int(mask.sum())
        assert families()[family].label in est.summary()


def test_estimate_too_large_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="too large for a preview.*Use fewer frames"):
        P.estimate("wan21", 8192, 8192, 2049)


def _pixel(img, x, y):
    return tuple(int(v) for v in img[y, x])


def test_render_small_mask_pixels():
    F, T, b = 8, 256, 128  # 2 blocks per frame, 16 x 16 blocks, 10 px per block
    mask = radial_block_mask(F, T, decay_factor=0.2, model="wan")
    img = P.render_mask(mask, F, T, block_size=b, model="wan", panel_size=160)
    assert img.dtype == torch.uint8 and img.dim() == 3 and img.shape[2] == 3
    scale = 10
    x0, y0 = 14, 30  # panel origin (margin, header)

    def centre(qi, ki):
        return x0 + ki * scale + scale // 2, y0 + qi * scale + scale // 2

    assert _pixel(img, *centre(1, 1)) == P.BAND_COLOURS[0]  # diagonal: d = 0
    assert _pixel(img, *centre(15, 0)) == P.SINK  # key frame 0: Wan's attention sink
    assert _pixel(img, *centre(2, 4)) == P.BAND_COLOURS[1] and bool(mask[2, 4])  # d = 1
    assert not bool(mask[0, 10]) and _pixel(img, *centre(0, 10)) == P.PANEL_EMPTY  # skipped
    assert bool(mask[0, 8]) and _pixel(img, *centre(0, 8)) == P.BAND_COLOURS[3]  # d = 4: 4-7
    # frame boundary between frames 0 and 1 (2 blocks in): the d = 1 colour darkened by the line
    line = _pixel(img, x0 + 2 * scale, y0 + 5)
    assert line == tuple(round(0.45 * c) for c in P.BAND_COLOURS[1])


def test_render_text_region_colour():
    F, T, text = 3, 256, 256  # text is the last quarter of the sequence (2 of 8 blocks)
    mask = radial_block_mask(F, T, text_tokens=text, model="hunyuan")
    img = P.render_mask(mask, F, T, text_tokens=text, model="hunyuan", panel_size=160)
    x0, y0, scale = 14, 30, 20
    assert _pixel(img, x0 + 7 * scale + 10, y0 + 7 * scale + 10) == P.TEXT_REGION
    assert _pixel(img, x0 + 7 * scale + 10, y0 + 0 * scale + 10) == P.TEXT_REGION
    assert _pixel(img, x0 + 6 * scale, y0 + 10) == P.TEXT_COLOUR  # video/text border line


@pytest.mark.parametrize("F,T,text,b", [(3, 256, 256, 128), (9, 200, 77, 64), (5, 300, 130, 128)])
def test_text_first_stats_equal_brute_force(F, T, text, b):
    """[text | video] (HunyuanVideo in ComfyUI 0.5+, MiniMax H3): blocks are assigned to frames
    after the text, and every figure is the text-first mask's own."""
    mask = radial_block_mask(F, T, text_tokens=text, block_size=b, decay_factor=0.5, model="hunyuan",
                             text_first=True)
    s = P.mask_stats(mask, F, T, text_tokens=text, block_size=b, text_first=True)
    assert s.text_first and s.kept_blocks == int(mask.sum())
    S, nb = F * T + text, mask.shape[0]
    tok = mask.repeat_interleave(b, 0).repeat_interleave(b, 1)[:S, :S]
    assert s.flop_density == pytest.approx(tok.double().mean().item(), rel=1e-12)
    frame_of = [((m - text) // T if text <= m < S else -1) for m in (min(k * b + b // 2, S - 1) for k in range(nb))]
    kept, total = [0] * F, [0] * F
    for i in range(nb):
        for j in range(nb):
            if frame_of[i] >= 0 and frame_of[j] >= 0:
                d = abs(frame_of[i] - frame_of[j])
                total[d] += 1
                kept[d] += int(mask[i, j])
    assert s.distance_density == pytest.approx([k / t if t else 0.0 for k, t in zip(kept, total)], abs=1e-6)
    assert s.distance_density[0] == 1.0


def test_render_text_first_draws_the_text_band_first():
    """Text first: the text band is the top rows and left columns of the panel, the border line
    where the video starts, frame lines offset by the text; text last: the band is at the end."""
    F, T, text = 3, 256, 256  # 8 blocks of 128: text first = blocks 0-1, text last = blocks 6-7
    x0, y0, scale = 14, 30, 20
    first = radial_block_mask(F, T, text_tokens=text, model="hunyuan", text_first=True)
    img = P.render_mask(first, F, T, text_tokens=text, model="hunyuan", panel_size=160, text_first=True)
    assert _pixel(img, x0 + 0 * scale + 10, y0 + 7 * scale + 10) == P.TEXT_REGION  # text keys, left
    assert _pixel(img, x0 + 7 * scale + 10, y0 + 0 * scale + 10) == P.TEXT_REGION  # text queries, top
    assert _pixel(img, x0 + 3 * scale + 10, y0 + 3 * scale + 10) == P.BAND_COLOURS[0]  # frame 0 diagonal
    assert _pixel(img, x0 + 2 * scale, y0 + 5 * scale + 10) == P.TEXT_COLOUR  # text/video border
    last = radial_block_mask(F, T, text_tokens=text, model="hunyuan")
    img = P.render_mask(last, F, T, text_tokens=text, model="hunyuan", panel_size=160)
    assert _pixel(img, x0 + 0 * scale + 10, y0 + 1 * scale + 10) == P.BAND_COLOURS[0]  # video first
    est = P.estimate("minimax_h3", 640, 352, 22)  # the family table says MiniMax H3 is text first
    assert est.stats.text_first and "330 text + reference + audio (first)" in est.summary()
    assert torch.equal(est.mask(), radial_block_mask(
        est.stats.num_frames, est.stats.tokens_per_frame, text_tokens=est.stats.text_tokens,
        decay_factor=est.decay_factor, model="hunyuan", text_first=True))
    assert not P.estimate("hunyuan", 640, 352, 21).stats.text_first  # no ComfyUI here: text last
    assert P.estimate("hunyuan", 640, 352, 21, text_first=True).stats.text_first


def test_wan_variant_previews_count_their_extra_token_groups():
    """The Wan variants' conditioning tokens join the preview's sequence: S2V's reference and
    motion frames and HuMo's reference frame after the video, SCAIL's reference frame as a frame
    in front and its half-resolution pose video after it."""
    base = geometry_from_pixels("wan21", 832, 480, 81)  # 21 frames x 30 x 52 tokens
    h, w = base.height_tokens, base.width_tokens
    s2v = geometry_from_pixels("wan22_s2v", 832, 480, 81)
    assert (s2v.num_frames, s2v.text_tokens) == (21, 2 * h * w + (h // 2) * (w // 2) + 4 * (h // 4) * (w // 4))
    assert geometry_from_pixels("wan21_humo", 832, 480, 81).text_tokens == h * w
    scail = geometry_from_pixels("wan21_scail", 832, 480, 81)
    assert (scail.num_frames, scail.text_tokens) == (22, 21 * 15 * 26)
    assert geometry_from_pixels("wan22_animate", 832, 480, 81) == base


def test_render_large_mask_shades_by_density_and_marks_text():
    F, T, text = 33, 2040, 256  # HunyuanVideo 544x960x129: 528 x 528 blocks on a 200 px panel
    mask = radial_block_mask(F, T, text_tokens=text, decay_factor=0.95, model="hunyuan")
    img = P.render_mask(mask, F, T, text_tokens=text, model="hunyuan", panel_size=200)
    x0, y0 = 14, 30
    panel = img[y0 : y0 + 200, x0 : x0 + 200].float()
    # pooled pixels take intermediate shades (density), not only on/off
    brightness = panel.sum(-1)
    empty = sum(P.PANEL_EMPTY)
    assert ((brightness > empty + 5) & (brightness < brightness.max() - 40)).float().mean() > 0.05
    # the video/text border (block 525.9 of 528) is a light line near the panel's edge
    assert _pixel(img, x0 + 199, y0 + 100) == P.TEXT_COLOUR
    assert img.shape[0] > 200 + 120 and img.shape[1] > 200


def test_radial_core_preview_works_without_pillow_and_without_comfy():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["PIL"] = None  # as if Pillow were not installed
        from radial_core import preview
        est = preview.estimate("wan21", 832, 480, 33)
        img = est.render(panel_size=128)
        assert img.dtype.is_floating_point is False and img.shape[-1] == 3
        assert not any(m == "comfy" or m.startswith("comfy.") for m in sys.modules)
        print("ok", tuple(img.shape))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_render_rejects_bad_panel_size():
    mask = radial_block_mask(2, 128)
    with pytest.raises(ValueError, match=r"panel_size must be in \[64, 4096\]; got 10"):
        P.render_mask(mask, 2, 128, panel_size=10)


@pytest.mark.parametrize(
    "F,T,text,decay,model,measured",
    [  # docs/benchmarks.md: H100 bf16, ours vs dense cuDNN SDPA on the same shapes
        (21, 1560, 0, 0.2, "wan", 2.60),  # Wan 2.1-14B 480x832x81
        (21, 3600, 0, 0.2, "wan", 3.50),  # Wan 2.1-14B 720x1280x81
        (33, 3600, 256, 0.95, "hunyuan", 3.21),  # HunyuanVideo 720x1280x129
        (81, 3600, 0, 0.2, "wan", 7.38),  # Wan 2.1-14B 720x1280x321
    ],
)
def test_expected_speedup_agrees_with_the_measured_kernel(F, T, text, decay, model, measured):
    s = P.estimate_latent(F, T, text_tokens=text, decay_factor=decay, model=model).stats
    assert s.expected_speedup == pytest.approx(measured, rel=0.05)
