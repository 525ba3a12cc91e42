"""The warp-specialised Gluon forward kernel (``radial_core.gluon_kernel``) on a Hopper GPU.

Every case runs the kernel itself (``gluon_kernel.launch``), checks that dispatch would name
it for those inputs (``dispatch.decide``), and compares with the float32 masked
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
    from radial_core.dispatch import capability, gluon_takes

    ok, why = gluon_takes(128, torch.bfloat16, 128, capability(torch.device("cuda")))
    if not ok:
        pytest.skip(why)
    return gluon_kernel


def _run(q, k, v, mask, bs=128, kpm=None, lse=False, stages=3):
    from radial_core import gluon_kernel
    from radial_core.csr import block_csr
    from radial_core.dispatch import GluonConfig

    csr = block_csr(mask, bs, q.device)
    return gluon_kernel.launch(q, k, v, csr, GluonConfig(stages), key_padding_mask=kpm,
                               scale=q.shape[-1] ** -0.5, return_lse=lse)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
@pytest.mark.parametrize("S", [1024, 1000, 2945])
def test_against_reference(dtype, D, layout, S):
    _require_hopper()
    from radial_core.dispatch import decide

    q, k, v = make_qkv(2, 3, S, D, dtype, "cuda", layout, seed=S + D)
    assert decide(q, k, v, block_size=128).kernel == "gluon"
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
    """A head dim slice whose strides TMA cannot take: dispatch names the Triton kernel (and
    why), same answer."""
    _require_hopper()
    from radial_core.attention import block_sparse_attention
    from radial_core.dispatch import decide

    B, H, S, D = 1, 2, 700, 128
    base = torch.randn(B, H, S, D + 4, device="cuda", dtype=torch.bfloat16)
    q = base[..., 1:D + 1]  # base offset of 2 bytes: not 16-byte aligned
    k, v = torch.randn_like(q), torch.randn_like(q)
    decision = decide(q, k, v, block_size=128)
    assert decision.kernel == "triton" and "16-byte" in decision.reason
    mask = random_block_mask(nb_for(S, 128), 0.5, seed=7)
    out = block_sparse_attention(q, k, v, mask, block_size=128, decision=decision)
    check_against_reference(out, q, k, v, mask, 128)


def test_dispatch_names_gluon_exactly_where_it_can_run():
    """``dispatch.decide`` names the Gluon kernel (exact and int8) exactly where it can run."""
    _require_hopper()
    from radial_core.dispatch import decide

    def kernel(D, dtype, bs, precision="exact"):
        q = torch.zeros(1, 2, 256, D, device="cuda", dtype=dtype)
        return decide(q, q, q, block_size=bs, precision=precision).kernel

    assert kernel(128, torch.bfloat16, 128) == "gluon"
    assert kernel(64, torch.float16, 128) == "gluon"
    assert kernel(128, torch.bfloat16, 64) == "triton"
    assert kernel(80, torch.bfloat16, 128) == "triton"
    assert kernel(128, torch.float32, 128) == "triton"
    assert kernel(128, torch.bfloat16, 128, "int8-qk") == "gluon"
    assert kernel(64, torch.float16, 128, "int8-qk") == "gluon"
    assert kernel(80, torch.bfloat16, 128, "int8-qk") == "triton"
