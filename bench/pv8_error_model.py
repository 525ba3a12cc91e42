"""Error model of 8-bit P.V schemes, in float arithmetic on the CPU (no kernel, no GPU).

    python bench/pv8_error_model.py [--seq 4096] [--heads 2] [--head-dim 128] [--tile 128]

Random bf16 Q, K, V (the benchmark's inputs), dense softmax in float32 as the reference; each
scheme rounds P and V as the kernel would (e4m3 casts, int8/uint8 steps) and keeps everything
else exact, so its error is the P.V quantisation's alone. ``docs/perf-notes.md`` ("8-bit P.V")
reads the table: e4m3 keeps ~3 mantissa bits whatever the scale, so P in e4m3 costs ~2.5e-2 on
flat (random-input) attention; an unsigned 8-bit P scaled per (query row, key tile), the tile's
row maximum mapped to 255, keeps most of P's mass in fine steps.
"""

from __future__ import annotations

import argparse
import math

import torch


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def _int_steps(x: torch.Tensor, scale: torch.Tensor, top: int) -> torch.Tensor:
    return torch.round(x / scale).clamp(-top, top) * scale


def schemes(seq: int, heads: int, head_dim: int, tile: int, v_mean: float, seed: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(seed)
    shape = (1, heads, seq, head_dim)
    q, k = (torch.randn(shape, generator=g).bfloat16().float() for _ in range(2))
    v = (torch.randn(shape, generator=g) + v_mean).bfloat16().float()
    s = q @ k.transpose(-1, -2) / math.sqrt(head_dim)
    p = torch.exp(s - s.amax(-1, keepdim=True))  # the row maximum maps to 1
    l_sum = p.sum(-1, keepdim=True)
    ref = (p @ v) / l_sum

    v_e4 = v.abs().amax(-2, keepdim=True) / 448  # e4m3's largest finite value
    v_e4m3 = (v / v_e4).to(torch.float8_e4m3fn).float() * v_e4
    mu = v.mean(-2, keepdim=True)  # V's mean per channel, added back after the product
    v_s8 = _int_steps(v - mu, (v - mu).abs().amax(-2, keepdim=True) / 127, 127)
    tiles = p.view(*p.shape[:-1], seq // tile, tile)
    tile_max = tiles.amax(-1, keepdim=True)  # per (query row, key tile)
    p_u8_tile = (torch.round(tiles / tile_max * 255) / 255 * tile_max).view_as(p)
    p_u8_row = torch.round(p * 255) / 255
    p_e4m3 = (p * 448).to(torch.float8_e4m3fn).float() / 448
    out = {
        "P bf16, V bf16 (today's P.V)": (p.bfloat16().float() @ v) / l_sum,
        "P e4m3, V e4m3 per channel": (p_e4m3 @ v_e4m3) / l_sum,
        "P e4m3, V bf16": (p_e4m3 @ v) / l_sum,
        "P u8 per row, V s8 per channel (mean out)": (p_u8_row @ v_s8) / l_sum + mu,
        "P u8 per row x key tile, V s8 per channel (mean out)": (p_u8_tile @ v_s8) / l_sum + mu,
        "P u8 per row x key tile, V bf16": (p_u8_tile @ v) / l_sum,
        "P bf16, V s8 per channel (mean out)": (p @ v_s8) / l_sum + mu,
    }
    return {name: _rel(o, ref) for name, o in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--tile", type=int, default=128, help="keys per P scale (the kernel's key tile)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.seq % args.tile:
        ap.error("--seq must be a multiple of --tile")
    for v_mean in (0.0, 0.5):
        errs = schemes(args.seq, args.heads, args.head_dim, args.tile, v_mean, args.seed)
        print(f"V mean {v_mean} (S = {args.seq}, H = {args.heads}, D = {args.head_dim}, tile {args.tile})")
        for name, err in errs.items():
            print(f"  {name:55s} {err:.2e}")


if __name__ == "__main__":
    main()
