"""Import the pack the way ComfyUI does, for the tests and the benchmarks.

ComfyUI's loader (``nodes.load_custom_node``) imports a custom-node folder as one package named
after the folder's path (``.`` written ``_x_``); the pack's modules then import each other
relatively (``from ..radial_core import ...``). The pack's root is never put on ``sys.path``: its
``nodes/`` package would shadow ComfyUI's own ``nodes`` module.

:func:`install` does the same here: it drops the pack's root from ``sys.path`` (``python -m``
puts the working directory there), imports the pack's package under the name ComfyUI would give
it (its ``__init__`` registers no nodes without ComfyUI), and lets ``import radial_core...``
resolve to that package's ``radial_core`` (the same module objects, not a second copy), so test
and benchmark code keeps writing ``from radial_core.reference import dense_masked_attention``.
When ComfyUI later loads the pack from the same folder it re-runs only the package's
``__init__``; the submodules already imported are the ones it uses.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALIASED = "radial_core"  # the part of the pack that needs no ComfyUI, importable by this name

_state: dict[str, str] = {}


def package_name(path: Path | str) -> str:
    """The module name ComfyUI's loader gives the pack in ``path``."""
    return str(path).replace(".", "_x_")


def load(path: Path | str = ROOT):
    """The pack's package (imported once, as ComfyUI's loader imports it)."""
    name = package_name(path)
    pkg = sys.modules.get(name)
    if pkg is None:
        spec = importlib.util.spec_from_file_location(name, Path(path) / "__init__.py",
                                                      submodule_search_locations=[str(path)])
        pkg = importlib.util.module_from_spec(spec)
        sys.modules[name] = pkg
        spec.loader.exec_module(pkg)
    return pkg


def module(name: str):
    """A submodule of the installed pack, e.g. ``module("nodes.attention_plan")``."""
    return importlib.import_module(f"{_state['package']}.{name}")


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``radial_core[.x]`` -> ``<pack>.radial_core[.x]`` (the module itself, its own spec kept)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != ALIASED and not fullname.startswith(ALIASED + "."):
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        mod = module(spec.name)
        _state["spec:" + spec.name] = mod.__spec__
        return mod

    def exec_module(self, mod):
        mod.__spec__ = _state.pop("spec:" + mod.__spec__.name, mod.__spec__)  # keep the pack's own spec


def install(path: Path | str = ROOT):
    """Make the pack importable as ComfyUI imports it (see the module doc); idempotent."""
    if "package" in _state:
        return sys.modules[_state["package"]]
    root = ROOT.resolve()
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != root]
    pkg = load(path)
    _state["package"] = package_name(path)
    sys.meta_path.insert(0, _Alias())
    return pkg


def file_module(key: str, path: Path | str):
    """Import one standalone file (``scripts/*.py``, ``bench/*.py``) as module ``key``, once."""
    mod = sys.modules.get(key)
    if mod is None:
        spec = importlib.util.spec_from_file_location(key, Path(path))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod
        spec.loader.exec_module(mod)
    return mod
