"""Placeholder: replaced by the real node."""
from comfy_api.latest import io


class RadialLoraLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="RadialLoraLoader", display_name="RadialLoraLoader", category="radial_attention", inputs=[], outputs=[])

    @classmethod
    def execute(cls):
        return io.NodeOutput()
