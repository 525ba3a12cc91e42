"""Triton backward kernels for block-sparse attention: dQ, dK, dV over kept blocks.

The structure is the FlashAttention-2 backward (Dao, 2023; also the Triton fused-attention
tutorial): the forward saves only its output O and the log-sum-exp of each query row, and the
backward recomputes the probabilities tile by tile, ``P = exp2(q.k * scale * log2 e - lse2)``,
never storing the attention matrix. Three launches:

1. ``_bwd_prep``: ``delta_i = rowsum(dO_i * O_i)`` and the LSE in base-2 units, both float32,
   padded to whole blocks (rows past S: ``delta = 0``, ``lse2 = +inf``, so their P is 0).
2. ``_bwd_dq``: one program per ``BLOCK_M`` query rows of one (batch, head); it walks the key
   blocks that its query block keeps (the forward's CSR) and accumulates
   ``dQ = scale * sum_j dS_ij K_j`` with ``dS = P * (dO V^T - delta)``.
3. ``_bwd_dkdv``: one program per ``BLOCK_N`` keys; it walks the query blocks that keep its key
   block (the key-side CSR, ``csr.key_csr_from_csr``) and accumulates ``dV = P^T dO`` and
   ``dK = scale * dS^T Q``.

Each output element is written by exactly one program: no atomics, deterministic. (dQ fused
into the dK/dV pass by atomics, as FlashAttention-2's and -3's backwards do, measured no faster
on an H200: docs/benchmarks.md "Backward".) Rows with no kept key have ``lse = +inf`` (the
forward's convention): P = 0, zero gradient, no NaN. Keys past
S and padded keys are masked out of P in the dQ pass; in the dK/dV pass a program's own invalid
keys simply get zero rows at the end (each row of dK, dV depends only on its own key). As in
the forward, the block holding the sequence end is processed after the main loop with bounds
masks, so the main loops run without them; offsets that scale with batch, head or sequence are
int64. float32 inputs use three-pass TF32 products (``tf32x3``), as the forward does.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .torch_path import out_layout
from .triton_tiles import (LOG2E, bh_rows, csr_program, descriptor, entry_start, key_valid,
                           launch_context, load_rows, row0, rows_mask, tile_ptrs)


@triton.jit
def _bwd_prep(O, DO, LSE, DELTA, LSE2,
              sob, soh, sos, sod, sdb, sdh, sds, sdd,
              H, S, D, S_PAD,
              BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    bh, b, h, rows, d, ok = bh_rows(H, S, D, BLOCK_M, BLOCK_D)
    r64 = rows.to(tl.int64)
    o = tl.load(tile_ptrs(O, b, h, rows, d, (sob, soh, sos, sod)), mask=ok,
                other=0.0).to(tl.float32)
    do = tl.load(tile_ptrs(DO, b, h, rows, d, (sdb, sdh, sds, sdd)), mask=ok,
                 other=0.0).to(tl.float32)
    delta = tl.sum(o * do, 1)
    lse = tl.load(LSE + bh.to(tl.int64) * S + r64, mask=rows < S, other=float("inf"))
    base = bh.to(tl.int64) * S_PAD + r64
    tl.store(DELTA + base, delta)
    tl.store(LSE2 + base, lse * 1.4426950408889634)  # log2(e): LSE in base-2 units


@triton.jit
def _dq_tile(dq, q, do, lse2, delta, kv, start_n, ctx,
             BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, EVEN_D: tl.constexpr,
             BOUNDS: tl.constexpr, HAS_KPM: tl.constexpr, DOT_PREC: tl.constexpr,
             USE_TMA: tl.constexpr):
    """Fold one ``BLOCK_N`` key tile into dQ (unscaled). ``kv = (k_src, v_src, sks, svs, b,
    h)`` (``load_rows``' sources: row-0 pointers or, with ``USE_TMA``, tensor descriptors),
    ``ctx = (S, d_ok, kpm_base, qk_mul)``."""
    k_src, v_src, sks, svs, b, h = kv
    S, d_ok, kpm_base, qk_mul = ctx
    k = load_rows(k_src, b, h, start_n, sks, S, d_ok, BLOCK_N, BLOCK_D, BOUNDS, EVEN_D,
                   USE_TMA)
    v = load_rows(v_src, b, h, start_n, svs, S, d_ok, BLOCK_N, BLOCK_D, BOUNDS, EVEN_D,
                   USE_TMA)
    qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_mul
    if BOUNDS or HAS_KPM:
        valid = key_valid(kpm_base, start_n + tl.arange(0, BLOCK_N), S, HAS_KPM)
        qk = tl.where(valid[None, :], qk, float("-inf"))
    p = tl.math.exp2(qk - lse2[:, None])
    dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
    ds = p * (dp - delta[:, None])
    return tl.dot(ds.to(k.dtype), k, dq, input_precision=DOT_PREC)


@triton.jit
def _bwd_dq(
    Q, K, V, DO, DQ, LSE2, DELTA, KPM,
    row_start, row_len, col_idx,
    sqb, sqh, sqs, sqd, skb, skh, sks, skd, svb, svh, svs, svd,
    sdob, sdoh, sdos, sdod, sgb, sgh, sgs, sgd, skpb,
    H, S, D, NB, S_PAD, qk_mul, sm_scale,
    PER_HEAD_MASK: tl.constexpr, BLOCK: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    EVEN_D: tl.constexpr, EVEN_S: tl.constexpr, HAS_KPM: tl.constexpr,
    DOT_PREC: tl.constexpr, USE_TMA: tl.constexpr,
):
    SUB_N: tl.constexpr = BLOCK // BLOCK_N
    b, h, offs_m, first, n_main, n_tail = csr_program(
        row_start, row_len, col_idx, H, NB, BLOCK, BLOCK_M, PER_HEAD_MASK, EVEN_S)
    offs_d, d_ok, r_mask = rows_mask(offs_m, S, D, BLOCK_D, EVEN_D)
    q = tl.load(tile_ptrs(Q, b, h, offs_m, offs_d, (sqb, sqh, sqs, sqd)), mask=r_mask,
                other=0.0)
    do = tl.load(tile_ptrs(DO, b, h, offs_m, offs_d, (sdob, sdoh, sdos, sdod)),
                 mask=r_mask, other=0.0).to(q.dtype)
    stat = tl.program_id(1).to(tl.int64) * S_PAD + offs_m.to(tl.int64)
    lse2 = tl.load(LSE2 + stat)
    delta = tl.load(DELTA + stat)
    if USE_TMA:  # tensor descriptors over [B, H, S, D]
        kv = (K, V, sks, svs, b, h)
    else:
        kv = (row0(K, b, h, offs_d, (skb, skh, sks, skd)),
              row0(V, b, h, offs_d, (svb, svh, svs, svd)), sks, svs, b, h)
    ctx = (S, d_ok, KPM + b.to(tl.int64) * skpb, qk_mul)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    for t in range(0, n_main * SUB_N):
        start_n = entry_start(col_idx, first, t, BLOCK, BLOCK_N)
        dq = _dq_tile(dq, q, do, lse2, delta, kv, start_n, ctx, BLOCK_N=BLOCK_N,
                      BLOCK_D=BLOCK_D, EVEN_D=EVEN_D, BOUNDS=False, HAS_KPM=HAS_KPM,
                      DOT_PREC=DOT_PREC, USE_TMA=USE_TMA)
    for t in range(0, n_tail * SUB_N):
        start_n = (NB - 1) * BLOCK + t * BLOCK_N
        dq = _dq_tile(dq, q, do, lse2, delta, kv, start_n, ctx, BLOCK_N=BLOCK_N,
                      BLOCK_D=BLOCK_D, EVEN_D=EVEN_D, BOUNDS=True, HAS_KPM=HAS_KPM,
                      DOT_PREC=DOT_PREC, USE_TMA=USE_TMA)
    dq = dq * sm_scale
    tl.store(tile_ptrs(DQ, b, h, offs_m, offs_d, (sgb, sgh, sgs, sgd)),
             dq.to(DQ.dtype.element_ty), mask=r_mask)


@triton.jit
def _dkdv_tile(dk, dv, k, v, qdo, start_m, ctx,
               BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, EVEN_D: tl.constexpr,
               BOUNDS: tl.constexpr, DOT_PREC: tl.constexpr, USE_TMA: tl.constexpr):
    """Fold one ``BLOCK_M`` query tile into dK (unscaled) and dV.
    ``qdo = (q_src, do_src, sqs, sdos, lse2_base, delta_base, b, h)`` (``load_rows``'
    sources: row-0 pointers or, with ``USE_TMA``, tensor descriptors),
    ``ctx = (S, d_ok, qk_mul)``."""
    q_src, do_src, sqs, sdos, lse2_base, delta_base, b, h = qdo
    S, d_ok, qk_mul = ctx
    q = load_rows(q_src, b, h, start_m, sqs, S, d_ok, BLOCK_M, BLOCK_D, BOUNDS, EVEN_D,
                   USE_TMA)
    do = load_rows(do_src, b, h, start_m, sdos, S, d_ok, BLOCK_M, BLOCK_D, BOUNDS, EVEN_D,
                    USE_TMA).to(q.dtype)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    lse2 = tl.load(lse2_base + offs_m)  # padded to whole blocks: +inf past S
    delta = tl.load(delta_base + offs_m)
    kq = tl.dot(k, tl.trans(q), input_precision=DOT_PREC) * qk_mul  # [BLOCK_N, BLOCK_M]
    pt = tl.math.exp2(kq - lse2[None, :])
    dv = tl.dot(pt.to(do.dtype), do, dv, input_precision=DOT_PREC)
    dpt = tl.dot(v, tl.trans(do), input_precision=DOT_PREC)
    dst = pt * (dpt - delta[None, :])
    ds16 = dst.to(q.dtype)
    dk = tl.dot(ds16, q, dk, input_precision=DOT_PREC)
    return dk, dv


@triton.jit
def _bwd_dkdv(
    Q, K, V, DO, DK, DV, LSE2, DELTA, KPM,
    col_start, col_len, row_idx,
    sqb, sqh, sqs, sqd, skb, skh, sks, skd, svb, svh, svs, svd,
    sdob, sdoh, sdos, sdod, skgb, skgh, skgs, skgd, svgb, svgh, svgs, svgd, skpb,
    H, S, D, NB, S_PAD, qk_mul, sm_scale,
    PER_HEAD_MASK: tl.constexpr, BLOCK: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    EVEN_D: tl.constexpr, EVEN_S: tl.constexpr, HAS_KPM: tl.constexpr,
    DOT_PREC: tl.constexpr, USE_TMA: tl.constexpr,
):
    SUB_M: tl.constexpr = BLOCK // BLOCK_M
    b, h, offs_n, first, n_main, n_tail = csr_program(
        col_start, col_len, row_idx, H, NB, BLOCK, BLOCK_N, PER_HEAD_MASK, EVEN_S)
    pid_bh = tl.program_id(1)
    offs_d, d_ok, k_mask = rows_mask(offs_n, S, D, BLOCK_D, EVEN_D)
    k = tl.load(tile_ptrs(K, b, h, offs_n, offs_d, (skb, skh, sks, skd)), mask=k_mask,
                other=0.0)
    v = tl.load(tile_ptrs(V, b, h, offs_n, offs_d, (svb, svh, svs, svd)), mask=k_mask,
                other=0.0)
    stat = pid_bh.to(tl.int64) * S_PAD
    if USE_TMA:  # tensor descriptors over [B, H, S, D]
        qdo = (Q, DO, sqs, sdos, LSE2 + stat, DELTA + stat, b, h)
    else:
        qdo = (row0(Q, b, h, offs_d, (sqb, sqh, sqs, sqd)),
               row0(DO, b, h, offs_d, (sdob, sdoh, sdos, sdod)), sqs, sdos,
               LSE2 + stat, DELTA + stat, b, h)
    # keys past S or padded never entered the softmax
    kvalid = key_valid(KPM + b.to(tl.int64) * skpb, offs_n, S, HAS_KPM)
    ctx = (S, d_ok, qk_mul)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)

    # the query block holding the sequence end is the last entry of a key block's list
    for t in range(0, n_main * SUB_M):
        start_m = entry_start(row_idx, first, t, BLOCK, BLOCK_M)
        dk, dv = _dkdv_tile(dk, dv, k, v, qdo, start_m, ctx, BLOCK_M=BLOCK_M, BLOCK_D=BLOCK_D,
                            EVEN_D=EVEN_D, BOUNDS=False, DOT_PREC=DOT_PREC, USE_TMA=USE_TMA)
    for t in range(0, n_tail * SUB_M):
        start_m = (NB - 1) * BLOCK + t * BLOCK_M
        dk, dv = _dkdv_tile(dk, dv, k, v, qdo, start_m, ctx, BLOCK_M=BLOCK_M, BLOCK_D=BLOCK_D,
                            EVEN_D=EVEN_D, BOUNDS=True, DOT_PREC=DOT_PREC, USE_TMA=USE_TMA)

    # their rows of dK, dV are zero
    dk = tl.where(kvalid[:, None], dk * sm_scale, 0.0)
    dv = tl.where(kvalid[:, None], dv, 0.0)
    tl.store(tile_ptrs(DK, b, h, offs_n, offs_d, (skgb, skgh, skgs, skgd)),
             dk.to(DK.dtype.element_ty), mask=k_mask)
    tl.store(tile_ptrs(DV, b, h, offs_n, offs_d, (svgb, svgh, svgs, svgd)),
             dv.to(DV.dtype.element_ty), mask=k_mask)


def triton_block_sparse_attention_backward(q, k, v, out, lse, grad_out, csr, key_csr, cfg,
                                           *, key_padding_mask=None, scale: float,
                                           warmup: bool = False):
    """dQ, dK, dV ``[B, H, S, D]`` (each a transposed view of a ``[B, S, H, D]`` buffer).

    ``out``, ``lse``: the exact forward's output and float32 LSE
    (``triton_kernel.triton_block_sparse_attention(..., return_lse=True)``); ``csr``,
    ``key_csr``: the mask's CSR and key-side CSR on q's device. Any strides for q, k, v, out
    and ``grad_out`` (a broadcast gradient with zero strides too). ``cfg``: the launch
    configuration ``dispatch`` chose (``dispatch.BackwardConfig``: per pass tile sizes, warps,
    stages and whether it loads the tiles it walks through tensor descriptors, ``grad_out``'s
    strides included: ``dispatch.for_gradient``).
    ``warmup=True`` compiles the three kernels for the current target without launching and
    returns Triton's compiled kernels (tests/test_triton_compile.py reads them).
    """
    B, H, S, D = q.shape
    block_size = csr.block_size
    bd = cfg.block_d
    nb = csr.nb
    s_pad = nb * block_size
    dev = q.device
    lse = lse.to(device=dev, dtype=torch.float32).contiguous()
    kpm, skpb, prec, guard = launch_context(q, key_padding_mask, csr.row_len)
    delta = torch.empty((B * H, s_pad), dtype=torch.float32, device=dev)
    lse2 = torch.empty((B * H, s_pad), dtype=torch.float32, device=dev)
    dq, dk, dv = out_layout(q), out_layout(k), out_layout(v)
    common = dict(PER_HEAD_MASK=csr.mask_heads > 1, BLOCK=block_size, BLOCK_D=bd,
                  EVEN_D=bd == D, EVEN_S=S % block_size == 0,
                  HAS_KPM=key_padding_mask is not None, DOT_PREC=prec)
    strides = (*q.stride(), *k.stride(), *v.stride(), *grad_out.stride())
    qk_mul = float(scale) * LOG2E
    c, cd = cfg.dq, cfg.dkdv
    # the key tiles of the dQ pass and the query / dO tiles of the dK/dV pass
    ks, vs = k, v
    if c.use_tma:
        ks, vs = descriptor(k, [1, 1, c.block_n, bd]), descriptor(v, [1, 1, c.block_n, bd])
    qs, dos, dkdv_tma = q, grad_out, bool(cd.use_tma)
    if dkdv_tma:
        qs, dos = descriptor(q, [1, 1, cd.block_m, bd]), descriptor(grad_out, [1, 1, cd.block_m, bd])
    with guard:
        compiled = [_kernel(_bwd_prep, (s_pad // 64, B * H), warmup)(
            out, grad_out, lse, delta, lse2, *out.stride(), *grad_out.stride(),
            H, S, D, s_pad, BLOCK_M=64, BLOCK_D=bd, num_warps=4)]
        compiled.append(_kernel(_bwd_dq, (nb * (block_size // c.block_m), B * H), warmup)(
            q, ks, vs, grad_out, dq, lse2, delta, kpm,
            csr.row_start, csr.row_len, csr.col_idx,
            *strides, *dq.stride(), skpb,
            H, S, D, nb, s_pad, qk_mul, float(scale), **common,
            BLOCK_M=c.block_m, BLOCK_N=c.block_n, num_warps=c.num_warps,
            num_stages=c.num_stages, USE_TMA=bool(c.use_tma)))
        compiled.append(_kernel(_bwd_dkdv, (nb * (block_size // cd.block_n), B * H), warmup)(
            qs, k, v, dos, dk, dv, lse2, delta, kpm,
            key_csr.row_start, key_csr.row_len, key_csr.col_idx,
            *strides, *dk.stride(), *dv.stride(), skpb,
            H, S, D, nb, s_pad, qk_mul, float(scale), **common,
            BLOCK_M=cd.block_m, BLOCK_N=cd.block_n, num_warps=cd.num_warps,
            num_stages=cd.num_stages, USE_TMA=dkdv_tma))
    return compiled if warmup else (dq, dk, dv)


def _kernel(fn, grid, warmup: bool):
    """``fn`` launched on ``grid``, or with ``warmup`` compiled only."""
    return functools.partial(fn.warmup, grid=grid) if warmup else fn[grid]

