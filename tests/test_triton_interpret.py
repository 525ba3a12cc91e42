"""The Triton kernel on the CPU through Triton's interpreter, against the float64 reference.

``TRITON_INTERPRET=1`` must be set before triton is imported, so the kernel runs in a child
process (this file run as a script); pytest runs it once and checks each case's verdict.
Only float16 and float32: bfloat16 ``tl.dot`` is wrong in the interpreter (triton 3.7-3.8),
so bfloat16 is covered by the GPU tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# name: (B, H, S, D, block_size, dtype, layout, mask kind, key padding, config, ordered)
CASES = {
    "fp32_odd_len_b2_bs64": (2, 2, 300, 64, 64, "float32", "bhsd", "random", False, None, False),
    "fp16_odd_len_b2_bs128": (2, 2, 333, 64, 128, "float16", "bhsd", "random", False, None, False),
    "fp16_bshd_view": (2, 2, 250, 32, 64, "float16", "bshd", "random", False, None, False),
    "fp32_bshd_view_ordered": (1, 3, 200, 32, 64, "float32", "bshd", "random", False, None, True),
    "fp16_key_padding": (2, 2, 290, 32, 64, "float16", "bhsd", "random", True, None, False),
    "fp32_key_padding_bs128": (2, 1, 256, 32, 128, "float32", "bshd", "random", True, None, False),
    "fp16_radial_wan": (1, 2, 4 * 72, 32, 64, "float16", "bshd", "radial_wan", False, None, True),
    "fp32_radial_hunyuan_text": (2, 1, 3 * 100 + 77, 32, 64, "float32", "bhsd", "radial_hunyuan",
                                 True, None, False),
    "fp16_head_dim_48_padded": (1, 2, 200, 48, 64, "float16", "bhsd", "random", False, None, False),
    "fp32_split_query_and_key_tiles": (1, 2, 300, 32, 128, "float32", "bhsd", "random", True,
                                       {"BLOCK_M": 64, "BLOCK_N": 32, "num_warps": 4,
                                        "num_stages": 2, "BLOCK_D": 32}, False),
    "fp32_descriptor_loads_odd_len": (2, 2, 300, 64, 64, "float32", "bshd", "random", True,
                                      {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4,
                                       "num_stages": 2, "BLOCK_D": 64, "USE_TMA": True}, False),
    "fp16_descriptor_loads_head_dim_48": (1, 2, 250, 48, 128, "float16", "bhsd", "random", False,
                                          {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 4,
                                           "num_stages": 2, "BLOCK_D": 64, "USE_TMA": True},
                                          False),
    "fp16_nested_loop_descriptors": (2, 1, 330, 32, 128, "float16", "bshd", "random", True,
                                     {"BLOCK_M": 64, "BLOCK_N": 32, "num_warps": 4,
                                      "num_stages": 2, "BLOCK_D": 32, "USE_TMA": True,
                                      "NESTED": True}, False),
    "fp16_lazy_rescaling": (2, 2, 330, 32, 64, "float16", "bshd", "random", False,
                            {"BLOCK_M": 64, "BLOCK_N": 32, "num_warps": 4, "num_stages": 2,
                             "BLOCK_D": 32, "LAZY": True}, False),
    "fp32_lazy_rescaling_padding_descriptors": (1, 2, 300, 64, 128, "float32", "bhsd", "random",
                                                True, {"BLOCK_M": 64, "BLOCK_N": 64,
                                                       "num_warps": 4, "num_stages": 2,
                                                       "BLOCK_D": 64, "LAZY": True,
                                                       "USE_TMA": True}, False),
    "fp16_per_head_mask": (2, 3, 200, 32, 64, "float16", "bhsd", "per_head", False, None, True),
    "fp16_empty_rows": (1, 2, 200, 16, 64, "float16", "bhsd", "empty_rows", True, None, False),
    "fp32_all_kept_equals_sdpa": (2, 2, 190, 64, 64, "float32", "bhsd", "all", False, None, False),
}


def _run_case(name, spec):
    import torch
    import torch.nn.functional as F

    from attention_helpers import (
        check_against_reference, make_qkv, nb_for, random_block_mask, random_padding, rel_err,
    )
    from radial_core.csr import block_mask_to_csr
    from radial_core.mask import radial_block_mask
    from radial_core.triton_kernel import triton_block_sparse_attention

    B, H, S, D, bs, dtype, layout, kind, padded, config, ordered = spec
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
    csr = block_mask_to_csr(mask, "cpu")
    out = triton_block_sparse_attention(q, k, v, csr, bs, key_padding_mask=kpm, config=config,
                                        ordered=ordered)
    err, base = check_against_reference(out, q, k, v, mask, bs, key_padding_mask=kpm)
    if kind == "empty_rows":
        assert out[:, :, 64:192].abs().max() == 0, "rows with no valid key must be zero"
    if kind == "all":
        sdpa = F.scaled_dot_product_attention(q, k, v)
        e = rel_err(out, sdpa)
        assert e < 1e-5, f"all-kept mask differs from SDPA by {e:.2e}"
    return f"error {err:.2e} (SDPA {base:.2e})"


def _child() -> int:
    sys.path[:0] = [str(ROOT), str(HERE)]
    results = {}
    for name, spec in CASES.items():
        try:
            results[name] = [True, _run_case(name, spec)]
        except Exception as exc:  # report every case, not just the first failure
            results[name] = [False, f"{type(exc).__name__}: {exc}"]
    print("RESULTS " + json.dumps(results))
    return 0


@pytest.fixture(scope="module")
def interpreter_results():
    pytest.importorskip("triton", reason="Triton is not installed in this environment")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, (
        f"interpreter child failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n"
        f"{proc.stderr[-3000:]}"
    )
    return json.loads(lines[-1][len("RESULTS "):])


@pytest.mark.parametrize("name", list(CASES))
def test_interpreter_case(interpreter_results, name):
    ok, message = interpreter_results[name]
    assert ok, f"{name}: {message}"


if __name__ == "__main__" and "--child" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")
    sys.exit(_child())
