"""The warp-specialised Gluon forward kernel (``radial_core.gluon_kernel``) on a Hopper GPU.

Every case runs the kernel itself (``config={"KERNEL": "gluon"}``), checks that it was the
Gluon kernel that ran (``gluon_kernel.supported``), and compares with the float32 masked
reference under the tolerance rule of ``attention_helpers`` (2x SDPA's own error plus a floor):
fp16 and bf16, head dims 64 and 128, lengths that are and are not multiples of the block,
B = 2, both ComfyUI layouts, key padding, per-head masks, empty rows, the LSE output, and
strides the copy engine cannot take (which must fall back to the Triton kernel, same result).
Skips with a reason without CUDA, on GPUs other than Hopper, or without Gluon.
"""

from __future__ import annotations

import pytest
import torch

from attention_helpers import check_against_reference, make_qkv, nb_for, random_block_mask
from conftest import require_cuda

pytestmark = pytest.mark.gpu


def _require_hopper():
    require_cuda()
    from radial_core import gluon_kernel

    ok, why = gluon_kernel.available()
    if not ok:
        pytest.skip(why)
    cap = torch.cuda.get_device_capability()
    if cap[0] != 9:
        pytest.skip(f"the Gluon kernel is written for Hopper (9.x); this GPU is {cap[0]}.{cap[1]}")
    return gluon_kernel


def _run(q, k, v, mask, bs=128, kpm=None, lse=False, stages=3):
    from radial_core import triton_kernel
    from radial_core.csr import block_mask_to_csr

    csr = block_mask_to_csr(mask, q.device)
    return triton_kernel.forward(q, k, v, csr, bs, key_padding_mask=kpm, return_lse=lse,
                                 config={"KERNEL": "gluon", "STAGES": stages})


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
@pytest.mark.parametrize("S", [1024, 1000, 2945])
def test_against_reference(dtype, D, layout, S):
    gk = _require_hopper()
    q, k, v = make_qkv(2, 3, S, D, dtype, "cuda", layout, seed=S + D)
    assert gk.supported(q, k, v, 128)[0]
    mask = random_block_mask(nb_for(S, 128), 0.4, seed=S)
    out = _run(q, k, v, mask)
    check_against_reference(out, q, k, v, mask, 128)


@pytest.mark.parametrize("stages", [2, 3])
def test_padding_per_head_mask_empty_rows_and_lse(stages):
    """Key padding, a per-head mask with a query block that keeps nothing, the LSE (+inf on
    empty rows) and the output unchanged by asking for the LSE."""
    _require_hopper()
    from test_triton_interpret import check_lse

    B, H, S, D = 2, 3, 1801, 128
    q, k, v = make_qkv(B, H, S, D, torch.bfloat16, "cuda", "bshd", seed=11)
    mask = random_block_mask(nb_for(S, 128), 0.35, seed=4, heads=H)
    mask[:, 2] = False
    kpm = torch.ones(B, S, dtype=torch.bool, device="cuda")
    kpm[1, -150:] = False
    kpm[0, 300:420] = False
    out, lse = _run(q, k, v, mask, kpm=kpm, lse=True, stages=stages)
    plain = _run(q, k, v, mask, kpm=kpm, stages=stages)
    assert torch.equal(out, plain), "return_lse must not change the output"
    assert out[:, :, 2 * 128:3 * 128].abs().max() == 0, "an empty query block must be zero"
    check_lse(lse, q, k, mask, 128, kpm)
    check_against_reference(out, q, k, v, mask, 128, key_padding_mask=kpm)


def test_unaligned_strides_fall_back_to_triton():
    """A head dim slice whose strides TMA cannot take: the Triton kernel runs, same answer."""
    gk = _require_hopper()
    B, H, S, D = 1, 2, 700, 128
    base = torch.randn(B, H, S, D + 4, device="cuda", dtype=torch.bfloat16)
    q = base[..., 1:D + 1]  # base offset of 2 bytes: not 16-byte aligned
    k, v = torch.randn_like(q), torch.randn_like(q)
    ok, why = gk.supported(q, k, v, 128)
    assert not ok and "16-byte" in why
    mask = random_block_mask(nb_for(S, 128), 0.5, seed=7)
    out = _run(q, k, v, mask)
    check_against_reference(out, q, k, v, mask, 128)


def test_default_on_hopper_is_gluon_when_enabled():
    """``pick_config`` names the Gluon kernel exactly where it can run (when it is the
    default), and the Triton row otherwise."""
    _require_hopper()
    from radial_core import triton_kernel as tk

    dev = torch.device("cuda")
    assert tk.pick_config(128, torch.bfloat16, 128, dev, gluon=True)["KERNEL"] == "gluon"
    assert "KERNEL" not in tk.pick_config(128, torch.bfloat16, 64, dev, gluon=True)
    assert "KERNEL" not in tk.pick_config(80, torch.bfloat16, 128, dev, gluon=True)
    assert "KERNEL" not in tk.pick_config(128, torch.float32, 128, dev, gluon=True)
    # precision="fp8": the int8 scheme runs in the Gluon kernel, the e4m3 ones in Triton
    assert tk.pick_config(128, torch.bfloat16, 128, dev, fp8=True, gluon=True)["KERNEL"] == "gluon"
    assert tk.pick_config(64, torch.float16, 128, dev, fp8=True, scheme="int8",
                          gluon=True)["KERNEL"] == "gluon"
    assert "KERNEL" not in tk.pick_config(128, torch.bfloat16, 128, dev, fp8=True, scheme="fp8",
                                          gluon=True)
    assert "KERNEL" not in tk.pick_config(80, torch.bfloat16, 128, dev, fp8=True, gluon=True)
    assert "KERNEL" not in tk.pick_config(128, torch.bfloat16, 128, dev, gluon=False)
