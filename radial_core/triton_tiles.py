"""Triton tile helpers shared by the forward kernel (``triton_kernel``), the int8 quantisation
pass (``int8_quant``) and the backward kernels (``triton_backward``), and what every launch of
them shares (``launch_context``, ``descriptor``).

Triton inlines ``@triton.jit`` helpers into their callers, so they cost nothing at run time.
Offsets that scale with batch, head or sequence are computed in int64.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634
LN2 = tl.constexpr(0.6931471805599453)

@triton.jit
def row0(base, b, h, d, strides):
    """``[1, len(d)]`` pointers to row 0 of (batch ``b``, head ``h``); ``strides = (batch,
    head, seq, channel)`` in elements; offsets that scale with batch or head in int64."""
    sb, sh, ss, sd = strides
    return base + b.to(tl.int64) * sb + h.to(tl.int64) * sh + d[None, :] * sd


@triton.jit
def tile_ptrs(base, b, h, rows, d, strides):
    """``[len(rows), len(d)]`` pointers to rows ``rows`` (int64 offsets) of one (batch, head)."""
    sb, sh, ss, sd = strides
    return row0(base, b, h, d, strides) + rows.to(tl.int64)[:, None] * ss


@triton.jit
def rows_mask(offs, S, D, BLOCK_D: tl.constexpr, EVEN_D: tl.constexpr):
    """A program's own rows ``offs``: ``(channels, channel mask [1, BLOCK_D], tile mask)``,
    the tile mask true for rows < S and (unless ``EVEN_D``) channels < D."""
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = (offs_d < D)[None, :]
    mask = (offs < S)[:, None]
    if not EVEN_D:
        mask = mask & d_ok
    return offs_d, d_ok, mask


@triton.jit
def bh_rows(H, S, D, R: tl.constexpr, BD: tl.constexpr):
    """Program ``(pid, bh)`` of a pass over ``R``-row tiles of every (batch, head):
    ``(bh, b, h, rows, d, ok)`` with ``ok`` = row < S and channel < D."""
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    rows = pid * R + tl.arange(0, R)
    d = tl.arange(0, BD)
    ok = (rows < S)[:, None] & (d < D)[None, :]
    return bh, bh // H, bh % H, rows, d, ok


@triton.jit
def csr_program(row_start, row_len, col_idx, H, NB, BLOCK: tl.constexpr, TILE: tl.constexpr,
                 PER_HEAD_MASK: tl.constexpr, EVEN_S: tl.constexpr):
    """Where program ``(pid, bh)`` of a CSR walk stands: ``(b, h, offs, first, n_main,
    n_tail)``.

    Grid ``(nb * BLOCK / TILE, B * H)``: the program takes the ``TILE`` sequence positions
    ``offs`` of block row ``pid // (BLOCK / TILE)`` (a query block for the forward and dQ, a
    key block for dK/dV through the key-side CSR). That row's entries are
    ``col_idx[first : first + n_main + n_tail]``; ``n_tail`` (0 or 1) is the block holding the
    sequence end, the row's last entry when kept, which the caller walks after the main loop
    with bounds masks (so the main loop runs without them).
    """
    SUB: tl.constexpr = BLOCK // TILE
    pid = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    row = pid // SUB
    if PER_HEAD_MASK:
        r_idx = h * NB + row
    else:
        r_idx = row
    first = tl.load(row_start + r_idx)
    count = tl.load(row_len + r_idx)
    if EVEN_S:
        n_main = count
        n_tail = 0
    else:
        last = tl.load(col_idx + first + count - 1, mask=count > 0, other=-1)
        n_tail = (last == NB - 1).to(tl.int32)
        n_main = count - n_tail
    offs = row * BLOCK + (pid % SUB) * TILE + tl.arange(0, TILE)
    return b, h, offs, first, n_main, n_tail


@triton.jit
def entry_start(col_idx, first, t, BLOCK: tl.constexpr, TILE: tl.constexpr):
    """First sequence position of tile ``t`` of a CSR row walked ``TILE`` positions at a time."""
    SUB: tl.constexpr = BLOCK // TILE
    return tl.load(col_idx + first + t // SUB) * BLOCK + (t % SUB) * TILE


@triton.jit
def key_valid(kpm_base, offs_n, S, HAS_KPM: tl.constexpr):
    """Keys that enter the softmax: inside the sequence and (``HAS_KPM``) not padded."""
    valid = offs_n < S
    if HAS_KPM:
        keep = tl.load(kpm_base + offs_n, mask=valid, other=0)
        valid = valid & (keep != 0)
    return valid


@triton.jit
def load_rows(src, b, h, start, stride_s, S, d_ok,
               ROWS: tl.constexpr, COLS: tl.constexpr, BOUNDS: tl.constexpr,
               EVEN_D: tl.constexpr, USE_TMA: tl.constexpr):
    """``ROWS x COLS`` tile of sequence rows ``start..start+ROWS`` of one (batch, head).

    ``src`` is a tensor descriptor over ``[B, H, S, D]`` (the copy engine zero-fills past S and
    D) or a ``[1, COLS]`` block of pointers to row 0 of this (batch, head) (``row0``; zeros
    past S with ``BOUNDS`` and past D).
    """
    if USE_TMA:
        t = src.load([b, h, start, 0]).reshape(ROWS, COLS)
    else:
        rows = start + tl.arange(0, ROWS)
        ptrs = src + rows.to(tl.int64)[:, None] * stride_s
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


def launch_context(q: torch.Tensor, key_padding_mask, placeholder: torch.Tensor):
    """What every launch of these kernels (forward and backward) shares, for q's device:
    ``(kpm, kpm's batch stride, DOT_PREC, device guard)``.

    The key padding mask as contiguous int8 (``placeholder``, any device tensor, where there is
    none: the kernels never read it with ``HAS_KPM=False``); three-pass TF32 products
    (``tf32x3``, near-float32 accuracy) for float32 inputs on the GPU; a guard that launches
    on q's GPU even when another one is current (Triton uses the current device).
    """
    if key_padding_mask is not None:
        kpm = key_padding_mask.to(device=q.device, dtype=torch.int8).contiguous()
        skpb = kpm.stride(0)
    else:
        kpm, skpb = placeholder, 0
    prec = "tf32x3" if (q.dtype == torch.float32 and q.is_cuda) else None
    guard = torch.cuda.device(q.device) if q.is_cuda else contextlib.nullcontext()
    return kpm, skpb, prec, guard


def descriptor(t: torch.Tensor, block: list):
    """A host-side tensor descriptor (TMA) over all of ``t`` with ``block`` tiles. The caller
    has checked (``dispatch.tma_ok``) that this Triton has them and the copy engine takes ``t``."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    return TensorDescriptor(t, list(t.shape), list(t.stride()), block)
