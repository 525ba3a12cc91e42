"""precision="int8-qk": 8-bit Q.K^T in the Triton kernel, and the exact fallback elsewhere.

``precision="int8-qk"`` runs Q.K^T in int8 (K smoothed by its mean, P.V in the input dtype; one
scale per query row and per 64-key tile in the Triton kernel, per 64 query rows and per 128-key
tile in the Gluon one on Hopper; ``int8_quant``), because e4m3 in both products cannot meet
comfy-kitchen INT8's 1.7e-2 on random inputs (measured 5.4e-2 on an H200; docs/perf-notes.md).

Tolerances (derived, not tuned). A logit s = scale * q.k whose operands carry independent
relative rounding errors of RMS eps_q and eps_k gets an absolute error of RMS
sigma_s * sqrt(eps_q^2 + eps_k^2) (sigma_s: RMS of the scaled logits), and each p = exp(s - m)
changes relatively by that much; on random inputs (flat softmax) the output's relative error is
that same figure, not averaged down. Independent error sources add in quadrature.

- int8 (round to nearest, scale = amax / 127 per group): the rounding error is uniform with
  RMS (amax / 127) / sqrt(12), so eps = that over the group's RMS, measured on the inputs (q and
  K minus its mean, in the groups of the kernel that runs: ``int8_groups``). P.V in bf16/fp16
  adds the output dtype's own floor.
  Randn inputs: eps_q ~ 0.0066, eps_k ~ 0.0093, bound ~ 1.1e-2 (+ floor); measured 1.15e-2
  at S = 8192 on an H200. The bound is taken x1.5 for the estimate's own spread (amax of a
  group varies, the softmax is not quite flat).

- ``precision="int8"`` adds 8-bit P.V (Gluon kernel): P rounded per (row, 128-key tile), V
  per channel with its mean out. Its own error is computed, not estimated: the same rounding
  applied to exact logits in float64 (``reference.pv8_rounded_attention``) on the test's
  inputs, taken x1.5 like the logits' bound and added in quadrature (randn inputs: ~1.0e-2).

Each GPU test also checks that the error is well above the exact path's (so 8-bit really ran)
and that no warning was logged.
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
from radial_core.reference import (dense_masked_attention, masked_attention_rows,
                                   pv8_rounded_attention)

OUT_FLOOR = {torch.bfloat16: 4e-3, torch.float16: 5e-4}


def _sigma_s(q, k, rows=None, scale=None):
    D = q.shape[-1]
    scale = scale or 1.0 / math.sqrt(D)
    qs = q[:, :, :512] if rows is None else q[:, :, rows[:512]]
    s = torch.matmul(qs.float(), k[:, :, :2048].float().transpose(-1, -2)) * scale
    return s.pow(2).mean().sqrt().item()


def _int8_eps(x, group_rows):
    """RMS relative int8 rounding error of x [B, H, S, D] with one scale per group of rows."""
    B, H, S, D = x.shape
    pad = (-S) % group_rows
    xf = torch.nn.functional.pad(x.float(), (0, 0, 0, pad)).reshape(B, H, -1, group_rows * D)
    step2 = (xf.abs().amax(-1) / 127.0).pow(2) / 12.0  # rounding variance per group
    return math.sqrt(step2.mean().item() / x.float().pow(2).mean().item())


def int8_bound(q, k, rows=None, scale=None, groups=(1, 64)):
    """The int8 scheme's bound above: ``groups`` = (query rows, keys) a scale covers, k minus
    its mean (the Triton kernel: per row and per 64-key tile; the Gluon one: per 64 rows and
    per 128-key tile, ``int8_groups``)."""
    km = k.float() - k.float().mean(dim=2, keepdim=True)
    sigma = _sigma_s(q, km, rows, scale)  # the logits the int8 product computes
    eps = math.hypot(_int8_eps(q, groups[0]), _int8_eps(km, groups[1]))
    return 1.5 * sigma * eps


def int8_groups(q, block_size, decision=None):
    """The scale groups of the int8 kernel that a call on q runs (asks ``dispatch.decide``)."""
    from radial_core import gluon_kernel
    from radial_core.dispatch import decide

    if decision is None:
        decision = decide(q, q, q, block_size=block_size, precision="int8-qk")
    if decision.kernel == "gluon":
        return gluon_kernel.INT8_GROUPS
    return (1, decision.forward.block_n)


def _rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("name", ["int8-qk", "fp8"])  # "fp8": its old name, still read
def test_cpu_fp8_falls_back_to_exact_with_one_warning(caplog, name):
    from radial_core import attention

    attention._warned.clear()
    q, k, v = make_qkv(2, 2, 300, 32, torch.float32, layout="bshd", seed=1)
    mask = random_block_mask(nb_for(300, 64), 0.4, seed=2)
    with caplog.at_level(logging.WARNING, logger="radial_core.attention"):
        outs = [block_sparse_attention(q, k, v, mask, block_size=64, precision=name)
                for _ in range(3)]
    exact = block_sparse_attention(q, k, v, mask, block_size=64, precision="exact")
    assert all(torch.equal(o, exact) for o in outs), "the fallback must be the exact path"
    check_against_reference(outs[0], q, k, v, mask, 64)
    warns = [r for r in caplog.records if "precision='int8-qk'" in r.getMessage()]
    assert len(warns) == 1, [r.getMessage() for r in caplog.records]
    assert "cpu" in warns[0].getMessage()


def test_bf16_is_an_alias_of_exact_and_bad_precision_names_the_fix():
    q, k, v = make_qkv(1, 2, 200, 16, torch.float16, seed=3)
    mask = random_block_mask(nb_for(200, 64), 0.5, seed=4)
    a = block_sparse_attention(q, k, v, mask, block_size=64, precision="bf16")
    assert a.dtype == torch.float16  # no cast: "bf16" means the input dtype's exact path
    assert torch.equal(a, block_sparse_attention(q, k, v, mask, block_size=64))
    with pytest.raises(ValueError, match=r"precision must be one of.*got 'int4'"):
        block_sparse_attention(q, k, v, mask, block_size=64, precision="int4")


def _fp8_gpu_ok():
    require_cuda()
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("int8 matrix units need compute capability 8.0+ (Ampere and newer)")


def _check_fp8(out, ref, q, k, rows=None, dtype=torch.bfloat16, label="", groups=(1, 64)):
    assert torch.isfinite(out).all(), "NaN/Inf in FP8 output"
    err = _rel(out, ref)
    tol = math.hypot(int8_bound(q, k, rows, groups=groups), OUT_FLOOR[dtype])
    print(f"[fp8-err] int8 {label}: {err:.3e} (bound {tol:.3e})")
    assert err <= tol, f"int8 error {err:.3e} > derived bound {tol:.3e}"
    assert err > 5e-3, f"error {err:.3e} is the exact path's: 8-bit Q.K did not run"
    return err


@pytest.fixture
def gluon_int8_calls(monkeypatch):
    """Counts launches of the Gluon int8 kernel (the real one runs; this only counts)."""
    from radial_core import gluon_kernel

    calls = []
    real = gluon_kernel.forward_int8

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(gluon_kernel, "forward_int8", counted)
    return calls


@pytest.mark.gpu
@pytest.mark.parametrize("kernel", ["default", "triton"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
def test_fp8_against_float32_reference(dtype, D, layout, kernel, caplog, gluon_int8_calls):
    """Both int8 kernels: the default (on Hopper the Gluon one) and the Triton one (a decision
    with the Triton kernel's int8 row, passed to the call)."""
    _fp8_gpu_ok()
    from radial_core.dispatch import capability, decide, gluon_takes, triton_config

    B, H, S, bs = 2, 3, 1001, 128  # odd S: a partial tail block
    q, k, v = make_qkv(B, H, S, D, dtype, "cuda", layout, seed=D)
    k = k + 0.5 * torch.randn(1, 1, 1, D, device="cuda", dtype=dtype)  # channel offsets
    mask = random_block_mask(nb_for(S, bs), 0.4, seed=1)
    kpm = random_padding(B, S, seed=2).cuda()
    decision = decide(q, k, v, block_size=bs, precision="int8-qk")
    if kernel == "triton":
        cap = capability(q.device)
        decision = decision._replace(kernel="triton",
                                     forward=triton_config(D, dtype, bs, cap, int8=True))
    groups = int8_groups(q, bs, decision)
    with caplog.at_level(logging.WARNING):
        out = block_sparse_attention(q, k, v, mask, block_size=bs, key_padding_mask=kpm,
                                     precision="int8-qk", decision=decision)
    assert not [r for r in caplog.records if "precision=" in r.getMessage()]
    assert out.shape == q.shape and out.dtype == dtype
    gluon = gluon_takes(D, dtype, bs, capability(q.device))[0]
    assert len(gluon_int8_calls) == (1 if kernel == "default" and gluon else 0)
    ref = dense_masked_attention(q, k, v, mask, bs, key_padding_mask=kpm, dtype=torch.float32)
    _check_fp8(out, ref, q, k, dtype=dtype, label=f"{kernel} {dtype} D={D} {layout}",
               groups=groups)


@pytest.mark.gpu
@pytest.mark.parametrize("bs, D", [(64, 80), (128, 80), (128, 128)])
def test_fp8_per_head_mask_and_empty_rows(bs, D):
    """Per-head masks with a query block that keeps nothing: head dim 80 (padded to 128 in the
    Triton kernel) and 128 at block 128 (the Gluon kernel on Hopper)."""
    _fp8_gpu_ok()
    B, H, S = 2, 4, 1500
    q, k, v = make_qkv(B, H, S, D, torch.bfloat16, "cuda", "bshd", seed=bs + D)
    mask = random_block_mask(nb_for(S, bs), 0.3, seed=3, heads=H)
    mask[:, 2] = False  # a query block with no kept key: zeros
    out = block_sparse_attention(q, k, v, mask, block_size=bs, precision="int8-qk")
    assert out[:, :, 2 * bs : 3 * bs].abs().max() == 0
    ref = dense_masked_attention(q, k, v, mask, bs, dtype=torch.float32)
    _check_fp8(out, ref, q, k, label=f"per-head D={D} bs={bs}", groups=int8_groups(q, bs))


@pytest.mark.gpu
def test_fp8_long_radial_wan_720p():
    """S = 75 600, B = 2, [B, S, H*D] views, radial mask at decay 0.2; sampled rows."""
    _fp8_gpu_ok()
    S, H, D = 21 * 3600, 2, 128
    q, k, v = make_qkv(2, H, S, D, torch.bfloat16, "cuda", "bshd", seed=7)
    mask = radial_block_mask(21, 3600, decay_factor=0.2)
    out = block_sparse_attention(q, k, v, mask, block_size=128, precision="int8-qk")
    g = torch.Generator().manual_seed(0)
    rows = torch.cat([torch.randint(0, S, (256,), generator=g), torch.arange(S - 80, S)])
    rows = rows.unique().cuda()
    ref = masked_attention_rows(q, k, v, mask, 128, rows)
    _check_fp8(out[:, :, rows], ref, q, k, rows=rows, label="wan720 S=75600",
               groups=int8_groups(q, 128))


@pytest.mark.gpu
@pytest.mark.parametrize("D, S, seed, precision, runs_as", [
    (256, 500, 9, "int8-qk", "exact"),  # no 8-bit kernel takes head dim 256
    (80, 700, 12, "int8", "int8-qk"),  # 8-bit P.V is the Gluon kernel's: head dims 64, 128
])
def test_a_head_dim_the_kernel_cannot_take_falls_back_once(caplog, D, S, seed, precision,
                                                             runs_as):
    require_cuda()
    if precision == "int8":
        _fp8_gpu_ok()
    from radial_core import attention

    attention._warned.clear()
    q, k, v = make_qkv(1, 2, S, D, torch.bfloat16, "cuda", seed=seed)
    mask = random_block_mask(nb_for(S, 128), 0.5, seed=seed)
    with caplog.at_level(logging.WARNING, logger="radial_core.attention"):
        a = block_sparse_attention(q, k, v, mask, block_size=128, precision=precision)
        b = block_sparse_attention(q, k, v, mask, block_size=128, precision=precision)
    assert torch.equal(a, b)
    assert torch.equal(a, block_sparse_attention(q, k, v, mask, block_size=128,
                                                 precision=runs_as))
    warns = [r.getMessage() for r in caplog.records
             if f"precision={precision!r}" in r.getMessage()]
    assert len(warns) == 1 and runs_as in warns[0], warns


def test_return_lse_with_int8_names_the_fix():
    """The LSE is the exact path's (int8's logits are shifted by K's smoothing): refused."""
    pytest.importorskip("triton", reason="Triton is not installed in this environment")
    from radial_core import triton_kernel
    from radial_core.csr import block_csr
    from radial_core.dispatch import triton_config

    q, k, v = make_qkv(1, 1, 64, 16, torch.float16, seed=1)
    csr = block_csr(torch.ones(1, 1, dtype=torch.bool), 64)
    cfg = triton_config(16, torch.float16, 64, (0, 0), int8=True)
    with pytest.raises(ValueError, match=r"return_lse=True needs the exact path.*int8=False"):
        triton_kernel.triton_block_sparse_attention(q, k, v, csr, cfg, int8=True, scale=0.25,
                                                    return_lse=True)


# ---- precision="int8": P.V in 8 bits as well (the Gluon kernel) --------------------------------


def test_int8_on_cpu_falls_back_to_exact_with_one_warning(caplog):
    from radial_core import attention

    attention._warned.clear()
    q, k, v = make_qkv(1, 2, 300, 32, torch.float32, seed=4)
    mask = random_block_mask(nb_for(300, 64), 0.4, seed=5)
    with caplog.at_level(logging.WARNING, logger="radial_core.attention"):
        outs = [block_sparse_attention(q, k, v, mask, block_size=64, precision="int8")
                for _ in range(2)]
    assert all(torch.equal(o, block_sparse_attention(q, k, v, mask, block_size=64)) for o in outs)
    warns = [r.getMessage() for r in caplog.records if "precision='int8'" in r.getMessage()]
    assert len(warns) == 1 and "exact" in warns[0], [r.getMessage() for r in caplog.records]


def test_int8_decision_survives_the_op_encoding():
    """The op carries the decision as integers: 8-bit P.V must come back out of them."""
    from radial_core.dispatch import Decision, GluonConfig

    d = Decision("triton", "gluon", True, GluonConfig(3), "gluon", GluonConfig(3), None, pv8=True)
    back = Decision.decode(d.encode())
    assert back.int8 and back.pv8 and back.kernel == "gluon"
    back = Decision.decode(d._replace(pv8=False).encode())
    assert back.int8 and not back.pv8


def _pv8_gpu_or_skip(q, bs):
    _fp8_gpu_ok()
    from radial_core.dispatch import decide

    decision = decide(q, q, q, block_size=bs, precision="int8")
    if not decision.pv8:
        pytest.skip(f"precision='int8' runs as 'int8-qk' here: {decision.why_pv16}")
    return decision


def _check_pv8(out, ref, q, k, v, mask, bs, kpm=None, dtype=torch.bfloat16, label=""):
    assert torch.isfinite(out).all(), "NaN/Inf in the 8-bit output"
    err = _rel(out, ref)
    pv = _rel(pv8_rounded_attention(q, k, v, mask, bs, key_padding_mask=kpm), ref)
    tol = math.hypot(int8_bound(q, k, groups=int8_groups(q, bs)), 1.5 * pv, OUT_FLOOR[dtype])
    exact = _rel(block_sparse_attention(q, k, v, mask, block_size=bs, key_padding_mask=kpm), ref)
    print(f"[fp8-err] int8 P.V {label}: {err:.3e} (P.V rounding alone {pv:.3e}, exact path "
          f"{exact:.3e}, bound {tol:.3e})")
    assert err <= tol, f"8-bit error {err:.3e} > derived bound {tol:.3e}"
    # (V's channel offsets make O large, so 8-bit errors are small relative to it: the check
    # that 8-bit P.V ran compares with the exact path on the same inputs)
    floor = math.hypot(exact, 0.5 * pv)
    assert err > floor, (f"error {err:.3e} lacks the P.V rounding ({pv:.3e}) over the exact "
                         f"path's {exact:.3e}: 8-bit P.V did not run")
    return err


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
def test_int8_pv8_against_float32_reference(dtype, D, layout, caplog, gluon_int8_calls):
    """B = 2, odd S (a partial tail block), key padding, channel offsets in K and V."""
    _fp8_gpu_ok()
    B, H, S, bs = 2, 3, 1001, 128
    q, k, v = make_qkv(B, H, S, D, dtype, "cuda", layout, seed=D + 1)
    _pv8_gpu_or_skip(q, bs)
    k = k + 0.5 * torch.randn(1, 1, 1, D, device="cuda", dtype=dtype)
    v = v + 0.5 * torch.randn(1, 1, 1, D, device="cuda", dtype=dtype)
    mask = random_block_mask(nb_for(S, bs), 0.4, seed=1)
    kpm = random_padding(B, S, seed=2).cuda()
    with caplog.at_level(logging.WARNING):
        out = block_sparse_attention(q, k, v, mask, block_size=bs, key_padding_mask=kpm,
                                     precision="int8")
    assert not [r for r in caplog.records if "precision=" in r.getMessage()]
    assert out.shape == q.shape and out.dtype == dtype
    assert len(gluon_int8_calls) == 1
    ref = dense_masked_attention(q, k, v, mask, bs, key_padding_mask=kpm, dtype=torch.float32)
    _check_pv8(out, ref, q, k, v, mask, bs, kpm, dtype, f"{dtype} D={D} {layout}")


@pytest.mark.gpu
def test_int8_pv8_per_head_mask_and_empty_rows():
    _fp8_gpu_ok()
    B, H, S, D, bs = 2, 4, 1500, 128, 128
    q, k, v = make_qkv(B, H, S, D, torch.bfloat16, "cuda", "bshd", seed=11)
    _pv8_gpu_or_skip(q, bs)
    mask = random_block_mask(nb_for(S, bs), 0.3, seed=3, heads=H)
    mask[:, 2] = False  # a query block with no kept key: zeros
    out = block_sparse_attention(q, k, v, mask, block_size=bs, precision="int8")
    assert out[:, :, 2 * bs : 3 * bs].abs().max() == 0
    ref = dense_masked_attention(q, k, v, mask, bs, dtype=torch.float32)
    _check_pv8(out, ref, q, k, v, mask, bs, label="per-head D=128")
