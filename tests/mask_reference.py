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
