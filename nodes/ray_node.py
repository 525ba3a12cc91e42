"""The "Radial Attention Patch (Ray)" node: radial attention inside raylight's Ray workers.

raylight (komikndr/raylight) runs the model in Ray actors, one per GPU, with Ulysses sequence
parallelism; a MODEL patched in the ComfyUI process never reaches them. This node takes
raylight's ``RAY_ACTORS``, has the inputs and queue-time checks of "Radial Attention Patch", and
applies the patch in every worker by raylight's own contract (``model_function_runner``): only
plain settings and the small by-value function of ``nodes/ray_bootstrap.py`` cross the Ray
boundary; each worker loads the pack as ComfyUI does, patches its model and wires the pack's
sequence-parallel call into raylight's attention (``nodes/sequence_parallel.py``).

Registered only where raylight and Ray are importable (``nodes/extension.py``); nothing here is in
the pack's requirements.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from comfy_api.latest import io

from ..radial_core import settings as S
from . import ray_bootstrap
from .patch_node import CATEGORY, RadialAttentionPatch
from .radial_patcher import BACKEND_CHOICES, BLOCK_SIZES, DIST1_CHOICES, PRECISION_CHOICES, parse_dense_blocks
from .sequence_parallel import sequence_parallel_problem
from .validation import dense_blocks_problem

logger = logging.getLogger(__name__)

RAY_ACTORS = "RAY_ACTORS"  # raylight's socket type: {"workers": [RayWorker actor handles], ...}
PACK_DIR = Path(__file__).resolve().parents[1]
SP_KEYS = ("is_xdit", "ulysses_degree", "ring_degree", "cfg_degree")  # what the workers' check reads
PACKAGE = __name__.rsplit(".nodes.", 1)[0]  # the name ComfyUI's loader gave the pack


def raylight_available() -> bool:
    """Ray importable, and raylight importable or installed next to this pack (ComfyUI loads custom
    nodes one by one, so raylight may put its ``src`` on ``sys.path`` only after this pack)."""
    if importlib.util.find_spec("ray") is None:
        return False
    if importlib.util.find_spec("raylight") is not None:
        return True
    try:
        return any((d / "src" / "raylight" / "__init__.py").is_file() for d in PACK_DIR.parent.iterdir() if d.is_dir())
    except OSError:  # an unreadable custom_nodes folder: no raylight found
        return False


def _patch_inputs() -> list:
    """Radial Attention Patch's inputs after its MODEL: one definition for both nodes."""
    return [i for i in RadialAttentionPatch.define_schema().inputs if i.id != "model"]


def worker_settings(decay_factor, block_size, dense_blocks, dense_steps_first, dense_steps_last, dist1, backend,
                    family="auto", precision="exact") -> dict:
    """The keyword arguments of ``apply_radial_patch`` as plain values, checked here, before any
    worker sees them (the same rules ``apply_radial_patch`` applies again in each worker)."""
    settings = dict(decay_factor=float(decay_factor) if decay_factor else None, block_size=int(block_size),
                    dense_blocks=str(dense_blocks or ""), dense_steps_first=int(dense_steps_first),
                    dense_steps_last=int(dense_steps_last), dist1=str(dist1), backend=str(backend),
                    family=str(family or "auto"), precision=str(precision or "exact"))
    # a workflow saved with a precision's old name ("fp8") runs under its new one
    settings["precision"] = S.SETTINGS["precision"].rename(settings["precision"]) or settings["precision"]
    for name, choices in (("block_size", BLOCK_SIZES), ("dist1", DIST1_CHOICES), ("backend", BACKEND_CHOICES),
                          ("precision", PRECISION_CHOICES)):
        if settings[name] not in choices:
            raise ValueError(f"{name}: expected one of {list(choices)}; got {settings[name]!r}. "
                             f"Fix: pick one of those.")
    parse_dense_blocks(settings["dense_blocks"])
    return settings


def worker_location() -> dict:
    """Where a worker finds the pack: this folder, the same folder under ComfyUI's root (a Ray
    cluster's ``working_dir``), and the module name ComfyUI gave it."""
    try:
        import folder_paths  # ComfyUI's module

        relative = os.path.relpath(PACK_DIR, folder_paths.base_path)
    except Exception:  # noqa: BLE001 - outside ComfyUI's process
        relative = os.path.join("custom_nodes", PACK_DIR.name)
    return {"pack_dir": str(PACK_DIR), "relative_dir": relative, "module": PACKAGE}


class RadialAttentionPatchRay(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RadialAttentionPatchRay",
            display_name="Radial Attention Patch (Ray)",
            category=CATEGORY,
            description=(
                "Radial Attention Patch for raylight's Ray workers (several GPUs, Ulysses sequence "
                "parallelism): applies the patch inside every worker. Put it between raylight's model "
                "loader and its sampler. Ulysses only (ring degree 1); the model's attention heads must "
                "divide by the Ulysses degree (Wan 2.1-14B: 40 heads -> 2, 4, 5, 8 GPUs)."
            ),
            inputs=[io.Custom(RAY_ACTORS).Input("ray_actors", tooltip="raylight's actors with the model loaded "
                                                "(the output of Load Diffusion Model (Ray)).")] + _patch_inputs(),
            outputs=[io.Custom(RAY_ACTORS).Output(display_name="ray_actors",
                                                  tooltip="The same actors, their models patched.")],
        )

    @classmethod
    def validate_inputs(cls, dense_blocks: str | None = None) -> bool | str:
        # as Radial Attention Patch: one argument only (nodes/validation.py says why)
        problem = dense_blocks_problem(dense_blocks)
        return True if problem is None else problem

    @classmethod
    def execute(cls, ray_actors, decay_factor: float, block_size: int, dense_blocks: str, dense_steps_first: int,
                dense_steps_last: int, dist1: str, backend: str, family: str = "auto",
                precision: str = "exact") -> io.NodeOutput:
        import ray  # registered only where Ray imports
        from ray import cloudpickle

        settings = worker_settings(decay_factor, block_size, dense_blocks, dense_steps_first, dense_steps_last,
                                   dist1, backend, family, precision)
        workers = list((ray_actors or {}).get("workers") or []) if isinstance(ray_actors, dict) else []
        if not workers:
            raise ValueError("Radial Attention Patch (Ray): ray_actors has no workers. Fix: connect the output "
                             "of raylight's Load Diffusion Model (Ray).")
        parallel = ray.get(workers[0].get_parallel_dict.remote())
        problem = sequence_parallel_problem(parallel)
        if problem is not None:
            raise ValueError(f"Radial Attention Patch (Ray): {problem}")
        # by value: the worker cannot import the pack by ComfyUI's path-derived name (ray_bootstrap's doc)
        cloudpickle.register_pickle_by_value(ray_bootstrap)
        where = worker_location()
        payload = dict(settings, parallel={k: (parallel or {}).get(k) for k in SP_KEYS})
        ray.get([w.model_function_runner.remote(ray_bootstrap.apply_in_worker, where, payload) for w in workers])
        logger.info("Radial Attention Patch (Ray): patched %d workers (Ulysses %s): %s", len(workers),
                    (parallel or {}).get("ulysses_degree", 1), settings)
        return io.NodeOutput(ray_actors)
