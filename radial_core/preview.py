"""Sparsity preview: figures and a picture of a radial block mask, without ComfyUI.

Used by the "Sparsity Preview" node and by the HTTP route behind the front-end readout, so both
show exactly the numbers of :func:`radial_core.radial_block_mask` (the mask the kernel runs).

- :func:`mask_stats` — tokens, blocks, density, attention FLOPs saved, expected attention speedup
  and the kept fraction per temporal distance.
- :func:`render_mask` — an RGB ``uint8`` image ``[H, W, 3]``: the block mask shaded by density
  (readable for thousands of blocks), coloured by temporal-distance band, frame boundaries marked,
  plus a small chart of density per temporal distance. Text labels need Pillow, which is imported
  lazily (``radial_core`` stays importable without it; the picture is then drawn without text).
- :func:`estimate` — the whole chain from pixel-space settings (family, width, height, frames).

Pure torch; ``radial_core`` never imports ``comfy``.

The idea of showing the mask by temporal-distance bands (dense near the diagonal, halving with each
power-of-two distance) follows the Radial Attention paper's own mask figures (Li et al., arXiv
2506.19852, "spatiotemporal energy decay"); the drawing code is ours.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import torch

from .families import default_decay, family_spec
from .geometry import geometry_from_pixels
from .mask import radial_block_mask

logger = logging.getLogger(__name__)

# --- expected speed ---------------------------------------------------------------------------
# Expected attention speedup = (kernel rate on kept blocks / dense rate) / FLOP density.
# Measured on an H100 80GB HBM3, bf16, head dim 128, [B, S, H*D] views as ComfyUI passes them
# (docs/benchmarks.md, bench/bench_kernel.py): the pack's Triton kernel against dense
# cuDNN SDPA at Wan 480x832x81, Wan 720x1280x81, HunyuanVideo 720x1280x129 and Wan 720x1280x321
# ran 2.60x, 3.50x, 3.21x, 7.38x faster at FLOP densities 0.3435, 0.2637, 0.2735, 0.1159: per FLOP
# the kernel runs at 0.89, 0.92, 0.88, 0.86 of cuDNN's dense rate. We use the mean, 0.89.
KERNEL_RATE_RATIO = 0.89
RATE_SOURCE = "kernel measured at 0.89x cuDNN's dense rate per FLOP, H100 bf16"

MAX_PREVIEW_BLOCKS = 8192  # a [nb, nb] mask; 4x-length 720p Hunyuan at block 64 is 7262

@dataclass(frozen=True)
class MaskStats:
    """Figures of one block mask (all exact, from the mask itself)."""

    num_frames: int
    tokens_per_frame: int
    text_tokens: int
    block_size: int
    tokens: int  # S = F*T + text
    num_blocks: int  # nb (the mask is nb x nb)
    kept_blocks: int
    density: float  # kept blocks / nb^2
    flop_density: float  # attention FLOPs of the kept blocks / dense FLOPs (tail block exact)
    flops_saved: float  # 1 - flop_density
    expected_speedup: float  # KERNEL_RATE_RATIO / flop_density
    distance_density: list[float] = field(default_factory=list)  # kept fraction per |i - j|
    text_first: bool = False  # the text tokens sit before the video ([text | video])
    other_label: str = "text"  # what the non-video tokens are (the family's ``other_tokens``)

    def as_dict(self) -> dict:
        return asdict(self)


def _block_frames(num_blocks: int, num_frames: int, tokens_per_frame: int, block_size: int,
                  tokens: int, lead: int = 0) -> torch.Tensor:
    """Frame index of each block's middle token; -1 for blocks whose middle is a text token.
    ``lead``: text tokens before the first frame (text-first sequences)."""
    mid = (torch.arange(num_blocks, dtype=torch.int64) * block_size + block_size // 2).clamp(
        max=tokens - 1
    ) - lead
    frames = mid.clamp(min=0) // tokens_per_frame
    video = (mid >= 0) & (mid < num_frames * tokens_per_frame)
    return torch.where(video, frames, torch.full_like(frames, -1))


def _frame_pair_counts(mask: torch.Tensor, block_frame: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Kept blocks per (query frame, key frame) as float64 [F+1, F+1]; index F = text blocks.

    Two segment sums (rows, then columns): O(nb^2) adds, no index lists of kept blocks.
    """
    bucket = torch.where(block_frame >= 0, block_frame, torch.full_like(block_frame, num_frames))
    rows = torch.zeros(num_frames + 1, mask.shape[1], dtype=torch.float32)
    rows.index_add_(0, bucket, mask.to(torch.float32))  # counts <= nb: exact in float32
    pairs = torch.zeros(num_frames + 1, num_frames + 1, dtype=torch.float64)
    pairs.index_add_(1, bucket, rows.double())
    return pairs


def _distance_density(pairs: torch.Tensor, block_frame: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Kept fraction of the video block pairs at each temporal distance d = 0..F-1."""
    video = block_frame >= 0
    per_frame = torch.bincount(block_frame[video], minlength=num_frames).double()  # blocks/frame
    idx = torch.arange(num_frames)
    dist = (idx[:, None] - idx[None, :]).abs().flatten()
    total = torch.zeros(num_frames, dtype=torch.float64)
    total.index_add_(0, dist, (per_frame[:, None] * per_frame[None, :]).flatten())
    kept = torch.zeros(num_frames, dtype=torch.float64)
    kept.index_add_(0, dist, pairs[:num_frames, :num_frames].flatten())
    return torch.where(total > 0, kept / total.clamp(min=1), torch.zeros_like(total))


def mask_stats(mask: torch.Tensor, num_frames: int, tokens_per_frame: int, *, text_tokens: int = 0,
               block_size: int = 128, text_first: bool = False, other_label: str = "text") -> MaskStats:
    """Exact figures of ``mask`` (a ``[nb, nb]`` bool block mask of the given geometry;
    ``text_first``: the sequence is ``[text | video]``; ``other_label``: what the ``text_tokens``
    are, for the words)."""
    tokens = num_frames * tokens_per_frame + text_tokens
    nb = -(-tokens // block_size)
    if mask.dim() != 2 or mask.shape[0] != nb or mask.shape[1] != nb:
        raise ValueError(
            f"mask must be [{nb}, {nb}] for {num_frames} frames x {tokens_per_frame} tokens "
            f"+ {text_tokens} {other_label} at block {block_size}; got {list(mask.shape)}"
        )
    mask = mask.bool()
    frames_of = _block_frames(nb, num_frames, tokens_per_frame, block_size, tokens,
                              text_tokens if text_first else 0)
    pairs = _frame_pair_counts(mask, frames_of, num_frames)
    kept = int(round(float(pairs.sum())))
    # Exact FLOPs: a kept block costs len(q block) * len(k block); only the last block is short.
    b, tail = block_size, tokens - (nb - 1) * block_size
    last_row, last_col = int(mask[-1].sum()), int(mask[:, -1].sum())
    corner = int(mask[-1, -1])
    kept_area = (b * b * (kept - last_row - last_col + corner)
                 + b * tail * (last_row - corner + last_col - corner) + tail * tail * corner)
    flop_density = kept_area / tokens**2
    return MaskStats(
        num_frames=num_frames,
        tokens_per_frame=tokens_per_frame,
        text_tokens=text_tokens,
        block_size=block_size,
        tokens=tokens,
        num_blocks=nb,
        kept_blocks=kept,
        density=kept / (nb * nb),
        flop_density=flop_density,
        flops_saved=1.0 - flop_density,
        expected_speedup=KERNEL_RATE_RATIO / flop_density if flop_density > 0 else float("inf"),
        distance_density=[round(float(x), 6) for x in _distance_density(pairs, frames_of, num_frames)],
        text_first=bool(text_first),
        other_label=other_label,
    )


# --- picture ----------------------------------------------------------------------------------

BACKGROUND = (22, 24, 30)
PANEL_EMPTY = (38, 41, 50)
TEXT_COLOUR = (225, 228, 235)
GRID_COLOUR = (80, 86, 100)
FRAME_LINE = (0, 0, 0)
TEXT_REGION = (150, 158, 175)
SINK = (225, 245, 255)
# one colour per temporal band g = bit_length(d): d=0, 1, 2-3, 4-7, 8-15, 16-31, 32-63, 64-127, 128+
BAND_COLOURS = (
    (250, 205, 65),
    (245, 135, 60),
    (225, 80, 105),
    (180, 75, 180),
    (115, 95, 215),
    (65, 140, 225),
    (45, 185, 175),
    (95, 200, 95),
    (185, 215, 80),
)
MIN_SHADE = 0.35  # a pixel holding any kept block is at least this bright (max-pool visibility)


def band_label(g: int) -> str:
    if g == 0:
        return "d = 0"
    if g == 1:
        return "d = 1"
    lo, hi = 1 << (g - 1), (1 << g) - 1
    return f"d >= {lo}" if g >= len(BAND_COLOURS) - 1 else f"d = {lo}-{hi}"


def _panel(mask: torch.Tensor, block_frame: torch.Tensor, model: str, side_target: int):
    """Mask panel as float RGB [side, side, 3] (0..255), its side, and pixels per block."""
    nb = mask.shape[0]
    if nb <= side_target:
        scale = max(1, side_target // nb)
        side = nb * scale
        shade = mask.float().repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    else:
        side = side_target
        shade = torch.nn.functional.adaptive_avg_pool2d(mask.float()[None, None], side)[0, 0]
    # block under each pixel's centre
    centre = ((torch.arange(side, dtype=torch.float64) + 0.5) * nb / side).long().clamp(max=nb - 1)
    fq = block_frame[centre]
    fk = block_frame[centre]
    top = len(BAND_COLOURS) - 1
    band_of_d = torch.tensor([min(d.bit_length(), top) for d in range(int(fq.max()) + 1)])
    index = band_of_d[(fq[:, None] - fk[None, :]).abs().clamp(max=len(band_of_d) - 1)]
    text_index, sink_index = top + 1, top + 2
    index = torch.where((fq[:, None] < 0) | (fk[None, :] < 0), text_index, index)
    if model == "wan":
        index = torch.where((fk[None, :] == 0) & (fq[:, None] > 0), sink_index, index)
    palette = torch.tensor(BAND_COLOURS + (TEXT_REGION, SINK), dtype=torch.float32)
    level = torch.where(shade > 0, MIN_SHADE + (1 - MIN_SHADE) * shade, torch.zeros_like(shade))
    empty = torch.tensor(PANEL_EMPTY, dtype=torch.float32)
    return empty + level[..., None] * (palette[index] - empty), side


def _frame_lines(img: torch.Tensor, x0: int, y0: int, side: int, nb: int, num_frames: int,
                 tokens_per_frame: int, block_size: int, text_start: int | None, lead: int = 0) -> None:
    """Draw frame boundaries (and the video/text border) over the panel, in place; ``lead``
    tokens come before the first frame (text first)."""
    px_per_frame = side * tokens_per_frame / (nb * block_size)
    step = max(1, math.ceil(4.0 / px_per_frame))  # keep lines at least 4 px apart
    positions = [lead + f * tokens_per_frame for f in range(step, num_frames, step)]
    line = torch.tensor(FRAME_LINE, dtype=img.dtype)
    for tok in positions:
        p = int(round(tok / block_size * side / nb))
        if 0 < p < side:
            img[y0 : y0 + side, x0 + p] = img[y0 : y0 + side, x0 + p] * 0.45 + line * 0.55
            img[y0 + p, x0 : x0 + side] = img[y0 + p, x0 : x0 + side] * 0.45 + line * 0.55
    if text_start is not None:
        p = int(round(text_start / block_size * side / nb))
        if 0 < p < side:
            border = torch.tensor(TEXT_COLOUR, dtype=img.dtype)
            img[y0 : y0 + side, x0 + p] = border
            img[y0 + p, x0 : x0 + side] = border


def _chart(img: torch.Tensor, x0: int, y0: int, width: int, height: int,
           density: list[float]) -> list[tuple[int, float]]:
    """Bars of kept fraction per temporal distance, in place; returns (x, d) tick positions."""
    img[y0 : y0 + height, x0 : x0 + width] = torch.tensor(PANEL_EMPTY, dtype=img.dtype)
    grid = torch.tensor(GRID_COLOUR, dtype=img.dtype)
    for frac in (0.25, 0.5, 0.75, 1.0):
        y = y0 + height - 1 - int(round(frac * (height - 1)))
        img[y, x0 : x0 + width] = grid
    n = max(1, len(density))
    palette = torch.tensor(BAND_COLOURS, dtype=img.dtype)
    for d, value in enumerate(density):
        a = x0 + int(d * width / n)
        b = max(a + 1, x0 + int((d + 1) * width / n) - (1 if width / n >= 3 else 0))
        h = int(round(max(0.0, min(1.0, value)) * (height - 1)))
        if h:
            g = min(d.bit_length(), len(BAND_COLOURS) - 1)
            img[y0 + height - h : y0 + height, a:b] = palette[g]
    return [(x0 + int((d + 0.5) * width / n), d) for d in range(len(density))]


def _load_font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def render_mask(mask: torch.Tensor, num_frames: int, tokens_per_frame: int, *, text_tokens: int = 0,
                block_size: int = 128, model: str = "wan", title: str = "",
                stats: MaskStats | None = None, panel_size: int = 640, text_first: bool = False,
                other_label: str = "text") -> torch.Tensor:
    """Picture of ``mask`` as a ``uint8`` RGB tensor ``[H, W, 3]``.

    The panel shows query blocks top to bottom and key blocks left to right. A pixel covering
    several blocks is shaded by the kept fraction (at least ``MIN_SHADE`` bright when any is kept);
    colour tells the temporal band ``bit_length(|i - j|)`` of the frame pair, the Wan attention
    sink (key frame 0) and the text region apart. Dark lines mark frame boundaries (every k-th
    frame when they would be closer than 4 px), a light line the video/text border. Below, bars
    show the kept fraction for each temporal distance d. ``text_first``: the text band is drawn
    first (top rows, left columns), where the model puts it. ``other_label`` names that band
    (``stats``' label when given).
    """
    if panel_size < 64 or panel_size > 4096:
        raise ValueError(f"panel_size must be in [64, 4096]; got {panel_size}")
    if stats is None:
        stats = mask_stats(mask, num_frames, tokens_per_frame, text_tokens=text_tokens,
                           block_size=block_size, text_first=text_first, other_label=other_label)
    other = stats.other_label
    nb = stats.num_blocks
    lead = text_tokens if text_first else 0
    block_frame = _block_frames(nb, num_frames, tokens_per_frame, block_size, stats.tokens, lead)
    panel, side = _panel(mask.bool(), block_frame, model, panel_size)

    margin, header, legend_w, chart_h, chart_gap = 14, 30, 150, 120, 34
    width = margin + side + margin + legend_w + margin
    height = header + side + chart_gap + chart_h + margin + 18
    img = torch.empty(height, width, 3, dtype=torch.float32)
    img[:] = torch.tensor(BACKGROUND, dtype=torch.float32)
    px, py = margin, header
    img[py : py + side, px : px + side] = panel
    text_start = (lead if text_first else num_frames * tokens_per_frame) if text_tokens else None
    _frame_lines(img, px, py, side, nb, num_frames, tokens_per_frame, block_size, text_start, lead)

    # legend swatches
    bands_used = sorted({min(d.bit_length(), len(BAND_COLOURS) - 1) for d in range(num_frames)})
    entries = [(BAND_COLOURS[g], band_label(g)) for g in bands_used]
    if model == "wan" and num_frames > 1:
        entries.append((SINK, "sink (frame 0)"))
    if text_tokens:
        entries.append((TEXT_REGION, f"{other} tokens" + (" (first)" if text_first else "")))
    entries.append((PANEL_EMPTY, "skipped"))
    lx, ly = px + side + margin, py
    for i, (rgb, _) in enumerate(entries):
        y = ly + i * 20
        img[y + 3 : y + 15, lx : lx + 12] = torch.tensor(rgb, dtype=torch.float32)

    cy = py + side + chart_gap
    ticks = _chart(img, px, cy, side, chart_h, stats.distance_density)
    out = img.clamp(0, 255).round().to(torch.uint8)

    try:  # text labels (Pillow ships with ComfyUI; radial_core works without it)
        from PIL import Image, ImageDraw
    except ImportError:
        return out
    pil = Image.fromarray(out.numpy())
    draw = ImageDraw.Draw(pil)
    font, small = _load_font(14), _load_font(11)
    head = title or "radial block mask"
    head += (f"  |  {num_frames} x {tokens_per_frame} tok"
             + ((f" + {text_tokens} {other}" + (" first" if text_first else "")) if text_tokens else "")
             + f"  |  {nb} x {nb} blocks  |  density {stats.density:.1%}"
             + f"  |  ~{stats.expected_speedup:.1f}x attention")
    draw.text((margin, 8), head, fill=TEXT_COLOUR, font=font)
    for i, (_, label) in enumerate(entries):
        draw.text((lx + 18, ly + i * 20 + 2), label, fill=TEXT_COLOUR, font=small)
    ly2 = ly + len(entries) * 20 + 12
    for j, line in enumerate(("query blocks: down", "key blocks: across", "lines: frames")):
        draw.text((lx, ly2 + j * 16), line, fill=GRID_COLOUR, font=small)
    draw.text((px, cy - 18), "kept fraction per temporal distance d (frames)", fill=TEXT_COLOUR,
              font=small)
    draw.text((px + side + 4, cy - 6), "1.0", fill=GRID_COLOUR, font=small)
    draw.text((px + side + 4, cy + chart_h - 10), "0", fill=GRID_COLOUR, font=small)
    label_every = max(1, math.ceil(len(ticks) * 28 / max(side, 1)))
    for x, d in ticks:
        if d % label_every == 0 or d == len(ticks) - 1:
            draw.text((x - 3, cy + chart_h + 3), str(d), fill=GRID_COLOUR, font=small)
    import numpy as np

    return torch.from_numpy(np.asarray(pil).copy())


def summary_text(stats: MaskStats, *, title: str, decay_factor: float, dist1: str, model: str) -> str:
    """Human-readable summary; every figure comes from ``stats``."""
    rule = f", distance-1 rule {dist1}" if model == "wan" else ""
    lines = [
        f"Sparsity preview: {title}",
        f"latent: {stats.num_frames} frames x {stats.tokens_per_frame} tokens/frame"
        f" + {stats.text_tokens} {stats.other_label}{' (first)' if stats.text_first else ''}"
        f" = {stats.tokens:,} tokens",
        f"blocks: {stats.num_blocks} x {stats.num_blocks} of {stats.block_size},"
        f" kept {stats.kept_blocks:,} (density {stats.density:.2%})",
        f"decay factor {decay_factor:g}{rule}",
        f"attention FLOPs: {stats.flop_density:.2%} of dense ({stats.flops_saved:.2%} saved)",
        f"expected attention speedup: ~{stats.expected_speedup:.2f}x"
        f" ({RATE_SOURCE}; attention only, not the whole step)",
    ]
    return "\n".join(lines)


# --- whole chain from pixel-space settings ------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    family: str
    width: int
    height: int
    frames: int
    decay_factor: float
    dist1: str
    model: str  # mask model, "wan" | "hunyuan"
    title: str
    stats: MaskStats

    def summary(self) -> str:
        return summary_text(self.stats, title=self.title, decay_factor=self.decay_factor,
                            dist1=self.dist1, model=self.model)

    def mask(self) -> torch.Tensor:
        s = self.stats
        return radial_block_mask(s.num_frames, s.tokens_per_frame, text_tokens=s.text_tokens,
                                 block_size=s.block_size, decay_factor=self.decay_factor,
                                 model=self.model, dist1=self.dist1, text_first=s.text_first)

    def render(self, panel_size: int = 640) -> torch.Tensor:
        s = self.stats
        return render_mask(self.mask(), s.num_frames, s.tokens_per_frame, text_tokens=s.text_tokens,
                           block_size=s.block_size, model=self.model, title=self.title, stats=s,
                           panel_size=panel_size, text_first=s.text_first, other_label=s.other_label)


def _num_blocks(num_frames: int, tokens_per_frame: int, text_tokens: int, block_size: int) -> int:
    return -(-(int(num_frames) * int(tokens_per_frame) + int(text_tokens)) // int(block_size))


def _too_large_fix(num_frames: int, tokens_per_frame: int, text_tokens: int, block_size: int, *,
                   unit: str, frames_that_fit=None) -> str:
    """What would fit, for the values given: block size 128 only when it is 64 now and would fit;
    the frame count that fits at this size (``frames_that_fit(block) -> frames`` in the caller's
    unit, default latent frames); otherwise a smaller size."""
    def fit(block: int) -> int:
        if frames_that_fit is not None:
            return frames_that_fit(block)
        return max(0, (MAX_PREVIEW_BLOCKS * block - int(text_tokens)) // max(1, int(tokens_per_frame)))

    options = []
    frames = fit(block_size)
    if frames >= 1:
        options.append(f"Use fewer frames (at most {frames} {unit} at this size and block size {block_size})")
    if block_size < 128 and _num_blocks(num_frames, tokens_per_frame, text_tokens, 128) <= MAX_PREVIEW_BLOCKS:
        options.append("block size 128 (it fits)" if options else "Use block size 128 (it fits)")
    if not options:
        options.append("Use a smaller width and height (one frame at this size is already too many blocks)")
    return ", or ".join(options) + "."


@lru_cache(maxsize=64)
def estimate_latent(num_frames: int, tokens_per_frame: int, *, text_tokens: int = 0,
                    block_size: int = 128, decay_factor: float = 1.0, model: str = "wan",
                    dist1: str = "full", title: str = "", family: str = "", width: int = 0,
                    height: int = 0, frames: int = 0, text_first: bool = False,
                    other_label: str = "text") -> Estimate:
    """Figures of the radial mask for a latent geometry (what the kernel would run;
    ``text_first``: the text tokens sit before the video; ``other_label``: what they are)."""
    nb = _num_blocks(num_frames, tokens_per_frame, text_tokens, block_size)
    if nb > MAX_PREVIEW_BLOCKS:
        raise ValueError(
            f"too large for a preview: {num_frames} latent frames x {tokens_per_frame} tokens"
            f"{f' + {text_tokens} {other_label}' if text_tokens else ''} = {nb:,} blocks of {block_size};"
            f" at most {MAX_PREVIEW_BLOCKS:,} blocks. "
            + _too_large_fix(num_frames, tokens_per_frame, text_tokens, block_size, unit="latent frames")
        )
    mask = radial_block_mask(num_frames, tokens_per_frame, text_tokens=text_tokens,
                             block_size=block_size, decay_factor=decay_factor, model=model,
                             dist1=dist1, text_first=bool(text_first))
    stats = mask_stats(mask, num_frames, tokens_per_frame, text_tokens=text_tokens,
                       block_size=block_size, text_first=bool(text_first), other_label=other_label)
    return Estimate(family=family, width=width, height=height, frames=frames,
                    decay_factor=float(decay_factor), dist1=dist1, model=model,
                    title=title or f"{num_frames} latent frames", stats=stats)


def estimate(family: str, width: int, height: int, frames: int, *, block_size: int = 128,
             decay_factor: float | None = None, dist1: str = "full",
             text_tokens: int | None = None, text_first: bool | None = None) -> Estimate:
    """Figures of the radial mask for pixel-space settings of a model family.

    ``decay_factor=None`` takes the family's default; ``text_tokens=None`` the family's usual
    text length (see :mod:`radial_core.families`); ``text_first=None`` where the family puts
    its text (a family whose ComfyUI version decides: the caller says, else text last).
    """
    geo = geometry_from_pixels(family, width, height, frames, text_tokens=text_tokens, text_first=text_first)
    if decay_factor is None:
        decay_factor = default_decay(family)
    nb = _num_blocks(geo.num_frames, geo.tokens_per_frame, geo.text_tokens, block_size)
    if nb > MAX_PREVIEW_BLOCKS:
        def frames_that_fit(block: int) -> int:  # largest pixel frame count that fits (0: none)
            def fits(f: int) -> bool:
                g = geometry_from_pixels(family, width, height, f, text_tokens=text_tokens)
                return _num_blocks(g.num_frames, g.tokens_per_frame, g.text_tokens, block) <= MAX_PREVIEW_BLOCKS
            lo, hi = 0, int(frames)
            while lo < hi:  # fits() is monotone in f
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
            return lo

        raise ValueError(
            f"too large for a preview: {width}x{height}, {frames} frames = {geo.num_frames} latent frames"
            f" x {geo.tokens_per_frame} tokens{f' + {geo.text_tokens} {geo.other_label}' if geo.text_tokens else ''}"
            f" = {nb:,} blocks of {block_size}; at most {MAX_PREVIEW_BLOCKS:,} blocks. "
            + _too_large_fix(geo.num_frames, geo.tokens_per_frame, geo.text_tokens, block_size,
                             unit="frames", frames_that_fit=frames_that_fit)
        )
    label = family_spec(family).label
    return estimate_latent(geo.num_frames, geo.tokens_per_frame, text_tokens=geo.text_tokens,
                           block_size=block_size, decay_factor=decay_factor, model=geo.mask_model,
                           dist1=dist1, title=f"{label}, {width}x{height}, {frames} frames",
                           family=family, width=width, height=height, frames=frames,
                           text_first=geo.text_first, other_label=geo.other_label)
