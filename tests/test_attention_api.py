"""Public API of block_sparse_attention: bad inputs give clear errors, backend checks, the mask's CSR."""

from __future__ import annotations

import pytest
import torch

from attention_helpers import make_qkv
from radial_core.attention import block_sparse_attention, can_use_triton
from radial_core.csr import block_csr


def _inputs(B=1, H=2, S=200, D=32, dtype=torch.float32):
    return make_qkv(B, H, S, D, dtype)


def _mask(nb=4):
    return torch.ones(nb, nb, dtype=torch.bool)


def test_mismatched_shapes():
    q, k, v = _inputs()
    with pytest.raises(ValueError, match=r"same shape.*k \(1, 2, 100, 32\)"):
        block_sparse_attention(q, k[:, :, :100], v, _mask())


def test_three_dim_input_names_the_fix():
    q, k, v = _inputs()
    flat = q.transpose(1, 2).reshape(1, 200, 64)
    with pytest.raises(ValueError, match=r"got shape \(1, 200, 64\).*view\(B, S, H, D\)"):
        block_sparse_attention(flat, flat, flat, _mask())


def test_wrong_mask_size():
    q, k, v = _inputs()
    with pytest.raises(ValueError, match=r"nb = ceil\(S / block_size\) = ceil\(200 / 64\) = 4.*got shape \(5, 5\)"):
        block_sparse_attention(q, k, v, _mask(5), block_size=64)


def test_wrong_mask_dtype():
    q, k, v = _inputs()
    with pytest.raises(TypeError, match=r"torch.bool; got torch.float32.*\.bool\(\)"):
        block_sparse_attention(q, k, v, _mask().float(), block_size=64)


def test_wrong_dtype():
    q, k, v = _inputs()
    qi, ki, vi = (t.to(torch.int32) for t in (q, k, v))
    with pytest.raises(TypeError, match="got torch.int32"):
        block_sparse_attention(qi, ki, vi, _mask(), block_size=64)
    with pytest.raises(TypeError, match=r"one dtype; got torch.float32, torch.float16"):
        block_sparse_attention(q, k.half(), v, _mask(), block_size=64)


def test_bad_block_size_and_backend():
    q, k, v = _inputs()
    with pytest.raises(ValueError, match="block_size must be 64 or 128; got 32"):
        block_sparse_attention(q, k, v, _mask(7), block_size=32)
    with pytest.raises(ValueError, match="backend must be one of.*'cuda'"):
        block_sparse_attention(q, k, v, _mask(), block_size=64, backend="cuda")


def test_bad_padding_mask():
    q, k, v = _inputs()
    with pytest.raises(ValueError, match=r"\[B, S\] = \[1, 200\]; got \(1, 199\)"):
        block_sparse_attention(q, k, v, _mask(), block_size=64,
                               key_padding_mask=torch.ones(1, 199, dtype=torch.bool))
    with pytest.raises(TypeError, match="key_padding_mask must be a bool tensor"):
        block_sparse_attention(q, k, v, _mask(), block_size=64,
                               key_padding_mask=torch.ones(1, 200))


def test_triton_backend_refuses_cpu_tensors():
    q, k, v = _inputs(dtype=torch.float16)
    with pytest.raises(ValueError, match=r"needs CUDA tensors; got device cpu.*backend='pytorch'"):
        block_sparse_attention(q, k, v, _mask(), block_size=64, backend="triton")
    ok, reason = can_use_triton(q, k, v)
    assert not ok and "cpu" in reason


def test_bool_mask_becomes_a_csr():
    mask = torch.rand(9, 9) < 0.5
    mask |= torch.eye(9, dtype=torch.bool)
    a = block_csr(mask, 64)
    assert a.kept == int(mask.sum()) and a.block_size == 64
    rows = [a.col_idx[a.row_start[r] : a.row_start[r] + a.row_len[r]].tolist() for r in range(9)]
    assert rows == [torch.nonzero(mask[r]).flatten().tolist() for r in range(9)]
    lens = a.row_len[a.row_order.long()]
    assert (lens[:-1] >= lens[1:]).all()  # longest row first


def test_a_mask_carries_its_block_size():
    q, k, v = _inputs()
    mask = _mask()
    want = block_sparse_attention(q, k, v, mask, block_size=64)
    assert torch.equal(block_sparse_attention(q, k, v, block_csr(mask, 64)), want)
    with pytest.raises(ValueError, match="built with block_size=64"):
        block_sparse_attention(q, k, v, block_csr(mask, 64), block_size=128)


def test_masks_and_inputs_from_inference_mode():
    # ComfyUI samples under torch.inference_mode(): masks and inputs may be inference tensors
    with torch.inference_mode():
        mask = torch.rand(4, 4) < 0.5
        mask |= torch.eye(4, dtype=torch.bool)
        q, k, v = _inputs()
        a = block_sparse_attention(q, k, v, mask, block_size=64)
        assert block_csr(mask, 64).kept == int(mask.sum())
    b = block_sparse_attention(q, k, v, mask, block_size=64)  # outside inference mode too
    assert torch.equal(a, b)


def test_decision_travels_through_the_op_as_integers():
    """``Decision.encode`` / ``decode``: what the custom op carries is the whole decision but
    its reasons (kernels, int8, forward, exact forward, backward)."""
    from radial_core.dispatch import (Decision, GluonConfig, backward_config, decide,
                                      triton_config)

    cpu = decide(*_inputs(), block_size=64, need_grad=True)
    assert cpu.kernel == "pytorch" and "CUDA" in cpu.why_not_triton and cpu.reason
    cases = [cpu, Decision("triton", "gluon", True, GluonConfig(3), "triton",
                           triton_config(128, torch.bfloat16, 128, (9, 0), use_tma=True), None),
             Decision("triton", "triton", False, triton_config(80, torch.float16, 64, (8, 6)),
                      "triton", triton_config(80, torch.float16, 64, (8, 6)),
                      backward_config(80, torch.float16, 64, (8, 6), dq_tma=True))]
    for d in cases:
        got = Decision.decode(d.encode())
        assert all(isinstance(x, int) for x in d.encode())
        assert got[:7] == d[:7], (got, d)


def test_backward_loads_a_broadcast_gradient_by_pointers():
    """``dispatch.for_gradient``: the dK/dV pass reads dO through tensor descriptors only where
    the copy engine takes the gradient (not a broadcast one, whose strides are zero)."""
    from radial_core.dispatch import Decision, backward_config, for_gradient, triton_config

    cfg = triton_config(64, torch.float16, 64, (9, 0), use_tma=True)
    d = Decision("triton", "triton", False, cfg, "triton", cfg,
                 backward_config(64, torch.float16, 64, (9, 0), dq_tma=True, dkdv_tma=True))
    aligned = torch.zeros(1, 2, 200, 64, dtype=torch.float16)
    assert for_gradient(d, aligned) is d
    broadcast = torch.ones((), dtype=torch.float16).expand(aligned.shape)
    got = for_gradient(d, broadcast).backward
    assert not got.dkdv.use_tma and got.dq.use_tma and got.dkdv.block_m == d.backward.dkdv.block_m
