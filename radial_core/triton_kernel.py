"""Triton forward kernel for block-sparse attention over a CSR list of kept key blocks, and its
launcher.

One program computes ``BLOCK_M`` query rows of one (batch, head) against the key blocks that
their query block keeps, reading the list from the CSR arrays (never looping over all blocks).
Query blocks are scheduled in sequence order (program id = query block). Online softmax in the
FlashAttention-2 style (Dao, 2023; the Triton fused-attention tutorial): base-2 exponentials
with the softmax scale folded into one multiplier, float32 accumulators. The key block holding
the sequence end is handled after the main loop with a bounds mask, so keys past S never enter
the softmax and the main loop runs without masks. Offsets that scale with batch, head or
sequence are computed in int64.

Two forms, the two the pack runs: exact (products in the inputs' dtype; float32 inputs as
three-pass TF32) and ``INT8`` (``precision="int8-qk"``): Q.K^T on the int8 copies that
``int8_quant.quantize_int8`` writes (one scale per query row, one per ``BLOCK_N`` keys, int32
accumulation), P.V in the inputs' 16-bit dtype.

The launcher takes the launch configuration that ``dispatch`` chose; it decides nothing.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .int8_quant import quantize_int8
from .torch_path import out_layout
from .triton_tiles import (LN2, LOG2E, csr_program, descriptor, entry_start, key_valid,
                           launch_context, load_rows, row0, rows_mask, tile_ptrs)


@triton.jit
def _tile(state, q, kv, scale, start_n, valid_ctx,
          BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, EVEN_D: tl.constexpr,
          BOUNDS: tl.constexpr, HAS_KPM: tl.constexpr, USE_TMA: tl.constexpr,
          DOT_PREC: tl.constexpr, INT8: tl.constexpr):
    """One BLOCK_N-wide key tile folded into the running softmax ``state = (acc, l, m)``.

    ``kv = (k_src, v_src, k_stride_s, v_stride_s, b, h)`` (b, h: descriptor coordinates);
    ``scale = (qk_mul, k_tile_scales)``: logits in base-2 units are ``q.k * qk_mul`` (with
    ``INT8``, ``qk_mul`` is the vector of per-row Q scales, times the key tile's scale);
    ``valid_ctx = (S, d_ok, kpm_base)``.
    """
    acc, l_i, m_i = state
    k_src, v_src, sks, svs, b, h = kv
    qk_mul, k_scales = scale
    S, d_ok, kpm_base = valid_ctx
    # both tiles are loaded before the first product
    if INT8:
        # quantised q/k are zero-padded to whole blocks: no bounds on the K load
        k = load_rows(k_src, b, h, start_n, sks, S, d_ok, BLOCK_N, BLOCK_D, False, True,
                      USE_TMA)
    else:
        k = load_rows(k_src, b, h, start_n, sks, S, d_ok, BLOCK_N, BLOCK_D, BOUNDS, EVEN_D,
                      USE_TMA)
    v = load_rows(v_src, b, h, start_n, svs, S, d_ok, BLOCK_N, BLOCK_D, BOUNDS, EVEN_D,
                  USE_TMA)
    if INT8:
        mul = qk_mul * tl.load(k_scales + start_n // BLOCK_N)
        qk = tl.dot(q, tl.trans(k), out_dtype=tl.int32).to(tl.float32)
        qk = qk * mul[:, None]
    else:
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_mul
    if BOUNDS or HAS_KPM:
        valid = key_valid(kpm_base, start_n + tl.arange(0, BLOCK_N), S, HAS_KPM)
        qk = tl.where(valid[None, :], qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        # a row that has seen no valid key yet keeps m = -inf; subtract 0 instead (no NaN)
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    else:
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        m_use = m_new
    p = tl.math.exp2(qk - m_use[:, None])
    alpha = tl.math.exp2(m_i - m_use)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PREC)
    return acc, l_i, m_new


@triton.jit
def _radial_fwd(
    Q, K, V, O, KPM, QS, KS, LSE,
    row_start, row_len, col_idx,
    sqb, sqh, sqs, sqd,
    skb, skh, sks, skd,
    svb, svh, svs, svd,
    sob, soh, sos, sod,
    skpb,
    H, S, D, NB, qk_scale,
    PER_HEAD_MASK: tl.constexpr, BLOCK: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    EVEN_D: tl.constexpr, EVEN_S: tl.constexpr, HAS_KPM: tl.constexpr,
    USE_TMA: tl.constexpr, DOT_PREC: tl.constexpr, INT8: tl.constexpr,
    RETURN_LSE: tl.constexpr,
):
    SUB_N: tl.constexpr = BLOCK // BLOCK_N
    b, h, offs_m, first, n_main, n_tail = csr_program(
        row_start, row_len, col_idx, H, NB, BLOCK, BLOCK_M, PER_HEAD_MASK, EVEN_S)
    bh64 = tl.program_id(1).to(tl.int64)
    offs_d, d_ok, q_mask = rows_mask(offs_m, S, D, BLOCK_D, EVEN_D)
    q_ptrs = tile_ptrs(Q, b, h, offs_m, offs_d, (sqb, sqh, sqs, sqd))

    if INT8:
        # quantised q/k are contiguous and zero-padded to whole blocks (no load masks);
        # QS: one scale per query row, KS: one per BLOCK_N keys
        q = tl.load(q_ptrs)
        qmul = tl.load(QS + bh64 * (NB * BLOCK) + offs_m)
        scale = (qmul, KS + bh64 * (NB * SUB_N))
    else:
        q = tl.load(q_ptrs, mask=q_mask, other=0.0)
        scale = (qk_scale, KS)
    if USE_TMA:
        # tensor descriptors over [B, H, S, D]
        kv = (K, V, sks, svs, b, h)
    else:
        kv = (row0(K, b, h, offs_d, (skb, skh, sks, skd)),
              row0(V, b, h, offs_d, (svb, svh, svs, svd)), sks, svs, b, h)
    valid_ctx = (S, d_ok, KPM + b.to(tl.int64) * skpb)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    state = (acc, l_i, m_i)

    # one iteration per key tile (the pipeliner sees a single flat loop; a nested loop over
    # kept blocks measured slower, docs/perf-notes.md); the tail block after it, with bounds
    for t in range(0, n_main * SUB_N):
        start_n = entry_start(col_idx, first, t, BLOCK, BLOCK_N)
        state = _tile(state, q, kv, scale, start_n, valid_ctx, BLOCK_N=BLOCK_N,
                      BLOCK_D=BLOCK_D, EVEN_D=EVEN_D, BOUNDS=False, HAS_KPM=HAS_KPM,
                      USE_TMA=USE_TMA, DOT_PREC=DOT_PREC, INT8=INT8)
    for t in range(0, n_tail * SUB_N):
        start_n = (NB - 1) * BLOCK + t * BLOCK_N
        state = _tile(state, q, kv, scale, start_n, valid_ctx, BLOCK_N=BLOCK_N,
                      BLOCK_D=BLOCK_D, EVEN_D=EVEN_D, BOUNDS=True, HAS_KPM=HAS_KPM,
                      USE_TMA=USE_TMA, DOT_PREC=DOT_PREC, INT8=INT8)
    acc, l_i, m_i = state

    l_safe = tl.where(l_i > 0.0, l_i, 1.0)
    out = acc / l_safe[:, None]
    tl.store(tile_ptrs(O, b, h, offs_m, offs_d, (sob, soh, sos, sod)),
             out.to(O.dtype.element_ty), mask=q_mask)
    if RETURN_LSE:
        # natural-log LSE of the scaled scores: m and log2(l) are in base-2 units; a row with
        # no kept key (l = 0) gets +inf, so exp(s - lse) is 0 there (no NaN in a backward)
        lse = tl.where(l_i > 0.0, (m_i + tl.math.log2(l_safe)) * LN2, float("inf"))
        tl.store(LSE + bh64 * S + offs_m, lse, mask=offs_m < S)


def triton_block_sparse_attention(q, k, v, csr, cfg, *, int8: bool = False,
                                  key_padding_mask=None, scale: float, return_lse=False,
                                  warmup: bool = False):
    """Launch the kernel with the configuration ``cfg`` (``dispatch.TritonConfig``: tile sizes,
    warps, stages, ``use_tma``). Inputs are validated; ``csr`` (a ``csr.BlockCSR``) lives on
    q's device and carries the block size.

    Returns ``[B, H, S, D]``: a transposed view of a contiguous ``[B, S, H, D]`` buffer.
    ``int8=True``: Q.K^T on int8 copies (``quantize_int8``, per-row Q scales).
    ``return_lse=True`` (exact only: int8's logits are shifted by K's smoothing) returns
    ``(out, lse)``: ``lse`` is float32 ``[B, H, S]`` (contiguous), the natural-log log-sum-exp of
    the scaled scores ``scale * q.k`` over the kept, unpadded keys of each query row, ``+inf``
    for a row with no such key (so ``exp(s - lse)`` is 0 there).
    ``warmup=True`` compiles for the current target without launching and returns Triton's
    compiled kernel (tests/test_triton_compile.py reads its shared memory and SASS).
    """
    if return_lse and int8:
        raise ValueError("triton_block_sparse_attention: return_lse=True needs the exact path; "
                         "got int8=True. Fix: pass int8=False (int8's logits are shifted by K's "
                         "mean, so its row maxima are not the exact scores).")
    B, H, S, D = q.shape
    block_size = csr.block_size
    nb = csr.nb
    out = out_layout(q)
    kpm, skpb, prec, guard = launch_context(q, key_padding_mask, csr.row_len)
    lse = torch.empty((B, H, S), dtype=torch.float32, device=q.device) if return_lse else None
    qk_scale = float(scale) * LOG2E
    with guard:
        if int8:
            qq, kk, qs, ks = quantize_int8(q, k, qk_scale, cfg.block_m, cfg.block_n, block_size,
                                           cfg.block_d, q_per_row=True)
        else:
            # scales the exact form does not read: any device pointer will do
            qq, kk, qs, ks = q, k, csr.row_len, csr.row_len
        kd, vd = kk, v
        if cfg.use_tma:
            kd = descriptor(kk, [1, 1, cfg.block_n, cfg.block_d])
            vd = descriptor(v, [1, 1, cfg.block_n, cfg.block_d])
        grid = (nb * (block_size // cfg.block_m), B * H)
        kernel = functools.partial(_radial_fwd.warmup, grid=grid) if warmup else _radial_fwd[grid]
        compiled = kernel(
            qq, kd, vd, out, kpm, qs, ks, lse if return_lse else csr.row_len,
            csr.row_start, csr.row_len, csr.col_idx,
            *qq.stride(), *kk.stride(), *v.stride(), *out.stride(), skpb,
            H, S, D, nb, qk_scale,
            PER_HEAD_MASK=csr.mask_heads > 1,
            BLOCK=block_size,
            BLOCK_M=cfg.block_m,
            BLOCK_N=cfg.block_n,
            BLOCK_D=cfg.block_d,
            EVEN_D=cfg.block_d == D,
            EVEN_S=S % block_size == 0,
            HAS_KPM=key_padding_mask is not None,
            USE_TMA=bool(cfg.use_tma),
            DOT_PREC=prec,
            INT8=bool(int8),
            RETURN_LSE=bool(return_lse),
            num_warps=cfg.num_warps,
            num_stages=cfg.num_stages,
        )
    if warmup:
        return compiled
    return (out, lse) if return_lse else out
