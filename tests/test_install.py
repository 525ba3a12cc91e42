"""Install the pack the way ComfyUI-Manager does, into a fresh ComfyUI, and start that ComfyUI.

Steps (as the Manager's "Install via Git URL"): clone the repository (this checkout's committed
HEAD) into ``custom_nodes/`` of a fresh copy of the ComfyUI folder, ``pip install -r
requirements.txt`` with ComfyUI's Python, then start ``main.py --cpu`` on a free local port. The
server must list the pack's four nodes in ``GET /object_info`` with no import error in its log,
serve the example workflows to the template browser and the front-end script once, and run the
preview workflow queued over HTTP.

The same start is repeated on a machine "without Triton": a ``sitecustomize.py`` put first on
``PYTHONPATH`` sets ``sys.modules["triton"] = None`` before anything runs, which is exactly what an
interpreter without the package shows (``import triton`` raises ``ModuleNotFoundError`` and
``importlib.util.find_spec("triton")`` is ``None``). It is a simulation, not a second environment:
the Triton files stay on disk, the interpreter just cannot import them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import comfyui_dir
from workflow_convert import input_types_from_object_info, ui_to_api

pytestmark = pytest.mark.comfy

ROOT = Path(__file__).resolve().parents[1]
PACK_NODES = (
    "RadialAttentionPatch",
    "RadialLoraLoader",
    "SparsityPreview",
    "SaveRadialLora",
    "RadialAttentionCalibrate",
    "RadialAttentionLoadCalibration",
)
FOLDER = "ComfyUI-RadialAttention"  # what `git clone <repository URL>` names the folder
START_TIMEOUT = 240
NO_TRITON_SHIM = '''\
# Written by tests/test_install.py: this interpreter behaves as if Triton were not installed.
import sys
sys.modules["triton"] = None  # import triton -> ModuleNotFoundError; find_spec("triton") -> None
sys.stderr.write("radial-install-test: triton import blocked\\n")
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def requirement_names(lines) -> list[str]:
    names = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    return names


class Server:
    """ComfyUI's main.py in a subprocess, its log in a file."""

    def __init__(self, comfy_dir: Path, log: Path, extra_env: dict[str, str] | None = None):
        self.comfy_dir = comfy_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        env.pop("COMFYUI_DIR", None)
        self._log = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port)],
            cwd=comfy_dir, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"ComfyUI exited with {self.proc.returncode} while starting:\n{self.log()[-4000:]}"
                )
            try:
                if self.get("/system_stats")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"ComfyUI did not answer within {START_TIMEOUT} s:\n{self.log()[-4000:]}")
            time.sleep(0.5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str):
        with urllib.request.urlopen(self.base + path, timeout=60) as r:
            return r.status, r.read()

    def get_json(self, path: str):
        status, body = self.get(path)
        assert status == 200, f"GET {path}: {status}"
        return json.loads(body)

    def post_json(self, path: str, data: dict):
        req = urllib.request.Request(self.base + path, data=json.dumps(data).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# What ComfyUI itself ships in custom_nodes/; anything else there is a pack a user installed.
COMFYUI_CUSTOM_NODES_FILES = {"example_node.py.example", "websocket_image_save.py"}


def fresh_copy_filter(src: Path):
    """copytree filter for a *fresh* ComfyUI: the code only. With COMFYUI_DIR naming a user's install,
    their models (often hundreds of GB), outputs, other custom node packs and Python environments
    stay behind."""
    top = {"models", "output", "temp", "user", "input", ".git", "venv", ".venv", "python_embeded"}

    def ignore(folder: str, names: list[str]) -> list[str]:
        here = Path(folder)
        if here == src:
            return [n for n in names if n in top]
        if here == src / "custom_nodes":
            return [n for n in names if n not in COMFYUI_CUSTOM_NODES_FILES]
        return [n for n in names if n == "__pycache__"]

    return ignore


@pytest.fixture(scope="module")
def fresh_comfyui(tmp_path_factory) -> Path:
    """A fresh copy of the ComfyUI folder with the pack cloned into custom_nodes/ as the Manager does."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the Manager-style install clones the repository")
    src = comfyui_dir()
    if not (src / "main.py").exists():
        pytest.skip(f"no ComfyUI at {src}: run `make test` (it unpacks one) or set COMFYUI_DIR")
    dst = tmp_path_factory.mktemp("install") / "ComfyUI"
    shutil.copytree(src, dst, symlinks=True, ignore=fresh_copy_filter(src))
    for name in ("output", "temp", "user", "models", "input"):
        (dst / name).mkdir(exist_ok=True)
    # Only ComfyUI's own entries may be in the fresh custom_nodes/ (none of this pack, no other pack).
    leftovers = {e.name for e in (dst / "custom_nodes").iterdir()} - COMFYUI_CUSTOM_NODES_FILES
    assert not leftovers, f"the fresh ComfyUI copy already holds custom nodes {sorted(leftovers)}"
    # safe.directory: CI containers often check the repository out as another user than the one
    # running the tests; git would then refuse to read it ("dubious ownership").
    run(["git", "-c", "safe.directory=*", "clone", "--quiet", str(ROOT), str(dst / "custom_nodes" / FOLDER)])
    return dst


def test_requirements_mirror_pyproject_and_never_name_torch():
    import tomllib

    reqs = requirement_names((ROOT / "requirements.txt").read_text().splitlines())
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(reqs) == sorted(deps), f"requirements.txt {reqs} and pyproject dependencies {deps} differ"
    for req in reqs:
        name = req.split(";")[0].split("[")[0]
        for op in "<>=!~ ":
            name = name.split(op)[0]
        assert name.lower() not in {"torch", "torchvision", "torchaudio", "triton", "xformers"}, \
            f"requirements.txt names {req}: installing the pack would replace the user's torch build"


def test_pyproject_reads_with_comfyuis_parser():
    """ComfyUI parses the pack's pyproject.toml itself at load time (comfy_config)."""
    src = comfyui_dir()
    code = (
        "import json, sys; from comfy_config import config_parser; "
        f"c = config_parser.extract_node_configuration({str(ROOT)!r}); "
        "print(json.dumps({'name': c.project.name, 'version': c.project.version, "
        "'publisher': c.tool_comfy.publisher_id, 'display': c.tool_comfy.display_name, "
        "'icon': c.tool_comfy.icon, 'license': c.project.license.file, 'repo': c.project.urls.repository, "
        "'comfyui': c.project.supported_comfyui_version, 'web': c.tool_comfy.web}))"
    )
    out = json.loads(run([sys.executable, "-c", code], cwd=src).stdout.strip().splitlines()[-1])
    assert out["name"] and "comfyui" not in out["name"].lower(), out  # the Registry's rule for node ids
    major, minor, patch = (int(x) for x in out["version"].split("."))
    assert out["publisher"] and out["display"] == "Radial Attention" and out["icon"].startswith("https://")
    assert out["license"] == "LICENSE" and (ROOT / "LICENSE").read_text().startswith(
        " " * 20 + "GNU GENERAL PUBLIC LICENSE"
    )
    assert out["repo"].startswith("https://github.com/") and out["comfyui"].startswith(">=")
    # WEB_DIRECTORY in __init__.py serves web/js; a [tool.comfy] web entry too would load the script twice.
    assert out["web"] is None


def test_pip_install_requirements_is_a_no_op():
    """What the Manager runs after cloning: nothing to install in a working ComfyUI, torch untouched."""
    import importlib.metadata as md

    torch_before = md.version("torch")
    torch_files = md.distribution("torch").locate_file("torch/__init__.py")
    mtime_before = os.path.getmtime(torch_files)
    report = ROOT / ".pytest_cache" / "pip-install-report.json"
    report.parent.mkdir(exist_ok=True)
    run([sys.executable, "-m", "pip", "install", "--dry-run", "--report", str(report), "-r",
         str(ROOT / "requirements.txt")])
    would_install = [i["metadata"]["name"] for i in json.loads(report.read_text()).get("install", [])]
    assert would_install == [], f"pip would install {would_install}: requirements.txt is not satisfied by ComfyUI's"
    proc = run([sys.executable, "-m", "pip", "install", "-r", str(ROOT / "requirements.txt")])
    assert "Successfully installed" not in proc.stdout, proc.stdout
    assert md.version("torch") == torch_before and os.path.getmtime(torch_files) == mtime_before


def check_loaded(server: Server, what: str) -> dict:
    info = server.get_json("/object_info")
    missing = [n for n in PACK_NODES if n not in info]
    assert not missing, f"{what}: /object_info lacks {missing}\n{server.log()[-4000:]}"
    for name in PACK_NODES:
        assert info[name]["python_module"] == f"custom_nodes.{FOLDER}", info[name]["python_module"]
        assert info[name]["category"] == "Radial Attention"
    log = server.log()
    import_lines = [ln for ln in log.splitlines() if FOLDER in ln]
    assert import_lines, f"{what}: the log never mentions {FOLDER}:\n{log[-4000:]}"
    bad = [ln for ln in import_lines if "IMPORT FAILED" in ln or "Cannot import" in ln or "Traceback" in ln]
    assert not bad, f"{what}: import problems:\n{bad}\n{log[-4000:]}"
    for chunk in log.split("Traceback (most recent call last):")[1:]:
        frames = []  # the traceback runs up to its first unindented line (the exception itself)
        for line in chunk.splitlines()[1:]:
            frames.append(line)
            if line and not line.startswith(" "):
                break
        tb = "\n".join(frames)
        assert FOLDER not in tb, f"{what}: a traceback through the pack:\n{tb}"
    return info


@pytest.fixture(scope="module")
def server(fresh_comfyui, tmp_path_factory):
    srv = Server(fresh_comfyui, tmp_path_factory.mktemp("logs") / "comfyui.log")
    yield srv
    srv.stop()


def test_manager_install_loads_all_nodes(server):
    check_loaded(server, "fresh install")


def test_template_browser_serves_the_workflows(server):
    from urllib.parse import quote  # the workflows' file names are their titles (spaces, commas)

    templates = server.get_json("/workflow_templates")
    ours = sorted(templates.get(FOLDER, []))
    shipped = sorted(p.stem for p in (server_root(server) / "workflows").glob("*.json"))
    assert ours == shipped and ours, f"template browser lists {ours}, the pack ships {shipped}"
    for name in ours:
        status, body = server.get(f"/api/workflow_templates/{FOLDER}/{quote(name)}.json")
        assert status == 200
        assert json.loads(body) == json.loads((server_root(server) / "workflows" / f"{name}.json").read_text())
        thumb = server_root(server) / "workflows" / f"{name}.jpg"
        if thumb.exists():  # the card picture the front end asks for
            status, body = server.get(f"/api/workflow_templates/{FOLDER}/{quote(name)}.jpg")
            assert status == 200 and body[:3] == b"\xff\xd8\xff"


def test_front_end_script_served_once(server):
    scripts = server.get_json("/extensions")
    ours = [s for s in scripts if s.endswith("radial_readout.js")]
    assert len(ours) == 1, f"the pack's front-end script is listed {len(ours)} times: {ours}"
    status, body = server.get(ours[0])
    assert status == 200 and b"registerExtension" in body


def test_preview_workflow_runs_on_the_installed_copy(server):
    """Convert the shipped preview workflow with the server's own /object_info and queue it."""
    wf = json.loads((server_root(server) / "workflows" / "Sparsity Preview, no model needed.json").read_text())
    prompt = ui_to_api(wf, input_types_from_object_info(server.get_json("/object_info")))
    status, body = server.post_json("/prompt", {"prompt": prompt, "client_id": "install-test"})
    assert status == 200, body
    pid = body["prompt_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        hist = server.get_json(f"/history/{pid}")
        if pid in hist and hist[pid].get("status", {}).get("completed") is not None:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the preview prompt did not finish:\n{server.log()[-3000:]}")
    entry = hist[pid]
    assert entry["status"]["status_str"] == "success", entry["status"]
    images = [img for out in entry["outputs"].values() for img in out.get("images", [])]
    assert images, entry["outputs"]
    status, png = server.get(f"/view?filename={images[0]['filename']}&type={images[0]['type']}"
                             f"&subfolder={images[0].get('subfolder', '')}")
    assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"


def server_root(server: Server) -> Path:
    return server.comfy_dir / "custom_nodes" / FOLDER


def test_loads_without_triton(fresh_comfyui, tmp_path):
    shim = tmp_path / "no_triton"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(NO_TRITON_SHIM)
    pythonpath = os.pathsep.join([str(shim)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    probe = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; print(u.find_spec('triton'));\n"
         "try:\n import triton\nexcept ImportError as e: print('ImportError', type(e).__name__)"],
        env={**os.environ, "PYTHONPATH": pythonpath}, capture_output=True, text=True, timeout=60,
    )
    assert probe.stdout.split() == ["None", "ImportError", "ModuleNotFoundError"], probe.stdout + probe.stderr
    srv = Server(fresh_comfyui, tmp_path / "comfyui-no-triton.log", {"PYTHONPATH": pythonpath})
    try:
        assert "radial-install-test: triton import blocked" in srv.log()
        check_loaded(srv, "install without Triton")
    finally:
        srv.stop()


def test_registry_publish_workflow():
    """.github/workflows/publish.yml: the Comfy Registry action, after the tests, on version bumps."""
    import yaml

    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "publish.yml").read_text())
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    assert "pyproject.toml" in triggers["push"]["paths"] and "main" in triggers["push"]["branches"]
    publish = wf["jobs"]["publish-node"]
    assert publish["needs"] == "test"
    step = next(s for s in publish["steps"] if "publish-node-action" in s.get("uses", ""))
    assert step["uses"].startswith("Comfy-Org/publish-node-action@")
    assert step["with"]["personal_access_token"] == "${{ secrets.REGISTRY_ACCESS_TOKEN }}"
    test_steps = " ".join(s.get("run", "") for s in wf["jobs"]["test"]["steps"])
    assert ".ci/run" in test_steps, "the publish job must run the same tests as CI first"
