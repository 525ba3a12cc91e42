"""Compiling Triton and Gluon kernels for a GPU this machine does not have (the compile tests).

Triton compiles for the target its active driver reports. A child process (a test file run as a
script) calls :func:`target` first, so Triton sees a CUDA driver that reports the wanted compute
capability and never touches a device; the launchers then compile with ``warmup=True`` (no
launch) on CPU tensors, and each kernel's SASS is read by the ``cuobjdump`` that ships with
Triton. The child prints one ``VERDICT`` JSON line per result; :func:`verdicts` runs it and
collects them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PREFIX = "VERDICT "


def target(arch: int) -> None:
    """Make Triton compile for ``sm_<arch>`` (e.g. 90) in this process, without a device."""
    import torch
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.driver import CudaDriver
    from triton.runtime.driver import driver

    class CompileOnly(CudaDriver):
        """A CUDA driver for compiling only: the card's target, no device, no launch."""

        def __init__(self):  # the real one loads libcuda's helpers
            pass

        def get_current_target(self):
            return GPUTarget("cuda", arch, 32)

        def get_current_device(self):
            return 0

        def get_current_stream(self, device=None):
            return 0

        def get_active_torch_device(self):
            return torch.device("cpu")

    driver.set_active(CompileOnly())


def sass(cubin: bytes) -> list[str] | None:
    """The cubin's SASS lines, or None where this Triton ships no ``cuobjdump``."""
    cuobjdump = Path(__import__("triton").__file__).parent / "backends/nvidia/bin/cuobjdump"
    if not cuobjdump.exists():
        return None
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([str(cuobjdump), "-sass", f.name], capture_output=True, text=True,
                              check=True).stdout.splitlines()


def spill_stores(lines: list[str]) -> int:
    """Stores to local memory (``STL``): register spills."""
    return sum(" STL" in line for line in lines)


def say(rec: dict) -> None:
    """One verdict from the child to the parent."""
    print(PREFIX + json.dumps(rec), flush=True)


def verdicts(script: str, args: list[str], what: str) -> list[dict]:
    """Run ``script`` as a child with ``args`` (a fresh Triton cache, no interpreter) and return
    its verdicts; fails naming ``what`` when it printed none."""
    env = dict(os.environ, TRITON_CACHE_DIR=tempfile.mkdtemp(prefix="compile-only-"))
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, env=env,
                          timeout=900)
    found = [json.loads(line[len(PREFIX):]) for line in proc.stdout.splitlines() if line.startswith(PREFIX)]
    assert found, f"the compile child for {what} printed no verdict (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    return found
