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
:class:`RadialMask` (tensor, density, device CSR) from the one bounded cache keyed by its
arguments; :func:`radial_block_mask` returns a copy of its tensor.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from collections import OrderedDict

import numpy as np
import torch

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
# the mask itself should be the only large buffer its first build touches.
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


def _tile_row_intervals(lo, hi, inverse, base, F, k, nb, shared):
    """Every tile row's interval in global block coordinates, as flat positions in the mask and
    lengths, non-empty only, laid out as [row frame i, tile row p, column frame j] and yielded a
    group of row frames at a time. In that order the intervals run in row-major order of the mask
    (frame j+1's blocks start at or after the last of frame j's), except that a frame's first block
    row is the previous frame's last when the frames share that block: those rows are appended to
    ``shared`` and painted apart.

    ``lo, hi`` [k, U] are the configurations' intervals, ``inverse`` [F, F] each tile's
    configuration, ``base`` [F] each frame's first block. Each group's [rows, k, F] buffers are
    reused for the next, so this stage touches ~``_GROUP_ENTRIES`` entries of memory, not F*k*F.
    """
    idt = np.int32 if nb * nb < 2**31 else np.int64  # flat positions
    bdt = np.int16 if nb + 2 * k + 2 < 2**15 else idt  # block columns and lengths
    base_b = base.astype(bdt)  # broadcast over the column frame j
    rows = base.astype(idt)[:, None] + np.arange(k, dtype=idt)[None, :]  # [F, k]
    row_first, past_end = rows * nb, rows >= nb
    is_shared = np.zeros(F, dtype=np.bool_)
    is_shared[1:] = base[1:] == base[:-1] + (k - 1)
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
        own = np.flatnonzero(is_shared[i0:i1])
        if own.size:
            shared.append((first[own, 0].ravel(), length[own, 0].ravel()))  # copies
            length[own, 0] = 0
        kept = np.flatnonzero(length)
        yield first.ravel()[kept], length.ravel()[kept]


def _build(num_frames, tokens_per_frame, text_tokens, block_size, decay_factor, model, dist1, text_first=False):
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

    inverse = inverse.reshape(F, F)
    shared = []  # intervals of the block rows two frames share

    def intervals():
        shared.clear()
        return _tile_row_intervals(lo, hi, inverse, base, F, k, nb, shared)

    mask = _paint_runs(nb * nb, intervals(), capacity=F * k * F)
    if mask is None:  # not in order after all: scatter everything (same result, slower)
        mask = np.zeros(nb * nb, dtype=np.bool_)
        for first, length in intervals():
            _paint_scatter(mask, first, length)
    for first, length in shared:
        _paint_scatter(mask, first, length)
    mask = mask.reshape(nb, nb)

    # Text tokens attend to everything and are attended by everything; the block holding the
    # video/text border is dense too. Text first: the same rule mirrored (the spec's per-tile
    # token-to-block reduction applied where the frames actually sit in the sequence): the blocks
    # holding text are dense, and so is the block holding the end of the video when the sequence
    # does not end on a block boundary. (Video first, that block is the border block; text first,
    # the spec's canvas would drop the last frame's tokens in it and leave them only the text.)
    if text_first:
        border = -(-lead // b)  # blocks holding any text token
        mask[:border, :] = True
        mask[:, :border] = True
        if S % b:
            mask[nb - 1, :] = True
            mask[:, nb - 1] = True
    else:
        border = (F * T) // b
        mask[border:, :] = True
        mask[:, border:] = True
    return torch.from_numpy(mask)


class RadialMask:
    """The radial block mask of one sequence shape, in the spirit of ``flex_attention``'s
    ``BlockMask``: built once per argument set by :func:`radial_mask` and shared by every batch
    entry, head, block and step of a generation (and every run of the same shape).

    Immutable: the fields are fixed at build time and ``blocks`` must not be edited (make your own
    copy with :func:`radial_block_mask` to experiment). Carries

    - ``args``: ``(num_frames, tokens_per_frame, text_tokens, block_size, decay_factor, model,
      dist1, text_first)``, the key of the one mask cache;
    - ``blocks``: the bool ``[nb, nb]`` CPU tensor (layout in the module doc);
    - ``density``: the fraction of kept blocks;
    - :meth:`csr`: its compressed-sparse-row form on a device, memoised on the mask itself.

    ``block_sparse_attention`` takes it wherever it takes a bool block-mask tensor.
    """

    __slots__ = ("args", "blocks", "density", "_csr", "_lock", "__weakref__")

    def __init__(self, args: tuple, blocks: torch.Tensor):
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "density", mask_density(blocks))
        object.__setattr__(self, "_csr", {})
        object.__setattr__(self, "_lock", threading.Lock())
        # the tensor names its mask, so the kernels' CSR lookup (csr.block_mask_to_csr) finds the
        # memo below also when only the tensor reaches it (through the custom op)
        blocks._radial_mask = weakref.ref(self)

    def __setattr__(self, name, value):
        raise AttributeError(f"RadialMask is immutable (tried to set {name!r})")

    @property
    def nb(self) -> int:
        return int(self.blocks.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.blocks.shape)

    def csr(self, device: torch.device | str = "cpu"):
        """The kept key blocks of each query block on ``device`` (a ``csr.BlockCSR``), built once
        per device and kept on this mask."""
        from .csr import build_csr, device_key  # noqa: PLC0415 (csr builds on masks)

        key = device_key(device)
        got = self._csr.get(key)
        if got is None:
            with self._lock:
                got = self._csr.get(key)
                if got is None:
                    got = build_csr(self.blocks, torch.device(key))
                    self._csr[key] = got
        return got

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


def block_tensor(block_mask) -> torch.Tensor:
    """The bool block tensor of a :class:`RadialMask` or of a tensor (returned as it is)."""
    return block_mask.blocks if isinstance(block_mask, RadialMask) else block_mask


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
