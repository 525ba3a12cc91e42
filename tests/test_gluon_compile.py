"""The Gluon kernel compiles for Hopper (sm_90a) on a machine without a GPU, without spills.

CI has no GPU, so without this file a change to ``radial_core/gluon_kernel.py`` would land
uncompiled. Triton compiles for a target it is told: a child process (this file run as a
script) hands Triton a CUDA driver that reports compute capability 9.0 and never touches a
device, then asks the kernel for ``warmup=True`` (compile, no launch) on CPU tensors. Each case
must produce a cubin whose SASS stores nothing to local memory (``STL``: register spills, which
cost the consumers 5-20 %, docs/perf-notes.md versions 13s and 14), read by the ``cuobjdump``
that ships with Triton. The GPU tests (tests/test_gluon_kernel.py) check the results.

Skips with a reason where Triton has no Gluon or no NVIDIA backend.
"""

from __future__ import annotations

import sys
from pathlib import Path

import compile_only
import pytest

HERE = Path(__file__).resolve().parent

# name: (dtype, D, S, int8 (False, "qk": Q.K^T, "qk+pv": both products), key padding, LSE)
CASES = {
    "bf16_d128_odd_len": ("bfloat16", 128, 1000, False, False, False),
    "fp16_d64_padding_lse": ("float16", 64, 1024, False, True, True),
    "int8_bf16_d128_odd_len_padding": ("bfloat16", 128, 1000, "qk", True, False),
    "int8_fp16_d64": ("float16", 64, 1024, "qk", False, False),
    "int8_pv8_bf16_d128_odd_len_padding": ("bfloat16", 128, 1000, "qk+pv", True, False),
    "int8_pv8_fp16_d64": ("float16", 64, 1024, "qk+pv", False, False),
}


def _child(names):
    """Compile each case for sm_90a; print one JSON verdict per case."""
    import torch

    compile_only.target(90)
    sys.path.insert(0, str(HERE))
    import pack_import

    pack_import.install()
    from radial_core import gluon_kernel as gk
    from radial_core.csr import build_csr
    from radial_core.dispatch import GLUON_STAGES  # what the pack launches

    for name in names:
        dtype, D, S, int8, kpm, lse = CASES[name]
        dt = getattr(torch, dtype)
        B, H = 2, 2
        sp = -(-S // gk.QUERY_BLOCK) * gk.QUERY_BLOCK
        nb = sp // gk.QUERY_BLOCK
        csr = build_csr(torch.ones(nb, nb, dtype=torch.bool), "cpu", gk.QUERY_BLOCK)
        v = torch.zeros(B, S, H, D, dtype=dt).transpose(1, 2)  # ComfyUI's views
        out = torch.zeros(B, S, H, D, dtype=dt).transpose(1, 2)
        pad = torch.ones(B, S, dtype=torch.int8) if kpm else None
        rec = {"case": name}
        try:
            if int8:
                q8 = torch.zeros(B, H, sp, D, dtype=torch.int8)
                qs = torch.ones(B * H, sp // gk.INT8_GROUPS[0])
                ks = torch.ones(B * H, sp // gk.INT8_GROUPS[1])
                v8 = None
                if int8 == "qk+pv":  # int8_quant.quantize_v8's tensors
                    v = torch.zeros(B, H, D, sp, dtype=torch.int8)
                    v8 = (torch.zeros(B * H, nb, D, dtype=torch.int32), torch.ones(B * H, D),
                          torch.zeros(B * H, D))
                compiled = gk.forward_int8(q8, q8.clone(), v, out, csr, qs, ks, pad,
                                           S if kpm else 0, GLUON_STAGES, warmup=True, v8=v8)
            else:
                buf = torch.zeros(B, H, S, dtype=torch.float32) if lse else None
                compiled = gk.forward(v, v, v, out, csr, 0.18, pad, S if kpm else 0,
                                      GLUON_STAGES, lse=buf, warmup=True)
            cubin = compiled.asm["cubin"]
            rec["compiled"] = True
            rec["shared"] = compiled.metadata.shared
            lines = compile_only.sass(cubin)
            if lines is not None:
                rec["spill_stores"] = compile_only.spill_stores(lines)
                rec["wgmma"] = sum("GMMA" in line for line in lines)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the case with it
            rec["compiled"] = False
            rec["error"] = f"{type(exc).__name__}: {exc}"[-2000:]
        compile_only.say(rec)


@pytest.fixture(scope="module")
def verdicts():
    triton = pytest.importorskip("triton", reason="Triton is not installed in this environment")
    try:
        from triton.backends.nvidia.driver import CudaDriver  # noqa: F401
        from triton.experimental import gluon  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"triton {triton.__version__} has no Gluon / NVIDIA backend: {exc}")
    return {rec["case"]: rec for rec in compile_only.verdicts(__file__, list(CASES), "sm_90a")}


@pytest.mark.parametrize("name", list(CASES))
def test_compiles_for_hopper_without_spills(verdicts, name):
    """Compiles with every Triton the suite runs; spill-free where the pack uses the kernel
    (``dispatch.GLUON_TRITON``; other releases run the Triton kernel)."""
    import torch

    from radial_core.dispatch import gluon_takes

    rec = verdicts.get(name)
    assert rec is not None, f"no verdict for {name}"
    assert rec["compiled"], f"{name} does not compile for sm_90a: {rec.get('error')}"
    assert rec["shared"] <= 232448, f"{name} needs {rec['shared']} B of shared memory (227 KB)"
    if "spill_stores" not in rec:
        pytest.skip("this Triton ships no cuobjdump: the spill check needs it")
    ok, why = gluon_takes(128, torch.bfloat16, 128, (9, 0))
    if not ok and rec["spill_stores"]:
        pytest.skip(f"{why}: the pack runs the Triton kernel with it, so its "
                    f"{rec['spill_stores']} spill stores here cost nothing")
    assert rec["wgmma"] > 0, f"{name}: no wgmma in the SASS"
    assert rec["spill_stores"] == 0, (
        f"{name}: {rec['spill_stores']} register spill stores in the consumers' SASS "
        "(expected 0: keep the consumers within 240 registers)")


if __name__ == "__main__":
    _child(sys.argv[1:])
