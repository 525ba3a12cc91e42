"""block_sparse_attention as the torch.library custom op: torch.compile keeps one graph.

CPU: a small module (projections around the attention) compiled with ``fullgraph=True``
(which raises on any graph break) through AOT autograd's fake-tensor tracing, and the dynamo
counters showing one graph and no break; the compiled output equals eager, for inference and
for a training step (forward + backward through the op's registered autograd: the gradients
equal eager's). GPU: the same with Inductor on the Triton backend (skips with a reason without
CUDA).
"""

from __future__ import annotations

import pytest
import torch

from attention_helpers import attention_model, make_qkv, nb_for, random_block_mask
from conftest import require_cuda
from radial_core.attention import OP_NAME
from radial_core.csr import block_csr
from radial_core.dispatch import decide


def _op_args(q, mask, block_size, need_lse):
    """The op's arguments after q, k, v (and, for the backward, out, lse, grad_out): the CSR
    tensors of ``mask`` on the CPU, no key side, no key padding, the integers, a PyTorch plan."""
    csr = block_csr(mask, block_size)
    plan = decide(q, q, q, block_size=block_size, backend="pytorch", need_grad=need_lse).encode()
    tensors = [csr.row_start, csr.row_len, csr.col_idx, csr.row_order, None, None, None, None]
    return tensors, [csr.nb, csr.mask_heads, block_size, 0.25, plan]


def _compile_and_count(model, x, backend):
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    out = compiled(x)
    breaks = sum(counters["graph_break"].values())
    graphs = counters["stats"]["unique_graphs"]
    return out, breaks, graphs


def test_op_is_registered_with_a_fake():
    ns, name = OP_NAME.split("::")
    op = getattr(getattr(torch.ops, ns), name).default
    q, k, v = make_qkv(2, 3, 150, 16, torch.float32, layout="bshd")
    mask = random_block_mask(nb_for(150, 64), 0.5, seed=1)
    from torch._subclasses.fake_tensor import FakeTensorMode

    for need_lse in (False, True):
        tensors, ints = _op_args(q, mask, 64, need_lse)
        with FakeTensorMode() as mode:
            fq, fk, fv, *ft = (None if t is None else mode.from_tensor(t) for t in (q, k, v, *tensors))
            fake = op(fq, fk, fv, *ft, *ints, need_lse)
        real = op(q, k, v, *tensors, *ints, need_lse)
        for f, r in zip(fake, real):
            assert f.shape == r.shape and f.stride() == r.stride()
            assert f.dtype == r.dtype
        assert real[1].shape == ((2, 3, 150) if need_lse else (0,))


def test_backward_op_is_registered_with_a_fake():
    from radial_core.attention import BWD_OP_NAME

    ns, name = BWD_OP_NAME.split("::")
    op = getattr(getattr(torch.ops, ns), name).default
    q, k, v = make_qkv(2, 3, 150, 16, torch.float32, layout="bshd")
    mask = random_block_mask(nb_for(150, 64), 0.5, seed=1)
    fwd = getattr(getattr(torch.ops, ns), OP_NAME.split("::")[1]).default
    tensors, ints = _op_args(q, mask, 64, True)
    out, lse = fwd(q, k, v, *tensors, *ints, True)
    g = torch.randn_like(out)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        args = [None if t is None else mode.from_tensor(t) for t in (q, k, v, out, lse, g, *tensors)]
        fake = op(*args, *ints)
    real = op(q, k, v, out, lse, g, *tensors, *ints)
    for f, r in zip(fake, real):
        assert f.shape == r.shape and f.stride() == r.stride() and f.dtype == r.dtype


@pytest.mark.parametrize("padded", [False, True])
def test_compiled_module_keeps_one_graph_cpu(padded):
    model, x = attention_model(2, 300, 2, 32, 64, seed=2, padded=padded)
    model.eval()
    with torch.no_grad():
        want = model(x)
        out, breaks, graphs = _compile_and_count(model, x, "aot_eager")
    assert breaks == 0, "graph break around block_sparse_attention"
    assert graphs == 1
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("padded", [False, True])
def test_compiled_training_step_keeps_one_graph_cpu(padded):
    # forward + backward compiled with fullgraph=True: the op and its backward op are single
    # nodes (register_autograd), no graph break, gradients equal eager's
    model, x = attention_model(2, 300, 2, 32, 64, seed=4, padded=padded)
    model(x).square().mean().backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    import torch._dynamo as dynamo
    from torch._dynamo.utils import counters

    dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    compiled(x).square().mean().backward()
    assert sum(counters["graph_break"].values()) == 0, "graph break around the op"
    assert counters["stats"]["unique_graphs"] == 1
    for n, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reached {n} through the compiled op"
        torch.testing.assert_close(p.grad, want[n], rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
def test_compiled_module_keeps_one_graph_gpu():
    require_cuda()
    model, x = attention_model(2, 1000, 4, 64, 128, seed=5, backend="triton", device="cuda",
                               dtype=torch.float16)
    model.eval()
    with torch.no_grad():
        want = model(x)
        out, breaks, graphs = _compile_and_count(model, x, "inductor")
    assert breaks == 0 and graphs == 1
    err = ((out.float() - want.float()).norm() / want.float().norm()).item()
    assert err < 2e-3, err  # same kernel; only Inductor's fused projections differ in rounding


def test_dispatch_traces_into_one_graph_cpu():
    """``dispatch`` runs in a compiled caller's trace: its Triton branch (Hopper's Gluon choice,
    the stride checks, the backward's row, the machine's facts) traces with ``fullgraph=True``
    on any machine, as it must on the GPU (test_compiled_module_keeps_one_graph_gpu)."""
    pytest.importorskip("triton", reason="Triton is not installed in this environment")
    import torch._dynamo as dynamo
    from torch._dynamo.utils import counters

    from radial_core import dispatch

    def f(q, k, v):
        kernel, cfg, why = dispatch._forward(q, k, v, 128, (9, 0), False)
        bwd = dispatch.backward_config(q.shape[-1], q.dtype, 128, (9, 0),
                                       dq_tma=None if dispatch.tma_ok(k) else False)
        ok, reason = dispatch.can_use_triton(q)
        d = dispatch.Decision("triton", kernel, False, cfg, kernel, cfg, bwd, True, why)
        return q * len(d.encode()) + len(reason)

    q, k, v = make_qkv(1, 2, 256, 64, torch.bfloat16, layout="bshd")
    dynamo.reset()
    counters.clear()
    got = torch.compile(f, fullgraph=True, backend="eager")(q, k, v)
    assert sum(counters["graph_break"].values()) == 0
    assert torch.equal(got, f(q, k, v))
