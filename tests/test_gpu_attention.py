"""The Triton kernel on a CUDA GPU (bf16, fp16, fp32; head dim 64 and 128; S up to ~76k).

Skips with a reason on machines without CUDA. Long sequences are checked on sampled query rows
(plus every row of the last, partial block) against a float32 reference computed row by row,
with the tolerance rule of ``attention_helpers`` (2x SDPA's own error plus a floor).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attention_helpers import check_against_reference, make_qkv, nb_for, random_block_mask
from conftest import require_cuda
from radial_core.attention import block_sparse_attention, can_use_triton
from radial_core.mask import radial_block_mask
from radial_core.reference import masked_attention_rows

pytestmark = pytest.mark.gpu

# fp32 inputs run as three-pass TF32 products (tf32x3): near-float32 accuracy
GPU_FLOOR = {torch.bfloat16: 4e-3, torch.float16: 5e-4, torch.float32: 2e-4}


def _rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def _check_rows(out, q, k, v, mask, bs, kpm=None, n=384, seed=0):
    B, H, S, D = q.shape
    assert torch.isfinite(out).all(), "NaN/Inf in output"
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, S, (n,), generator=g)
    tail = torch.arange((nb_for(S, bs) - 1) * bs, S)
    rows = torch.cat([rows, tail, torch.arange(0, 8)]).unique().to(q.device)
    ref = masked_attention_rows(q, k, v, mask, bs, rows, key_padding_mask=kpm)
    err = _rel(out[:, :, rows], ref)
    # SDPA's own error at this precision on the same rows, same token mask
    tok = mask.to(q.device)[..., rows // bs, :].repeat_interleave(bs, dim=-1)[..., :S]
    am = tok[None, None] if tok.dim() == 2 else tok[None]
    if kpm is not None:
        am = am & kpm[:, None, None, :]
    base = _rel(F.scaled_dot_product_attention(q[:, :, rows], k, v, attn_mask=am), ref)
    tol = 2 * base + GPU_FLOOR[q.dtype]
    print(f"[gpu-err] {q.dtype} S={S} D={D}: ours {err:.2e}, SDPA {base:.2e}, tol {tol:.2e}")
    assert err <= tol, f"error {err:.3e} > tolerance {tol:.3e} (SDPA {base:.3e})"
    return err, base


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
def test_small_against_full_reference(dtype, D, layout):
    require_cuda()
    B, H, S, bs = 2, 3, 1000, 128
    q, k, v = make_qkv(B, H, S, D, dtype, "cuda", layout, seed=D)
    mask = random_block_mask(nb_for(S, bs), 0.4, seed=1)
    out = block_sparse_attention(q, k, v, mask, block_size=bs, backend="triton")
    check_against_reference(out, q, k, v, mask, bs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("bs", [64, 128])
def test_radial_odd_length_with_padding(dtype, bs):
    require_cuda()
    # HunyuanVideo-like: video tokens then 77 text tokens, some of them padding
    F_, T, text = 9, 330, 77
    S = F_ * T + text
    q, k, v = make_qkv(2, 4, S, 128, dtype, "cuda", "bshd", seed=bs)
    mask = radial_block_mask(F_, T, text_tokens=text, block_size=bs, decay_factor=0.95,
                             model="hunyuan")
    kpm = torch.ones(2, S, dtype=torch.bool, device="cuda")
    kpm[1, S - 30 :] = False
    out = block_sparse_attention(q, k, v, mask, block_size=bs, key_padding_mask=kpm)
    _check_rows(out, q, k, v, mask, bs, kpm=kpm, n=512)


def test_all_kept_equals_sdpa_and_empty_rows():
    require_cuda()
    B, H, S, D, bs = 2, 4, 2000, 128, 128
    q, k, v = make_qkv(B, H, S, D, torch.bfloat16, "cuda", "bshd", seed=5)
    nb = nb_for(S, bs)
    out = block_sparse_attention(q, k, v, torch.ones(nb, nb, dtype=torch.bool), block_size=bs,
                                 backend="triton")  # "auto" would hand an all-kept mask to SDPA
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    base = _rel(F.scaled_dot_product_attention(q, k, v), ref)
    assert _rel(out, ref) <= 2 * base + GPU_FLOOR[torch.bfloat16]
    mask = random_block_mask(nb, 0.3, seed=2)
    mask[3] = False
    out = block_sparse_attention(q, k, v, mask, block_size=bs)
    assert torch.isfinite(out).all() and out[:, :, 3 * bs : 4 * bs].abs().max() == 0


def test_per_head_mask():
    require_cuda()
    B, H, S, D, bs = 1, 4, 1500, 64, 64
    q, k, v = make_qkv(B, H, S, D, torch.float16, "cuda", "bhsd", seed=6)
    mask = random_block_mask(nb_for(S, bs), 0.3, seed=3, heads=H)
    out = block_sparse_attention(q, k, v, mask, block_size=bs)
    _check_rows(out, q, k, v, mask, bs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("D", [64, 128])
def test_long_wan_720p_shape(dtype, D):
    """S = 75 600 (Wan 720x1280x81), B = 2, [B, S, H*D] views, radial mask at decay 0.2."""
    require_cuda()
    S, H = 21 * 3600, 2
    q, k, v = make_qkv(2, H, S, D, dtype, "cuda", "bshd", seed=D)
    mask = radial_block_mask(21, 3600, decay_factor=0.2)
    ok, reason = can_use_triton(q, k, v)
    assert ok, reason
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    out = block_sparse_attention(q, k, v, mask, block_size=128)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - before
    # output plus small CSR arrays; nothing that grows as S^2
    assert extra < out.numel() * out.element_size() + (64 << 20), extra
    _check_rows(out, q, k, v, mask, 128, n=256)


def test_odd_long_sequence_with_head_dim_80():
    require_cuda()
    S, H, D = 40_001, 2, 80  # head dim padded to 128 inside the kernel
    q, k, v = make_qkv(1, H, S, D, torch.bfloat16, "cuda", "bhsd", seed=9)
    mask = radial_block_mask(11, 3636, text_tokens=5, block_size=128, decay_factor=0.5,
                             model="hunyuan")
    assert mask.shape[0] == nb_for(S, 128)
    out = block_sparse_attention(q, k, v, mask, block_size=128, backend="triton")
    _check_rows(out, q, k, v, mask, 128, n=256)


@pytest.mark.parametrize("use_tma", [False, True])
@pytest.mark.parametrize("D", [64, 80, 128])
def test_pointer_and_descriptor_loads(use_tma, D):
    """Both load paths (plain pointers; Hopper tensor descriptors) on odd S, padding, per-head."""
    require_cuda()
    if use_tma and torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("tensor descriptors (TMA) need a Hopper GPU or newer")
    from radial_core.csr import block_csr
    from radial_core.dispatch import capability, triton_config
    from radial_core.triton_kernel import triton_block_sparse_attention

    B, H, S, bs = 2, 3, 3001, 128
    q, k, v = make_qkv(B, H, S, D, torch.bfloat16, "cuda", "bshd", seed=D)
    mask = random_block_mask(nb_for(S, bs), 0.35, seed=D, heads=H)
    kpm = torch.ones(B, S, dtype=torch.bool, device="cuda")
    kpm[0, -100:] = False
    cfg = triton_config(D, q.dtype, bs, capability(q.device), use_tma=use_tma)
    out = triton_block_sparse_attention(q, k, v, block_csr(mask, bs, q.device), cfg,
                                        key_padding_mask=kpm, scale=D ** -0.5)
    _check_rows(out, q, k, v, mask, bs, kpm=kpm, n=512)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("use_tma", [False, True])
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
def test_forward_lse_against_logsumexp(dtype, use_tma, layout):
    """``triton_block_sparse_attention(..., return_lse=True)``: the natural-log LSE of the kept scores
    (float64 torch.logsumexp of the masked reference), +inf on rows with no kept key; the
    output is the same as without it."""
    require_cuda()
    if use_tma and torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("tensor descriptors (TMA) need a Hopper GPU or newer")
    from radial_core.csr import block_csr
    from radial_core.dispatch import capability, triton_config
    from radial_core.triton_kernel import triton_block_sparse_attention
    from test_triton_interpret import check_lse

    B, H, S, D, bs = 2, 3, 1801, 128 if dtype != torch.float32 else 64, 128
    q, k, v = make_qkv(B, H, S, D, dtype, "cuda", layout, seed=11)
    mask = random_block_mask(nb_for(S, bs), 0.35, seed=4, heads=H)
    mask[:, 2] = False  # a query block with no kept key: LSE +inf
    kpm = torch.ones(B, S, dtype=torch.bool, device="cuda")
    kpm[1, -150:] = False
    cfg = triton_config(D, q.dtype, bs, capability(q.device), use_tma=use_tma)
    csr = block_csr(mask, bs, q.device)
    out, lse = triton_block_sparse_attention(q, k, v, csr, cfg, key_padding_mask=kpm,
                                             scale=D ** -0.5, return_lse=True)
    plain = triton_block_sparse_attention(q, k, v, csr, cfg, key_padding_mask=kpm,
                                          scale=D ** -0.5)
    assert torch.equal(out, plain), "return_lse must not change the output"
    err = check_lse(lse, q, k, mask, bs, kpm)
    print(f"[gpu-lse] {dtype} tma={use_tma} {layout}: LSE max abs error {err:.1e}")
    check_against_reference(out, q, k, v, mask, bs, key_padding_mask=kpm)
