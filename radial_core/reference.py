"""Dense reference for block-sparse attention (tests and benchmarks only).

Expands the block mask to a token mask and runs plain softmax attention in float64 (or
float32) so that every fast path can be checked against it. Memory grows as S^2: keep the
shapes small (a few thousand tokens).
"""

from __future__ import annotations

import math

import torch


def expand_block_mask(block_mask: torch.Tensor, block_size: int, seq_len: int) -> torch.Tensor:
    """Token mask ``[..., S, S]`` (True = attend) from a block mask ``[..., nb, nb]``."""
    tok = block_mask.repeat_interleave(block_size, dim=-2).repeat_interleave(block_size, dim=-1)
    return tok[..., :seq_len, :seq_len]


def _allowed(block_mask, block_size, S, key_padding_mask, device) -> torch.Tensor:
    """The token mask ``[1|B, 1|H, S, S]`` of a block mask (shared or per head) and key padding."""
    allowed = expand_block_mask(block_mask.to(device, torch.bool), block_size, S)
    allowed = allowed[None, None] if allowed.dim() == 2 else allowed[None]
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask.to(device, torch.bool)[:, None, None, :]
    return allowed


def dense_masked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block_mask: torch.Tensor,
    block_size: int,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Attention of ``q, k, v`` ``[B, H, S, D]`` restricted to the kept blocks.

    ``block_mask`` is ``[nb, nb]`` (shared by all heads) or ``[H, nb, nb]``;
    ``key_padding_mask`` is ``[B, S]`` with True for real keys. Rows with no kept key give zeros.
    Returns ``[B, H, S, D]`` in ``dtype`` on the inputs' device.
    """
    B, H, S, D = q.shape
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    qf, kf, vf = (t.to(dtype) for t in (q, k, v))
    allowed = _allowed(block_mask, block_size, S, key_padding_mask, q.device)
    scores = torch.matmul(qf, kf.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~allowed, float("-inf"))
    row_has_key = allowed.any(dim=-1, keepdim=True)
    scores = torch.where(row_has_key, scores, torch.zeros_like(scores))
    probs = torch.softmax(scores, dim=-1)
    probs = torch.where(row_has_key, probs, torch.zeros_like(probs))
    return torch.matmul(probs, vf)


def masked_attention_rows(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block_mask: torch.Tensor,
    block_size: int,
    rows: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    dtype: torch.dtype = torch.float32,
    head_chunk: int = 4,
) -> torch.Tensor:
    """Reference output ``[B, H, len(rows), D]`` for the query rows ``rows`` only.

    Memory is ``len(rows) x S`` per head chunk, so it checks long sequences (S ~ 300k) on a GPU.
    Rows with no kept key give zeros.
    """
    B, H, S, D = q.shape
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    rows = rows.to(q.device)
    m = block_mask.to(q.device, torch.bool)
    tok = m[..., rows // block_size, :].repeat_interleave(block_size, dim=-1)[..., :S]
    allowed = tok[None, None] if tok.dim() == 2 else tok[None]  # [1, 1|H, R, S]
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask.to(q.device, torch.bool)[:, None, None, :]
    out = torch.empty(B, H, rows.numel(), v.shape[-1], dtype=dtype, device=q.device)
    for h0 in range(0, H, head_chunk):
        sl = slice(h0, h0 + head_chunk)
        al = allowed if allowed.shape[1] == 1 else allowed[:, sl]
        s = torch.matmul(q[:, sl, rows].to(dtype), k[:, sl].to(dtype).transpose(-1, -2)) * scale
        s = s.masked_fill(~al, float("-inf"))
        has = al.any(-1, keepdim=True)
        p = torch.softmax(torch.where(has, s, torch.zeros_like(s)), dim=-1)
        p = torch.where(has, p, torch.zeros_like(p))
        out[:, sl] = torch.matmul(p, v[:, sl].to(dtype))
    return out


def pv8_rounded_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block_mask: torch.Tensor,
    block_size: int,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    tile: int = 128,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """``precision="int8"``'s P.V rounding applied to exact logits: what 8-bit P and V alone
    cost (the tests derive the 8-bit path's tolerance from it; the logits' own int8 error is
    estimated separately). P: each ``tile``-key tile's exponentials against the tile's row
    maximum, times 255, rounded to integers; V: minus its mean over the sequence, one scale
    per channel (amax / 127), rounded half away from zero; O = sum(beta P8 V8) x scale / l +
    mean with ``l`` the unrounded sum. Memory S^2 like :func:`dense_masked_attention`."""
    B, H, S, D = q.shape
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    qf, kf, vf = (t.to(dtype) for t in (q, k, v))
    allowed = _allowed(block_mask, block_size, S, key_padding_mask, q.device)
    s = (torch.matmul(qf, kf.transpose(-1, -2)) * scale).masked_fill(~allowed, float("-inf"))
    pad = (-S) % tile
    st = torch.nn.functional.pad(s, (0, pad), value=float("-inf")).unflatten(-1, (-1, tile))
    t_max = st.amax(-1, keepdim=True)
    t_use = torch.where(torch.isinf(t_max), torch.zeros_like(t_max), t_max)
    p = torch.exp(st - t_use) * 255.0  # [B, H, S, tiles, tile]
    run_max = t_max.amax(-2, keepdim=True)
    beta = torch.exp(t_use - torch.where(torch.isinf(run_max), torch.zeros_like(run_max), run_max))
    l_sum = (beta * p.sum(-1, keepdim=True)).sum((-2, -1))
    p8 = (torch.round(p) * beta).flatten(-2)[..., :S]
    mu = vf.mean(dim=2, keepdim=True)
    v_scale = ((vf - mu).abs().amax(dim=2, keepdim=True) / 127.0).clamp_min(1e-30)
    x = (vf - mu) / v_scale
    v8 = torch.where(x >= 0, torch.floor(x + 0.5), torch.ceil(x - 0.5)).clamp(-127, 127)
    kept = (l_sum > 0)[..., None]
    out = torch.matmul(p8, v8) * v_scale / torch.where(kept, l_sum[..., None], 1.0) + mu
    return torch.where(kept, out, torch.zeros_like(out))
