"""The Triton kernels compile for the GPUs ComfyUI users own (sm_80, 86, 89, 120) on a machine
without a GPU, within each card's shared memory per block and without register spills.

CI has no GPU, and the launch rows ``dispatch`` picks for these cards are not measured on
one: without this file a change to a kernel or a row could stop fitting a consumer card
unnoticed (Triton reports too much shared memory only when it loads the kernel on the card).
As tests/test_gluon_compile.py does for sm_90a, a child process (this file run as a script)
hands Triton a CUDA driver that reports the card's compute capability and never touches a
device, then asks the launchers for ``warmup=True`` (compile, no launch) on CPU tensors, with
the configuration ``dispatch.triton_config`` / ``dispatch.backward_config`` pick for that card.
Each case must need no more shared memory than the card gives one block (NVIDIA's CUDA
programming guide, "Compute Capabilities": 163 KB on 8.0, 99 KB on 8.6, 8.9 and 12.0) and its
SASS must store nothing to local memory (``STL``: register spills), read by the ``cuobjdump``
that ships with Triton.

Int8 Q.K^T is compiled where dispatch runs it (``dispatch.INT8_MIN_CAP``: 8.0+). Skips with a reason
where Triton has no NVIDIA backend or cannot target a card.
"""

from __future__ import annotations

import sys
from pathlib import Path

import compile_only
import pytest

HERE = Path(__file__).resolve().parent

# the most shared memory one block may use, per compute capability (bytes)
SHARED_PER_BLOCK = {80: 163 * 1024, 86: 99 * 1024, 89: 99 * 1024, 120: 99 * 1024}

# name: (pass, dtype, D, S, int8 Q.K^T, key padding, LSE)
CASES = {
    "fwd_bf16_d128_odd_len_padding": ("forward", "bfloat16", 128, 1000, False, True, False),
    "fwd_fp16_d64_lse": ("forward", "float16", 64, 1024, False, False, True),
    "fwd_int8_bf16_d128_odd_len_padding": ("forward", "bfloat16", 128, 1000, True, True, False),
    "fwd_int8_fp16_d64": ("forward", "float16", 64, 1024, True, False, False),
    "bwd_bf16_d128_odd_len_padding": ("backward", "bfloat16", 128, 1000, False, True, False),
    "bwd_fp16_d64": ("backward", "float16", 64, 1024, False, False, False),
}
BLOCK = 128


def _int8_runs(arch: int) -> bool:
    """Does dispatch run int8 Q.K^T on this card (from ``dispatch.INT8_MIN_CAP``)?"""
    import pack_import

    pack_import.install()
    from radial_core import dispatch

    return (arch // 10, arch % 10) >= dispatch.INT8_MIN_CAP


def _child(arch: int, names):
    """Compile each case for ``sm_<arch>``; print one JSON verdict per kernel."""
    import torch

    compile_only.target(arch)
    sys.path.insert(0, str(HERE))
    import pack_import

    pack_import.install()
    from radial_core import dispatch, triton_backward, triton_kernel
    from radial_core.csr import build_csr, key_csr_from_csr

    def fake_quantize(q, k, qk_mul, q_rows, k_rows, block, bd, q_per_row=False):
        # the int8 copies the quantisation pass would write (it launches; here nothing may)
        B, H, S, _ = q.shape
        sp = -(-S // block) * block
        q8 = torch.zeros(B, H, sp, bd, dtype=torch.int8)
        return (q8, q8.clone(), torch.ones(B * H, sp if q_per_row else sp // q_rows),
                torch.ones(B * H, sp // k_rows))

    triton_kernel.quantize_int8 = fake_quantize
    cap = (arch // 10, arch % 10)
    for name in names:
        kind, dtype, D, S, int8, kpm, lse = CASES[name]
        dt = getattr(torch, dtype)
        B, H = 2, 2
        nb = -(-S // BLOCK)
        csr = build_csr(torch.ones(nb, nb, dtype=torch.bool), "cpu", BLOCK)
        q, k, v, o = (torch.zeros(B, S, H, D, dtype=dt).transpose(1, 2) for _ in range(4))
        pad = torch.ones(B, S, dtype=torch.bool) if kpm else None
        try:
            if kind == "forward":
                cfg = dispatch.triton_config(D, dt, BLOCK, cap, int8)
                kernels = [("forward", cfg, triton_kernel.triton_block_sparse_attention(
                    q, k, v, csr, cfg, int8=int8, key_padding_mask=pad, scale=D ** -0.5,
                    return_lse=lse, warmup=True))]
            else:
                cfg = dispatch.backward_config(D, dt, BLOCK, cap)
                lse_buf = torch.zeros(B, H, S)
                compiled = triton_backward.triton_block_sparse_attention_backward(
                    q, k, v, o, lse_buf, o, csr, key_csr_from_csr(csr, "cpu"), cfg,
                    key_padding_mask=pad, scale=D ** -0.5, warmup=True)
                kernels = list(zip(("prep", "dq", "dkdv"), (None, cfg.dq, cfg.dkdv), compiled))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the case with it
            rec = {"case": name, "kernel": kind, "compiled": False,
                   "error": f"{type(exc).__name__}: {exc}"[-2000:]}
            compile_only.say(rec)
            continue
        for part, cfg, compiled in kernels:
            rec = {"case": name, "kernel": part, "compiled": True, "config": repr(cfg),
                   "shared": compiled.metadata.shared}
            lines = compile_only.sass(compiled.asm["cubin"])
            if lines is not None:
                rec["spill_stores"] = compile_only.spill_stores(lines)
            compile_only.say(rec)


@pytest.fixture(scope="module", params=sorted(SHARED_PER_BLOCK), ids=lambda a: f"sm_{a}")
def verdicts(request):
    arch = request.param
    triton = pytest.importorskip("triton", reason="Triton is not installed in this environment")
    try:
        from triton.backends.nvidia.driver import CudaDriver  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"triton {triton.__version__} has no NVIDIA backend: {exc}")
    names = [n for n in CASES if _int8_runs(arch) or not CASES[n][4]]
    found: dict[str, list] = {}
    for rec in compile_only.verdicts(__file__, [str(arch), *names], f"sm_{arch}"):
        found.setdefault(rec["case"], []).append(rec)
    return arch, triton.__version__, found


@pytest.mark.parametrize("name", list(CASES))
def test_compiles_for_consumer_cards(verdicts, name):
    """Compiles with the row dispatch picks, fits the card's shared memory, no spills."""
    arch, version, found = verdicts
    if CASES[name][4] and not _int8_runs(arch):
        pytest.skip(f"dispatch runs no int8 Q.K^T on sm_{arch}: it runs exact")
    recs = found.get(name)
    assert recs, f"no verdict for {name} on sm_{arch}"
    for rec in recs:
        where = f"{name} ({rec['kernel']}, {rec.get('config')}) on sm_{arch}, Triton {version}"
        assert rec["compiled"], f"{where} does not compile: {rec.get('error')}"
        limit = SHARED_PER_BLOCK[arch]
        assert rec["shared"] <= limit, (
            f"{where} needs {rec['shared']} B of shared memory; the card gives a block {limit} B")
    if any("spill_stores" not in rec for rec in recs):
        pytest.skip(f"Triton {version} ships no cuobjdump: the spill check needs it")
    spills = {rec["kernel"]: rec["spill_stores"] for rec in recs if rec["spill_stores"]}
    assert not spills, f"{name} on sm_{arch}, Triton {version}: register spill stores {spills}"


def test_unmeasured_rows_say_so():
    """The decision's reason says a card's launch row is unmeasured until one measures it."""
    import torch

    from radial_core import dispatch

    assert dispatch.row_note((9, 0)) == ""
    for arch in SHARED_PER_BLOCK:
        cap = (arch // 10, arch % 10)
        assert "unmeasured" in dispatch.row_note(cap), cap
    # consumer Blackwell takes the ~100 KB rows, not Hopper's (which spill there)
    for int8 in (False, True):
        assert (dispatch.triton_config(128, torch.bfloat16, 128, (12, 0), int8)
                == dispatch.triton_config(128, torch.bfloat16, 128, (8, 9), int8))


if __name__ == "__main__":
    _child(int(sys.argv[1]), sys.argv[2:])
