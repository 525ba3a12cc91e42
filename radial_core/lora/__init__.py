"""LoRA files and formats that need no ComfyUI: safe reading (``file``), the LoRA scale from
configs (``scale``) and the radial metadata keys (``metadata``). What knows ComfyUI's weight
names lives in ``nodes/lora_keys.py``; applying a LoRA in ``nodes/lora_apply.py``."""
