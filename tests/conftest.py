"""Shared test fixtures.

``radial_core`` tests need only torch. Tests marked ``comfy`` run the real ComfyUI in this
process: the copy that ``scripts/setup_env.sh`` unpacks into ``.comfyui/`` or the one named by
``COMFYUI_DIR``. The pack is loaded through ComfyUI's own custom-node loader, exactly as at
start-up. Before any test imports it, the pack is installed as ComfyUI imports it (a package named
after its folder, its root never on ``sys.path``; ``tests/pack_import.py``), so ``radial_core`` in
a test is the pack's own ``radial_core``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import types
from pathlib import Path

import pytest
import torch

import pack_import

ROOT = Path(__file__).resolve().parents[1]


def comfyui_dir() -> Path:
    env = os.environ.get("COMFYUI_DIR")
    if env:
        return Path(env).resolve()
    # scripts/setup_env.sh records each leg's ComfyUI in its virtual environment
    recorded = Path(sys.prefix) / "comfyui-path"
    if recorded.exists():
        return Path(recorded.read_text().strip())
    return ROOT / ".comfyui"


def pack_path() -> Path:
    """The folder ComfyUI loads the pack from: its ``custom_nodes/radial-attention`` link to this
    checkout when there is one (scripts/setup_env.sh makes it), else this checkout."""
    link = comfyui_dir() / "custom_nodes" / "radial-attention"
    return link if link.exists() and link.resolve() == ROOT else ROOT


pack_import.install(pack_path())


def script_module(name: str):
    """Import ``scripts/<name>.py`` (helpers the demo shares with the tests), once."""
    return pack_import.file_module(f"radial_{name}", ROOT / "scripts" / f"{name}.py")


def require_cuda() -> None:
    """Skip (never silently) when no CUDA GPU is present."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: run on a machine with one (see docs/benchmarks.md)")


@pytest.fixture
def cuda():
    require_cuda()
    return torch.device("cuda")


_COMFY: types.SimpleNamespace | None = None


def pack_module(name: str):
    """A submodule of the pack, e.g. ``pack_module("nodes.attention_plan")``, imported as ComfyUI
    imports it (inside the pack's package; the modules that need ComfyUI need the ``comfy``
    fixture first)."""
    return pack_import.module(name)


def load_comfy() -> types.SimpleNamespace:
    """Import real ComfyUI (CPU unless CUDA is present) and load this pack through its loader."""
    global _COMFY
    if _COMFY is not None:
        return _COMFY
    cdir = comfyui_dir()
    if not (cdir / "main.py").exists():
        raise RuntimeError(
            f"ComfyUI not found at {cdir}: run `make test` (it unpacks one) or set COMFYUI_DIR"
        )
    # ComfyUI is a folder, not an installed package: its modules (comfy, nodes, ...) come from it
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != cdir]
    sys.path.insert(0, str(cdir))

    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    if not torch.cuda.is_available():
        comfy.cli_args.args.cpu = True
    comfy.cli_args.args.disable_all_custom_nodes = False

    import comfy.model_management
    import folder_paths
    import utils.json_util  # noqa: F401  ComfyUI's utils package, before nodes.py puts comfy/ first on sys.path
    import nodes as comfy_nodes  # ComfyUI's nodes.py

    folder = pack_path()
    ok = asyncio.run(comfy_nodes.load_custom_node(str(folder)))
    if not ok:
        raise RuntimeError(f"ComfyUI could not load the pack from {folder} (see the log above)")
    pack = sys.modules[pack_import.package_name(folder)]

    _COMFY = types.SimpleNamespace(
        dir=cdir,
        nodes=comfy_nodes,
        folder_paths=folder_paths,
        pack=pack,
        pack_module=pack_module,
    )
    return _COMFY


@pytest.fixture(scope="session")
def comfy() -> types.SimpleNamespace:
    """Real ComfyUI with this pack loaded (see ``load_comfy``)."""
    return load_comfy()


@pytest.fixture
def server_loras(server):
    """Make LoRA files in the test server's own loras folder (``server``: the requesting module's
    ComfyUI server fixture); ``make(name, metadata=None, tensors=None)`` returns the name the
    server lists; the files are removed afterwards."""
    from safetensors.torch import save_file

    folder = server.dir / "models" / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    made = []

    def make(name, metadata=None, tensors=None):
        path = folder / name
        save_file(tensors or {"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(4, 8),
                              "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(8, 4)},
                  str(path), metadata=metadata)
        made.append(path)
        return name

    yield make
    for path in made:
        path.unlink(missing_ok=True)
