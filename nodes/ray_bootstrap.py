"""What "Radial Attention Patch (Ray)" sends to each raylight worker: load the pack, patch the model.

raylight runs a patch inside every Ray worker by calling ``model_function_runner(fn, *args)``,
which does ``model = fn(model, *args)``. Ray pickles ``fn`` with cloudpickle, by reference when
its module is importable by name. ComfyUI imports this pack under its folder path (``.`` written
``_x_``), a name the worker cannot import, so a function of the pack pickled by reference fails
there ("No module named '/.../custom_nodes/...'"). So this module imports only the standard
library and is pickled **by value** (``cloudpickle.register_pickle_by_value``): the worker gets
the code of :func:`apply_in_worker` and plain settings, and loads the pack itself, the way
ComfyUI's ``load_custom_node`` does (``spec_from_file_location(<folder path, "." -> "_x_">,
<folder>/__init__.py)``). Nothing else of the pack crosses the Ray boundary.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys


def comfy_module_name(pack_dir: str) -> str:
    """The module name ComfyUI's loader gives the pack in ``pack_dir``."""
    return pack_dir.replace(".", "_x_")


def locate_pack(where: dict) -> str:
    """The pack's folder on this machine: the path the ComfyUI process saw, else the same path
    under this process's working directory (Ray's ``working_dir``: the ComfyUI root on a cluster)."""
    candidates = [where.get("pack_dir"), os.path.join(os.getcwd(), where.get("relative_dir") or "")]
    for path in candidates:
        if path and os.path.isfile(os.path.join(path, "__init__.py")):
            return os.path.abspath(path)
    raise RuntimeError(
        f"Radial Attention Patch (Ray): this Ray worker cannot find the pack (looked in "
        f"{[c for c in candidates if c]}). Fix: install the pack on every machine of the Ray cluster "
        f"at the same place under ComfyUI's custom_nodes folder.")


def load_pack(where: dict) -> str:
    """Import the pack as ComfyUI does (once per process); returns its module name."""
    if where.get("module") in sys.modules:  # a worker that shares the ComfyUI process's modules
        return where["module"]
    pack_dir = locate_pack(where)
    name = comfy_module_name(pack_dir)
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(pack_dir, "__init__.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
    return name


def apply_in_worker(model, where: dict, settings: dict):
    """raylight's ``model_function_runner`` contract: the worker's model in, the patched model out."""
    name = load_pack(where)
    worker = importlib.import_module(name + ".nodes.sequence_parallel")
    return worker.patch_worker_model(model, dict(settings))
