"""Block-sparse attention in plain PyTorch: CPU, Apple (MPS), and GPUs that Triton cannot serve.

Query blocks are processed in groups against the key blocks their rows keep (gathered), so
memory is bounded by a fixed budget per group and never grows as S^2. Rows are taken longest
first (the CSR's ``row_order``) so that a group pads its shorter rows as little as possible.
Each group is one fused ``scaled_dot_product_attention`` call over its gathered keys with a
boolean key mask (tail keys, padding, unused slots), in float32 (float64 for float64 inputs).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .csr import BlockCSR

# elements (of the compute dtype) that one group may hold in gathered K, V and scores
_GROUP_BUDGET = 1 << 24


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def torch_block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    csr: BlockCSR,
    block_size: int,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Same contract as ``attention.block_sparse_attention`` (inputs already validated).

    ``csr`` must live on the CPU (it only steers the grouping; indices are moved as needed).
    Returns ``[B, H, S, D]`` in q's dtype: a transposed view of a ``[B, S, H, D]`` buffer.
    """
    B, H, S, D = q.shape
    Dv = v.shape[-1]
    bs = block_size
    nb = csr.nb
    sp = nb * bs
    dev = q.device
    cdt = _compute_dtype(q.dtype)
    if scale is None:
        scale = 1.0 / math.sqrt(D)

    def blocks(t: torch.Tensor) -> torch.Tensor:
        # one contiguous copy [B, H, nb, bs, d]: gathering whole blocks is then a plain memcpy
        d = t.shape[-1]
        padded = t.new_empty((B, H, sp, d), dtype=cdt)
        padded[:, :, :S] = t
        padded[:, :, S:] = 0
        return padded.view(B, H, nb, bs, d)

    qb, kb, vb = blocks(q), blocks(k), blocks(v)

    valid = torch.arange(sp, device=dev) < S  # keys past S never count
    if key_padding_mask is not None:
        kpm = torch.zeros((B, sp), dtype=torch.bool, device=dev)
        kpm[:, :S] = key_padding_mask.to(dev, torch.bool)
        valid = kpm & valid
    else:
        valid = valid[None]
    valid_b = valid.view(valid.shape[0], nb, bs)  # [Bk, nb, bs]

    out = torch.empty((B, sp, H, Dv), dtype=q.dtype, device=dev)  # every block row is written
    out_blocks = out.view(B, nb, bs, H, Dv)

    row_len = csr.row_len.cpu()
    row_start = csr.row_start.cpu()
    col_idx = csr.col_idx.cpu().long()
    order = csr.row_order.cpu().long()

    heads = [None] if csr.mask_heads == 1 else list(range(H))
    hg = H if csr.mask_heads == 1 else 1
    per_slot = B * hg * bs * (D + Dv + bs)  # elements per (row, kept block)
    for h in heads:
        base = 0 if h is None else h * nb
        q_h = qb if h is None else qb[:, h : h + 1]
        k_h = kb if h is None else kb[:, h : h + 1]
        v_h = vb if h is None else vb[:, h : h + 1]
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
