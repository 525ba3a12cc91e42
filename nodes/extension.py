"""The pack's ``ComfyExtension`` (node API v3): gathers the nodes and registers the HTTP route.

Kept apart from ``nodes/__init__.py`` so that the patch machinery (``nodes.radial_patcher``) can be
imported with only ``comfy`` present, e.g. by ``bench/bench_e2e.py``.
"""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .comfy_compat import register_routes_at_import


class RadialAttentionExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        from .calibrate_node import RadialAttentionCalibrate, RadialAttentionLoadCalibration
        from .lora_node import RadialLoraLoader
        from .lora_save_node import SaveRadialLora
        from .patch_node import RadialAttentionPatch
        from .preview_node import SparsityPreview

        from .ray_node import raylight_available

        nodes = [RadialAttentionPatch, RadialLoraLoader, SparsityPreview, SaveRadialLora, RadialAttentionCalibrate,
                 RadialAttentionLoadCalibration]
        if raylight_available():  # several GPUs through raylight (optional; not in requirements.txt)
            from .ray_node import RadialAttentionPatchRay

            nodes.append(RadialAttentionPatchRay)
        return nodes

    async def on_load(self) -> None:
        # HTTP route for the front-end readout; harmless when no server is running.
        from . import routes

        routes.register()


register_routes_at_import()


async def comfy_entrypoint() -> RadialAttentionExtension:
    return RadialAttentionExtension()
