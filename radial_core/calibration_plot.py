"""The calibration picture: three charts a person reads at a glance (PIL only, no ComfyUI).

1. energy per key vs frame distance, one line per probed step (log scale, relative to distance 0),
   as the paper plots its spatiotemporal energy decay;
2. kept energy vs mask density, one point per decay factor (worst probed block and step, and the
   mean), the target line and the chosen point marked;
3. kept energy per block at the chosen decay (worst probed step), dense blocks marked.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .preview import _load_font

BG = (250, 250, 248)
INK = (30, 30, 30)
GRID = (215, 215, 210)
TARGET = (200, 40, 40)
STEP_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (148, 103, 189), (140, 86, 75),
               (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (214, 39, 40)]
SPARSE = (60, 130, 200)
DENSE = (170, 170, 170)


class _Axes:
    def __init__(self, draw, box, xlim, ylim, font, small, log_y=False):
        self.draw, self.box, self.font, self.small, self.log_y = draw, box, font, small, log_y
        x0, y0, x1, y1 = box
        self.px = (x0 + 52, y0 + 42, x1 - 12, y1 - 40)  # plot area inside the panel
        self.xlim, self.ylim = xlim, ylim

    def xy(self, x, y):
        a, b, c, d = self.px
        lo, hi = self.xlim
        fx = 0.5 if hi == lo else (x - lo) / (hi - lo)
        ylo, yhi = self.ylim
        if self.log_y:
            y, ylo, yhi = math.log10(max(y, 10 ** ylo)), ylo, yhi
        fy = 0.5 if yhi == ylo else (y - ylo) / (yhi - ylo)
        fy = min(1.0, max(0.0, fy))
        return a + fx * (c - a), d - fy * (d - b)

    def frame(self, title, xlabel, ylabel, xticks, yticks):
        a, b, c, d = self.px
        for t in yticks:
            yv = 10 ** t if self.log_y else t
            _, y = self.xy(self.xlim[0], yv)
            self.draw.line([(a, y), (c, y)], fill=GRID)
            label = (f"1e{t:g}" if t else "1") if self.log_y else f"{t:g}"
            self.draw.text((a - 6, y), label, fill=INK, font=self.small, anchor="rm")
        for t in xticks:
            x, _ = self.xy(t, self.ylim[0] if not self.log_y else 10 ** self.ylim[0])
            self.draw.line([(x, d), (x, d + 4)], fill=INK)
            self.draw.text((x, d + 6), f"{t:g}", fill=INK, font=self.small, anchor="mt")
        self.draw.rectangle([a, b, c, d], outline=INK)
        x0, y0, x1, y1 = self.box
        self.draw.text(((x0 + x1) / 2, y0 + 4), title, fill=INK, font=self.font, anchor="mt")
        self.draw.text(((a + c) / 2, y1 - 4), xlabel, fill=INK, font=self.small, anchor="mb")
        self.draw.text((a, b - 8), ylabel, fill=INK, font=self.small, anchor="lb")

    def hline(self, y, color, label=""):
        a, _, c, _ = self.px
        _, yy = self.xy(self.xlim[0], y)
        self.draw.line([(a, yy), (c, yy)], fill=color, width=1)
        if label:
            self.draw.text((c - 2, yy - 2), label, fill=color, font=self.small, anchor="rb")


def _ticks(lo, hi, n=5):
    if hi <= lo:
        return [lo]
    step = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(step))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= step), default=step)
    start = math.ceil(lo / step) * step
    out, t = [], start
    while t <= hi + 1e-9:
        out.append(round(t, 6))
        t += step
    return out


def render(figures: dict, rec: dict, *, panel: int = 420, title: str = "") -> torch.Tensor:
    """The picture as a uint8 ``[H, W, 3]`` tensor. ``figures``: ``Calibration.figures(...)``
    plus ``kept_per_block`` ({block: kept}) and ``dense_blocks``; ``rec``: the recommendation
    (``decay``, ``density``, ``dense``)."""
    from PIL import Image, ImageDraw

    W, H = 3 * panel, panel + 34
    img = Image.new("RGB", (W, H), BG)
    draw = ImageDraw.Draw(img)
    font, small = _load_font(14), _load_font(11)
    draw.text((8, 8), title, fill=INK, font=font)
    top = 30

    # 1. energy per key vs frame distance, one line per probed step
    curves = figures.get("energy_per_key_by_frame_distance", {})
    allv = [v for c in curves.values() for v in c[1:] if v > 0 and c and c[0] > 0]
    F = max((len(c) for c in curves.values()), default=1)
    rel = {s: [v / c[0] if c and c[0] > 0 and v > 0 else None for v in c] for s, c in curves.items()}
    lo = min((v for c in rel.values() for v in c if v), default=1e-3)
    ylo = math.floor(math.log10(max(lo, 1e-6))) if allv else -3
    ylo = min(ylo, -1)
    ax = _Axes(draw, (0, top, panel, top + panel), (0, max(1, F - 1)), (ylo, 0.3), font, small, log_y=True)
    rate = figures.get("temporal_rate_per_frame")
    ax.frame("energy per key vs frame distance" + (f" (rate {rate:.2f}/frame)" if rate is not None else ""),
             "frame distance", "relative to distance 0", _ticks(0, max(1, F - 1)), list(range(ylo, 1)))
    for i, (s, c) in enumerate(sorted(rel.items(), key=lambda kv: int(kv[0]))):
        col = STEP_COLORS[i % len(STEP_COLORS)]
        pts = [ax.xy(d, v) for d, v in enumerate(c) if v]
        if len(pts) > 1:
            draw.line(pts, fill=col, width=2)
        for p in pts:
            draw.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=col)
        a, b, cc, _ = ax.px
        draw.text((cc - 4, b + 4 + 13 * i), f"step {s}", fill=col, font=small, anchor="rt")

    # 2. kept energy vs density per decay
    target = float(figures.get("target", 0.95))
    dens = figures.get("densities", [])
    kmin = figures.get("kept_min", [])
    kmean = figures.get("kept_mean", [])
    ymin = min([v for v in kmin if v is not None] + [target - 0.05, 0.5])
    ymin = max(0.0, math.floor(ymin * 10) / 10)
    xlo = max(0.0, math.floor((min(dens, default=0.0) - 0.02) * 10) / 10)
    ax = _Axes(draw, (panel, top, 2 * panel, top + panel), (xlo, 1), (ymin, 1.0), font, small)
    ax.frame("kept energy vs mask density", "mask density (share of blocks computed)", "kept energy",
             _ticks(xlo, 1), _ticks(ymin, 1.0))
    ax.hline(target, TARGET, f"target {target:.0%}")
    for series, col, w in ((kmean, (150, 180, 220), 1), (kmin, SPARSE, 2)):
        pts = [ax.xy(d, v) for d, v in zip(dens, series) if v is not None]
        if len(pts) > 1:
            draw.line(pts, fill=col, width=w)
        for p in pts:
            draw.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=col)
    for d, v, dec in zip(dens, kmin, figures.get("decays", [])):
        if v is not None:
            x, y = ax.xy(d, v)
            draw.text((x + 4, y + 4), f"{dec:g}", fill=INK, font=small)
    a, b, cc, dd = ax.px
    draw.text((cc - 4, dd - 30), "worst block/step", fill=SPARSE, font=small, anchor="rb")
    draw.text((cc - 4, dd - 16), "mean", fill=(150, 180, 220), font=small, anchor="rb")
    if not rec.get("dense") and rec.get("decay") is not None:
        # the chosen decay at its worst block and step among those that stay radial
        x, y = ax.xy(float(rec["density"]), float(rec["kept_min"]))
        draw.ellipse([x - 8, y - 8, x + 8, y + 8], outline=TARGET, width=3)
        draw.text((x - 10, y - 10), f"chosen {rec['decay']:g}", fill=TARGET, font=small, anchor="rb")
    else:
        draw.text(((a + cc) / 2, (b + ax.px[3]) / 2), "keep it dense", fill=TARGET, font=font, anchor="mm")

    # 3. kept energy per block at the chosen decay
    per_block = {int(k): v for k, v in figures.get("kept_per_block", {}).items()}
    dense_blocks = set(figures.get("dense_blocks", []))
    nb = max(per_block, default=0) + 1
    ymin3 = min([v for v in per_block.values()] + [target - 0.05])
    ymin3 = max(0.0, math.floor(ymin3 * 10) / 10)
    ax = _Axes(draw, (2 * panel, top, 3 * panel, top + panel), (-0.5, nb - 0.5), (ymin3, 1.0), font, small)
    shown = figures.get("kept_per_block_decay")
    ax.frame("kept energy per block" + (f" (decay {shown:g}, worst step)" if shown else ""), "block",
             "kept energy", [t for t in _ticks(0, max(1, nb - 1)) if float(t).is_integer()], _ticks(ymin3, 1.0))
    bw = max(1.0, (ax.px[2] - ax.px[0]) / max(1, nb) * 0.7)
    for blk, v in per_block.items():
        x, y = ax.xy(blk, v)
        _, y0 = ax.xy(blk, ymin3)
        col = DENSE if blk in dense_blocks else SPARSE
        draw.rectangle([x - bw / 2, min(y, y0), x + bw / 2, max(y, y0)], fill=col)
    ax.hline(target, TARGET, f"target {target:.0%}")
    a, b, cc, _ = ax.px
    draw.text((cc - 4, b - 8), "dense (grey) / radial (blue)", fill=INK, font=small, anchor="rb")
    return torch.from_numpy(np.array(img, dtype=np.uint8))
