"""A slow, literal token-level implementation of ../shared/docs/radial-mask-spec.md.

Used only by the tests to check the fast block-level builder in radial_core.mask on small
shapes. It builds each frame pair's T x T token mask, places it on its canvas, reduces it to
blocks by column densities, and ORs the blocks into the global mask, exactly as the spec reads.
"""

import math

import torch


def spec_block_mask(F, T, text_tokens=0, b=128, decay=1.0, model="wan", dist1="full", text_first=False):
    """``text_first``: the sequence is [text | video]; every frame starts ``text_tokens`` later."""
    S = F * T + text_tokens
    lead = text_tokens if text_first else 0
    nb = math.ceil(S / b)
    out = torch.zeros(nb, nb, dtype=torch.bool)
    P = 2 ** T.bit_length()
    r = torch.arange(T).view(-1, 1)
    c = torch.arange(T).view(1, -1)
    k = math.ceil(T / b)
    for i in range(F):
        for j in range(F):
            d = abs(i - j)
            g = d.bit_length()
            if model == "wan" and j == 0:
                tile = torch.ones(T, T, dtype=torch.bool)
            else:
                if d == 0:
                    w = T
                elif d == 1:
                    w = T // 2 if (model == "wan" and dist1 == "half") else T
                else:
                    w = max(P / 2**g * decay, b)
                tile = (c - r).abs() <= w
                L = P / 2**g
                if L < 128 and d % int(128 / L) != 0:
                    tile = torch.zeros(T, T, dtype=torch.bool)
            ro, co = (lead + i * T) % b, (lead + j * T) % b
            canvas = torch.zeros(ro + k * b, co + k * b, dtype=torch.bool)
            canvas[ro:ro + T, co:co + T] = tile
            canvas = canvas[: k * b, : k * b].view(k, b, k, b)
            col_density = canvas.sum(dim=1).float() / b  # [k, k, b]: per block, per column
            nonzero = (col_density > 0).sum(-1)
            high = (col_density > 1 / 3).sum(-1)
            frac = high.float() / (nonzero.float() + 1e-9)
            blocks = frac > 0.6
            r0, c0 = (lead + i * T) // b, (lead + j * T) // b
            r1, c1 = min(r0 + k, nb), min(c0 + k, nb)
            out[r0:r1, c0:c1] |= blocks[: r1 - r0, : c1 - c0]
    if text_first:
        border = math.ceil(lead / b)
        out[:border, :] = True
        out[:, :border] = True
        if S % b:  # the block holding the end of the video
            out[nb - 1, :] = True
            out[:, nb - 1] = True
    else:
        border = (F * T) // b
        out[border:, :] = True
        out[:, border:] = True
    return out


# --- the previous fast builder -----------------------------------------------------------------
# A verbatim copy of radial_core.mask's torch builder as it stood before the numpy rewrite
# (commit 7b37965 / d70bbad): closed-form per-tile row intervals, one flat scatter. Fast enough to
# compare against on large random shapes where spec_block_mask is too slow; tests/test_mask.py
# checks the current builder against it bit for bit.
# It repeats radial_core/mask.py on purpose: shared code would change the reference with the builder.

# The authors' thinning threshold is a fixed 128 tokens, independent of the block size.
_THINNING_TOKENS = 128


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


def previous_block_mask(
    num_frames, tokens_per_frame, text_tokens, block_size, decay_factor, model, dist1, text_first=False
):
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


def random_builder_cases(n, seed, fixed, text_first_any_model=False):
    """``fixed`` then random mask-builder arguments ``(F, T, text, block, decay, model, dist1,
    text_first)`` up to ``n``: up to 128 frames, odd and tiny token counts, text after or before
    the video or none, both models and dist1 rules, both block sizes, sparse to dense decays.
    Text first is drawn for HunyuanVideo only, or for either model with ``text_first_any_model``."""
    import random

    rng = random.Random(seed)
    cases = list(fixed)
    while len(cases) < n:
        F = rng.choice([rng.randint(1, 8), rng.randint(9, 48), rng.randint(100, 128)])
        T = rng.choice([rng.randint(1, 70), rng.randint(60, 300), rng.randint(300, 1200), rng.randint(1200, 3700)])
        T = min(T, 30_000 // F)  # keeps the previous builder's share of a test to a few seconds
        model = rng.choice(["wan", "hunyuan"])
        text = rng.choice([0, 0, 77, 226, 256, rng.randint(1, 400)])
        text_first = (text_first_any_model or model == "hunyuan") and text > 0 and rng.random() < 0.5
        cases.append(
            (
                F,
                T,
                text,
                rng.choice([64, 128]),
                rng.choice([0.05, 0.2, 0.5, 0.8, 0.95, 1.0, 1.7, rng.uniform(0.01, 4)]),
                model,
                rng.choice(["full", "half"]),
                text_first,
            )
        )
    return cases
