"""Shared helpers for the kernel tests: inputs in both layouts, masks, tolerances.

Tolerance rule (FlagAttention style): our error against the float64 reference may be at most
twice PyTorch SDPA's own error at the same precision (SDPA given the expanded token mask), plus
a small floor per dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from radial_core.reference import dense_masked_attention, expand_block_mask

FLOOR = {torch.float32: 2e-6, torch.float16: 3e-4, torch.bfloat16: 3e-3, torch.float64: 1e-12}


def make_qkv(B, H, S, D, dtype, device="cpu", layout="bhsd", seed=0):
    """Fresh random q, k, v as ``[B, H, S, D]``; ``layout="bshd"`` gives views of [B, S, H*D]."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    for _ in range(3):
        if layout == "bhsd":
            t = torch.randn(B, H, S, D, generator=g)
        elif layout == "bshd":
            t = torch.randn(B, S, H * D, generator=g).view(B, S, H, D).transpose(1, 2)
        else:
            raise ValueError(layout)
        out.append(t.to(device=device, dtype=dtype))
    return out


def random_block_mask(nb, density=0.4, seed=0, heads=None, keep_diagonal=True):
    g = torch.Generator().manual_seed(seed)
    shape = (nb, nb) if heads is None else (heads, nb, nb)
    m = torch.rand(shape, generator=g) < density
    if keep_diagonal:
        m |= torch.eye(nb, dtype=torch.bool)
    return m


def random_padding(B, S, seed=0, keep=0.8):
    g = torch.Generator().manual_seed(seed)
    kpm = torch.rand(B, S, generator=g) < keep
    kpm[:, 0] = True
    return kpm


def rel_err(out, ref):
    out = out.to(torch.float64)
    ref = ref.to(device=out.device, dtype=torch.float64)
    assert torch.isfinite(out).all(), "output has NaN/Inf"
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def sdpa_error(q, k, v, block_mask, block_size, key_padding_mask, ref):
    """Relative error of PyTorch SDPA (same precision, expanded token mask) vs the reference."""
    S = q.shape[2]
    allowed = expand_block_mask(block_mask.to(q.device), block_size, S)
    allowed = allowed[None, None] if allowed.dim() == 2 else allowed[None]
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask.to(q.device)[:, None, None, :]
    has = allowed.any(-1, keepdim=True)
    allowed = allowed | ~has  # SDPA gives NaN for empty rows: compare only the others
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    out = torch.where(has, out, torch.zeros_like(out))
    return rel_err(out, ref)


def check_against_reference(out, q, k, v, block_mask, block_size, key_padding_mask=None):
    """Assert shape, finiteness and the tolerance rule; returns (our error, sdpa error)."""
    assert out.shape == q.shape, f"output shape {tuple(out.shape)} != {tuple(q.shape)}"
    assert out.dtype == q.dtype
    ref = dense_masked_attention(
        q.cpu(), k.cpu(), v.cpu(), block_mask.cpu(), block_size,
        key_padding_mask=None if key_padding_mask is None else key_padding_mask.cpu(),
    )
    err = rel_err(out.cpu(), ref)
    base = sdpa_error(q, k, v, block_mask, block_size, key_padding_mask, ref.to(q.device))
    tol = 2.0 * base + FLOOR[q.dtype]
    assert err <= tol, f"error {err:.3e} > tolerance {tol:.3e} (SDPA's own error {base:.3e})"
    return err, base


def nb_for(S, block_size):
    return math.ceil(S / block_size)
