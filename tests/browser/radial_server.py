"""A real ComfyUI server with this pack, started once per test session on 127.0.0.1.

Used by tests/test_routes.py and tests/browser/test_browser.py. ComfyUI runs from the folder that
tests/conftest.py's ``comfyui_dir()`` names, as ``main.py --cpu --listen 127.0.0.1 --port <free>``
with throw-away output/temp/user folders; the pack must be linked into its ``custom_nodes``
(``scripts/setup_env.sh`` links it as ``custom_nodes/radial-attention``).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # git-ignored
START_TIMEOUT_S = 180

# Front-end settings for a fresh user: no first-run dialogs over the canvas.
FRESH_SETTINGS = {"Comfy.TutorialCompleted": True}


from conftest import comfyui_dir  # noqa: E402  (one definition, in tests/conftest.py)


CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


def require_browser_tools() -> None:
    """Skip (with the fix) when chromium, node or playwright-core is missing; fail under CI=true."""
    here = Path(__file__).resolve().parent
    why = None
    if not Path(CHROMIUM).exists():
        why = f"no chromium at {CHROMIUM}"
    elif shutil.which("node") is None:
        why = "no node (Node.js) on PATH"
    elif not (here / "node_modules" / "playwright-core" / "package.json").exists():
        why = "playwright-core is not installed in tests/browser/node_modules"
    if why:
        message = f"browser test needs its tools: {why}. Fix: run `bash scripts/setup_browser.sh`."
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: the browser test may not skip)")
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self, flags: tuple[str, ...] = ("--cpu",), log_name: str = "comfyui-server.log") -> None:
        self.dir = comfyui_dir()
        if not (self.dir / "main.py").exists():
            raise RuntimeError(f"ComfyUI not found at {self.dir}: run `make test` or set COMFYUI_DIR")
        self.check_pack()
        self.flags = list(flags)  # main.py's flags before the listen/port/folder ones below
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.work = Path(tempfile.mkdtemp(prefix="radial-comfy-"))
        for sub in ("output", "temp", "input", "user/default"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        user = self.work / "user/default"
        (user / "comfy.settings.json").write_text(json.dumps(FRESH_SETTINGS))
        # files and folders the front end reads for every user (absent ones log 404s)
        (user / "user.css").write_text("")
        (user / "comfy.templates.json").write_text("[]")
        for sub in ("workflows", "subgraphs"):
            (user / sub).mkdir(exist_ok=True)
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / log_name
        self.proc: subprocess.Popen | None = None

    def check_pack(self) -> None:
        link = self.dir / "custom_nodes" / "radial-attention"
        if not link.exists():
            raise RuntimeError(
                f"the pack is not linked into {self.dir}/custom_nodes: run scripts/setup_env.sh "
                f"(or `ln -s {ROOT} {link}`)"
            )

    def start(self) -> "ComfyServer":
        cmd = [
            sys.executable, "main.py", *self.flags, "--listen", "127.0.0.1", "--port", str(self.port),
            "--output-directory", str(self.work / "output"),
            "--temp-directory", str(self.work / "temp"),
            "--input-directory", str(self.work / "input"),
            "--user-directory", str(self.work / "user"),
            "--database-url", "sqlite:///:memory:",
            "--disable-api-nodes", "--preview-method", "none",
        ]
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}; log:\n{self.log_tail()}")
            try:
                info = self.get_json("/object_info/SparsityPreview")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
                continue
            if "SparsityPreview" in info:
                return self
            self.stop()
            raise RuntimeError(f"ComfyUI started without the pack's nodes; log:\n{self.log_tail()}")
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {START_TIMEOUT_S}s; log:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        shutil.rmtree(self.work, ignore_errors=True)

    # --- HTTP helpers ---------------------------------------------------------------------
    def request(self, path: str, data: dict | None = None, timeout: float = 30):
        """(status, parsed JSON or text) of a GET, or of a POST when ``data`` is given."""
        body = json.dumps(data).encode() if data is not None else None
        req = urllib.request.Request(self.url + path, data=body,
                                     headers={"Content-Type": "application/json"} if body else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def get_json(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            return json.loads(r.read())

    def run_prompt(self, prompt: dict, timeout: float = 120) -> dict:
        """Queue an API-format prompt and wait for its history entry."""
        status, body = self.request("/prompt", {"prompt": prompt, "client_id": "radial-tests"})
        if status != 200:
            raise AssertionError(f"ComfyUI refused the prompt ({status}): {body}")
        prompt_id = body["prompt_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get_json(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                return history[prompt_id]
            time.sleep(0.2)
        raise AssertionError(f"prompt {prompt_id} did not finish in {timeout}s; log:\n{self.log_tail()}")


_SERVER: ComfyServer | None = None


def get_server() -> ComfyServer:
    """The session's server (started on first use, stopped when the test process exits)."""
    global _SERVER
    if _SERVER is None:
        _SERVER = ComfyServer().start()
        atexit.register(_SERVER.stop)
    return _SERVER
