"""precision="fp8": FP8 e4m3 products in the Triton kernel, and the exact fallback elsewhere.

Tolerance (derived, not tuned): e4m3 keeps 3 mantissa bits, so rounding to nearest leaves a
relative error whose RMS over a binade is at most eps = 2^-3 / sqrt(12) = 0.036 (at the binade's
low end; less above it). Four operands are rounded: q and k (the logit s = q.k gets an absolute
error of about sqrt(2) * eps * sigma_s, sigma_s the RMS of the scaled logits, and p changes by
that relatively), P (eps) and V (eps). Independent errors add in quadrature:

    bound = eps * sqrt(2 * sigma_s^2 + 2)   (+ the output dtype's own rounding floor)

which is 0.072 for randn inputs (sigma_s ~ 1). Measured on random inputs: about 5e-2 (the
output's relative L2 error against a float32 masked reference). Each GPU test also checks that
the error is well above the exact path's (so FP8 really ran) and that no warning was logged.
"""

from __future__ import annotations

import logging
import math

import pytest
import torch

from attention_helpers import check_against_reference, make_qkv, nb_for, random_block_mask, random_padding
from conftest import require_cuda
from radial_core.attention import block_sparse_attention
from radial_core.mask import radial_block_mask
from radial_core.reference import dense_masked_attention, masked_attention_rows

EPS_E4M3 = 2.0 ** -3 / math.sqrt(12.0)
OUT_FLOOR = {torch.bfloat16: 4e-3, torch.float16: 5e-4}


def fp8_bound(q, k, rows=None, scale=None):
    """The derived bound above, with sigma_s measured on (a sample of) the inputs' logits."""
    D = q.shape[-1]
    scale = scale or 1.0 / math.sqrt(D)
    qs = q[:, :, :512] if rows is None else q[:, :, rows[:512]]
    s = torch.matmul(qs.float(), k[:, :, :2048].float().transpose(-1, -2)) * scale
    sigma = s.pow(2).mean().sqrt().item()
    return EPS_E4M3 * math.sqrt(2 * sigma * sigma + 2)


def _rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def test_cpu_fp8_falls_back_to_exact_with_one_warning(caplog):
    from radial_core import attention

    attention._warned.clear()
    q, k, v = make_qkv(2, 2, 300, 32, torch.float32, layout="bshd", seed=1)
    mask = random_block_mask(nb_for(300, 64), 0.4, seed=2)
    with caplog.at_level(logging.WARNING, logger="radial_core.attention"):
        outs = [block_sparse_attention(q, k, v, mask, block_size=64, precision="fp8")
                for _ in range(3)]
    exact = block_sparse_attention(q, k, v, mask, block_size=64, precision="exact")
    assert all(torch.equal(o, exact) for o in outs), "the fallback must be the exact path"
    check_against_reference(outs[0], q, k, v, mask, 64)
    warns = [r for r in caplog.records if "precision='fp8'" in r.getMessage()]
    assert len(warns) == 1, [r.getMessage() for r in caplog.records]
    assert "cpu" in warns[0].getMessage()


def test_bf16_is_an_alias_of_exact_and_bad_precision_names_the_fix():
    q, k, v = make_qkv(1, 2, 200, 16, torch.float16, seed=3)
    mask = random_block_mask(nb_for(200, 64), 0.5, seed=4)
    a = block_sparse_attention(q, k, v, mask, block_size=64, precision="bf16")
    assert a.dtype == torch.float16  # no cast: "bf16" means the input dtype's exact path
    assert torch.equal(a, block_sparse_attention(q, k, v, mask, block_size=64))
    with pytest.raises(ValueError, match=r"precision must be one of.*got 'int8'"):
        block_sparse_attention(q, k, v, mask, block_size=64, precision="int8")


def _fp8_gpu_ok():
    require_cuda()
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("FP8 matrix units need compute capability 8.9+ (Ada or Hopper)")


def _check_fp8(out, ref, q, k, rows=None, dtype=torch.bfloat16, label=""):
    assert torch.isfinite(out).all(), "NaN/Inf in FP8 output"
    err = _rel(out, ref)
    tol = fp8_bound(q, k, rows) + OUT_FLOOR[dtype]
    print(f"[fp8-err] {label}: {err:.3e} (bound {tol:.3e})")
    assert err <= tol, f"FP8 error {err:.3e} > derived bound {tol:.3e}"
    assert err > 5e-3, f"error {err:.3e} is the exact path's: FP8 did not run"
    return err


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
def test_fp8_against_float32_reference(dtype, D, layout, caplog):
    _fp8_gpu_ok()
    B, H, S, bs = 2, 3, 1001, 128  # odd S: a partial tail block
    q, k, v = make_qkv(B, H, S, D, dtype, "cuda", layout, seed=D)
    k = k + 0.5 * torch.randn(1, 1, 1, D, device="cuda", dtype=dtype)  # channel offsets
    mask = random_block_mask(nb_for(S, bs), 0.4, seed=1)
    kpm = random_padding(B, S, seed=2).cuda()
    with caplog.at_level(logging.WARNING):
        out = block_sparse_attention(q, k, v, mask, block_size=bs, key_padding_mask=kpm,
                                     precision="fp8")
    assert not [r for r in caplog.records if "fp8" in r.getMessage()]
    assert out.shape == q.shape and out.dtype == dtype
    ref = dense_masked_attention(q, k, v, mask, bs, key_padding_mask=kpm, dtype=torch.float32)
    _check_fp8(out, ref, q, k, dtype=dtype, label=f"{dtype} D={D} {layout}")


@pytest.mark.gpu
@pytest.mark.parametrize("bs", [64, 128])
def test_fp8_per_head_mask_head_dim_80_and_empty_rows(bs):
    _fp8_gpu_ok()
    B, H, S, D = 2, 4, 1500, 80  # head dim padded to 128 inside
    q, k, v = make_qkv(B, H, S, D, torch.bfloat16, "cuda", "bshd", seed=bs)
    mask = random_block_mask(nb_for(S, bs), 0.3, seed=3, heads=H)
    mask[:, 2] = False  # a query block with no kept key: zeros
    out = block_sparse_attention(q, k, v, mask, block_size=bs, precision="fp8")
    assert out[:, :, 2 * bs : 3 * bs].abs().max() == 0
    ref = dense_masked_attention(q, k, v, mask, bs, dtype=torch.float32)
    _check_fp8(out, ref, q, k, label=f"per-head D=80 bs={bs}")


@pytest.mark.gpu
def test_fp8_long_radial_wan_720p():
    """S = 75 600, B = 2, [B, S, H*D] views, radial mask at decay 0.2; sampled rows."""
    _fp8_gpu_ok()
    S, H, D = 21 * 3600, 2, 128
    q, k, v = make_qkv(2, H, S, D, torch.bfloat16, "cuda", "bshd", seed=7)
    mask = radial_block_mask(21, 3600, decay_factor=0.2)
    out = block_sparse_attention(q, k, v, mask, block_size=128, precision="fp8")
    g = torch.Generator().manual_seed(0)
    rows = torch.cat([torch.randint(0, S, (256,), generator=g), torch.arange(S - 80, S)])
    rows = rows.unique().cuda()
    ref = masked_attention_rows(q, k, v, mask, 128, rows)
    _check_fp8(out[:, :, rows], ref, q, k, rows=rows, label="wan720 S=75600")


@pytest.mark.gpu
def test_fp8_head_dim_it_cannot_take_falls_back_once(caplog):
    require_cuda()
    from radial_core import attention

    attention._warned.clear()
    q, k, v = make_qkv(1, 2, 500, 256, torch.bfloat16, "cuda", seed=9)
    mask = random_block_mask(nb_for(500, 128), 0.5, seed=9)
    with caplog.at_level(logging.WARNING, logger="radial_core.attention"):
        a = block_sparse_attention(q, k, v, mask, block_size=128, precision="fp8")
        b = block_sparse_attention(q, k, v, mask, block_size=128, precision="fp8")
    assert torch.equal(a, b)
    assert torch.equal(a, block_sparse_attention(q, k, v, mask, block_size=128))
    assert len([r for r in caplog.records if "precision='fp8'" in r.getMessage()]) == 1


def test_return_lse_with_fp8_names_the_fix():
    """The LSE is the exact path's (FP8's logits are shifted by K's smoothing): refused."""
    pytest.importorskip("triton", reason="Triton is not installed in this environment")
    from radial_core import triton_kernel
    from radial_core.csr import block_mask_to_csr

    q, k, v = make_qkv(1, 1, 64, 16, torch.float16, seed=1)
    csr = block_mask_to_csr(torch.ones(1, 1, dtype=torch.bool), "cpu")
    with pytest.raises(ValueError, match=r"return_lse=True needs the exact path.*fp8=False"):
        triton_kernel.forward(q, k, v, csr, 64, fp8=True, return_lse=True)
