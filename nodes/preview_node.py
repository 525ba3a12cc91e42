"""Placeholder: replaced by the real node."""
from comfy_api.latest import io


class SparsityPreview(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="SparsityPreview", display_name="SparsityPreview", category="radial_attention", inputs=[], outputs=[])

    @classmethod
    def execute(cls):
        return io.NodeOutput()
