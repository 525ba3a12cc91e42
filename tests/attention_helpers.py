"""Shared helpers for the kernel tests: inputs in both layouts, masks, tolerances.

Tolerance rule (FlagAttention style): our error against the float64 reference may be at most
twice PyTorch SDPA's own error at the same precision (SDPA given the expanded token mask), plus
a small floor per dtype.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

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


def odd_length_case(dtype, layout, block_size, blocks, D, density, mask_seed):
    """B = 2, H = 3, S = ``blocks * block_size - 37`` (a short last block): q, k, v (seed
    ``block_size``) in ``layout`` and a random shared block mask."""
    S = blocks * block_size - 37
    q, k, v = make_qkv(2, 3, S, D, dtype, layout=layout, seed=block_size)
    return q, k, v, random_block_mask(nb_for(S, block_size), density, seed=mask_seed)


class AttentionBlock(torch.nn.Module):
    """Projections around the attention, as in a transformer block; ``[B, S, H*D]`` in and out
    (ComfyUI's layout): q/k/v projection, block_sparse_attention, output projection. The bool
    ``mask`` becomes its CSR (both sides) here, outside any compiled graph, on the device the
    backend reads it from (``csr_device``)."""

    def __init__(self, heads, dim, mask, block_size, kpm=None, backend="pytorch", csr_device="cpu"):
        super().__init__()
        from radial_core.csr import block_csr

        mask = block_csr(mask, block_size, csr_device, key_side=True)
        self.h, self.mask, self.bs, self.kpm, self.backend = heads, mask, block_size, kpm, backend
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, x):
        from radial_core.attention import block_sparse_attention

        B, S, C = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(B, S, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        o = block_sparse_attention(q, k, v, self.mask, block_size=self.bs,
                                   key_padding_mask=self.kpm, backend=self.backend)
        return self.proj(o.transpose(1, 2).reshape(B, S, C))


def attention_model(B, S, H, D, block_size, seed, padded=True, backend="pytorch",
                    device="cpu", dtype=torch.float32):
    """``torch.manual_seed(0)``, then an :class:`AttentionBlock` (random mask of density 0.4
    from ``seed``; random key padding from ``seed + 1`` when ``padded``) in ``dtype`` on
    ``device``, and a random input ``x`` ``[B, S, H*D]`` for it: ``(model, x)``."""
    torch.manual_seed(0)
    mask = random_block_mask(nb_for(S, block_size), 0.4, seed=seed)
    kpm = random_padding(B, S, seed=seed + 1).to(device) if padded else None
    model = AttentionBlock(H, H * D, mask, block_size, kpm=kpm, backend=backend,
                           csr_device=device if backend == "triton" else "cpu")
    return model.to(device, dtype), torch.randn(B, S, H * D, device=device, dtype=dtype)


# ---- Triton's CPU interpreter in a child process (TRITON_INTERPRET=1 must precede the import)

def report_cases(cases, run, interpreter_gap=None):
    """Child side: run every case and print one ``RESULTS`` line ``{name: [ok, message]}``:
    ``[True, run(name, spec)]``, or ``[False, "Error: ..."]`` (every case is reported, not just
    the first failure), or ``[None, reason]`` where ``interpreter_gap(message)`` names a gap
    of the interpreter rather than a kernel error (the test then skips with that reason)."""
    results = {}
    for name, spec in cases.items():
        try:
            results[name] = [True, run(name, spec)]
        except Exception as exc:  # noqa: BLE001 - recorded for the case, the test reports it
            msg = f"{type(exc).__name__}: {exc}"
            gap = interpreter_gap(msg) if interpreter_gap else None
            results[name] = [None, gap] if gap else [False, msg]
    print("RESULTS " + json.dumps(results))
    return results


def report_unsupported(why):
    """Child side: this interpreter cannot run the kernels at all (every case skips with why)."""
    print("UNSUPPORTED " + json.dumps(why))


def interpreter_results(script, flag, timeout):
    """Parent side: run ``script flag`` with ``TRITON_INTERPRET=1`` from the repository root
    and return its ``RESULTS``; skip with the child's reason where it printed ``UNSUPPORTED``,
    with a reason where Triton is not installed."""
    import pytest

    pytest.importorskip("triton", reason="Triton is not installed in this environment")
    env = dict(os.environ, TRITON_INTERPRET="1")  # the child imports the pack via pack_import
    proc = subprocess.run([sys.executable, str(script), flag], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=str(Path(__file__).resolve().parents[1]))
    lines = proc.stdout.splitlines()
    unsupported = [ln for ln in lines if ln.startswith("UNSUPPORTED ")]
    if proc.returncode == 0 and unsupported:
        pytest.skip(json.loads(unsupported[-1][len("UNSUPPORTED "):]))
    results = [ln for ln in lines if ln.startswith("RESULTS ")]
    assert proc.returncode == 0 and results, (
        f"interpreter child failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n"
        f"{proc.stderr[-3000:]}")
    return json.loads(results[-1][len("RESULTS "):])
