"""`make serve` (scripts/serve.sh): ComfyUI starts with the pack and serves the patch node."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.comfy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_refuses_a_folder_without_comfyui(tmp_path):
    env = dict(os.environ, COMFYUI_DIR=str(tmp_path))
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "serve.sh")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert str(tmp_path) in proc.stderr and "COMFYUI_DIR" in proc.stderr


def test_serve_starts_comfyui_with_the_pack(comfy):
    """`make serve` of this leg (its virtual environment: VENV, as `LEG=0.3.75` picks it) serves the
    ComfyUI this leg runs, with the node."""
    import comfyui_version

    port = _free_port()
    env = dict(os.environ, PORT=str(port), PYTHONUNBUFFERED="1", VENV=sys.prefix)
    proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "serve.sh")], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        info = None
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info/RadialAttentionPatch",
                                            timeout=5) as r:
                    info = json.loads(r.read())
                    break
            except OSError:
                time.sleep(2)
        assert info is not None, f"ComfyUI did not serve the node (exit {proc.poll()})"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/system_stats", timeout=5) as r:
            served = json.loads(r.read())["system"]["comfyui_version"]
        assert served == comfyui_version.__version__, (served, comfyui_version.__version__)
        node = info["RadialAttentionPatch"]
        assert node["display_name"] == "Radial Attention Patch"
        assert node["category"] == "Radial Attention"
        assert "dense_blocks" in node["input"]["required"]
    finally:
        proc.terminate()  # serve.sh execs ComfyUI, so this is ComfyUI's own process
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
