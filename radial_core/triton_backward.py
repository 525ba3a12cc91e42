"""Triton backward kernels for block-sparse attention (issue 14): dQ, dK, dV over kept blocks.

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
   block (the key-side CSR, ``csr.block_mask_to_key_csr``) and accumulates ``dV = P^T dO`` and
   ``dK = scale * dS^T Q``.

Each output element is written by exactly one program: no atomics, deterministic. Optional
(``config["dq_mode"]``, measured no faster on an H200, docs/benchmarks.md "Backward"): dQ fused
into the dK/dV pass as in the original FlashAttention-2 and FlashAttention-3 (Shah et al.,
2024) backwards, each key tile adding its dQ share into a float32 buffer by pointer atomics
(1) or by tensor-descriptor reductions (2, the bulk copy engine's add in L2, FA3's choice). Rows with no
kept key have ``lse = +inf`` (the forward's convention): P = 0, zero gradient, no NaN. Keys past
S and padded keys are masked out of P in the dQ pass; in the dK/dV pass a program's own invalid
keys simply get zero rows at the end (each row of dK, dV depends only on its own key). As in
the forward, the block holding the sequence end is processed after the main loop with bounds
masks, so the main loops run without them; offsets that scale with batch, head or sequence are
int64. float32 inputs use three-pass TF32 products (``tf32x3``), as the forward does.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .csr import BlockCSR
from .torch_path import out_layout
from .triton_kernel import (LOG2E, _bh_rows, _csr_program, _entry_start, _key_valid,
                            _load_rows, _row0, _rows_mask, _tile_ptrs, descriptor,
                            launch_context)


@triton.jit
def _bwd_prep(O, DO, LSE, DELTA, LSE2,
              sob, soh, sos, sod, sdb, sdh, sds, sdd,
              H, S, D, S_PAD,
              BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    bh, b, h, rows, d, ok = _bh_rows(H, S, D, BLOCK_M, BLOCK_D)
    r64 = rows.to(tl.int64)
    o = tl.load(_tile_ptrs(O, b, h, rows, d, (sob, soh, sos, sod)), mask=ok,
                other=0.0).to(tl.float32)
    do = tl.load(_tile_ptrs(DO, b, h, rows, d, (sdb, sdh, sds, sdd)), mask=ok,
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
    h)`` (``_load_rows``' sources: row-0 pointers or, with ``USE_TMA``, tensor descriptors),
    ``ctx = (S, d_ok, kpm_base, qk_mul)``."""
    k_src, v_src, sks, svs, b, h = kv
    S, d_ok, kpm_base, qk_mul = ctx
    k = _load_rows(k_src, b, h, start_n, sks, S, d_ok, BLOCK_N, BLOCK_D, BOUNDS, EVEN_D,
                   USE_TMA)
    v = _load_rows(v_src, b, h, start_n, svs, S, d_ok, BLOCK_N, BLOCK_D, BOUNDS, EVEN_D,
                   USE_TMA)
    qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_mul
    if BOUNDS or HAS_KPM:
        valid = _key_valid(kpm_base, start_n + tl.arange(0, BLOCK_N), S, HAS_KPM)
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
    b, h, offs_m, first, n_main, n_tail = _csr_program(
        row_start, row_len, col_idx, H, NB, BLOCK, BLOCK_M, PER_HEAD_MASK, EVEN_S)
    offs_d, d_ok, r_mask = _rows_mask(offs_m, S, D, BLOCK_D, EVEN_D)
    q = tl.load(_tile_ptrs(Q, b, h, offs_m, offs_d, (sqb, sqh, sqs, sqd)), mask=r_mask,
                other=0.0)
    do = tl.load(_tile_ptrs(DO, b, h, offs_m, offs_d, (sdob, sdoh, sdos, sdod)),
                 mask=r_mask, other=0.0).to(q.dtype)
    stat = tl.program_id(1).to(tl.int64) * S_PAD + offs_m.to(tl.int64)
    lse2 = tl.load(LSE2 + stat)
    delta = tl.load(DELTA + stat)
    if USE_TMA:  # tensor descriptors over [B, H, S, D]
        kv = (K, V, sks, svs, b, h)
    else:
        kv = (_row0(K, b, h, offs_d, (skb, skh, sks, skd)),
              _row0(V, b, h, offs_d, (svb, svh, svs, svd)), sks, svs, b, h)
    ctx = (S, d_ok, KPM + b.to(tl.int64) * skpb, qk_mul)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    for t in range(0, n_main * SUB_N):
        start_n = _entry_start(col_idx, first, t, BLOCK, BLOCK_N)
        dq = _dq_tile(dq, q, do, lse2, delta, kv, start_n, ctx, BLOCK_N=BLOCK_N,
                      BLOCK_D=BLOCK_D, EVEN_D=EVEN_D, BOUNDS=False, HAS_KPM=HAS_KPM,
                      DOT_PREC=DOT_PREC, USE_TMA=USE_TMA)
    for t in range(0, n_tail * SUB_N):
        start_n = (NB - 1) * BLOCK + t * BLOCK_N
        dq = _dq_tile(dq, q, do, lse2, delta, kv, start_n, ctx, BLOCK_N=BLOCK_N,
                      BLOCK_D=BLOCK_D, EVEN_D=EVEN_D, BOUNDS=True, HAS_KPM=HAS_KPM,
                      DOT_PREC=DOT_PREC, USE_TMA=USE_TMA)
    dq = dq * sm_scale
    tl.store(_tile_ptrs(DQ, b, h, offs_m, offs_d, (sgb, sgh, sgs, sgd)),
             dq.to(DQ.dtype.element_ty), mask=r_mask)


@triton.jit
def _dkdv_tile(dk, dv, k, v, qdo, start_m, ctx,
               BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, EVEN_D: tl.constexpr,
               BOUNDS: tl.constexpr, DOT_PREC: tl.constexpr, DQ_MODE: tl.constexpr,
               MASK_K: tl.constexpr, USE_TMA: tl.constexpr):
    """Fold one ``BLOCK_M`` query tile into dK (unscaled) and dV; with ``DQ_MODE`` 1 or 2 also
    add this key tile's share of the tile's dQ (scaled) into the float32 accumulator.
    ``qdo = (q_src, do_src, sqs, sdos, lse2_base, delta_base, b, h)`` (``_load_rows``'
    sources: row-0 pointers or, with ``USE_TMA``, tensor descriptors),
    ``ctx = (S, d_ok, qk_mul, sm_scale, dq_acc, acc_row0, kvalid)``."""
    q_src, do_src, sqs, sdos, lse2_base, delta_base, b, h = qdo
    S, d_ok, qk_mul, sm_scale, dq_acc, acc_row0, kvalid = ctx
    q = _load_rows(q_src, b, h, start_m, sqs, S, d_ok, BLOCK_M, BLOCK_D, BOUNDS, EVEN_D,
                   USE_TMA)
    do = _load_rows(do_src, b, h, start_m, sdos, S, d_ok, BLOCK_M, BLOCK_D, BOUNDS, EVEN_D,
                    USE_TMA).to(q.dtype)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    lse2 = tl.load(lse2_base + offs_m)  # padded to whole blocks: +inf past S
    delta = tl.load(delta_base + offs_m)
    kq = tl.dot(k, tl.trans(q), input_precision=DOT_PREC) * qk_mul  # [BLOCK_N, BLOCK_M]
    pt = tl.math.exp2(kq - lse2[None, :])
    if MASK_K:
        # fused dQ sums over this tile's keys: padded keys and keys past S must not count
        pt = tl.where(kvalid[:, None], pt, 0.0)
    dv = tl.dot(pt.to(do.dtype), do, dv, input_precision=DOT_PREC)
    dpt = tl.dot(v, tl.trans(do), input_precision=DOT_PREC)
    dst = pt * (dpt - delta[None, :])
    ds16 = dst.to(q.dtype)
    dk = tl.dot(ds16, q, dk, input_precision=DOT_PREC)
    if DQ_MODE == 1:  # pointer atomics (red.global.add.f32)
        dqp = tl.dot(tl.trans(ds16), k, input_precision=DOT_PREC) * sm_scale
        rows = (acc_row0 + offs_m).to(tl.int64)
        tl.atomic_add(dq_acc + rows[:, None] * BLOCK_D + tl.arange(0, BLOCK_D)[None, :], dqp,
                      sem="relaxed")
    elif DQ_MODE == 2:  # tensor-descriptor reduction (Hopper's bulk copy engine adds in L2)
        dqp = tl.dot(tl.trans(ds16), k, input_precision=DOT_PREC) * sm_scale
        dq_acc.atomic_add([acc_row0 + start_m, 0], dqp)
    return dk, dv


@triton.jit
def _bwd_dkdv(
    Q, K, V, DO, DK, DV, LSE2, DELTA, KPM,
    col_start, col_len, row_idx,
    sqb, sqh, sqs, sqd, skb, skh, sks, skd, svb, svh, svs, svd,
    sdob, sdoh, sdos, sdod, skgb, skgh, skgs, skgd, svgb, svgh, svgs, svgd, skpb,
    H, S, D, NB, S_PAD, qk_mul, sm_scale, DQ_ACC,
    PER_HEAD_MASK: tl.constexpr, BLOCK: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    EVEN_D: tl.constexpr, EVEN_S: tl.constexpr, HAS_KPM: tl.constexpr,
    DOT_PREC: tl.constexpr, DQ_MODE: tl.constexpr, MASK_K: tl.constexpr,
    USE_TMA: tl.constexpr,
):
    SUB_M: tl.constexpr = BLOCK // BLOCK_M
    b, h, offs_n, first, n_main, n_tail = _csr_program(
        col_start, col_len, row_idx, H, NB, BLOCK, BLOCK_N, PER_HEAD_MASK, EVEN_S)
    pid_bh = tl.program_id(1)
    offs_d, d_ok, k_mask = _rows_mask(offs_n, S, D, BLOCK_D, EVEN_D)
    k = tl.load(_tile_ptrs(K, b, h, offs_n, offs_d, (skb, skh, sks, skd)), mask=k_mask,
                other=0.0)
    v = tl.load(_tile_ptrs(V, b, h, offs_n, offs_d, (svb, svh, svs, svd)), mask=k_mask,
                other=0.0)
    stat = pid_bh.to(tl.int64) * S_PAD
    if USE_TMA:  # tensor descriptors over [B, H, S, D]
        qdo = (Q, DO, sqs, sdos, LSE2 + stat, DELTA + stat, b, h)
    else:
        qdo = (_row0(Q, b, h, offs_d, (sqb, sqh, sqs, sqd)),
               _row0(DO, b, h, offs_d, (sdob, sdoh, sdos, sdod)), sqs, sdos,
               LSE2 + stat, DELTA + stat, b, h)
    # keys past S or padded never entered the softmax
    kvalid = _key_valid(KPM + b.to(tl.int64) * skpb, offs_n, S, HAS_KPM)
    ctx = (S, d_ok, qk_mul, sm_scale, DQ_ACC, pid_bh * S_PAD, kvalid)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)

    # the query block holding the sequence end is the last entry of a key block's list
    for t in range(0, n_main * SUB_M):
        start_m = _entry_start(row_idx, first, t, BLOCK, BLOCK_M)
        dk, dv = _dkdv_tile(dk, dv, k, v, qdo, start_m, ctx, BLOCK_M=BLOCK_M, BLOCK_D=BLOCK_D,
                            EVEN_D=EVEN_D, BOUNDS=False, DOT_PREC=DOT_PREC, DQ_MODE=DQ_MODE,
                            MASK_K=MASK_K, USE_TMA=USE_TMA)
    for t in range(0, n_tail * SUB_M):
        start_m = (NB - 1) * BLOCK + t * BLOCK_M
        dk, dv = _dkdv_tile(dk, dv, k, v, qdo, start_m, ctx, BLOCK_M=BLOCK_M, BLOCK_D=BLOCK_D,
                            EVEN_D=EVEN_D, BOUNDS=True, DOT_PREC=DOT_PREC, DQ_MODE=DQ_MODE,
                            MASK_K=MASK_K, USE_TMA=USE_TMA)

    # their rows of dK, dV are zero
    dk = tl.where(kvalid[:, None], dk * sm_scale, 0.0)
    dv = tl.where(kvalid[:, None], dv, 0.0)
    tl.store(_tile_ptrs(DK, b, h, offs_n, offs_d, (skgb, skgh, skgs, skgd)),
             dk.to(DK.dtype.element_ty), mask=k_mask)
    tl.store(_tile_ptrs(DV, b, h, offs_n, offs_d, (svgb, svgh, svgs, svgd)),
             dv.to(DV.dtype.element_ty), mask=k_mask)


@triton.jit
def _dq_cast(ACC, DQ, sgb, sgh, sgs, sgd, H, S, D, S_PAD,
             BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """DQ[b, h, rows] = ACC[bh, rows] (the fused modes' float32 accumulator, already scaled)."""
    bh, b, h, rows, d, ok = _bh_rows(H, S, D, BLOCK_M, BLOCK_D)
    x = tl.load(ACC + (bh.to(tl.int64) * S_PAD + rows.to(tl.int64))[:, None] * BLOCK_D
                + d[None, :])
    tl.store(_tile_ptrs(DQ, b, h, rows, d, (sgb, sgh, sgs, sgd)), x.to(DQ.dtype.element_ty),
             mask=ok)


def pick_bwd_config(head_dim: int, dtype: torch.dtype, block_size: int,
                    device: torch.device) -> dict:
    """Launch configuration of the two main kernels (no autotuning at run time).

    ``dq``: ``BLOCK_M`` query rows per program, ``BLOCK_N`` keys per tile; ``dkdv``:
    ``BLOCK_N`` keys per program, ``BLOCK_M`` query rows per tile. The Hopper row was chosen
    on an H200 (docs/benchmarks.md, "Backward"); the others are conservative (small tiles,
    two stages, to fit ~100 KB of shared memory and avoid register spills).
    """
    bd = max(16, triton.next_power_of_2(head_dim))
    hopper = device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 9
    if dtype == torch.float32 or bd >= 256:
        dq = dict(BLOCK_M=32, BLOCK_N=32, num_warps=4, num_stages=1)
        dkdv = dict(BLOCK_M=32, BLOCK_N=32, num_warps=4, num_stages=1)
    elif hopper:
        # H200 sweeps, Wan 720p bf16 (dQ / dK-dV pass alone, ms): pointer loads dQ 64x64 w4
        # 94.8, 128x64 w8 95.9, 128x32 w4 s3 97.7; dK/dV 64x64 w4 120.0, 128x64 w8 130.6,
        # 64x32 w4 s3 140.0. Tensor descriptors (TMA) at 64x64 w4 s2: dQ 80.1, dK/dV 108.0.
        dq = dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2, USE_TMA=True)
        dkdv = dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2, USE_TMA=True)
    else:
        dq = dict(BLOCK_M=64, BLOCK_N=32, num_warps=4, num_stages=2)
        dkdv = dict(BLOCK_M=32, BLOCK_N=64, num_warps=4, num_stages=2)
    for c in (dq, dkdv):
        c["BLOCK_M"] = min(c["BLOCK_M"], block_size)
        c["BLOCK_N"] = min(c["BLOCK_N"], block_size)
    return {"dq": dq, "dkdv": dkdv, "BLOCK_D": bd}


def triton_block_sparse_attention_backward(q, k, v, out, lse, grad_out, csr: BlockCSR,
                                           key_csr: BlockCSR, block_size: int,
                                           key_padding_mask=None, scale=None, config=None,
                                           parts=("dq", "dkdv")):
    """dQ, dK, dV ``[B, H, S, D]`` (each a transposed view of a ``[B, S, H, D]`` buffer).

    ``out``, ``lse``: the exact forward's output and float32 LSE (``triton_kernel.forward(...,
    return_lse=True)``); ``csr``, ``key_csr``: the mask's CSR and key-side CSR on q's device.
    Any strides for q, k, v, out and ``grad_out`` (a broadcast gradient with zero strides too).
    ``config`` overrides ``pick_bwd_config`` (tests, benchmarks); ``parts`` lets a benchmark
    time one of the two main kernels alone (the gradients it skips are left unwritten).
    ``config["dq_mode"]``: 0 = dQ in its own pass over the CSR (default); 1 / 2 = fused into
    the dK/dV pass, each key tile adding its share of dQ into a float32 buffer by pointer
    atomics (1) or tensor-descriptor reductions (2, the bulk copy engine on Hopper; falls back
    to 1 where Triton has no descriptors), then one cast pass. ``config["dq"]["USE_TMA"]`` /
    ``config["dkdv"]["USE_TMA"]``: that pass loads the tiles it walks (K, V / Q, dO) through
    tensor descriptors, as the forward does, where the copy engine can take them (on by
    default on Hopper: −11 % for the backward at Wan 720p; elsewhere, or where Triton has no
    descriptors, the pass falls back to pointer loads).
    """
    B, H, S, D = q.shape
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    cfg = config or pick_bwd_config(D, q.dtype, block_size, q.device)
    bd = cfg["BLOCK_D"]
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
    mode = int(cfg.get("dq_mode", 0))
    cd = dict(cfg["dkdv"])
    acc = dq_arg = delta  # never read with mode 0
    if mode:
        # fused: the dK/dV pass also adds each key tile's dQ share into a float32 buffer
        acc = torch.zeros((B * H * s_pad, bd), dtype=torch.float32, device=dev)
        dq_arg = acc
        if mode == 2:
            dq_arg = descriptor(acc, [cd["BLOCK_M"], bd])
            if dq_arg is None:
                mode, dq_arg = 1, acc
    c = dict(cfg["dq"])
    # the key tiles of the dQ pass and the query / dO tiles of the dK/dV pass
    ks, vs, c["USE_TMA"] = _sources(c.pop("USE_TMA", False), k, v, c["BLOCK_N"], bd)
    qs, dos, cd["USE_TMA"] = _sources(cd.pop("USE_TMA", False), q, grad_out, cd["BLOCK_M"], bd)
    with guard:
        _bwd_prep[(s_pad // 64, B * H)](
            out, grad_out, lse, delta, lse2, *out.stride(), *grad_out.stride(),
            H, S, D, s_pad, BLOCK_M=64, BLOCK_D=bd, num_warps=4)
        if mode == 0 and "dq" in parts:
            _bwd_dq[(nb * (block_size // c["BLOCK_M"]), B * H)](
                q, ks, vs, grad_out, dq, lse2, delta, kpm,
                csr.row_start, csr.row_len, csr.col_idx,
                *strides, *dq.stride(), skpb,
                H, S, D, nb, s_pad, qk_mul, float(scale), **common, **c)
        if "dkdv" in parts:
            _bwd_dkdv[(nb * (block_size // cd["BLOCK_N"]), B * H)](
                qs, k, v, dos, dk, dv, lse2, delta, kpm,
                key_csr.row_start, key_csr.row_len, key_csr.col_idx,
                *strides, *dk.stride(), *dv.stride(), skpb,
                H, S, D, nb, s_pad, qk_mul, float(scale), dq_arg, **common, **cd,
                DQ_MODE=mode,
                MASK_K=bool(mode) and (key_padding_mask is not None or S % block_size != 0))
        if mode:
            _dq_cast[(s_pad // 64, B * H)](acc, dq, *dq.stride(), H, S, D, s_pad,
                                           BLOCK_M=64, BLOCK_D=bd, num_warps=4)
    return dq, dk, dv


def _sources(want_tma: bool, x: torch.Tensor, y: torch.Tensor, rows: int, bd: int):
    """``(x_src, y_src, USE_TMA)`` for the two tensors a pass walks tile by tile: tensor
    descriptors with ``rows x bd`` tiles where asked and the copy engine can take both (no zero
    strides, as a broadcast gradient has), else the tensors themselves (pointer loads)."""
    if want_tma and all(st > 0 for t in (x, y) for st in t.stride()):
        dx, dy = descriptor(x, [1, 1, rows, bd]), descriptor(y, [1, 1, rows, bd])
        if dx is not None and dy is not None:
            return dx, dy, True
    return x, y, False
