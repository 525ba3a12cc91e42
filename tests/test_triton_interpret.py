"""The Triton kernel on the CPU through Triton's interpreter, against the float64 reference.

``TRITON_INTERPRET=1`` must be set before triton is imported, so the kernel runs in a child
process (this file run as a script); pytest runs it once and checks each case's verdict.
Only float16 and float32: bfloat16 ``tl.dot`` is wrong in the interpreter (triton 3.7-3.8),
so bfloat16 is covered by the GPU tests.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

# name: (B, H, S, D, block_size, dtype, layout, mask kind, key padding, config)
CASES = {
    "fp32_odd_len_b2_bs64": (2, 2, 300, 64, 64, "float32", "bhsd", "random", False, None),
    "fp16_odd_len_b2_bs128": (2, 2, 333, 64, 128, "float16", "bhsd", "random", False, None),
    "fp16_bshd_view": (2, 2, 250, 32, 64, "float16", "bshd", "random", False, None),
    "fp32_bshd_view": (1, 3, 200, 32, 64, "float32", "bshd", "random", False, None),
    "fp16_key_padding": (2, 2, 290, 32, 64, "float16", "bhsd", "random", True, None),
    "fp32_key_padding_bs128": (2, 1, 256, 32, 128, "float32", "bshd", "random", True, None),
    "fp16_radial_wan": (1, 2, 4 * 72, 32, 64, "float16", "bshd", "radial_wan", False, None),
    "fp32_radial_hunyuan_text": (2, 1, 3 * 100 + 77, 32, 64, "float32", "bhsd", "radial_hunyuan",
                                 True, None),
    "fp16_head_dim_48_padded": (1, 2, 200, 48, 64, "float16", "bhsd", "random", False, None),
    "fp32_split_query_and_key_tiles": (1, 2, 300, 32, 128, "float32", "bhsd", "random", True,
                                       {"BLOCK_M": 64, "BLOCK_N": 32, "num_warps": 4,
                                        "num_stages": 2, "BLOCK_D": 32}),
    "fp32_descriptor_loads_odd_len": (2, 2, 300, 64, 64, "float32", "bshd", "random", True,
                                      {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4,
                                       "num_stages": 2, "BLOCK_D": 64, "USE_TMA": True}),
    "fp16_descriptor_loads_head_dim_48": (1, 2, 250, 48, 128, "float16", "bhsd", "random", False,
                                          {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 4,
                                           "num_stages": 2, "BLOCK_D": 64, "USE_TMA": True}),
    "fp16_descriptors_split_tiles_padding": (2, 1, 330, 32, 128, "float16", "bshd", "random",
                                             True, {"BLOCK_M": 64, "BLOCK_N": 32,
                                                    "num_warps": 4, "num_stages": 2,
                                                    "BLOCK_D": 32, "USE_TMA": True}),
    "fp16_per_head_mask": (2, 3, 200, 32, 64, "float16", "bhsd", "per_head", False, None),
    "fp16_empty_rows": (1, 2, 200, 16, 64, "float16", "bhsd", "empty_rows", True, None),
    "fp32_all_kept_equals_sdpa": (2, 2, 190, 64, 64, "float32", "bhsd", "all", False, None),
}

# cases that also ask for the log-sum-exp (return_lse=True; the others check the default path)
LSE_CASES = {
    "fp32_odd_len_b2_bs64", "fp16_odd_len_b2_bs128", "fp16_key_padding", "fp16_per_head_mask",
    "fp16_empty_rows", "fp32_split_query_and_key_tiles", "fp16_descriptors_split_tiles_padding",
    "fp32_radial_hunyuan_text",
}


def reference_lse(q, k, mask, bs, kpm=None):
    """float64 ``torch.logsumexp`` of the masked scaled scores, +inf where no key is kept."""
    import math

    import torch

    from radial_core.reference import expand_block_mask

    S, D = q.shape[2], q.shape[3]
    allowed = expand_block_mask(mask.bool(), bs, S)
    allowed = allowed[None, None] if allowed.dim() == 2 else allowed[None]
    if kpm is not None:
        allowed = allowed & kpm[:, None, None, :]
    s = torch.matmul(q.double(), k.double().transpose(-1, -2)) / math.sqrt(D)
    lse = torch.logsumexp(s.masked_fill(~allowed, float("-inf")), dim=-1)
    return torch.where(torch.isneginf(lse), torch.full_like(lse, float("inf")), lse)


def check_lse(lse, q, k, mask, bs, kpm=None):
    """Assert shape, dtype, layout and values of the kernel's LSE; returns the max error."""
    import torch

    B, H, S, _ = q.shape
    assert lse.shape == (B, H, S) and lse.dtype == torch.float32 and lse.is_contiguous()
    ref = reference_lse(q.cpu(), k.cpu(), mask.cpu(), bs, None if kpm is None else kpm.cpu())
    inf = torch.isinf(ref)
    assert torch.equal(torch.isinf(lse.cpu()), inf), "LSE must be +inf exactly on empty rows"
    assert (lse.cpu()[inf] > 0).all(), "empty rows must be +inf, not -inf"
    err = (lse.cpu().double()[~inf] - ref[~inf]).abs().max().item()
    # fp16/fp32 scores are exact products of the inputs, accumulated in float32: the LSE
    # differs from float64 only by float32 rounding of the sums (|lse| ~ 5 here)
    assert err < 1e-4, f"LSE max abs error {err:.2e} against float64 torch.logsumexp"
    return err


def forward_config(config, D, dtype, bs, int8=False):
    """The launch: the table's row for no GPU (``dispatch.triton_config``), or ``config``'s
    tiles (``BLOCK_M``, ``BLOCK_N``, ``BLOCK_D``, warps, stages, ``USE_TMA``)."""
    from radial_core.dispatch import TritonConfig, triton_config

    if config is None:
        return triton_config(D, dtype, bs, (0, 0), int8=int8)
    return TritonConfig(config["BLOCK_M"], config["BLOCK_N"], config["BLOCK_D"],
                        config["num_warps"], config["num_stages"], bool(config.get("USE_TMA")))


def _run_case(name, spec):
    import torch
    import torch.nn.functional as F

    from attention_helpers import (
        check_against_reference, make_qkv, nb_for, random_block_mask, random_padding, rel_err,
    )
    from radial_core.csr import block_csr
    from radial_core.mask import radial_block_mask
    from radial_core.triton_kernel import triton_block_sparse_attention

    B, H, S, D, bs, dtype, layout, kind, padded, config = spec
    dtype = getattr(torch, dtype)
    q, k, v = make_qkv(B, H, S, D, dtype, layout=layout, seed=len(name))
    nb = nb_for(S, bs)
    kpm = random_padding(B, S, seed=len(name) + 1) if padded else None
    if kind == "random":
        mask = random_block_mask(nb, 0.4, seed=len(name))
    elif kind == "per_head":
        mask = random_block_mask(nb, 0.4, seed=3, heads=H)
    elif kind == "radial_wan":
        mask = radial_block_mask(4, 72, block_size=bs, decay_factor=0.2, model="wan")
    elif kind == "radial_hunyuan":
        mask = radial_block_mask(3, 100, text_tokens=77, block_size=bs, decay_factor=0.95,
                                 model="hunyuan")
        kpm[:, :300] = True  # only text tokens are padded
    elif kind == "empty_rows":
        mask = random_block_mask(nb, 0.5, seed=1)
        mask[1] = False  # a query block with no kept key block
        kpm = torch.ones(B, S, dtype=torch.bool)
        kpm[:, 192:] = False
        mask[2] = False
        mask[2, 3] = True  # a query block whose only keys are padding
    elif kind == "all":
        mask = torch.ones(nb, nb, dtype=torch.bool)
    else:
        raise ValueError(kind)
    csr = block_csr(mask, bs)
    cfg = forward_config(config, D, dtype, bs)
    extra = ""
    if name in LSE_CASES:
        out, lse = triton_block_sparse_attention(q, k, v, csr, cfg, key_padding_mask=kpm,
                                                 scale=D ** -0.5, return_lse=True)
        extra = f", LSE max error {check_lse(lse, q, k, mask, bs, kpm):.1e}"
    else:
        out = triton_block_sparse_attention(q, k, v, csr, cfg, key_padding_mask=kpm,
                                            scale=D ** -0.5)
    err, base = check_against_reference(out, q, k, v, mask, bs, key_padding_mask=kpm)
    if kind == "empty_rows":
        assert out[:, :, 64:192].abs().max() == 0, "rows with no valid key must be zero"
    if kind == "all":
        sdpa = F.scaled_dot_product_attention(q, k, v)
        e = rel_err(out, sdpa)
        assert e < 1e-5, f"all-kept mask differs from SDPA by {e:.2e}"
    return f"error {err:.2e} (SDPA {base:.2e}){extra}"


# precision="fp8"'s int8 Q.K (16-bit P.V) in the interpreter: fp16/fp32 inputs, odd lengths,
# key padding, split tiles and descriptors; the tolerance is test_fp8_attention's derived int8
# bound
INT8_CASES = ("fp16_odd_len_b2_bs128", "fp32_key_padding_bs128", "fp16_per_head_mask",
              "fp16_descriptors_split_tiles_padding", "fp16_head_dim_48_padded")


def _run_int8_case(name, spec):
    import math

    import torch

    from attention_helpers import make_qkv, nb_for, random_block_mask, random_padding, rel_err
    from radial_core.csr import block_csr
    from radial_core.reference import dense_masked_attention
    from radial_core.triton_kernel import triton_block_sparse_attention
    from test_fp8_attention import int8_bound

    B, H, S, D, bs, dtype, layout, kind, padded, config = spec
    q, k, v = make_qkv(B, H, S, D, getattr(torch, dtype), layout=layout, seed=len(name) + 5)
    k = k + 0.5 * torch.randn(1, 1, 1, D).to(k.dtype)  # channel offsets: smoothing removes them
    heads = H if kind == "per_head" else None
    mask = random_block_mask(nb_for(S, bs), 0.4, seed=len(name), heads=heads)
    kpm = random_padding(B, S, seed=len(name) + 1) if padded else None
    cfg = forward_config(config, D, getattr(torch, dtype), bs, int8=True)
    out = triton_block_sparse_attention(q, k, v, block_csr(mask, bs), cfg, key_padding_mask=kpm,
                                        scale=D ** -0.5, int8=True)
    err = rel_err(out, dense_masked_attention(q, k, v, mask, bs, key_padding_mask=kpm))
    tol = math.hypot(int8_bound(q, k), 5e-4)
    assert err <= tol, f"int8 error {err:.3e} > derived bound {tol:.3e}"
    assert err > 3e-3, f"error {err:.3e} is the exact path's: int8 Q.K did not run"
    return f"int8 error {err:.2e} (bound {tol:.2e})"


def _probe() -> str | None:
    """None when this Triton's interpreter runs a loop bounded by a loaded value, else why not.

    Triton 3.6's interpreter turns a loaded scalar into a loop bound with ``int()`` of a
    one-element NumPy array, which NumPy 2.5 refuses ("only 0-dimensional arrays can be
    converted to Python scalars"); Triton 3.7+ squeezes the array first. The kernel's loops
    are bounded by the CSR row lengths it loads, so no kernel change can avoid this.
    """
    import numpy
    import torch
    import triton
    import triton.language as tl

    @triton.jit
    def _loop(X, O):
        n = tl.load(X)
        acc = 0.0
        for _ in range(0, n):
            acc += 1.0
        tl.store(O, acc)

    x = torch.tensor([3], dtype=torch.int32)
    o = torch.zeros(1)
    try:
        _loop[(1,)](x, o)
    except Exception as exc:  # noqa: BLE001 - the interpreter's error, reported verbatim
        return (f"triton {triton.__version__}'s interpreter cannot run a loop bounded by a "
                f"loaded value with numpy {numpy.__version__} ({type(exc).__name__}: {exc}); "
                f"the kernel's loops are bounded by loaded CSR row lengths. Triton 3.7+ "
                f"interprets it; the GPU tests cover the kernel")
    if float(o[0]) != 3.0:
        return f"triton {triton.__version__}'s interpreter ran the probe loop {o[0]} times, not 3"
    return None


def _child() -> int:
    sys.path[:0] = [str(HERE)]
    import pack_import  # the pack as ComfyUI imports it (root never on sys.path)

    pack_import.install()
    from attention_helpers import report_cases, report_unsupported

    why = _probe()
    if why is not None:
        report_unsupported(why)
        return 0
    cases = {name: (_run_case, name, spec) for name, spec in CASES.items()}
    cases.update({"int8_" + name: (_run_int8_case, name, CASES[name]) for name in INT8_CASES})
    report_cases(cases, lambda _, case: case[0](case[1], case[2]))
    return 0


@pytest.fixture(scope="module")
def interpreter_results():
    from attention_helpers import interpreter_results as run_child

    return run_child(Path(__file__).resolve(), "--child", timeout=600)


@pytest.mark.parametrize("name", list(CASES) + ["int8_" + n for n in INT8_CASES])
def test_interpreter_case(interpreter_results, name):
    ok, message = interpreter_results[name]
    assert ok, f"{name}: {message}"


if __name__ == "__main__" and "--child" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")
    sys.exit(_child())
