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

import contextlib
import math

import torch
import triton
import triton.language as tl

from .csr import BlockCSR

LOG2E = 1.4426950408889634


@triton.jit
def _bwd_prep(O, DO, LSE, DELTA, LSE2,
              sob, soh, sos, sod, sdb, sdh, sds, sdd,
              H, S, D, S_PAD,
              BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    d = tl.arange(0, BLOCK_D)
    r64 = rows.to(tl.int64)
    ok = (rows < S)[:, None] & (d < D)[None, :]
    o = tl.load(O + b * sob + h * soh + r64[:, None] * sos + d[None, :] * sod, mask=ok,
                other=0.0).to(tl.float32)
    do = tl.load(DO + b * sdb + h * sdh + r64[:, None] * sds + d[None, :] * sdd, mask=ok,
                 other=0.0).to(tl.float32)
    delta = tl.sum(o * do, 1)
    lse = tl.load(LSE + bh.to(tl.int64) * S + r64, mask=rows < S, other=float("inf"))
    base = bh.to(tl.int64) * S_PAD + r64
    tl.store(DELTA + base, delta)
    tl.store(LSE2 + base, lse * 1.4426950408889634)


@triton.jit
def _rows(base, start, stride_s, S, d_ok, ROWS: tl.constexpr, BOUNDS: tl.constexpr,
          EVEN_D: tl.constexpr):
    """``ROWS x BLOCK_D`` tile of sequence rows ``start..start+ROWS`` (``base``: a ``[1, BD]``
    block of pointers to row 0 of this (batch, head)); zeros past S and past D."""
    rows = start + tl.arange(0, ROWS)
    ptrs = base + rows.to(tl.int64)[:, None] * stride_s
    if BOUNDS:
        lm = (rows < S)[:, None]
        if not EVEN_D:
            lm = lm & d_ok
        t = tl.load(ptrs, mask=lm, other=0.0)
    elif EVEN_D:
        t = tl.load(ptrs)
    else:
        t = tl.load(ptrs, mask=d_ok, other=0.0)
    return t


@triton.jit
def _dq_tile(dq, q, do, lse2, delta, kv, start_n, ctx,
             BLOCK_N: tl.constexpr, EVEN_D: tl.constexpr, BOUNDS: tl.constexpr,
             HAS_KPM: tl.constexpr, DOT_PREC: tl.constexpr):
    """Fold one ``BLOCK_N`` key tile into dQ (unscaled). ``kv = (k_base, v_base, sks, svs)``,
    ``ctx = (S, d_ok, kpm_base, qk_mul)``."""
    k_base, v_base, sks, svs = kv
    S, d_ok, kpm_base, qk_mul = ctx
    k = _rows(k_base, start_n, sks, S, d_ok, BLOCK_N, BOUNDS, EVEN_D)
    v = _rows(v_base, start_n, svs, S, d_ok, BLOCK_N, BOUNDS, EVEN_D)
    qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_mul
    if BOUNDS or HAS_KPM:
        offs_n = start_n + tl.arange(0, BLOCK_N)
        valid = offs_n < S
        if HAS_KPM:
            keep = tl.load(kpm_base + offs_n, mask=valid, other=0)
            valid = valid & (keep != 0)
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
    DOT_PREC: tl.constexpr,
):
    SUB_M: tl.constexpr = BLOCK // BLOCK_M
    SUB_N: tl.constexpr = BLOCK // BLOCK_N
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    row = pid_m // SUB_M
    sub = pid_m % SUB_M
    if PER_HEAD_MASK:
        r_idx = h * NB + row
    else:
        r_idx = row
    first = tl.load(row_start + r_idx)
    count = tl.load(row_len + r_idx)

    b64 = b.to(tl.int64)
    h64 = h.to(tl.int64)
    offs_m = row * BLOCK + sub * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = (offs_d < D)[None, :]
    m64 = offs_m.to(tl.int64)
    r_mask = (offs_m < S)[:, None]
    if not EVEN_D:
        r_mask = r_mask & d_ok
    q = tl.load(Q + b64 * sqb + h64 * sqh + m64[:, None] * sqs + offs_d[None, :] * sqd,
                mask=r_mask, other=0.0)
    do = tl.load(DO + b64 * sdob + h64 * sdoh + m64[:, None] * sdos + offs_d[None, :] * sdod,
                 mask=r_mask, other=0.0).to(q.dtype)
    stat = pid_bh.to(tl.int64) * S_PAD + m64
    lse2 = tl.load(LSE2 + stat)
    delta = tl.load(DELTA + stat)
    kv = (K + b64 * skb + h64 * skh + offs_d[None, :] * skd,
          V + b64 * svb + h64 * svh + offs_d[None, :] * svd, sks, svs)
    ctx = (S, d_ok, KPM + b64 * skpb, qk_mul)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    if EVEN_S:
        n_main = count
        n_tail = 0
    else:
        last = tl.load(col_idx + first + count - 1, mask=count > 0, other=-1)
        n_tail = (last == NB - 1).to(tl.int32)
        n_main = count - n_tail
    for t in range(0, n_main * SUB_N):
        kb = tl.load(col_idx + first + t // SUB_N)
        start_n = kb * BLOCK + (t % SUB_N) * BLOCK_N
        dq = _dq_tile(dq, q, do, lse2, delta, kv, start_n, ctx, BLOCK_N=BLOCK_N,
                      EVEN_D=EVEN_D, BOUNDS=False, HAS_KPM=HAS_KPM, DOT_PREC=DOT_PREC)
    for t in range(0, n_tail * SUB_N):
        start_n = (NB - 1) * BLOCK + t * BLOCK_N
        dq = _dq_tile(dq, q, do, lse2, delta, kv, start_n, ctx, BLOCK_N=BLOCK_N,
                      EVEN_D=EVEN_D, BOUNDS=True, HAS_KPM=HAS_KPM, DOT_PREC=DOT_PREC)
    dq = dq * sm_scale
    tl.store(DQ + b64 * sgb + h64 * sgh + m64[:, None] * sgs + offs_d[None, :] * sgd,
             dq.to(DQ.dtype.element_ty), mask=r_mask)


@triton.jit
def _dkdv_tile(dk, dv, k, v, qdo, start_m, ctx,
               BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, EVEN_D: tl.constexpr,
               BOUNDS: tl.constexpr, DOT_PREC: tl.constexpr, DQ_MODE: tl.constexpr,
               MASK_K: tl.constexpr):
    """Fold one ``BLOCK_M`` query tile into dK (unscaled) and dV; with ``DQ_MODE`` 1 or 2 also
    add this key tile's share of the tile's dQ (scaled) into the float32 accumulator.
    ``qdo = (q_base, do_base, sqs, sdos, lse2_base, delta_base)``,
    ``ctx = (S, d_ok, qk_mul, sm_scale, dq_acc, acc_row0, kvalid)``."""
    q_base, do_base, sqs, sdos, lse2_base, delta_base = qdo
    S, d_ok, qk_mul, sm_scale, dq_acc, acc_row0, kvalid = ctx
    q = _rows(q_base, start_m, sqs, S, d_ok, BLOCK_M, BOUNDS, EVEN_D)
    do = _rows(do_base, start_m, sdos, S, d_ok, BLOCK_M, BOUNDS, EVEN_D).to(q.dtype)
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
):
    SUB_M: tl.constexpr = BLOCK // BLOCK_M
    SUB_N: tl.constexpr = BLOCK // BLOCK_N
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    col = pid_n // SUB_N
    sub = pid_n % SUB_N
    if PER_HEAD_MASK:
        c_idx = h * NB + col
    else:
        c_idx = col
    first = tl.load(col_start + c_idx)
    count = tl.load(col_len + c_idx)

    b64 = b.to(tl.int64)
    h64 = h.to(tl.int64)
    offs_n = col * BLOCK + sub * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = (offs_d < D)[None, :]
    n64 = offs_n.to(tl.int64)
    k_mask = (offs_n < S)[:, None]
    if not EVEN_D:
        k_mask = k_mask & d_ok
    k = tl.load(K + b64 * skb + h64 * skh + n64[:, None] * sks + offs_d[None, :] * skd,
                mask=k_mask, other=0.0)
    v = tl.load(V + b64 * svb + h64 * svh + n64[:, None] * svs + offs_d[None, :] * svd,
                mask=k_mask, other=0.0)
    stat = pid_bh.to(tl.int64) * S_PAD
    qdo = (Q + b64 * sqb + h64 * sqh + offs_d[None, :] * sqd,
           DO + b64 * sdob + h64 * sdoh + offs_d[None, :] * sdod, sqs, sdos,
           LSE2 + stat, DELTA + stat)
    # keys past S or padded never entered the softmax
    kvalid = offs_n < S
    if HAS_KPM:
        keep = tl.load(KPM + b64 * skpb + offs_n, mask=kvalid, other=0)
        kvalid = kvalid & (keep != 0)
    ctx = (S, d_ok, qk_mul, sm_scale, DQ_ACC, pid_bh * S_PAD, kvalid)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)

    # the query block holding the sequence end is the last entry of a key block's list
    if EVEN_S:
        n_main = count
        n_tail = 0
    else:
        last = tl.load(row_idx + first + count - 1, mask=count > 0, other=-1)
        n_tail = (last == NB - 1).to(tl.int32)
        n_main = count - n_tail
    for t in range(0, n_main * SUB_M):
        qb = tl.load(row_idx + first + t // SUB_M)
        start_m = qb * BLOCK + (t % SUB_M) * BLOCK_M
        dk, dv = _dkdv_tile(dk, dv, k, v, qdo, start_m, ctx, BLOCK_M=BLOCK_M, BLOCK_D=BLOCK_D,
                            EVEN_D=EVEN_D, BOUNDS=False, DOT_PREC=DOT_PREC, DQ_MODE=DQ_MODE,
                            MASK_K=MASK_K)
    for t in range(0, n_tail * SUB_M):
        start_m = (NB - 1) * BLOCK + t * BLOCK_M
        dk, dv = _dkdv_tile(dk, dv, k, v, qdo, start_m, ctx, BLOCK_M=BLOCK_M, BLOCK_D=BLOCK_D,
                            EVEN_D=EVEN_D, BOUNDS=True, DOT_PREC=DOT_PREC, DQ_MODE=DQ_MODE,
                            MASK_K=MASK_K)

    # their rows of dK, dV are zero
    dk = tl.where(kvalid[:, None], dk * sm_scale, 0.0)
    dv = tl.where(kvalid[:, None], dv, 0.0)
    tl.store(DK + b64 * skgb + h64 * skgh + n64[:, None] * skgs + offs_d[None, :] * skgd,
             dk.to(DK.dtype.element_ty), mask=k_mask)
    tl.store(DV + b64 * svgb + h64 * svgh + n64[:, None] * svgs + offs_d[None, :] * svgd,
             dv.to(DV.dtype.element_ty), mask=k_mask)


@triton.jit
def _dq_cast(ACC, DQ, sgb, sgh, sgs, sgd, H, S, D, S_PAD,
             BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """DQ[b, h, rows] = ACC[bh, rows] (the fused modes' float32 accumulator, already scaled)."""
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    d = tl.arange(0, BLOCK_D)
    r64 = rows.to(tl.int64)
    x = tl.load(ACC + (bh.to(tl.int64) * S_PAD + r64)[:, None] * BLOCK_D + d[None, :])
    ok = (rows < S)[:, None] & (d < D)[None, :]
    tl.store(DQ + b * sgb + h * sgh + r64[:, None] * sgs + d[None, :] * sgd,
             x.to(DQ.dtype.element_ty), mask=ok)


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
        # H200 sweep, Wan 720p bf16 (dQ / dK-dV pass alone, ms): dQ 64x64 w4 94.8, 128x64 w8
        # 95.9, 128x32 w4 s3 97.7; dK/dV 64x64 w4 120.0, 128x64 w8 130.6, 64x32 w4 s3 140.0
        dq = dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2)
        dkdv = dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2)
    else:
        dq = dict(BLOCK_M=64, BLOCK_N=32, num_warps=4, num_stages=2)
        dkdv = dict(BLOCK_M=32, BLOCK_N=64, num_warps=4, num_stages=2)
    for c in (dq, dkdv):
        c["BLOCK_M"] = min(c["BLOCK_M"], block_size)
        c["BLOCK_N"] = min(c["BLOCK_N"], block_size)
    return {"dq": dq, "dkdv": dkdv, "BLOCK_D": bd}


def _out_layout(t: torch.Tensor) -> torch.Tensor:
    B, H, S, D = t.shape
    return torch.empty((B, S, H, D), dtype=t.dtype, device=t.device).transpose(1, 2)


def triton_block_sparse_attention_backward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    grad_out: torch.Tensor,
    csr: BlockCSR,
    key_csr: BlockCSR,
    block_size: int,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    config: dict | None = None,
    parts: tuple = ("dq", "dkdv"),
):
    """dQ, dK, dV ``[B, H, S, D]`` (each a transposed view of a ``[B, S, H, D]`` buffer).

    ``out``, ``lse``: the exact forward's output and float32 LSE (``triton_kernel.forward(...,
    return_lse=True)``); ``csr``, ``key_csr``: the mask's CSR and key-side CSR on q's device.
    Any strides for q, k, v, out and ``grad_out`` (a broadcast gradient with zero strides too).
    ``config`` overrides ``pick_bwd_config`` (tests, benchmarks); ``parts`` lets a benchmark
    time one of the two main kernels alone (the gradients it skips are left unwritten).
    ``config["dq_mode"]``: 0 = dQ in its own pass over the CSR (default); 1 / 2 = fused into
    the dK/dV pass, each key tile adding its share of dQ into a float32 buffer by pointer
    atomics (1) or tensor-descriptor reductions (2, the bulk copy engine on Hopper; falls back
    to 1 where Triton has no descriptors), then one cast pass.
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
    if key_padding_mask is not None:
        kpm = key_padding_mask.to(device=dev, dtype=torch.int8).contiguous()
        skpb = kpm.stride(0)
    else:
        kpm = csr.row_len  # never read (HAS_KPM=False)
        skpb = 0
    delta = torch.empty((B * H, s_pad), dtype=torch.float32, device=dev)
    lse2 = torch.empty((B * H, s_pad), dtype=torch.float32, device=dev)
    dq, dk, dv = _out_layout(q), _out_layout(k), _out_layout(v)
    prec = "tf32x3" if (q.dtype == torch.float32 and q.is_cuda) else None
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
            dq_arg = _acc_descriptor(acc, [cd["BLOCK_M"], bd])
            if dq_arg is None:
                mode, dq_arg = 1, acc
    guard = torch.cuda.device(dev) if q.is_cuda else contextlib.nullcontext()
    with guard:
        _bwd_prep[(s_pad // 64, B * H)](
            out, grad_out, lse, delta, lse2, *out.stride(), *grad_out.stride(),
            H, S, D, s_pad, BLOCK_M=64, BLOCK_D=bd, num_warps=4)
        c = dict(cfg["dq"])
        if mode == 0 and "dq" in parts:
            _bwd_dq[(nb * (block_size // c["BLOCK_M"]), B * H)](
                q, k, v, grad_out, dq, lse2, delta, kpm,
                csr.row_start, csr.row_len, csr.col_idx,
                *strides, *dq.stride(), skpb,
                H, S, D, nb, s_pad, qk_mul, float(scale), **common, **c)
        if "dkdv" in parts:
            _bwd_dkdv[(nb * (block_size // cd["BLOCK_N"]), B * H)](
                q, k, v, grad_out, dk, dv, lse2, delta, kpm,
                key_csr.row_start, key_csr.row_len, key_csr.col_idx,
                *strides, *dk.stride(), *dv.stride(), skpb,
                H, S, D, nb, s_pad, qk_mul, float(scale), dq_arg, **common, **cd,
                DQ_MODE=mode,
                MASK_K=bool(mode) and (key_padding_mask is not None or S % block_size != 0))
        if mode:
            _dq_cast[(s_pad // 64, B * H)](acc, dq, *dq.stride(), H, S, D, s_pad,
                                           BLOCK_M=64, BLOCK_D=bd, num_warps=4)
    return dq, dk, dv


def _acc_descriptor(acc: torch.Tensor, block: list):
    """Host tensor descriptor over the float32 dQ accumulator, or None (old Triton)."""
    try:
        from triton.tools.tensor_descriptor import TensorDescriptor
    except ImportError:
        return None
    return TensorDescriptor(acc, list(acc.shape), list(acc.stride()), block)
