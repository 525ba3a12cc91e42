"""A real ComfyUI server with this pack, started once per test session on 127.0.0.1.

Used by tests/test_routes.py and tests/browser/test_browser.py. ComfyUI runs from the folder that
tests/conftest.py's ``comfyui_dir()`` names, as ``main.py --cpu --listen 127.0.0.1 --port <free>``
with throw-away output/temp/user folders; the pack must be linked into its ``custom_nodes``
(``scripts/setup_env.sh`` links it as ``custom_nodes/radial-attention``).

Front ends (``FRONT_ENDS``, the ``front_end`` fixture): "pinned" is the one this ComfyUI installs
(1.32.9 with 0.3.75, 1.49.6 with 0.33); "newest" is the newest ``comfyui-frontend-package`` from
PyPI, which ``scripts/setup_browser.sh`` installs into ``.frontend/newest/`` (git-ignored) and a
second server serves with ``--front-end-root``: with ComfyUI 0.33 only (0.3.75 is tested with its
own front end).
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
FRONT_ENDS = ("pinned", "newest")
NEWEST_FRONT_END = ROOT / ".frontend" / "newest" / "comfyui_frontend_package" / "static"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def front_end_root(front_end: str) -> Path | None:
    """``--front-end-root`` for a front end of ``FRONT_ENDS`` (None: the installed one); skips
    (fails under CI=true) when the newest is not installed, and on a ComfyUI before 0.33."""
    if front_end == "pinned":
        return None
    version = _comfyui_version()
    if version and tuple(int(x) for x in version.split(".")[:2]) < (0, 33):
        pytest.skip(f"the newest front end is tested with ComfyUI 0.33, not {version} (it pins 1.32.9)")
    if not (NEWEST_FRONT_END / "index.html").exists():
        message = (f"no newest front end at {NEWEST_FRONT_END}. Fix: run `bash scripts/setup_browser.sh` "
                   "(it installs the newest comfyui-frontend-package there)")
        if _in_ci():
            pytest.fail(message + " (CI=true: the browser test may not skip)")
        pytest.skip(message)
    return NEWEST_FRONT_END


def _comfyui_version() -> str | None:
    try:
        text = (comfyui_dir() / "comfyui_version.py").read_text()
    except OSError:
        return None
    return text.split("=")[-1].strip().strip("\"'") or None


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
    def __init__(self, flags: tuple[str, ...] = ("--cpu",), log_name: str = "comfyui-server.log",
                 front_end: Path | None = None) -> None:
        self.dir = comfyui_dir()
        if not (self.dir / "main.py").exists():
            raise RuntimeError(f"ComfyUI not found at {self.dir}: run `make test` or set COMFYUI_DIR")
        self.check_pack()
        self.flags = list(flags)  # main.py's flags before the listen/port/folder ones below
        if front_end is not None:
            self.flags += ["--front-end-root", str(front_end)]
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
        if link.resolve() != ROOT:  # another checkout's pack would be tested (a git worktree)
            raise RuntimeError(
                f"{link} links {link.resolve()}, not this checkout ({ROOT}): set COMFYUI_DIR to a "
                "ComfyUI copy whose custom_nodes/radial-attention links here"
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


_SERVERS: dict[str, ComfyServer] = {}


def get_server(front_end: str = "pinned") -> ComfyServer:
    """The session's server for a front end of ``FRONT_ENDS`` (started on first use, stopped when
    the test process exits)."""
    if front_end not in _SERVERS:
        root = front_end_root(front_end)
        log = "comfyui-server.log" if front_end == "pinned" else f"comfyui-server-{front_end}.log"
        server = ComfyServer(log_name=log, front_end=root).start()
        atexit.register(server.stop)
        _SERVERS[front_end] = server
    return _SERVERS[front_end]


@pytest.fixture(params=FRONT_ENDS)
def front_end(request) -> str:
    """Each front end a browser test runs on (see the module's docstring)."""
    return request.param


@pytest.fixture
def front_end_server(front_end) -> ComfyServer:
    require_browser_tools()
    return get_server(front_end)


def artifacts_for(front_end: str) -> Path:
    """Where a test's screenshots go: artifacts/ for the pinned front end, artifacts/<name>/ else."""
    out = ARTIFACTS if front_end == "pinned" else ARTIFACTS / front_end
    out.mkdir(parents=True, exist_ok=True)
    return out
