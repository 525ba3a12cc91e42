"""The PyTorch path (CPU) against the float64 dense reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attention_helpers import (
    check_against_reference,
    make_qkv,
    nb_for,
    odd_length_case,
    random_block_mask,
    random_padding,
    rel_err,
)
from radial_core.attention import block_sparse_attention
from radial_core.mask import radial_block_mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
@pytest.mark.parametrize("block_size", [64, 128])
def test_random_mask_odd_length_batch2(dtype, layout, block_size):
    q, k, v, mask = odd_length_case(dtype, layout, block_size, blocks=5, D=64, density=0.4,
                                    mask_seed=1)
    out = block_sparse_attention(q, k, v, mask, block_size=block_size, backend="pytorch")
    check_against_reference(out, q, k, v, mask, block_size)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("density", [0.5, 1.0])
def test_key_padding_mask(dtype, density):
    B, H, S, D, bs = 2, 2, 300, 32, 64
    q, k, v = make_qkv(B, H, S, D, dtype, seed=3)
    mask = random_block_mask(nb_for(S, bs), density, seed=4)
    kpm = random_padding(B, S, seed=5)
    out = block_sparse_attention(q, k, v, mask, block_size=bs, key_padding_mask=kpm)
    check_against_reference(out, q, k, v, mask, bs, key_padding_mask=kpm)


@pytest.mark.parametrize(
    "frames,tpf,text,bs,model,decay",
    [(4, 96, 0, 64, "wan", 0.2), (5, 150, 0, 128, "wan", 1.0), (3, 100, 77, 64, "hunyuan", 0.95)],
)
def test_radial_masks(frames, tpf, text, bs, model, decay):
    S = frames * tpf + text
    q, k, v = make_qkv(2, 2, S, 64, torch.float32, layout="bshd", seed=frames)
    mask = radial_block_mask(frames, tpf, text_tokens=text, block_size=bs, decay_factor=decay,
                             model=model)
    kpm = random_padding(2, S, seed=6) if text else None
    if kpm is not None:
        kpm[:, : frames * tpf] = True  # only text tokens are ever padded
    out = block_sparse_attention(q, k, v, mask, block_size=bs, key_padding_mask=kpm)
    check_against_reference(out, q, k, v, mask, bs, key_padding_mask=kpm)


@pytest.mark.parametrize("backend", ["pytorch", "auto"])  # auto: straight to dense SDPA
@pytest.mark.parametrize("S", [333, 384])  # with and without a partial tail block
def test_all_kept_equals_sdpa(S, backend):
    B, H, D, bs = 2, 4, 64, 128
    q, k, v = make_qkv(B, H, S, D, torch.float32, seed=7)
    mask = torch.ones(nb_for(S, bs), nb_for(S, bs), dtype=torch.bool)
    out = block_sparse_attention(q, k, v, mask, block_size=bs, backend=backend)
    sdpa = F.scaled_dot_product_attention(q, k, v)
    assert rel_err(out, sdpa) < 1e-5


@pytest.mark.parametrize("density", [0.5, 1.0])  # gathered keys; all keys with a token mask
def test_empty_rows_are_zero_and_finite(density):
    B, H, S, D, bs = 1, 2, 200, 16, 64
    q, k, v = make_qkv(B, H, S, D, torch.float16, seed=8)
    mask = random_block_mask(nb_for(S, bs), density, seed=9)
    mask[1] = False  # query block 1 keeps nothing
    kpm = torch.ones(B, S, dtype=torch.bool)
    kpm[:, 192:] = False  # the last key block holds only padding
    mask[2] = False
    mask[2, 3] = True  # query block 2 sees only padded keys
    out = block_sparse_attention(q, k, v, mask, block_size=bs, key_padding_mask=kpm)
    assert torch.isfinite(out).all()
    assert out[:, :, 64:192].abs().max() == 0
    check_against_reference(out, q, k, v, mask, bs, key_padding_mask=kpm)


@pytest.mark.parametrize("density", [0.4, 0.9])
def test_per_head_mask(density):
    B, H, S, D, bs = 2, 3, 260, 32, 64
    q, k, v = make_qkv(B, H, S, D, torch.float32, seed=10)
    mask = random_block_mask(nb_for(S, bs), density, seed=11, heads=H)
    out = block_sparse_attention(q, k, v, mask, block_size=bs)
    check_against_reference(out, q, k, v, mask, bs)


def test_output_layout_is_a_free_view():
    B, H, S, D = 2, 3, 150, 16
    q, k, v = make_qkv(B, H, S, D, torch.float32, layout="bshd")
    out = block_sparse_attention(q, k, v, torch.ones(3, 3, dtype=torch.bool), block_size=64,
                                 backend="pytorch")
    flat = out.transpose(1, 2).reshape(B, S, H * D)
    assert flat.data_ptr() == out.data_ptr()  # no copy needed to go back to [B, S, H*D]


def test_memory_is_not_quadratic():
    # S^2 float32 scores would need 64 GiB here; the grouped path needs a few MB.
    S, bs = 131072, 128
    nb = nb_for(S, bs)
    q, k, v = make_qkv(1, 1, S, 8, torch.float32, seed=12)
    mask = torch.eye(nb, dtype=torch.bool)
    mask[:, 0] = True
    out = block_sparse_attention(q, k, v, mask, block_size=bs)
    assert torch.isfinite(out).all()
    # spot check one query block against a direct computation over its two key blocks
    i = 700
    qs = q[:, :, i * bs : (i + 1) * bs]
    keys = torch.cat([k[:, :, :bs], k[:, :, i * bs : (i + 1) * bs]], dim=2)
    vals = torch.cat([v[:, :, :bs], v[:, :, i * bs : (i + 1) * bs]], dim=2)
    want = F.scaled_dot_product_attention(qs, keys, vals)
    assert rel_err(out[:, :, i * bs : (i + 1) * bs], want) < 1e-5


def test_row_reference_matches_full_reference():
    from radial_core.reference import dense_masked_attention, masked_attention_rows

    B, H, S, D, bs = 2, 3, 300, 16, 64
    q, k, v = make_qkv(B, H, S, D, torch.float32, seed=13)
    mask = random_block_mask(nb_for(S, bs), 0.4, seed=14, heads=H)
    mask[:, 2] = False  # empty rows
    kpm = random_padding(B, S, seed=15)
    rows = torch.tensor([0, 63, 64, 150, 299])
    full = dense_masked_attention(q, k, v, mask, bs, key_padding_mask=kpm)
    part = masked_attention_rows(q, k, v, mask, bs, rows, key_padding_mask=kpm,
                                 dtype=torch.float64, head_chunk=2)
    assert torch.allclose(part, full[:, :, rows], atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_pytorch_path_under_autocast_equals_the_path_without(dtype):
    """ComfyUI's Train LoRA runs the model under torch.autocast(cpu, bf16): the PyTorch path keeps
    its own compute dtype there (forward and backward), instead of failing on bf16 matmul results."""
    torch.manual_seed(0)
    S, bs = 300, 64
    nb = -(-S // bs)
    mask = torch.rand(nb, nb) < 0.5
    mask |= torch.eye(nb, dtype=torch.bool)
    q, k, v = (torch.randn(2, 2, S, 32, dtype=dtype, requires_grad=True) for _ in range(3))
    g = torch.randn(2, 2, S, 32, dtype=dtype)
    plain = block_sparse_attention(q, k, v, mask, block_size=bs, backend="pytorch")
    plain_grads = torch.autograd.grad(plain, (q, k, v), g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = block_sparse_attention(q, k, v, mask, block_size=bs, backend="pytorch")
        auto_grads = torch.autograd.grad(auto, (q, k, v), g)
    assert auto.dtype == dtype
    torch.testing.assert_close(auto, plain, rtol=0, atol=0)
    for a, b in zip(auto_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
