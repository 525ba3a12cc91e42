"""Triton forward kernel for block-sparse attention over a CSR list of kept key blocks.

One program computes ``BLOCK_M`` query rows of one (batch, head) against the key blocks that
their query block keeps, reading the list from the CSR arrays (never looping over all blocks).
Online softmax in the FlashAttention-2 style (Dao, 2023; the Triton fused-attention tutorial):
base-2 exponentials with the softmax scale folded into one multiplier, float32 accumulators.
The key block holding the sequence end is handled after the main loop with a bounds mask, so
keys past S never enter the softmax and the main loop runs without masks. Offsets that scale
with batch, head or sequence are computed in int64.

This module holds the kernel and its launcher only; checks live in ``attention.py``.
"""

from __future__ import annotations

import contextlib
import math

import torch
import triton
import triton.language as tl

from .csr import BlockCSR

LOG2E = 1.4426950408889634


def triton_version_ok() -> bool:
    """The kernel uses ``tl.dot(..., input_precision=...)``: Triton 3.0 or newer."""
    try:
        major = int(triton.__version__.split(".")[0])
    except ValueError:
        return True
    return major >= 3


@triton.jit
def _tile(
    acc, l_i, m_i, q, k_base, v_base, kpm_base, b, h, start_n, S, D, sks, skd, svs, svd,
    qk_scale,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, EVEN_D: tl.constexpr,
    BOUNDS: tl.constexpr, HAS_KPM: tl.constexpr, USE_TMA: tl.constexpr, DOT_PREC: tl.constexpr,
    LAZY: tl.constexpr,
):
    """One BLOCK_N-wide key tile folded into the running softmax state."""
    offs_n = start_n + tl.arange(0, BLOCK_N)
    if USE_TMA:
        # tensor descriptors over [B, H, S, D]: the copy engine zero-fills past S and past D
        k = k_base.load([b, h, start_n, 0]).reshape(BLOCK_N, BLOCK_D)
        v = v_base.load([b, h, start_n, 0]).reshape(BLOCK_N, BLOCK_D)
    else:
        offs_d = tl.arange(0, BLOCK_D)
        rows = offs_n.to(tl.int64)
        k_ptrs = k_base + rows[:, None] * sks + offs_d[None, :] * skd
        v_ptrs = v_base + rows[:, None] * svs + offs_d[None, :] * svd
        if BOUNDS:
            lm = (offs_n < S)[:, None]
            if not EVEN_D:
                lm = lm & (offs_d < D)[None, :]
            k = tl.load(k_ptrs, mask=lm, other=0.0)
            v = tl.load(v_ptrs, mask=lm, other=0.0)
        elif EVEN_D:
            k = tl.load(k_ptrs)
            v = tl.load(v_ptrs)
        else:
            lm = (offs_d < D)[None, :]
            k = tl.load(k_ptrs, mask=lm, other=0.0)
            v = tl.load(v_ptrs, mask=lm, other=0.0)
    qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
    if BOUNDS or HAS_KPM:
        valid = offs_n < S
        if HAS_KPM:
            keep = tl.load(kpm_base + offs_n, mask=valid, other=0)
            valid = valid & (keep != 0)
        qk = tl.where(valid[None, :], qk * qk_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        # a row that has seen no valid key yet keeps m = -inf; subtract 0 instead (no NaN)
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(qk - m_use[:, None])
        alpha = tl.math.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
    elif LAZY:
        # lazy rescaling (FlashAttention-4's idea): the running maximum moves only when a row's
        # new maximum exceeds it by more than 2^8, so p stays <= 256 (exact in float32, bf16
        # keeps its relative precision) and most tiles skip rescaling the accumulator
        m_tile = tl.max(qk, 1) * qk_scale
        grow = m_tile > m_i + 8.0
        m_new = tl.where(grow, m_tile, m_i)
        p = tl.math.exp2(qk * qk_scale - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        if tl.max(grow.to(tl.int32), 0) > 0:
            acc = acc * alpha[:, None]
    else:
        m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        p = tl.math.exp2(qk * qk_scale - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
    acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PREC)
    return acc, l_i, m_new


@triton.jit
def _radial_fwd(
    Q, K, V, O, KPM,
    row_start, row_len, col_idx, row_order,
    sqb, sqh, sqs, sqd,
    skb, skh, sks, skd,
    svb, svh, svs, svd,
    sob, soh, sos, sod,
    skpb,
    H, S, D, NB, qk_scale,
    PER_HEAD_MASK: tl.constexpr, ORDERED: tl.constexpr, BLOCK: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    EVEN_D: tl.constexpr, EVEN_S: tl.constexpr, HAS_KPM: tl.constexpr,
    USE_TMA: tl.constexpr, DOT_PREC: tl.constexpr, NESTED: tl.constexpr, LAZY: tl.constexpr,
):
    SUB_M: tl.constexpr = BLOCK // BLOCK_M
    SUB_N: tl.constexpr = BLOCK // BLOCK_N
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    rank = pid_m // SUB_M
    sub = pid_m % SUB_M
    if PER_HEAD_MASK:
        hm = h
    else:
        hm = 0
    if ORDERED:
        row = tl.load(row_order + hm * NB + rank)
    else:
        row = rank
    r_idx = hm * NB + row
    first = tl.load(row_start + r_idx)
    count = tl.load(row_len + r_idx)

    b64 = b.to(tl.int64)
    h64 = h.to(tl.int64)
    offs_m = row * BLOCK + sub * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m64 = offs_m.to(tl.int64)
    q_ptrs = Q + b64 * sqb + h64 * sqh + m64[:, None] * sqs + offs_d[None, :] * sqd
    q_mask = (offs_m < S)[:, None]
    if not EVEN_D:
        q_mask = q_mask & (offs_d < D)[None, :]
    q = tl.load(q_ptrs, mask=q_mask, other=0.0)

    if USE_TMA:
        k_base = K
        v_base = V
    else:
        k_base = K + b64 * skb + h64 * skh
        v_base = V + b64 * svb + h64 * svh
    kpm_base = KPM + b64 * skpb

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    # the tail block (holding the sequence end) is the last entry of a row when kept
    if EVEN_S:
        n_main = count
        n_tail = 0
    else:
        last = tl.load(col_idx + first + count - 1, mask=count > 0, other=-1)
        n_tail = (last == NB - 1).to(tl.int32)
        n_main = count - n_tail

    if NESTED:
        # one iteration per kept block, its key tiles unrolled
        for j in range(0, n_main):
            kb = tl.load(col_idx + first + j)
            for u in tl.static_range(SUB_N):
                acc, l_i, m_i = _tile(
                    acc, l_i, m_i, q, k_base, v_base, kpm_base, b, h, kb * BLOCK + u * BLOCK_N,
                    S, D, sks, skd, svs, svd, qk_scale,
                    BLOCK_N, BLOCK_D, EVEN_D, False, HAS_KPM, USE_TMA, DOT_PREC, LAZY,
                )
    else:
        # one iteration per key tile (the pipeliner sees a single flat loop)
        for t in range(0, n_main * SUB_N):
            kb = tl.load(col_idx + first + t // SUB_N)
            start_n = kb * BLOCK + (t % SUB_N) * BLOCK_N
            acc, l_i, m_i = _tile(
                acc, l_i, m_i, q, k_base, v_base, kpm_base, b, h, start_n, S, D, sks, skd, svs,
                svd, qk_scale, BLOCK_N, BLOCK_D, EVEN_D, False, HAS_KPM, USE_TMA, DOT_PREC,
                LAZY,
            )
    for t in range(0, n_tail * SUB_N):
        start_n = (NB - 1) * BLOCK + t * BLOCK_N
        acc, l_i, m_i = _tile(
            acc, l_i, m_i, q, k_base, v_base, kpm_base, b, h, start_n, S, D, sks, skd, svs, svd,
            qk_scale, BLOCK_N, BLOCK_D, EVEN_D, True, HAS_KPM, USE_TMA, DOT_PREC, LAZY,
        )

    l_safe = tl.where(l_i > 0.0, l_i, 1.0)
    out = acc / l_safe[:, None]
    o_ptrs = O + b64 * sob + h64 * soh + m64[:, None] * sos + offs_d[None, :] * sod
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=q_mask)


def _is_hopper_or_newer(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 9


def pick_config(head_dim: int, dtype: torch.dtype, block_size: int, device: torch.device) -> dict:
    """Deterministic launch configuration per (head dim, dtype, block size, GPU generation).

    No autotuning at run time: the first sampling step must not stall. The Hopper rows were
    chosen by sweeps on an H200 and an H100 (docs/perf-notes.md): one warpgroup per 128 query rows, 64-key
    tiles, two pipeline stages, K/V through tensor descriptors (TMA). GPUs before Hopper load
    K/V with plain pointers; those with ~100 KB of shared memory (sm 8.6/8.9, 7.5) use 32-key
    tiles so two stages still fit.
    """
    bd = max(16, triton.next_power_of_2(head_dim))
    hopper = _is_hopper_or_newer(device)
    big_smem = hopper or (
        device.type == "cuda" and torch.cuda.get_device_capability(device) == (8, 0)
    )
    if dtype == torch.float32 or bd >= 256:
        cfg = dict(BLOCK_M=64, BLOCK_N=32, num_warps=4, num_stages=2)
    elif hopper:
        cfg = dict(BLOCK_M=128, BLOCK_N=64, num_warps=4, num_stages=2)
    elif big_smem:
        # A100 (not measured here): mma.sync keeps Q and the accumulator in registers, so
        # 128 x 128 tiles need 8 warps to stay clear of spills
        cfg = dict(BLOCK_M=128, BLOCK_N=64, num_warps=8 if bd > 64 else 4, num_stages=2)
    else:
        cfg = dict(BLOCK_M=128 if bd <= 64 else 64, BLOCK_N=32, num_warps=4, num_stages=2)
    cfg["BLOCK_M"] = min(cfg["BLOCK_M"], block_size)
    cfg["BLOCK_N"] = min(cfg["BLOCK_N"], block_size)
    cfg["BLOCK_D"] = bd
    return cfg


def triton_block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    csr: BlockCSR,
    block_size: int,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    config: dict | None = None,
    ordered: bool = False,
) -> torch.Tensor:
    """Launch the kernel. Inputs are already validated; ``csr`` lives on q's device.

    Returns ``[B, H, S, D]``: a transposed view of a contiguous ``[B, S, H, D]`` buffer.
    ``config`` overrides the launch table (benchmarks); ``ordered`` schedules each head's
    query blocks longest row first instead of in sequence order.
    """
    B, H, S, D = q.shape
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    cfg = dict(config) if config else pick_config(D, q.dtype, block_size, q.device)
    nb = csr.nb
    out = torch.empty((B, S, H, D), dtype=q.dtype, device=q.device).transpose(1, 2)
    if key_padding_mask is not None:
        kpm = key_padding_mask.to(device=q.device, dtype=torch.int8).contiguous()
        skpb = kpm.stride(0)
    else:
        kpm = csr.row_len  # never read (HAS_KPM=False); any device pointer will do
        skpb = 0
    bm = cfg.pop("BLOCK_M")
    use_tma = cfg.pop("USE_TMA", None)
    nested = bool(cfg.pop("NESTED", False))
    lazy = bool(cfg.pop("LAZY", False))
    if use_tma is None:
        use_tma = _is_hopper_or_newer(q.device)
    kk, vv = k, v
    if use_tma:
        descs = _descriptors(k, v, cfg["BLOCK_N"], cfg["BLOCK_D"])
        if descs is None:
            use_tma = False
        else:
            kk, vv = descs
    # float32 inputs: three TF32 products per dot (near-float32 accuracy) on the GPU
    prec = "tf32x3" if (q.dtype == torch.float32 and q.is_cuda) else None
    grid = (nb * (block_size // bm), B * H)
    # launch on q's GPU even when another one is current (Triton uses the current device)
    guard = torch.cuda.device(q.device) if q.is_cuda else contextlib.nullcontext()
    with guard:
        _radial_fwd[grid](
            q, kk, vv, out, kpm,
            csr.row_start, csr.row_len, csr.col_idx, csr.row_order,
            *q.stride(), *k.stride(), *v.stride(), *out.stride(), skpb,
            H, S, D, nb, float(scale) * LOG2E,
            PER_HEAD_MASK=csr.mask_heads > 1,
            ORDERED=bool(ordered),
            BLOCK=block_size,
            BLOCK_M=bm,
            EVEN_D=cfg["BLOCK_D"] == D,
            EVEN_S=S % block_size == 0,
            HAS_KPM=key_padding_mask is not None,
            USE_TMA=bool(use_tma),
            DOT_PREC=prec,
            NESTED=nested,
            LAZY=lazy,
            **cfg,
        )
    return out


def _descriptors(k: torch.Tensor, v: torch.Tensor, block_n: int, block_d: int):
    """Host-side tensor descriptors over [B, H, S, D] views, or None when TMA can't take them."""
    try:
        from triton.tools.tensor_descriptor import TensorDescriptor
    except ImportError:
        return None
    out = []
    for t in (k, v):
        es = t.element_size()
        if t.stride(-1) != 1 or t.data_ptr() % 16 or any((st * es) % 16 for st in t.stride()[:-1]):
            return None
        out.append(TensorDescriptor(t, list(t.shape), list(t.stride()), [1, 1, block_n, block_d]))
    return out
