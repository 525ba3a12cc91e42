"""ComfyUI nodes of the pack (node API v3).

Each node lives in its own module; this file only gathers them into one ``ComfyExtension``.
"""

from __future__ import annotations

import logging

from comfy_api.latest import ComfyExtension, io

logger = logging.getLogger(__name__)

CATEGORY = "radial_attention"


class RadialAttentionExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        from .patch_node import RadialAttentionPatch
        from .lora_node import RadialLoraLoader
        from .preview_node import SparsityPreview

        return [RadialAttentionPatch, RadialLoraLoader, SparsityPreview]

    async def on_load(self) -> None:
        # HTTP routes for the front-end readout; harmless when no server is running.
        from . import routes

        routes.register()


async def comfy_entrypoint() -> RadialAttentionExtension:
    return RadialAttentionExtension()
