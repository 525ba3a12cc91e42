"""The radial block mask (Radial Attention, arXiv 2506.19852).

This is the only place in the pack that decides which blocks are kept; the kernel, the ComfyUI
patch, the preview node and the HTTP route all call :func:`radial_block_mask`.

The rules restate the authors' reference builder (``radial_attn/attn_mask.py`` in
mit-han-lab/radial-attention): a window per frame pair that shrinks with temporal distance, an
attention sink on frame 0 for Wan, temporal thinning of far frame pairs, and a per-tile reduction
of the token mask to blocks ("a block is kept when more than 60 % of its non-empty columns are
more than 1/3 full"). The authors build a T×T token mask for every frame pair; we compute the
same block decision in closed form, so no token mask is ever materialised.

Block mask layout
-----------------
``mask[qi, ki]`` is True when query block ``qi`` attends to key block ``ki`` (blocks of
``block_size`` tokens along the sequence ``[video tokens, frame-major | text tokens]``, or
``[text tokens | video tokens]`` with ``text_first=True``: HunyuanVideo in ComfyUI 0.5+ puts the
text first). Its shape
is ``[nb, nb]`` with ``nb = ceil(S / block_size)``; the same mask serves every batch entry, head,
layer and step of one generation: :func:`radial_mask` returns it as one shared, immutable
:class:`RadialMask` (runs, density, device CSRs; the dense tensor painted on first use) from the
one bounded cache keyed by its arguments; :func:`radial_block_mask` returns a copy of its tensor.

The builder's result is the kept blocks as runs: per block row, sorted disjoint intervals of
kept block columns (~82 per row at 127 frames x 3599 tokens, block 64: 2.4 MB instead of the
51 MB dense mask). The density, the CSR the kernels read and the key-side CSR of the backward
come straight from them; only the preview, the CPU reference code and callers that ask for
``blocks`` pay for the [nb, nb] tensor.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict

import numpy as np
import torch

from .csr import BlockCSR, csr_from_runs, device_key, key_csr_from_csr

logger = logging.getLogger(__name__)

SUPPORTED_BLOCK_SIZES = (64, 128)
MODELS = ("wan", "hunyuan")
DIST1_RULES = ("full", "half")

# The authors' thinning threshold is a fixed 128 tokens, independent of the block size.
_THINNING_TOKENS = 128

# The builder runs in numpy (int16/int32 interval arithmetic, int32/int64 flat positions): on
# these arrays numpy's ufuncs cost less than torch's CPU ops, and its run-length np.repeat writes
# the mask in one pass (bench/bench_mask.py; figures in docs/benchmarks.md, docs/perf-notes.md).
# Its stages work on slices of bounded size (configurations, groups of row frames), so their
# buffers stay small and are reused: a fresh process pays a page fault for every new page, and
# the runs themselves should be the only large buffer its first build touches.
# Below glibc's first mmap threshold (128 KiB), so the temporaries come from (and return to) the
# heap: equal-sized buffers at or above it are mapped afresh, and faulted in, on every allocation.
_SLICE_BYTES = 1 << 16  # bytes of one [k, configurations] array of the interval arithmetic
_GROUP_ENTRIES = 1 << 16  # entries [row frames, k, F] of one group of tile rows


def _check_args(num_frames, tokens_per_frame, text_tokens, block_size, decay_factor, model, dist1, text_first=False):
    def _int(name, value, minimum):
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                if int(value) != value:
                    raise ValueError
                value = int(value)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be an integer; got {value!r}") from None
        if value < minimum:
            raise ValueError(
                f"{name} must be >= {minimum}; got {value}. "
                + ("A video needs at least one latent frame." if name == "num_frames" else "")
            )
        return value

    num_frames = _int("num_frames", num_frames, 1)
    tokens_per_frame = _int("tokens_per_frame", tokens_per_frame, 1)
    text_tokens = _int("text_tokens", text_tokens, 0)
    block_size = _int("block_size", block_size, 1)
    if block_size not in SUPPORTED_BLOCK_SIZES:
        raise ValueError(f"block_size must be one of {SUPPORTED_BLOCK_SIZES}; got {block_size}")
    try:
        decay_factor = float(decay_factor)
    except (TypeError, ValueError):
        raise ValueError(f"decay_factor must be a number; got {decay_factor!r}") from None
    if not (decay_factor > 0 and math.isfinite(decay_factor)):
        raise ValueError(
            f"decay_factor must be a finite number > 0; got {decay_factor}. "
            "Lower is sparser: the authors use 0.2 (Wan 2.1), 0.8 (Wan 2.2), 0.95 (HunyuanVideo)."
        )
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}; got {model!r}")
    if dist1 not in DIST1_RULES:
        raise ValueError(f"dist1 must be one of {DIST1_RULES}; got {dist1!r}")
    if not isinstance(text_first, bool):
        raise ValueError(f"text_first must be True or False; got {text_first!r}")
    return num_frames, tokens_per_frame, text_tokens, block_size, decay_factor, model, dist1, text_first


def _window_by_distance(num_frames, tokens_per_frame, block_size, decay_factor, model, dist1):
    """Window per frame distance d = |i - j| as int32 [F]: -1 = empty tile, else w (w >= T-1 =
    full). Rules 2-3 of the spec (window by distance, temporal thinning); the sink (rule 1)
    depends on the column frame, not the distance, and is applied by the caller.
    """
    T = tokens_per_frame
    P = 1 << T.bit_length()  # T rounded up to the next power of two, strictly above a power of 2
    full = T  # any w >= T - 1 keeps the whole tile
    by_dist = np.empty(num_frames, dtype=np.int32)
    for d in range(num_frames):
        g = d.bit_length()
        # rule 3: temporal thinning, L = P / 2**g (exact: all powers of two)
        if P < _THINNING_TOKENS * (1 << g):  # L < 128
            split = (_THINNING_TOKENS << g) // P
            if d % split != 0:
                by_dist[d] = -1
                continue
        # rule 2: window
        if d == 0:
            w = full
        elif d == 1:
            w = T // 2 if (model == "wan" and dist1 == "half") else full
        else:
            w = max(P / (1 << g) * decay_factor, block_size)
            w = min(int(math.floor(w)), full)
        by_dist[d] = w
    return by_dist


def _kept_row_intervals(rr, rc, w, T, b):
    """Kept block columns of every block row of band tiles, as one interval per row.

    A tile is a frame pair's T x T token mask {(r, c): |c - r| <= w}. The spec places it at
    offset (rr, rc) in a canvas of side offset + k*b (k = ceil(T/b)), cuts the canvas into k x k
    blocks of b x b (canvas rows/columns past k*b are dropped, as in the authors' builder) and
    keeps a block when more than 60 % of its non-empty columns hold more than b/3 kept tokens.

    Closed form instead of a token mask: in a block row holding tile rows [rlo, rhi), column c
    holds >= m kept tokens exactly for c in [rlo + m-1 - w, rhi - m + w] (when rhi - rlo >= m and
    2w >= m - 1). So the columns with any token are [A, D] = [rlo - w, rhi - 1 + w], the columns
    over b/3 are [Bh, Ch]; every block strictly inside [Bh, Ch] is kept, none outside [A, D] is,
    and only the (at most four) blocks holding A, Bh, Ch, D need the exact count. The kept blocks
    of a row are contiguous (checked against a literal token-level builder in the tests).

    Args are integer arrays of one shape [U] and one dtype (int16 or int32, wide enough for
    values in [-T, 2T + 2b]; one entry per distinct tile configuration); b is a power of two.
    Returns (lo, hi) in that dtype, [k, U]: kept block columns lo..hi of row p (lo > hi: none).
    (Rows of U, not of k: numpy's inner loops then run along the long axis.) A candidate that
    is not kept is pushed out of range by adding ``k + 1`` instead of being masked with
    ``where=``: numpy's masked ufuncs and boolean assignment cost ~40x a plain ufunc here.
    """
    k = -(-T // b)
    sh = b.bit_length() - 1  # b is a power of two: // b is >> sh (floor, also below zero)
    m = b // 3 + 1  # "density > 1/3" is count > b/3, i.e. count >= b//3 + 1
    pb = np.arange(0, k * b, b, dtype=rr.dtype)[:, None]  # p * b
    rr, rc, w = rr[None, :], rc[None, :], w[None, :]
    t = pb - rr
    rlo = np.clip(t, 0, T)
    rhi = np.clip(t + b, 0, T)
    last_col = np.minimum(k * b - rc, T) - 1  # last tile column that lands in a block, [1, U]
    A, D = rlo - w, rhi + (w - 1)
    Bh, Ch = rlo + ((m - 1) - w), rhi + (w - m)
    has_high = (rhi - rlo >= m) & (Bh <= Ch) & (Bh <= last_col) & (Ch >= 0) & (2 * w >= m - 1)

    def block_of(col):
        return (np.minimum(np.maximum(col, 0), last_col) + rc) >> sh

    out = rr.dtype.type(k + 1)  # q + out > k and q - out < 0 for every block q of a row
    lo = np.full(A.shape, k + 1, dtype=rr.dtype)
    hi = np.full(A.shape, -1, dtype=rr.dtype)
    qs = [block_of(col) for col in (A, Bh, Ch, D)]
    for q in qs:
        qb = (q << sh) - rc
        clo = np.clip(qb, 0, T)
        chi = np.clip(qb + b, 0, T) - 1
        nonzero = np.minimum(chi, D) - np.maximum(clo, A) + 1
        np.maximum(nonzero, 0, out=nonzero)
        high = np.minimum(chi, Ch) - np.maximum(clo, Bh) + 1
        np.maximum(high, 0, out=high)
        off = (5 * high <= 3 * nonzero) * out  # 0 where kept: high / nonzero > 0.6, exactly
        np.minimum(lo, q + off, out=lo)
        np.maximum(hi, q - off, out=hi)
    qB, qC = qs[1], qs[2]
    off = (qB + 2 > qC) * out  # 0 where blocks lie strictly between those of Bh and Ch
    np.minimum(lo, (qB + 1) + off, out=lo)
    np.maximum(hi, (qC - 1) - off, out=hi)
    np.maximum(lo, (~has_high) * out, out=lo)  # no column over b/3: nothing kept
    return lo, hi


def _kept_intervals(rr, rc, w, T, b):
    """:func:`_kept_row_intervals` of every configuration, a slice of ``_SLICE_BYTES`` per array at
    a time into one [k, U] pair (the slices' temporaries stay in the cache and are reused)."""
    k = -(-T // b)
    lo = np.empty((k, rr.size), dtype=rr.dtype)
    hi = np.empty((k, rr.size), dtype=rr.dtype)
    step = max(1, _SLICE_BYTES // (k * rr.itemsize))
    for u in range(0, rr.size, step):
        lo[:, u:u + step], hi[:, u:u + step] = _kept_row_intervals(rr[u:u + step], rc[u:u + step], w[u:u + step], T, b)
    return lo, hi


def _paint_scatter(mask, first, length):
    """Set ``mask[first[n] : first[n] + length[n]]`` (flat bool array) for every n, any order."""
    total = int(length.sum())
    if total:
        before = np.cumsum(length) - length
        flat = np.repeat(first - before, length)
        flat += np.arange(total, dtype=flat.dtype)
        mask[flat] = True


def _paint_runs(size, chunks, capacity):
    """The flat bool array of ``size`` with the intervals of ``chunks`` (pairs ``first, length``
    of non-empty intervals ``[first[n], first[n] + length[n])``, at most ``capacity`` in all)
    set, written in one pass as alternating runs (np.repeat); ``first`` must be nondecreasing
    over all chunks (the intervals may overlap or touch). None when it is not (the caller then
    scatters). Runs ``[start_n, end_n)`` cover the union in order without overlap: ``end_n`` is
    the running maximum of ``first + length``, ``start_n = max(first_n, end_{n-1})``; the
    (gap, run) pairs are written chunk by chunk into one buffer, of which only the part in use
    is ever touched."""
    counts = np.empty(2 * capacity + 1, dtype=np.intp)  # gap, run, gap, run, ..., last gap
    n, last_end, last_first = 0, 0, -1  # intervals so far, end of their runs, the last first
    for first, length in chunks:
        m = first.size
        if not m:
            continue
        if int(first[0]) < last_first or (m > 1 and not bool((first[1:] >= first[:-1]).all())):
            return None
        end = first + length
        if int(end[0]) < last_end or (m > 1 and not bool((end[1:] >= end[:-1]).all())):
            end = np.maximum.accumulate(end)  # an interval inside an earlier one
            np.maximum(end, last_end, out=end)
        start = first.copy()
        start[0] = max(int(first[0]), last_end)
        np.maximum(first[1:], end[:-1], out=start[1:])
        pairs = counts[2 * n:2 * (n + m)]
        pairs[0] = int(start[0]) - last_end
        np.subtract(start[1:], end[:-1], out=pairs[2::2])  # gaps (>= 0)
        np.subtract(end, start, out=pairs[1::2])  # runs (>= 0)
        n, last_end, last_first = n + m, int(end[-1]), int(first[-1])
    counts[2 * n] = size - last_end
    values = np.zeros(2 * n + 1, dtype=np.bool_)
    values[1::2] = True
    return np.repeat(values, counts[:2 * n + 1])


def _tile_row_intervals(lo, hi, inverse, base, F, k, nb, stride):
    """Every tile row's non-empty interval of block columns as (``row * stride + first column``,
    length), a group of row frames at a time, with the first block row that the group may have
    left incomplete (the next frame's first one; every row before it is complete).

    Laid out [row frame i, tile row p, column frame j]: in that order the rows are
    nondecreasing and each row's intervals nondecreasing, except a block row that two frames
    share (a frame's first row is the previous frame's last): its two frames' intervals follow
    one another, each sorted. ``lo, hi`` [k, U] are the configurations' intervals, ``inverse``
    [F, F] each tile's configuration, ``base`` [F] each frame's first block. Each group's
    [rows, k, F] buffers are reused for the next, so this stage touches ~``_GROUP_ENTRIES``
    entries of memory, not F*k*F.
    """
    idt = np.int32 if (nb + k + 1) * stride < 2**31 else np.int64  # positions
    bdt = np.int16 if nb + 2 * k + 2 < 2**15 else idt  # block columns and lengths
    base_b = base.astype(bdt)  # broadcast over the column frame j
    rows = base.astype(idt)[:, None] + np.arange(k, dtype=idt)[None, :]  # [F, k]
    row_first, past_end = rows * stride, rows >= nb
    g = max(1, _GROUP_ENTRIES // (k * F))
    c0_buf, len_buf = np.empty((g, k, F), dtype=bdt), np.empty((g, k, F), dtype=bdt)
    first_buf = np.empty((g, k, F), dtype=idt)
    for i0 in range(0, F, g):
        i1 = min(F, i0 + g)
        c0, length, first = c0_buf[:i1 - i0], len_buf[:i1 - i0], first_buf[:i1 - i0]
        tiles = inverse[i0:i1]
        np.add(lo[:, tiles].transpose(1, 0, 2), base_b, out=c0)  # [k, rows, F] -> [rows, k, F]
        np.add(hi[:, tiles].transpose(1, 0, 2), base_b, out=length)
        np.minimum(length, nb - 1, out=length)
        length -= c0
        length += 1
        np.maximum(length, 0, out=length)
        length[past_end[i0:i1]] = 0
        np.add(row_first[i0:i1, :, None], c0, out=first)
        kept = np.flatnonzero(length)
        incomplete = int(base[i1]) if i1 < F else min(nb, int(base[F - 1]) + k)
        yield first.ravel()[kept], length.ravel()[kept], incomplete


def _text_intervals(r0, r1, nb, stride, border, text_first, partial_last, dtype):
    """The text's dense part of block rows ``r0..r1-1`` as intervals (same layout as
    :func:`_tile_row_intervals`). Video first: the rows from ``border`` on are whole, the rows
    before it get columns ``border..nb-1``. Text first: the rows before ``border`` are whole,
    the others get columns ``0..border-1``; with ``partial_last`` the last row is whole and every
    row gets the last column too."""
    firsts, lengths = [], []

    def put(a, z, column, length):
        a, z = max(a, r0), min(z, r1)
        if a < z and length > 0:
            firsts.append(np.arange(a, z, dtype=dtype) * stride + column)
            lengths.append(np.full(z - a, length, dtype=dtype))

    if not text_first:
        put(0, border, border, nb - border)
        put(border, nb, 0, nb)
    else:
        put(0, border, 0, nb)
        put(border, nb, 0, border)
        if partial_last:
            put(0, nb, nb - 1, 1)
            put(nb - 1, nb, 0, nb)
    return firsts, lengths


def _merge_runs(first, length, stride):
    """The union of intervals (``row * stride + column``, length; any order, overlapping or
    touching, none empty) as sorted disjoint runs ``row, lo, hi`` (columns lo..hi-1 of
    ``row``), runs of one row neither overlapping nor touching. ``stride`` is nb + 1: a row's
    intervals end at or before its column nb, one short of the next row's first position, so
    no run reaches across a row boundary."""
    order = np.argsort(first, kind="stable")  # sorted but for the shared rows and the text
    first = first[order]
    end = first + length[order]
    np.maximum.accumulate(end, out=end)  # end of the runs so far
    new = np.empty(first.size, dtype=np.bool_)
    new[:1] = True
    np.greater(first[1:], end[:-1], out=new[1:])  # a gap before this interval: a new run
    starts = np.flatnonzero(new)
    run_first = first[starts]
    run_end = end[np.append(starts[1:] - 1, first.size - 1)] if starts.size else run_first
    row = run_first // stride
    return row, run_first - row * stride, run_end - row * stride


def _build(num_frames, tokens_per_frame, text_tokens, block_size, decay_factor, model, dist1, text_first=False):
    """The mask's kept blocks as runs ``(nb, run_ptr, lo, hi)``: block row ``r`` keeps block
    columns ``lo[n]..hi[n]-1`` for ``n`` in ``run_ptr[r]..run_ptr[r+1]-1`` (int64 ``run_ptr``
    [nb + 1]; ``lo``, ``hi`` int16 while nb < 2**15, else int32), sorted, disjoint, not touching."""
    F, T, b = num_frames, tokens_per_frame, block_size
    S = F * T + text_tokens
    nb = -(-S // b)
    k = -(-T // b)
    lead = text_tokens if text_first else 0  # tokens before the first video frame

    # Window per frame pair [F, F]: one value per distance |i - j|, broadcast; rule 1, the
    # attention sink on frame 0 (Wan), wins over everything.
    frames = np.arange(F, dtype=np.int64)
    windows = _window_by_distance(F, T, b, decay_factor, model, dist1)[np.abs(frames[:, None] - frames[None, :])]
    if model == "wan":
        windows[:, 0] = T
    start = lead + frames * T
    row_off = (start % b).astype(np.int32)  # where a frame starts inside its first block
    base = start // b  # a frame's first block

    # A tile's blocks depend only on (row offset, column offset, window): compute each distinct
    # configuration once. Offsets are < b and windows <= T, so one int64 key holds all three;
    # every empty (thinned) tile gets the key -1.
    keys = (row_off[:, None].astype(np.int64) * b + row_off[None, :]) * (T + 1) + windows
    keys[windows < 0] = -1
    configs, inverse = np.unique(keys, return_inverse=True)
    # The interval arithmetic stays within [-T, 2T + 2b]: int16 while that fits (T up to ~16 000,
    # past 1080p), which halves its memory traffic again; int32 beyond.
    adt = np.int16 if 2 * T + 4 * b < 2**15 else np.int32
    w_cfg = (configs % (T + 1)).astype(adt)
    rc_cfg = ((configs // (T + 1)) % b).astype(adt)
    rr_cfg = (configs // ((T + 1) * b)).astype(adt)
    lo, hi = _kept_intervals(rr_cfg, rc_cfg, w_cfg, T, b)  # [k, U]
    if configs[0] < 0:  # the empty tiles' key (sorted first) keeps nothing
        lo[:, 0] = k + 1

    # Text tokens attend to everything and are attended by everything; the block holding the
    # video/text border is dense too. Text first: the same rule mirrored (the spec's per-tile
    # token-to-block reduction applied where the frames actually sit in the sequence): the blocks
    # holding text are dense, and so is the block holding the end of the video when the sequence
    # does not end on a block boundary. (Video first, that block is the border block; text first,
    # the spec's canvas would drop the last frame's tokens in it and leave them only the text.)
    border = -(-lead // b) if text_first else (F * T) // b
    partial_last = S % b != 0
    # Rows a group of frames completes: their tile rows' intervals with the text's, merged into
    # runs (positions row * (nb + 1) + column, so that a row's intervals never touch the next
    # row's); the rows before the first frame's and after the last frame's are whole (text).
    stride = nb + 1
    rdt = np.int16 if nb < 2**15 else np.int32
    capacity = F * k * F + 2 * nb + 1  # runs <= intervals; the buffers are touched as used
    lo_out, hi_out = np.empty(capacity, dtype=rdt), np.empty(capacity, dtype=rdt)
    per_row = np.zeros(nb, dtype=np.int64)  # runs of each row
    n = 0

    def whole_rows(r0, r1):
        nonlocal n
        m = max(0, r1 - r0)
        lo_out[n:n + m], hi_out[n:n + m], per_row[r0:r1] = 0, nb, 1
        n += m

    first_row = min(nb, int(base[0]))
    whole_rows(0, first_row)
    r0, carried = first_row, None
    for first, length, r1 in _tile_row_intervals(lo, hi, inverse.reshape(F, F), base, F, k, nb, stride):
        if carried is not None:  # the rows the previous group left incomplete come first
            first, length = np.concatenate([carried[0], first]), np.concatenate([carried[1], length])
        cut = int(np.searchsorted(first, r1 * stride))  # rows nondecreasing: those of r1 on wait
        carried = (first[cut:], length[cut:]) if cut < first.size else None
        tf, tl = _text_intervals(r0, r1, nb, stride, border, text_first, partial_last, first.dtype)
        row, rlo, rhi = _merge_runs(np.concatenate([first[:cut], *tf]), np.concatenate([length[:cut], *tl]),
                                    stride)
        m = row.size
        lo_out[n:n + m], hi_out[n:n + m] = rlo, rhi
        per_row[r0:r1] = np.bincount(row - r0, minlength=r1 - r0)
        n += m
        r0 = r1
    whole_rows(r0, nb)
    run_ptr = np.zeros(nb + 1, dtype=np.int64)
    np.cumsum(per_row, out=run_ptr[1:])
    return nb, run_ptr, lo_out[:n], hi_out[:n]


def _paint(nb, run_ptr, lo, hi):
    """The bool [nb, nb] mask of the runs, in one pass of alternating runs."""
    first = np.repeat(np.arange(nb, dtype=np.int64) * nb, np.diff(run_ptr)) + lo
    length = hi - lo
    mask = _paint_runs(nb * nb, [(first, length)], capacity=first.size)
    if mask is None:  # not in order (cannot happen for merged runs): scatter (same result)
        mask = np.zeros(nb * nb, dtype=np.bool_)
        _paint_scatter(mask, first, length)
    return mask.reshape(nb, nb)


class RadialMask:
    """The radial block mask of one sequence shape, in the spirit of ``flex_attention``'s
    ``BlockMask``: built once per argument set by :func:`radial_mask` and shared by every batch
    entry, head, block and step of a generation (and every run of the same shape).

    Immutable: the fields are fixed at build time and ``blocks`` must not be edited (make your own
    copy with :func:`radial_block_mask` to experiment). Carries

    - ``args``: ``(num_frames, tokens_per_frame, text_tokens, block_size, decay_factor, model,
      dist1, text_first)``, the key of the one mask cache;
    - ``runs``: the kept blocks as sorted, disjoint runs ``(run_ptr, lo, hi)``, what the builder
      computes (read-only numpy arrays: block row ``r`` keeps block columns ``lo[n]..hi[n]-1``
      for ``n`` in ``run_ptr[r]..run_ptr[r+1]-1``; 2.4 MB at nb = 7142, 127 frames);
    - ``density``: the fraction of kept blocks;
    - ``blocks``: the bool ``[nb, nb]`` CPU tensor (layout in the module doc), painted from the
      runs on first use and kept (51 MB at nb = 7142: the kernels' path never asks for it);
    - :meth:`csr` / :meth:`key_csr`: its compressed-sparse-row form (query side / key side) on a
      device, built from the runs and memoised on the mask itself;
    - ``block_size``: the tokens per block it was cut with.

    ``block_sparse_attention`` takes it wherever it takes a bool block-mask tensor and hands its
    CSR tensors to the kernels.
    """

    __slots__ = ("args", "runs", "density", "nb", "_blocks", "_csr", "_key_csr", "_lock")

    def __init__(self, args: tuple, runs: tuple):
        nb, run_ptr, lo, hi = runs
        for a in (run_ptr, lo, hi):
            a.flags.writeable = False
        kept = int(hi.sum(dtype=np.int64) - lo.sum(dtype=np.int64))
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "runs", (run_ptr, lo, hi))
        object.__setattr__(self, "nb", int(nb))
        object.__setattr__(self, "density", kept / (nb * nb) if nb else 1.0)
        object.__setattr__(self, "_blocks", None)
        object.__setattr__(self, "_csr", {})
        object.__setattr__(self, "_key_csr", {})
        object.__setattr__(self, "_lock", threading.RLock())

    def __setattr__(self, name, value):
        raise AttributeError(f"RadialMask is immutable (tried to set {name!r})")

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.nb, self.nb)

    @property
    def block_size(self) -> int:
        return self.args[3]

    @property
    def blocks(self) -> torch.Tensor:
        """The bool ``[nb, nb]`` CPU tensor, painted from :attr:`runs` on first use."""
        got = self._blocks
        if got is None:
            with self._lock:
                got = self._blocks
                if got is None:
                    # a normal tensor also when first asked for under torch.inference_mode
                    with torch.inference_mode(False):
                        got = torch.from_numpy(_paint(self.nb, *self.runs))
                    object.__setattr__(self, "_blocks", got)
        return got

    def _memo(self, memo, device, build):
        key = device_key(device)
        got = memo.get(key)
        if got is None:
            with self._lock:
                got = memo.get(key)
                if got is None:
                    got = build(torch.device(key))
                    memo[key] = got
        return got

    def csr(self, device: torch.device | str = "cpu") -> BlockCSR:
        """The kept key blocks of each query block on ``device`` (a ``csr.BlockCSR``), built from
        the runs once per device and kept on this mask (the same lists as
        ``csr.build_csr(self.blocks)``)."""
        return self._memo(self._csr, device,
                          lambda dev: csr_from_runs(self.nb, *self.runs, dev, self.block_size))

    def key_csr(self, device: torch.device | str = "cpu") -> BlockCSR:
        """The kept query blocks of each key block (the CSR of the transposed mask, the backward's
        dK/dV lists) on ``device``, from the query-side CSR, kept on this mask."""
        return self._memo(self._key_csr, device, lambda dev: key_csr_from_csr(self.csr("cpu"), dev))

    def __repr__(self) -> str:
        f, t, text, b, decay, model, dist1, text_first = self.args
        return (f"RadialMask({f} frames x {t} tokens + {text} text{' first' if text_first else ''}, block {b}, "
                f"decay {decay:g}, {model}/{dist1}: {self.nb}x{self.nb}, density {self.density:.3f})")


_MASKS: OrderedDict[tuple, RadialMask] = OrderedDict()
_MASKS_LOCK = threading.Lock()
MAX_CACHED_MASKS = 64


def radial_mask(
    num_frames: int,
    tokens_per_frame: int,
    *,
    text_tokens: int = 0,
    block_size: int = 128,
    decay_factor: float = 1.0,
    model: str = "wan",
    dist1: str = "full",
    text_first: bool = False,
) -> RadialMask:
    """The shared :class:`RadialMask` for these arguments, from the one bounded cache keyed by the
    checked arguments (the ``MAX_CACHED_MASKS`` most recently used); never a copy.

    Args:
        num_frames: latent frames F after patchify (Wan-14B / HunyuanVideo:
            ``(pixel_frames - 1) // 4 + 1``).
        tokens_per_frame: tokens T of one latent frame after patchify, e.g. ``(H/16)*(W/16)``.
        text_tokens: tokens after the video tokens in the same sequence (HunyuanVideo); 0 for Wan.
        block_size: 128 or 64.
        decay_factor: scales the window of far frames; lower is sparser.
        model: ``"wan"`` (attention sink on frame 0) or ``"hunyuan"`` (no sink).
        dist1: ``"full"`` (the authors' current rule) or ``"half"`` (paper-era Wan rule): the
            window for frames at distance 1 in Wan.
        text_first: the text tokens come before the video tokens (``[text | video]``). The
            token-level rule is the same; frames start at offset ``text_tokens`` so their blocks
            are placed (and reduced) where they are, and the text blocks are the first ones.

    ``nb = ceil((num_frames * tokens_per_frame + text_tokens) / block_size)``.
    """
    args = _check_args(num_frames, tokens_per_frame, text_tokens, block_size, decay_factor, model, dist1, text_first)
    with _MASKS_LOCK:
        m = _MASKS.get(args)
        if m is not None:
            _MASKS.move_to_end(args)
            return m
    # A mask built under torch.inference_mode (ComfyUI samples there) would be an inference
    # tensor: no version counter, and unusable in autograd. Build it as a normal tensor.
    with torch.inference_mode(False):
        m = RadialMask(args, _build(*args))
    with _MASKS_LOCK:
        m = _MASKS.setdefault(args, m)
        _MASKS.move_to_end(args)
        while len(_MASKS) > MAX_CACHED_MASKS:
            _MASKS.popitem(last=False)
    return m


def clear_mask_cache() -> None:
    """Forget every cached mask (benchmarks time first builds with it)."""
    with _MASKS_LOCK:
        _MASKS.clear()


def radial_block_mask(num_frames: int, tokens_per_frame: int, **options) -> torch.Tensor:
    """A copy of the radial mask's tensor (CPU ``torch.bool`` ``[nb, nb]``) that the caller may
    modify: ``radial_mask(num_frames, tokens_per_frame, **options).blocks.clone()``. The kernels
    and the ComfyUI patch use the shared :class:`RadialMask` from :func:`radial_mask` instead."""
    return radial_mask(num_frames, tokens_per_frame, **options).blocks.clone()


def mask_density(block_mask) -> float:
    """Fraction of kept blocks (1.0 = dense) of a :class:`RadialMask` or a bool tensor."""
    if isinstance(block_mask, RadialMask):
        return block_mask.density
    n = block_mask.numel()
    if not n:
        return 1.0
    if block_mask.device.type == "cpu" and block_mask.dtype == torch.bool:
        # numpy counts a CPU bool tensor (a view, no copy) ~5x faster than single-threaded torch:
        # 1.6 ms instead of 8 ms for a 7142 x 7142 mask, part of every first build
        return int(np.count_nonzero(block_mask.numpy())) / n
    return int(torch.count_nonzero(block_mask)) / n  # no float copy of the mask
