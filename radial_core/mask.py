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

import torch

logger = logging.getLogger(__name__)

SUPPORTED_BLOCK_SIZES = (64, 128)
MODELS = ("wan", "hunyuan")
DIST1_RULES = ("full", "half")

# The authors' thinning threshold is a fixed 128 tokens, independent of the block size.
_THINNING_TOKENS = 128


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


def _pair_windows(num_frames, tokens_per_frame, block_size, decay_factor, model, dist1):
    """Window per frame pair as an int tensor [F, F]: -1 = empty tile, else w (w >= T-1 = full).

    Rules 1-3 of the spec: sink, window by distance, temporal thinning.
    """
    T = tokens_per_frame
    P = 1 << T.bit_length()  # T rounded up to the next power of two, strictly above a power of 2
    full = T  # any w >= T - 1 keeps the whole tile
    by_dist = []
    for d in range(num_frames):
        g = d.bit_length()
        # rule 3: temporal thinning, L = P / 2**g (exact: all powers of two)
        if P < _THINNING_TOKENS * (1 << g):  # L < 128
            split = (_THINNING_TOKENS << g) // P
            if d % split != 0:
                by_dist.append(-1)
                continue
        # rule 2: window
        if d == 0:
            w = full
        elif d == 1:
            w = T // 2 if (model == "wan" and dist1 == "half") else full
        else:
            w = max(P / (1 << g) * decay_factor, block_size)
            w = min(int(math.floor(w)), full)
        by_dist.append(w)
    by_dist = torch.tensor(by_dist, dtype=torch.int64)
    idx = torch.arange(num_frames)
    windows = by_dist[(idx[:, None] - idx[None, :]).abs()]
    if model == "wan":  # rule 1: attention sink on frame 0 wins over everything
        windows[:, 0] = full
    return windows


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

    Args are int64 tensors of one shape [U] (one entry per distinct tile configuration).
    Returns (lo, hi), each [U, k]: kept block columns lo..hi of row p (lo > hi: none).
    """
    k = -(-T // b)
    m = b // 3 + 1  # "density > 1/3" is count > b/3, i.e. count >= b//3 + 1
    p = torch.arange(k, dtype=rr.dtype).view(1, k)
    rr, rc, w = rr.view(-1, 1), rc.view(-1, 1), w.view(-1, 1)
    rlo = (p * b - rr).clamp(0, T)
    rhi = (p * b + b - rr).clamp(0, T)
    last_col = (k * b - rc).clamp(max=T) - 1  # last tile column that lands in a block
    A, D = rlo - w, rhi - 1 + w
    Bh, Ch = rlo + (m - 1) - w, rhi - m + w
    has_high = (rhi - rlo >= m) & (2 * w >= m - 1) & (Bh <= Ch) & (Bh <= last_col) & (Ch >= 0)

    def block_of(col):
        return (torch.minimum(col.clamp(min=0), last_col) + rc) // b

    def kept(q):
        clo = (q * b - rc).clamp(0, T)
        chi = (q * b + b - rc).clamp(0, T) - 1
        nonzero = (torch.minimum(chi, D) - torch.maximum(clo, A) + 1).clamp(min=0)
        high = (torch.minimum(chi, Ch) - torch.maximum(clo, Bh) + 1).clamp(min=0)
        return 5 * high > 3 * nonzero  # high / nonzero > 0.6, exactly

    qA, qB, qC, qD = block_of(A), block_of(Bh), block_of(Ch), block_of(D)
    interior = qB + 1 <= qC - 1
    big = k + 1
    lo = torch.full_like(qA, big)
    hi = torch.full_like(qA, -1)
    for q in (qA, qB, qC, qD):
        ok = kept(q)
        lo = torch.where(ok, torch.minimum(lo, q), lo)
        hi = torch.where(ok, torch.maximum(hi, q), hi)
    lo = torch.where(interior, torch.minimum(lo, qB + 1), lo)
    hi = torch.where(interior, torch.maximum(hi, qC - 1), hi)
    lo = torch.where(has_high, lo, torch.full_like(lo, big))
    return lo, hi


def _build(num_frames, tokens_per_frame, text_tokens, block_size, decay_factor, model, dist1, text_first=False):
    F, T, b = num_frames, tokens_per_frame, block_size
    S = F * T + text_tokens
    nb = -(-S // b)
    k = -(-T // b)
    lead = text_tokens if text_first else 0  # tokens before the first video frame

    windows = _pair_windows(F, T, b, decay_factor, model, dist1)  # [F, F]
    start = lead + torch.arange(F) * T
    row_off = start % b  # where a frame starts inside its first block
    base = (start // b).to(torch.int32)  # a frame's first block

    ii, jj = torch.nonzero(windows >= 0, as_tuple=True)  # non-empty tiles
    # A tile's blocks depend only on (row offset, column offset, window): compute each distinct
    # configuration once. Offsets are < b and windows <= T, so one int64 key holds all three.
    keys = (row_off[ii] * b + row_off[jj]) * (T + 1) + windows[ii, jj]
    configs, inverse = torch.unique(keys, return_inverse=True)
    w_cfg = configs % (T + 1)
    rc_cfg = (configs // (T + 1)) % b
    rr_cfg = configs // ((T + 1) * b)
    i32 = torch.int32  # halves the memory traffic of the interval arithmetic
    lo, hi = _kept_row_intervals(rr_cfg.to(i32), rc_cfg.to(i32), w_cfg.to(i32), T, b)

    # Every tile row's interval in global block coordinates, written straight into the mask
    # (intervals of different tiles may overlap: writing True twice is harmless).
    lo, hi = lo[inverse], hi[inverse]  # [tiles, k]
    rows = base[ii].view(-1, 1) + torch.arange(k).view(1, -1)
    c0 = base[jj].view(-1, 1) + lo
    c1 = torch.clamp(base[jj].view(-1, 1) + hi, max=nb - 1)
    ok = (lo <= hi) & (rows < nb) & (c0 < nb)
    first = rows[ok].long() * nb + c0[ok]  # flat index of each interval's first block
    length = (c1[ok] - c0[ok] + 1).long()
    total = int(length.sum())
    mask = torch.zeros(nb * nb, dtype=torch.bool)
    if total:
        before = torch.cumsum(length, 0) - length
        flat = torch.repeat_interleave(first - before, length, output_size=total)
        mask[flat + torch.arange(total)] = True
    mask = mask.view(nb, nb)

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
    return mask


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
    return int(torch.count_nonzero(block_mask)) / n if n else 1.0  # no float copy of the mask
