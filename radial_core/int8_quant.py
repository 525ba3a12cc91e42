"""The int8 quantisation pass of ``precision="int8-qk"``: Q and K as int8 with float32 scales.

``precision="int8-qk"`` (named ``"fp8"`` before; that name is still read) runs Q.K^T in int8
(SageAttention's choice, Zhang et al., 2024) and P.V in the inputs' 16-bit dtype: on random
inputs its error is 1.2e-2 to 1.3e-2 relative, under comfy-kitchen INT8's 1.7e-2, where e4m3 in
either product costs ~3.8e-2 (docs/perf-notes.md, FP8). Both forward kernels read what :func:`quantize_int8` writes.
:func:`quantize_v8` prepares V for ``precision="int8"``'s 8-bit P.V (the Gluon kernel only).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_tiles import bh_rows, tile_ptrs


@triton.jit
def _quant_rows(X, Y, SC, MEAN, sxb, sxh, sxs, sxd, H, S, D, mul,
                R: tl.constexpr, BD: tl.constexpr, SUB_MEAN: tl.constexpr,
                PER_ROW: tl.constexpr):
    """Y[bh, rows] = int8((X[b, h, rows] - mean) * mul / s), s = amax / 127 per R rows (round
    half away from zero). ``PER_ROW``: one scale per row instead of per R rows.
    Y is contiguous ``[B*H, S_pad, BD]``, zero past S and D; SC is ``[B*H, S_pad / R]``
    (``[B*H, S_pad]`` per row).
    """
    bh, b, h, rows, d, ok = bh_rows(H, S, D, R, BD)
    x = tl.load(tile_ptrs(X, b, h, rows, d, (sxb, sxh, sxs, sxd)), mask=ok,
                other=0.0).to(tl.float32)
    if SUB_MEAN:
        x = tl.where(ok, x - tl.load(MEAN + bh * BD + d)[None, :], 0.0)
    x = x * mul
    n_pad = tl.num_programs(0) * R
    if PER_ROW:
        s = tl.maximum(tl.max(tl.abs(x), 1), 1e-30) / 127.0
        y = x * (1.0 / s)[:, None]
        tl.store(SC + bh.to(tl.int64) * n_pad + rows, s)
    else:
        s = tl.maximum(tl.max(tl.max(tl.abs(x), 1), 0), 1e-30) / 127.0
        y = x * (1.0 / s)
        tl.store(SC + bh.to(tl.int64) * tl.num_programs(0) + tl.program_id(0), s)
    y = tl.minimum(tl.maximum(tl.where(y >= 0.0, y + 0.5, y - 0.5), -127.0), 127.0)
    tl.store(Y + bh.to(tl.int64) * n_pad * BD + rows.to(tl.int64)[:, None] * BD + d[None, :],
             y.to(Y.dtype.element_ty))


def quantize_int8(q, k, qk_mul: float, q_rows: int, k_rows: int, block: int, bd: int,
                  q_per_row: bool = False):
    """q, k ``[B, H, S, D]`` -> ``(q8, k8, q_scales, k_scales)`` for the int8 kernels.

    - Q: times ``qk_mul`` (softmax scale x log2 e), one scale per ``q_rows`` query rows (per
      row with ``q_per_row``, ``q_rows`` then only sizes the pass's tiles).
    - K: minus its mean over the sequence (per batch, head and channel), one scale per
      ``k_rows`` keys. Smoothing K this way is SageAttention's: it subtracts ``q . mean`` from
      every logit of a query row, which the softmax ignores, and it takes out the channel
      offsets that would otherwise spend the 8-bit range.
    q8, k8 are contiguous int8 ``[B, H, S_pad, bd]`` (``S_pad`` a multiple of ``block``), zero
    past S and past D; the scales float32 ``[B*H, S_pad / rows]``. One Triton pass per tensor
    (K's mean is one torch reduction before it).
    """
    B, H, S, D = q.shape
    sp = -(-S // block) * block
    dev = q.device
    bh = B * H
    q8 = torch.empty((B, H, sp, bd), dtype=torch.int8, device=dev)
    k8 = torch.empty((B, H, sp, bd), dtype=torch.int8, device=dev)
    qs = torch.empty((bh, sp if q_per_row else sp // q_rows), dtype=torch.float32, device=dev)
    ks = torch.empty((bh, sp // k_rows), dtype=torch.float32, device=dev)
    mean = torch.zeros((bh, bd), dtype=torch.float32, device=dev)
    mean[:, :D] = k.mean(dim=2, dtype=torch.float32).reshape(bh, D)
    _quant_rows[(sp // q_rows, bh)](q, q8, qs, mean, *q.stride(), H, S, D, float(qk_mul),
                                    R=q_rows, BD=bd, SUB_MEAN=False, PER_ROW=q_per_row,
                                    num_warps=4)
    _quant_rows[(sp // k_rows, bh)](k, k8, ks, mean, *k.stride(), H, S, D, 1.0,
                                    R=k_rows, BD=bd, SUB_MEAN=True, PER_ROW=False,
                                    num_warps=4)
    return q8, k8, qs, ks


@triton.jit
def _quant_v_tiles(X, Y, VSUM, MEAN, INV, sxb, sxh, sxs, sxd, H, S, D,
                   R: tl.constexpr, BD: tl.constexpr):
    """One ``R``-key tile of V: ``Y[bh, :, keys] = int8((X - mean) * inv)`` stored transposed
    (channels major: the K-major layout the 8-bit wgmma's B operand needs) and
    ``VSUM[bh, tile, :] = 128 x`` the tile's column sums of Y (the kernel's u8 offset)."""
    bh, b, h, rows, d, ok = bh_rows(H, S, D, R, BD)
    x = tl.load(tile_ptrs(X, b, h, rows, d, (sxb, sxh, sxs, sxd)), mask=ok,
                other=0.0).to(tl.float32)
    x = (x - tl.load(MEAN + bh * BD + d)[None, :]) * tl.load(INV + bh * BD + d)[None, :]
    y = tl.minimum(tl.maximum(tl.where(x >= 0.0, x + 0.5, x - 0.5), -127.0), 127.0)
    y = tl.where(ok, y, 0.0).to(tl.int32)
    n_pad = tl.num_programs(0) * R
    tl.store(Y + bh.to(tl.int64) * n_pad * BD + d.to(tl.int64)[None, :] * n_pad + rows[:, None],
             y.to(tl.int8))
    tl.store(VSUM + (bh.to(tl.int64) * tl.num_programs(0) + tl.program_id(0)) * BD + d,
             tl.sum(y, axis=0) * 128)


def quantize_v8(v, block: int, bd: int):
    """v ``[B, H, S, D]`` -> ``(v8t, vsum, v_scale, v_mean)`` for the 8-bit P.V product.

    V minus its mean over the sequence (per batch, head and channel), one scale per channel
    (amax / 127): int8 ``v8t`` ``[B, H, bd, S_pad]`` (transposed; zero past S and D),
    ``vsum`` int32 ``[B*H, S_pad / block, bd]`` = 128 x each ``block``-key tile's column sums
    (the kernel stores P as ``u8 - 128`` in s8, Triton's integer products being signed, and
    adds this back), ``v_scale`` and ``v_mean`` float32 ``[B*H, bd]``: O = P.v8 x v_scale / l +
    v_mean. Removing the mean leaves the 8 bits for what varies; the error model in
    ``bench/pv8_error_model.py`` measured per-channel scales against the alternatives.
    """
    B, H, S, D = v.shape
    sp = -(-S // block) * block
    bh = B * H
    dev = v.device
    mean = torch.zeros((bh, bd), dtype=torch.float32, device=dev)
    scale = torch.ones((bh, bd), dtype=torch.float32, device=dev)
    mu = v.mean(dim=2, dtype=torch.float32)
    lo, hi = torch.aminmax(v, dim=2)
    amax = torch.maximum(hi.float() - mu, mu - lo.float())
    mean[:, :D] = mu.reshape(bh, D)
    scale[:, :D] = (torch.clamp(amax, min=1e-30) / 127.0).reshape(bh, D)
    v8t = torch.empty((B, H, bd, sp), dtype=torch.int8, device=dev)
    vsum = torch.empty((bh, sp // block, bd), dtype=torch.int32, device=dev)
    _quant_v_tiles[(sp // block, bh)](v, v8t, vsum, mean, 1.0 / scale, *v.stride(), H, S, D,
                                      R=block, BD=bd, num_warps=8)
    return v8t, vsum, scale, mean
