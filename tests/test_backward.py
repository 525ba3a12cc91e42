"""Gradients of block_sparse_attention (issue 14): dQ, dK, dV against the dense reference.

The reference is radial_core.reference.dense_masked_attention (float64, the expanded token
mask) differentiated by autograd. CPU: the PyTorch path's blockwise backward in float64 and
float32 (and 16-bit inputs, computed in float32), ``torch.autograd.gradcheck`` on small float64
cases, gradient checkpointing, what autograd saves (no attention matrix). The Triton backward:
under Triton's CPU interpreter in a child process (this file run as a script with
``TRITON_INTERPRET=1``; fp16/fp32 only, bf16 ``tl.dot`` is wrong in the 3.7-3.8 interpreter;
Triton 3.7+, older interpreters cannot run a loop bounded by a loaded value), and on a GPU
(fp16/bf16/fp32 up to S = 75 600; skips with a reason without one).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.utils.checkpoint

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":  # the interpreter child: the pack as ComfyUI imports it (conftest's job
    sys.path.insert(0, str(HERE))  # under pytest), its root never on sys.path
    import pack_import

    pack_import.install()

from attention_helpers import (attention_model, interpreter_results, make_qkv, nb_for,  # noqa: E402
                               odd_length_case, random_block_mask, random_padding,
                               report_cases, report_unsupported)
from conftest import require_cuda  # noqa: E402
from radial_core.attention import OP_NAME, block_sparse_attention, supports_backward  # noqa: E402
from radial_core.mask import radial_block_mask  # noqa: E402
from radial_core.reference import dense_masked_attention  # noqa: E402


def reference_grads(q, k, v, mask, bs, kpm, scale, grad_out, dtype=torch.float64):
    """Output and dQ, dK, dV of the dense masked reference in ``dtype`` (autograd)."""
    qr, kr, vr = (t.detach().to(dtype).requires_grad_(True) for t in (q, k, v))
    ref = dense_masked_attention(qr, kr, vr, mask.cpu() if not q.is_cuda else mask, bs,
                                 key_padding_mask=kpm, scale=scale, dtype=dtype)
    grads = torch.autograd.grad(ref, (qr, kr, vr), grad_out.to(dtype))
    return ref.detach(), grads


def ours(q, k, v, mask, bs, kpm=None, scale=None, backend="pytorch", precision="exact",
         grad_out=None, seed=0):
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out = block_sparse_attention(q, k, v, mask, block_size=bs, key_padding_mask=kpm,
                                 scale=scale, backend=backend, precision=precision)
    if grad_out is None:
        g = torch.Generator().manual_seed(seed)
        grad_out = torch.randn(out.shape, generator=g).to(out.device, out.dtype)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad_out)
    return out, (dq, dk, dv), grad_out


def rel(a, b):
    a = a.detach().to(torch.float64).cpu()
    b = b.detach().to(torch.float64).cpu()
    assert torch.isfinite(a).all(), "NaN/Inf in a gradient"
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def check_grads(q, k, v, mask, bs, kpm=None, scale=None, backend="pytorch", tol=None,
                precision="exact"):
    out, grads, g = ours(q, k, v, mask, bs, kpm, scale, backend, precision)
    ref, rgrads = reference_grads(q, k, v, mask, bs, kpm, scale, g)
    errs = {n: rel(a, b) for n, a, b in zip(("out", "dq", "dk", "dv"), (out, *grads),
                                            (ref, *rgrads))}
    for n, gr in zip(("dq", "dk", "dv"), grads):
        assert gr.shape == q.shape and gr.dtype == q.dtype, (n, gr.shape, gr.dtype)
    bad = {n: e for n, e in errs.items() if e > tol}
    assert not bad, f"relative errors above {tol:.1e}: {bad} (all: {errs})"
    return errs, grads


TOL = {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 3e-3, torch.bfloat16: 2e-2}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
@pytest.mark.parametrize("block_size", [64, 128])
def test_grads_random_mask_odd_length_batch2(dtype, layout, block_size):
    q, k, v, mask = odd_length_case(dtype, layout, block_size, blocks=3, D=32, density=0.5,
                                    mask_seed=2)
    check_grads(q, k, v, mask, block_size, tol=TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_grads_key_padding_per_head_mask_and_scale(dtype):
    B, H, S, D, bs = 2, 3, 300, 16, 64
    q, k, v = make_qkv(B, H, S, D, dtype, layout="bshd", seed=5)
    mask = random_block_mask(nb_for(S, bs), 0.4, seed=6, heads=H)
    kpm = random_padding(B, S, seed=7)
    check_grads(q, k, v, mask, bs, kpm=kpm, scale=0.37, tol=TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_grads_16bit_inputs_computed_in_float32(dtype):
    B, H, S, D, bs = 2, 2, 250, 32, 64
    q, k, v = make_qkv(B, H, S, D, dtype, seed=8)
    mask = random_block_mask(nb_for(S, bs), 0.5, seed=9)
    check_grads(q, k, v, mask, bs, kpm=random_padding(B, S, seed=10), tol=TOL[dtype])


def test_grads_radial_mask_with_text_tokens():
    frames, tpf, text, bs = 3, 100, 77, 64
    S = frames * tpf + text
    q, k, v = make_qkv(2, 2, S, 32, torch.float32, layout="bshd", seed=11)
    mask = radial_block_mask(frames, tpf, text_tokens=text, block_size=bs, decay_factor=0.95,
                             model="hunyuan")
    kpm = random_padding(2, S, seed=12)
    kpm[:, : frames * tpf] = True  # only text tokens are padded
    check_grads(q, k, v, mask, bs, kpm=kpm, tol=TOL[torch.float32])


def test_rows_with_no_kept_key_get_zero_output_and_zero_gradient():
    B, H, S, D, bs = 1, 2, 200, 16, 64
    q, k, v = make_qkv(B, H, S, D, torch.float32, seed=13)
    mask = random_block_mask(nb_for(S, bs), 0.5, seed=1)
    mask[1] = False  # query block 1 keeps no key block
    kpm = torch.ones(B, S, dtype=torch.bool)
    kpm[:, 192:] = False
    mask[2] = False
    mask[2, 3] = True  # query block 2 keeps only key block 3, all of it padding
    mask[:, 1] = False  # key block 1 is kept by no query block: its keys get zero dK, dV
    out, (dq, dk, dv), _ = ours(q, k, v, mask, bs, kpm)
    assert out[:, :, 64:192].abs().max() == 0
    assert dq[:, :, 64:192].abs().max() == 0, "rows with no kept key must get zero dQ"
    assert dk[:, :, 64:128].abs().max() == 0 and dv[:, :, 64:128].abs().max() == 0
    assert dk[:, :, 192:].abs().max() == 0 and dv[:, :, 192:].abs().max() == 0, \
        "padded keys must get zero dK, dV"
    assert dq.abs().max() > 0 and dk.abs().max() > 0
    check_grads(q, k, v, mask, bs, kpm=kpm, tol=TOL[torch.float32])


@pytest.mark.parametrize("per_head,padded,fast", [(False, False, False), (True, True, True),
                                                  (False, True, True)])
def test_gradcheck_float64(per_head, padded, fast):
    # full Jacobians on the smallest case (2 query blocks, odd S); fast mode (random
    # projections of the Jacobian) on larger ones with per-head masks and key padding
    B, H, S, D, bs = (1, 1, 70, 1, 64) if not fast else (2, 2, 150, 8, 64)
    q, k, v = (t.requires_grad_(True) for t in make_qkv(B, H, S, D, torch.float64, seed=14))
    mask = random_block_mask(nb_for(S, bs), 0.5, seed=15, heads=H if per_head else None)
    kpm = random_padding(B, S, seed=16) if padded else None

    def f(q, k, v):
        return block_sparse_attention(q, k, v, mask, block_size=bs, key_padding_mask=kpm,
                                      backend="pytorch")

    assert torch.autograd.gradcheck(f, (q, k, v), eps=1e-6, atol=1e-8, rtol=1e-6,
                                    fast_mode=fast)


def test_all_kept_mask_with_grad_matches_sdpa():
    # backend="auto" sends an all-kept mask to SDPA without grad; with grad it stays sparse
    B, H, S, D, bs = 2, 2, 190, 16, 64
    q, k, v = make_qkv(B, H, S, D, torch.float64, seed=17)
    mask = torch.ones(nb_for(S, bs), nb_for(S, bs), dtype=torch.bool)
    out, grads, g = ours(q, k, v, mask, bs, backend="auto")
    qr, kr, vr = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    want = torch.nn.functional.scaled_dot_product_attention(qr, kr, vr)
    wgrads = torch.autograd.grad(want, (qr, kr, vr), g)
    for a, b in zip((out, *grads), (want, *wgrads)):
        assert rel(a, b) < 1e-12


def test_op_called_without_lse_still_differentiates():
    # the op kept no LSE (need_lse=False, e.g. called directly): the backward recomputes it
    op = getattr(torch.ops.radial_attention, OP_NAME.split("::")[1]).default
    B, H, S, D, bs = 1, 2, 140, 8, 64
    q, k, v = (t.requires_grad_(True) for t in make_qkv(B, H, S, D, torch.float64, seed=18))
    mask = random_block_mask(nb_for(S, bs), 0.5, seed=19)
    from radial_core.csr import block_csr
    from radial_core.dispatch import decide

    csr = block_csr(mask, bs)
    plan = decide(q, k, v, block_size=bs, backend="pytorch", need_grad=True).encode()
    out, lse = op(q, k, v, csr.row_start, csr.row_len, csr.col_idx, csr.row_order, None, None,
                  None, None, csr.nb, csr.mask_heads, bs, 0.3, plan, False)
    assert lse.numel() == 0
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), g)
    _, rgrads = reference_grads(q, k, v, mask, bs, None, 0.3, g)
    for a, b in zip(grads, rgrads):
        assert rel(a, b) < 1e-12


def test_fp8_without_the_kernel_has_exact_gradients(caplog):
    q, k, v = make_qkv(1, 2, 200, 16, torch.float32, seed=20)
    mask = random_block_mask(nb_for(200, 64), 0.5, seed=21)
    with caplog.at_level("WARNING"):
        check_grads(q, k, v, mask, 64, backend="auto", precision="int8-qk",
                    tol=TOL[torch.float32])


def test_supports_backward_names_the_backward_that_runs():
    q = torch.zeros(1, 1, 8, 8)
    assert supports_backward(q) == (True, "pytorch")
    assert supports_backward(q, "pytorch") == (True, "pytorch")


def test_autograd_saves_no_attention_matrix():
    # what autograd keeps between forward and backward: q, k, v, out, the LSE, the mask's CSR
    # (kept blocks + 3 per block row) and the key padding, each at most B*H*S*D elements
    # (linear in S), never anything of S x S
    B, H, S, D, bs = 2, 2, 640, 16, 64
    q, k, v = (t.requires_grad_(True) for t in make_qkv(B, H, S, D, torch.float32, seed=22))
    mask = random_block_mask(nb_for(S, bs), 0.9, seed=23)
    kpm = random_padding(B, S, seed=24)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = block_sparse_attention(q, k, v, mask, block_size=bs, key_padding_mask=kpm,
                                     backend="pytorch")
    assert sizes, "autograd saved nothing: is the op differentiable at all?"
    assert max(sizes) <= B * H * S * D, sizes
    csr_size = int(mask.sum()) + 3 * mask.shape[-1]
    assert sum(sizes) <= 4 * B * H * S * D + B * H * S + csr_size + kpm.numel(), sizes
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().max() > 0


@pytest.mark.parametrize("reentrant", [False, True])
def test_gradient_checkpointing_recomputes_in_backward(reentrant):
    block, x = attention_model(2, 300, 2, 16, 64, seed=25, dtype=torch.float64)
    x.requires_grad_(True)
    block(x).square().sum().backward()
    want = [p.grad.clone() for p in block.parameters()] + [x.grad.clone()]
    block.zero_grad()
    x.grad = None
    calls = []
    orig = block.forward

    def counted(inp):
        calls.append(torch.is_grad_enabled())
        return orig(inp)

    y = torch.utils.checkpoint.checkpoint(counted, x, use_reentrant=reentrant)
    y.square().sum().backward()
    assert len(calls) == 2, f"checkpointing should run the block twice, ran it {len(calls)}"
    got = [p.grad for p in block.parameters()] + [x.grad]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


# ---- the Triton backward under Triton's CPU interpreter (child process) --------------------

# name: (B, H, S, D, block_size, dtype, layout, mask kind, key padding, scale, config)
_SPLIT = {"dq": dict(BLOCK_M=64, BLOCK_N=32, num_warps=4, num_stages=1),
          "dkdv": dict(BLOCK_M=32, BLOCK_N=64, num_warps=4, num_stages=1)}
# both passes load the tiles they walk through tensor descriptors (config["dq"/"dkdv"]["USE_TMA"])
_TMA = {part: dict(c, USE_TMA=True) for part, c in _SPLIT.items()}
INTERPRET_CASES = {
    "fp32_odd_len_b2_bs64": (2, 2, 300, 32, 64, "float32", "bhsd", "random", False, None, None),
    "fp16_bshd_split_tiles_padding_bs128": (2, 2, 333, 32, 128, "float16", "bshd", "random",
                                            True, None, _SPLIT),
    "fp32_per_head_empty_rows_head_dim_48": (1, 3, 250, 48, 64, "float32", "bhsd",
                                             "per_head_empty", True, 0.3, None),
    "fp16_even_length_scale": (1, 2, 256, 16, 64, "float16", "bshd", "random", False, 0.2,
                               None),
    "fp32_broadcast_grad_out": (1, 2, 200, 16, 64, "float32", "bhsd", "random", True, None,
                                None),
    "fp32_descriptor_loads_padding_bs128": (2, 2, 333, 32, 128, "float32", "bshd", "random",
                                            True, None, _TMA),
    "fp16_descriptor_loads_per_head_empty_head_dim_48": (1, 3, 250, 48, 64, "float16", "bhsd",
                                                         "per_head_empty", True, None, _TMA),
}


def _backward_config(config, D, dtype, bs):
    """The interpreter's launch: the table's row for no GPU, or ``config``'s passes."""
    from radial_core.dispatch import BackwardConfig, PassConfig, backward_config

    table = backward_config(D, dtype, bs, (0, 0))
    if config is None:
        return table

    def one(c):
        return PassConfig(c["BLOCK_M"], c["BLOCK_N"], c["num_warps"], c["num_stages"],
                          bool(c.get("USE_TMA", False)))

    return BackwardConfig(one(config["dq"]), one(config["dkdv"]), table.block_d)


def _interpret_case(name, spec):
    from radial_core import triton_kernel
    from radial_core.csr import block_csr
    from radial_core.dispatch import triton_config
    from radial_core.triton_backward import triton_block_sparse_attention_backward

    B, H, S, D, bs, dtype, layout, kind, padded, scale, config = spec
    dtype = getattr(torch, dtype)
    q, k, v = make_qkv(B, H, S, D, dtype, layout=layout, seed=len(name))
    nb = nb_for(S, bs)
    kpm = random_padding(B, S, seed=len(name) + 1) if padded else None
    if kind == "per_head_empty":
        mask = random_block_mask(nb, 0.5, seed=3, heads=H)
        mask[0, 1] = False  # head 0: query block 1 keeps nothing
        mask[1, :, 2] = False  # head 1: key block 2 is kept by no query block
        kpm[:, 128:192] = False
        mask[2, 3] = False
        mask[2, 3, 2] = True  # head 2: query block 3 keeps only padded keys
    else:
        mask = random_block_mask(nb, 0.4, seed=len(name))
    sc = scale if scale is not None else 1.0 / D ** 0.5
    csr = block_csr(mask, bs, "cpu", key_side=True)
    out, lse = triton_kernel.triton_block_sparse_attention(
        q, k, v, csr, triton_config(D, dtype, bs, (0, 0)), key_padding_mask=kpm, scale=sc,
        return_lse=True)
    if name == "fp32_broadcast_grad_out":
        g = torch.ones((), dtype=dtype).expand(out.shape)  # what out.sum().backward() passes
    else:
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    grads = triton_block_sparse_attention_backward(q, k, v, out, lse, g, csr, csr.key,
                                                   _backward_config(config, D, dtype, bs),
                                                   key_padding_mask=kpm, scale=sc)
    _, rgrads = reference_grads(q, k, v, mask, bs, kpm, sc, g)
    tol = 1e-5 if dtype == torch.float32 else 5e-3
    errs = {n: rel(a, b) for n, a, b in zip(("dq", "dk", "dv"), grads, rgrads)}
    for n, gr in zip(("dq", "dk", "dv"), grads):
        assert gr.shape == q.shape and gr.dtype == dtype, (n, gr.shape, gr.dtype)
    bad = {n: e for n, e in errs.items() if not e <= tol}
    assert not bad, f"relative errors above {tol:.0e}: {bad}"
    if kind == "per_head_empty":
        dq, dk, dv = grads
        assert dq[:, 0, 64:128].abs().max() == 0, "a row with no kept key must get zero dQ"
        assert dq[:, 2, 192:250].abs().max() == 0, "rows whose keys are all padding: zero dQ"
        assert dk[:, 1, 128:192].abs().max() == 0 and dv[:, 1, 128:192].abs().max() == 0
    return ", ".join(f"{n} {e:.1e}" for n, e in errs.items())


def _interpret_child() -> int:
    import triton

    major, minor = (int(x) for x in triton.__version__.split(".")[:2])
    if (major, minor) < (3, 7):
        report_unsupported(
            f"triton {triton.__version__}'s interpreter cannot run a loop bounded by a loaded "
            f"value (the kernels' loops are bounded by loaded CSR row lengths); Triton 3.7+ "
            f"interprets it, the GPU tests cover the kernels")
        return 0

    report_cases(INTERPRET_CASES, _interpret_case)
    return 0


@pytest.fixture(scope="module")
def interpreted():
    return interpreter_results(Path(__file__).resolve(), "--interpret", timeout=1500)


@pytest.mark.parametrize("name", list(INTERPRET_CASES))
def test_triton_backward_interpreted(interpreted, name):
    ok, msg = interpreted[name]
    if ok is None:
        pytest.skip(msg)
    assert ok, msg


if __name__ == "__main__" and "--interpret" in sys.argv:
    sys.exit(_interpret_child())


# ---- the Triton backward on a GPU ----------------------------------------------------------

GPU_FLOOR = {torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float32: 2e-5}


def sdpa_grad_error(q, k, v, mask, bs, kpm, scale, g, rgrads):
    """Relative errors of PyTorch SDPA's own backward (same dtype, token mask) vs float64."""
    S = q.shape[2]
    from radial_core.reference import expand_block_mask

    allowed = expand_block_mask(mask.to(q.device), bs, S)
    allowed = allowed[None, None] if allowed.dim() == 2 else allowed[None]
    if kpm is not None:
        allowed = allowed & kpm.to(q.device)[:, None, None, :]
    qs, ks, vs = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, attn_mask=allowed,
                                                           scale=scale)
    grads = torch.autograd.grad(out, (qs, ks, vs), g)
    return [rel(a, b) for a, b in zip(grads, rgrads)]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,layout,per_head,padded,block_size", [
    (torch.float16, "bhsd", False, False, 64),
    (torch.float16, "bshd", True, True, 128),
    (torch.bfloat16, "bshd", False, False, 128),
    (torch.bfloat16, "bhsd", True, True, 64),
    (torch.float32, "bshd", True, True, 128),
])
def test_gpu_triton_backward_matches_reference(dtype, layout, per_head, padded, block_size):
    require_cuda()
    B, H, S, D = 2, 3, 1000 + block_size // 2 + 3, 128 if dtype != torch.float32 else 64
    q, k, v = make_qkv(B, H, S, D, dtype, device="cuda", layout=layout, seed=30)
    nb = nb_for(S, block_size)
    mask = random_block_mask(nb, 0.35, seed=31, heads=H if per_head else None)
    kpm = random_padding(B, S, seed=32).cuda() if padded else None
    assert supports_backward(q, "auto") == (True, "triton")
    out, grads, g = ours(q, k, v, mask, block_size, kpm, backend="triton")
    _, rgrads = reference_grads(q, k, v, mask.cuda(), block_size, kpm, None, g)
    base = sdpa_grad_error(q, k, v, mask, block_size, kpm, 1.0 / D ** 0.5, g, rgrads)
    errs = [rel(a, b) for a, b in zip(grads, rgrads)]
    print(f"[gpu-bwd-err] {dtype} {layout} bs{block_size} dq/dk/dv "
          + " ".join(f"{e:.2e}" for e in errs) + " (SDPA " + " ".join(f"{e:.2e}" for e in base)
          + ")")
    for n, e, b in zip(("dq", "dk", "dv"), errs, base):
        tol = 2.0 * b + GPU_FLOOR[dtype]
        assert e <= tol, f"{n}: error {e:.2e} > {tol:.2e} (SDPA's own {b:.2e})"


@pytest.mark.gpu
@pytest.mark.parametrize("tma", [False, True])
def test_gpu_backward_tile_loads(tma):
    # both passes' tile loads by pointers or through tensor descriptors (tma): the same
    # gradients, odd S, key padding, per-head masks
    require_cuda()
    from radial_core.csr import block_csr
    from radial_core.dispatch import backward_config, capability, triton_config
    from radial_core.triton_backward import triton_block_sparse_attention_backward
    from radial_core.triton_kernel import triton_block_sparse_attention

    B, H, S, D, bs = 2, 3, 1500 + 77, 128, 128
    q, k, v = make_qkv(B, H, S, D, torch.bfloat16, device="cuda", layout="bshd", seed=40)
    mask = random_block_mask(nb_for(S, bs), 0.4, seed=41, heads=H)
    kpm = random_padding(B, S, seed=42).cuda()
    csr = block_csr(mask, bs, "cuda", key_side=True)
    cap = capability(q.device)
    out, lse = triton_block_sparse_attention(q, k, v, csr, triton_config(D, q.dtype, bs, cap),
                                             key_padding_mask=kpm, scale=D ** -0.5,
                                             return_lse=True)
    g = torch.randn_like(out)
    cfg = backward_config(D, q.dtype, bs, cap, dq_tma=tma, dkdv_tma=tma)
    grads = triton_block_sparse_attention_backward(q, k, v, out, lse, g, csr, csr.key, cfg,
                                                   key_padding_mask=kpm, scale=D ** -0.5)
    _, rgrads = reference_grads(q, k, v, mask.cuda(), bs, kpm, None, g)
    errs = [rel(a, b) for a, b in zip(grads, rgrads)]
    print(f"[gpu-bwd-err] tma={tma} dq/dk/dv "
          + " ".join(f"{e:.2e}" for e in errs))
    assert max(errs) < 4e-3, errs


def chunked_reference_grads(q, k, v, g, mask, bs, scale, rows, keys, chunk=4096):
    """float32 reference dQ[rows], dK[keys], dV[keys] at long S, never S x S at once.

    Pass 1 over query chunks: each row's LSE and ``delta = rowsum(dO * O)`` with O the
    reference output. Pass 2: dQ for ``rows`` (their full score rows) and dK, dV for ``keys``
    (their score columns over all queries).
    """
    B, H, S, D = q.shape
    f = torch.float32
    def tok(qi, ki):  # token mask of query rows qi x keys ki (a shared [nb, nb] mask)
        return mask[qi // bs][:, ki // bs]

    lse = torch.empty(B, H, S, device=q.device)
    delta = torch.empty(B, H, S, device=q.device)
    kf, vf = k.to(f), v.to(f)
    allk = torch.arange(S, device=q.device)
    for c0 in range(0, S, chunk):
        r = torch.arange(c0, min(S, c0 + chunk), device=q.device)
        s = (q[:, :, r].to(f) @ kf.transpose(-1, -2)) * scale
        s = s.masked_fill(~tok(r, allk), float("-inf"))
        row_lse = torch.logsumexp(s, -1)
        o = torch.softmax(s, -1) @ vf
        lse[:, :, r] = row_lse
        delta[:, :, r] = (o * g[:, :, r].to(f)).sum(-1)
    # dQ of the chosen rows
    s = (q[:, :, rows].to(f) @ kf.transpose(-1, -2)) * scale
    p = torch.exp(s.masked_fill(~tok(rows, allk), float("-inf")) - lse[:, :, rows, None])
    ds = p * (g[:, :, rows].to(f) @ vf.transpose(-1, -2) - delta[:, :, rows, None])
    dq = (ds @ kf) * scale
    # dK, dV of the chosen keys
    qf, gf = q.to(f), g.to(f)
    st = (qf @ kf[:, :, keys].transpose(-1, -2)) * scale  # [B, H, S, K]
    p = torch.exp(st.masked_fill(~tok(allk, keys), float("-inf")) - lse[..., None])
    dv = p.transpose(-1, -2) @ gf
    ds = p * (gf @ vf[:, :, keys].transpose(-1, -2) - delta[..., None])
    dk = (ds.transpose(-1, -2) @ qf) * scale
    return dq, dk, dv


@pytest.mark.gpu
@pytest.mark.parametrize("frames,tpf", [(21, 1560), (21, 3600)])  # S = 32 760 and 75 600
def test_gpu_triton_backward_long_wan_shapes(frames, tpf):
    require_cuda()
    S, H, D, bs = frames * tpf, 2, 128, 128
    q, k, v = make_qkv(1, H, S, D, torch.bfloat16, device="cuda", layout="bshd", seed=33)
    mask = radial_block_mask(frames, tpf, block_size=bs, decay_factor=0.2, model="wan")
    out, (dq, dk, dv), g = ours(q, k, v, mask, bs, backend="triton", seed=34)
    gen = torch.Generator().manual_seed(35)
    rows = torch.cat([torch.randint(0, S, (192,), generator=gen), torch.arange(S - 64, S)])
    keys = torch.cat([torch.randint(0, S, (192,), generator=gen), torch.arange(S - 64, S)])
    rows, keys = rows.unique().cuda(), keys.unique().cuda()
    rq, rk, rv = chunked_reference_grads(q, k, v, g, mask.cuda(), bs, 1.0 / D ** 0.5, rows,
                                         keys)
    errs = [rel(dq[:, :, rows], rq), rel(dk[:, :, keys], rk), rel(dv[:, :, keys], rv)]
    print(f"[gpu-bwd-err] wan S={S} bf16 dq/dk/dv " + " ".join(f"{e:.2e}" for e in errs))
    assert max(errs) < 2e-2, errs


@pytest.mark.gpu
def test_gpu_fp8_forward_exact_backward():
    require_cuda()
    from radial_core.dispatch import decide

    B, H, S, D, bs = 1, 2, 2000, 128, 128
    q, k, v = make_qkv(B, H, S, D, torch.bfloat16, device="cuda", seed=36)
    decision = decide(q, k, v, block_size=bs, precision="int8-qk")
    if not decision.int8:
        pytest.skip(f"FP8 kernel not available here: {decision.why_exact or decision.why_not_triton}")
    mask = random_block_mask(nb_for(S, bs), 0.4, seed=37)
    out8, grads8, g = ours(q, k, v, mask, bs, backend="triton", precision="int8-qk")
    _, grads, _ = ours(q, k, v, mask, bs, backend="triton", grad_out=g)
    for a, b in zip(grads8, grads):
        assert torch.equal(a, b), "an FP8 forward's backward must be the exact one"


@pytest.mark.gpu
def test_gpu_compiled_training_step_inductor():
    require_cuda()
    block, x = attention_model(2, 1000, 4, 64, 128, seed=38, backend="triton", device="cuda",
                               dtype=torch.float16)
    block(x).float().square().mean().backward()
    want = {n: p.grad.clone() for n, p in block.named_parameters()}
    block.zero_grad()
    import torch._dynamo as dynamo
    from torch._dynamo.utils import counters

    dynamo.reset()
    counters.clear()
    torch.compile(block, fullgraph=True)(x).float().square().mean().backward()
    assert sum(counters["graph_break"].values()) == 0
    for n, p in block.named_parameters():
        e = rel(p.grad, want[n])
        assert e < 5e-3, f"{n}: compiled gradient differs from eager by {e:.2e}"
