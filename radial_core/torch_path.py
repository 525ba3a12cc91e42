"""Block-sparse attention in plain PyTorch: CPU, Apple (MPS), and GPUs that Triton cannot serve.

Query blocks are processed in groups against the key blocks their rows keep (gathered), so
memory is bounded by a fixed budget per group and never grows as S^2. Rows are taken longest
first (the CSR's ``row_order``) so that a group pads its shorter rows as little as possible.
Each group is one fused ``scaled_dot_product_attention`` call over its gathered keys with a
boolean key mask (tail keys, padding, unused slots), in float32 (float64 for float64 inputs).

Training: ``return_lse=True`` computes each group with explicit scores instead and
also returns the log-sum-exp of every query row; ``torch_block_sparse_attention_backward``
then recomputes each group's probabilities from it (``P = exp(S - lse)``, the FlashAttention-2
backward's recipe, Dao 2023) and accumulates dQ per row and dK, dV per gathered key block, so
the backward's memory is bounded by the same per-group budget.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .csr import BlockCSR

# elements (of the compute dtype) that one group may hold in gathered K, V and scores
_GROUP_BUDGET = 1 << 24


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def out_layout(t: torch.Tensor, d: int | None = None) -> torch.Tensor:
    """The layout every path returns (outputs and gradients alike): an empty ``[B, H, S, d]``
    in t's dtype and device, a transposed view of a contiguous ``[B, S, H, d]`` buffer (``d``:
    t's head dim unless given), so ``.transpose(1, 2).reshape(B, S, H * d)`` is free."""
    B, H, S, D = t.shape
    return t.new_empty((B, S, H, D if d is None else d)).transpose(1, 2)


def _prepare(q, k, v, csr: BlockCSR, block_size: int, key_padding_mask, scale):
    """What every pass of this path starts from: ``(sizes, blocks)``.

    ``sizes = (B, H, S, D, Dv, nb, sp, hg, cdt, scale)``: ``sp = nb * block_size``, ``hg`` the
    heads one group computes at once (all of them for a shared mask, one for per-head masks),
    ``cdt`` the compute dtype, the scale resolved. ``blocks = (qb, kb, vb, valid_b)``: q, k, v
    as contiguous zero-padded ``[B, H, nb, bs, d]`` copies in ``cdt`` (gathering whole blocks
    is then a plain memcpy) and the key validity ``[Bk, nb, bs]`` (``_key_validity``).
    """
    B, H, S, D = q.shape
    nb = csr.nb
    sp = nb * block_size
    cdt = _compute_dtype(q.dtype)
    hg = H if csr.mask_heads == 1 else 1
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    qb, kb, vb = (_to_blocks(t, nb, block_size, cdt) for t in (q, k, v))
    valid_b = _key_validity(B, S, sp, nb, block_size, key_padding_mask, q.device)
    return (B, H, S, D, v.shape[-1], nb, sp, hg, cdt, scale), (qb, kb, vb, valid_b)


def _without_autocast(fn):
    """Run ``fn`` with autocast off on q's device: the path picks its own compute dtype (float32
    for 16-bit inputs). Under an autocast region (ComfyUI's Train LoRA runs its model under
    ``torch.autocast(device, dtype=bf16)``, also in a checkpoint's recomputation) the matmuls
    would return bf16 into the float32 buffers."""
    @functools.wraps(fn)
    def wrapper(q, *args, **kwargs):
        dev = q.device.type
        if not (torch.amp.is_autocast_available(dev) and torch.is_autocast_enabled(dev)):
            return fn(q, *args, **kwargs)
        with torch.autocast(dev, enabled=False):
            return fn(q, *args, **kwargs)
    return wrapper


@_without_autocast
def torch_block_sparse_attention(q, k, v, csr: BlockCSR, block_size: int,
                                 key_padding_mask=None, scale=None, return_lse: bool = False):
    """Same contract as ``attention.block_sparse_attention`` (inputs already validated).

    ``csr`` must live on the CPU (it only steers the grouping; indices are moved as needed).
    Returns ``[B, H, S, D]`` in q's dtype: a transposed view of a ``[B, S, H, D]`` buffer.
    ``return_lse=True`` returns ``(out, lse)``: ``lse`` ``[B, H, S]`` contiguous, float32
    (float64 for float64 inputs), the natural-log log-sum-exp of ``scale * q.k`` over each
    row's kept real keys, ``+inf`` for a row with none (as the Triton kernel's).
    """
    if return_lse:
        return _forward_with_lse(q, k, v, csr, block_size, key_padding_mask, scale)
    (B, H, S, D, Dv, nb, sp, hg, cdt, scale), (qb, kb, vb, valid_b) = _prepare(
        q, k, v, csr, block_size, key_padding_mask, scale)
    bs, dev = block_size, q.device
    valid = valid_b.reshape(valid_b.shape[0], sp)

    out = torch.empty((B, sp, H, Dv), dtype=q.dtype, device=dev)  # every block row is written
    out_blocks = out.view(B, nb, bs, H, Dv)

    per_slot = B * hg * bs * (D + Dv + bs)  # elements per (row, kept block)
    for h, rows, idx, used in _groups(csr, H, per_slot):
        q_h = qb if h is None else qb[:, h : h + 1]
        k_h = kb if h is None else kb[:, h : h + 1]
        v_h = vb if h is None else vb[:, h : h + 1]
        width = idx.shape[1]
        rows_d, idx_d, used_d = rows.to(dev), idx.to(dev), used.to(dev)

        R = rows.numel()
        qs = q_h[:, :, rows_d].reshape(B, hg, R * bs, D)
        if width * 4 >= nb * 3:
            # dense-ish group: attend to all keys with a token mask; no gather needed
            blk = torch.zeros((R, nb), dtype=torch.bool, device=dev)
            blk[torch.arange(R, device=dev)[:, None].expand(R, width)[used_d], idx_d[used_d]] = True
            keep = blk.repeat_interleave(bs, dim=1)[None] & valid[:, None, :]  # [Bk, R, sp]
            has_key = keep.any(dim=-1)  # [Bk, R]
            keep = keep[:, None, :, None, :].expand(-1, 1, R, bs, sp)
            keep = keep.reshape(keep.shape[0], 1, R * bs, sp)
            if bool(has_key.all()) and bool(blk.all()) and bool(valid.all()):
                keep = None  # every key is kept and real: SDPA's unmasked fast path
            ks, vs = k_h.reshape(B, hg, sp, D), v_h.reshape(B, hg, sp, Dv)
        else:
            # sparse group: gather each row's kept key blocks
            ks = k_h[:, :, idx_d].reshape(B, hg, R, width * bs, D).reshape(B, hg * R, -1, D)
            vs = v_h[:, :, idx_d].reshape(B, hg, R, width * bs, Dv).reshape(B, hg * R, -1, Dv)
            qs = qs.reshape(B, hg * R, bs, D)
            keep = valid_b[:, idx_d] & used_d[None, :, :, None]  # [Bk, R, W, bs]
            keep = keep.reshape(keep.shape[0], R, width * bs)
            has_key = keep.any(dim=-1)  # [Bk, R]
            keep = keep[:, None].expand(-1, hg, -1, -1).reshape(keep.shape[0], hg * R, 1, -1)
            if bool(keep.all()):
                keep = None  # every gathered key is real: SDPA's unmasked fast path
        # fused attention (flash kernel on CPU/CUDA where available)
        res = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=keep, scale=scale)
        res = res.view(B, hg, R, bs, Dv)
        if not bool(has_key.all()):  # rows with no valid key: zeros, not NaN
            res = torch.where(has_key[:, None, :, None, None], res, torch.zeros((), dtype=res.dtype, device=dev))
        # [B, hg, R, bs, Dv] -> [B, R, bs, hg, Dv]
        res = res.permute(0, 2, 3, 1, 4).to(q.dtype)
        if h is None:
            out_blocks[:, rows_d] = res
        else:
            out_blocks[:, rows_d, :, h : h + 1] = res
    return out[:, :S].transpose(1, 2)


def _key_validity(B, S, sp, nb, bs, key_padding_mask, dev):
    valid = torch.arange(sp, device=dev) < S  # keys past S never count
    if key_padding_mask is not None:
        kpm = torch.zeros((B, sp), dtype=torch.bool, device=dev)
        kpm[:, :S] = key_padding_mask.to(dev, torch.bool)
        valid = kpm & valid
    else:
        valid = valid[None]
    return valid.view(valid.shape[0], nb, bs)  # [Bk, nb, bs]


def _groups(csr: BlockCSR, H: int, per_slot: int):
    """Yield ``(h, rows, idx, used)`` per group of query blocks (``h`` None: shared mask).

    ``rows`` [R] query blocks; ``idx`` [R, W] their kept key blocks (0 in unused slots);
    ``used`` [R, W] which slots are real. Longest rows first, a fixed element budget per group.
    """
    nb = csr.nb
    row_len = csr.row_len.cpu()
    row_start = csr.row_start.cpu()
    col_idx = csr.col_idx.cpu().long()
    order = csr.row_order.cpu().long()
    heads = [None] if csr.mask_heads == 1 else list(range(H))
    for h in heads:
        base = 0 if h is None else h * nb
        i = 0
        while i < nb:
            longest = max(int(row_len[base + order[base + i]]), 1)
            group = max(1, _GROUP_BUDGET // (per_slot * longest))
            rows = order[base + i : base + min(nb, i + group)]
            i += rows.numel()
            lens = row_len[base + rows].long()
            width = max(int(lens.max()), 1)
            slot = torch.arange(width)
            used = slot[None, :] < lens[:, None]  # [R, W]
            pos = (row_start[base + rows].long()[:, None] + slot[None, :]).clamp_max(
                max(col_idx.numel() - 1, 0)
            )
            idx = torch.where(used, col_idx[pos] if col_idx.numel() else pos, 0)
            yield h, rows, idx, used


def _to_blocks(t: torch.Tensor, nb: int, bs: int, cdt: torch.dtype) -> torch.Tensor:
    """``[B, H, S, d]`` -> contiguous zero-padded ``[B, H, nb, bs, d]`` in ``cdt``."""
    B, H, S, d = t.shape
    padded = t.new_zeros((B, H, nb * bs, d), dtype=cdt)
    padded[:, :, :S] = t
    return padded.view(B, H, nb, bs, d)


def _group_scores(qb, kb, valid_b, h, rows_d, idx_d, used_d, scale):
    """Scores ``[B, hg, R, bs, W*bs]`` of one group, -inf where a key is not kept or real."""
    B, H, nb, bs, D = qb.shape
    hs = slice(None) if h is None else slice(h, h + 1)
    R, W = idx_d.shape
    qs = qb[:, hs, rows_d]  # [B, hg, R, bs, D]
    ks = kb[:, hs][:, :, idx_d].reshape(B, qs.shape[1], R, W * bs, D)
    s = torch.matmul(qs, ks.transpose(-1, -2)) * scale
    keep = (valid_b[:, idx_d] & used_d[None, :, :, None]).reshape(valid_b.shape[0], 1, R, 1, W * bs)
    return s.masked_fill(~keep, float("-inf")), qs, ks


def _lse_inf(lse: torch.Tensor) -> torch.Tensor:
    """A row with no kept key has logsumexp -inf; store +inf, so exp(s - lse) is 0 there."""
    return torch.where(lse == float("-inf"), torch.full_like(lse, float("inf")), lse)


def _forward_with_lse(q, k, v, csr, block_size, key_padding_mask, scale):
    (B, H, S, D, Dv, nb, sp, hg, cdt, scale), (qb, kb, vb, valid_b) = _prepare(
        q, k, v, csr, block_size, key_padding_mask, scale)
    bs, dev = block_size, q.device
    out = torch.zeros((B, nb, bs, H, Dv), dtype=cdt, device=dev)
    lse = torch.empty((B, H, nb, bs), dtype=cdt, device=dev)
    per_slot = B * hg * bs * (D + Dv + 2 * bs)  # gathered K, V; scores and probabilities
    for h, rows, idx, used in _groups(csr, H, per_slot):
        rows_d, idx_d, used_d = rows.to(dev), idx.to(dev), used.to(dev)
        R, W = idx.shape
        s, _, _ = _group_scores(qb, kb, valid_b, h, rows_d, idx_d, used_d, scale)
        hs = slice(None) if h is None else slice(h, h + 1)
        vs = vb[:, hs][:, :, idx_d].reshape(B, hg, R, W * bs, Dv)
        row_lse = _lse_inf(torch.logsumexp(s, dim=-1))  # [B, hg, R, bs]
        p = torch.exp(s - row_lse[..., None])
        res = torch.matmul(p, vs)  # [B, hg, R, bs, Dv]
        lse[:, hs, rows_d] = row_lse
        out[:, rows_d, :, hs] = res.permute(0, 2, 3, 1, 4)
    o = out_layout(q, Dv).copy_(out.view(B, sp, H, Dv)[:, :S].transpose(1, 2))
    return o, lse.view(B, H, sp)[:, :, :S].contiguous()


@_without_autocast
def torch_block_sparse_attention_backward(q, k, v, out, lse, grad_out, csr: BlockCSR,
                                          block_size: int, key_padding_mask=None, scale=None):
    """dQ, dK, dV of block-sparse attention (inputs validated; ``csr`` on the CPU).

    ``out`` and ``lse`` are the forward's (``return_lse=True``). Per group of query blocks:
    ``P = exp(scale * q.k - lse)`` over the gathered kept keys, ``dV += P^T dO``,
    ``dS = P * (dO V^T - delta)`` with ``delta = rowsum(dO * O)``, ``dQ = scale * dS K``,
    ``dK += scale * dS^T Q`` (scattered back to the key blocks). Rows with no kept key have
    ``lse = +inf``, so ``P = 0``: zero gradient, no NaN. Returns three ``[B, H, S, D]``
    tensors in q's dtype, each a transposed view of a ``[B, S, H, D]`` buffer.
    """
    (B, H, S, D, Dv, nb, sp, hg, cdt, scale), (qb, kb, vb, valid_b) = _prepare(
        q, k, v, csr, block_size, key_padding_mask, scale)
    bs, dev = block_size, q.device
    dob = _to_blocks(grad_out, nb, bs, cdt)
    delta = (dob * _to_blocks(out, nb, bs, cdt)).sum(-1)  # [B, H, nb, bs]; 0 past S
    lse_b = torch.full((B, H, sp), float("inf"), dtype=cdt, device=dev)
    lse_b[:, :, :S] = lse
    lse_b = lse_b.view(B, H, nb, bs)
    dqb = torch.zeros_like(qb)
    dkb = torch.zeros_like(kb)
    dvb = torch.zeros_like(vb)
    per_slot = B * hg * bs * (2 * D + 2 * Dv + 3 * bs)  # K, V, dK, dV slices; P, dP, dS
    for h, rows, idx, used in _groups(csr, H, per_slot):
        rows_d, idx_d, used_d = rows.to(dev), idx.to(dev), used.to(dev)
        R, W = idx.shape
        hs = slice(None) if h is None else slice(h, h + 1)
        s, qs, ks = _group_scores(qb, kb, valid_b, h, rows_d, idx_d, used_d, scale)
        vs = vb[:, hs][:, :, idx_d].reshape(B, hg, R, W * bs, Dv)
        dos = dob[:, hs, rows_d]  # [B, hg, R, bs, Dv]
        p = torch.exp(s - lse_b[:, hs, rows_d][..., None])  # [B, hg, R, bs, W*bs]
        del s
        dv_g = torch.matmul(p.transpose(-1, -2), dos)  # [B, hg, R, W*bs, Dv]
        ds = torch.matmul(dos, vs.transpose(-1, -2))
        ds = p.mul_(ds.sub_(delta[:, hs, rows_d][..., None]))  # P * (dP - delta)
        dqb[:, hs, rows_d] = torch.matmul(ds, ks) * scale
        dk_g = torch.matmul(ds.transpose(-1, -2), qs) * scale  # [B, hg, R, W*bs, D]
        flat = idx_d.reshape(-1)
        # unused slots point at block 0 with P = 0: they add zeros
        dkb[:, hs].index_add_(2, flat, dk_g.reshape(B, hg, R * W, bs, D))
        dvb[:, hs].index_add_(2, flat, dv_g.reshape(B, hg, R * W, bs, Dv))

    return tuple(out_layout(q, d).copy_(tb.view(B, H, sp, d)[:, :, :S])
                 for tb, d in ((dqb, D), (dkb, D), (dvb, Dv)))
