"""Which video model family a ComfyUI MODEL is, read from the model object itself.

Radial attention needs, per family: the mask rule (``"wan"``: attention sink on frame 0;
``"hunyuan"``: no sink, text tokens after the video), the patch size (to turn the latent shape
into frames x tokens per frame), the attention layout that reaches ``optimized_attention`` and
the number of transformer blocks (for ``dense_blocks``).

Detection looks at the ``comfy.model_base`` class and the diffusion model's configuration
(``model_type``, input channels, output channels). Two cases cannot be told apart from the
weights: Wan 2.1-14B T2V and Wan 2.2-A14B T2V have identical shapes (the 2.2 I2V experts can
be told: 36 input channels without a CLIP image projection). They are reported as Wan 2.1 with
a note; the node's ``family`` input overrides detection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

# family key -> human name. Keys match radial_core's family names (preview, geometry).
FAMILY_NAMES = {
    "wan21": "Wan 2.1",
    "wan22_14b": "Wan 2.2-A14B",
    "wan22_5b": "Wan 2.2-5B",
    "hunyuan": "HunyuanVideo",
    "mochi": "Mochi",
}
FAMILY_CHOICES = ("auto",) + tuple(FAMILY_NAMES)

# The authors' decay factors (Wan 2.1 0.2, Wan 2.2 0.8, HunyuanVideo 0.95). Mochi: the paper
# runs Mochi 1 but publishes no factor; it has HunyuanVideo's layout (joint video+text, no sink),
# so it gets HunyuanVideo's value. radial_core.geometry.default_decay wins when it exists.
_FALLBACK_DECAY = {"wan21": 0.2, "wan22_14b": 0.8, "wan22_5b": 0.8, "hunyuan": 0.95, "mochi": 0.95}


@dataclass(frozen=True)
class ModelFamily:
    """What the patch needs to know about one model."""

    family: str  # key of FAMILY_NAMES
    variant: str  # e.g. "Wan 2.1 I2V", for logs
    mask_model: str  # "wan" or "hunyuan" (radial_block_mask's model argument)
    patch_size: tuple[int, int, int]  # (t, h, w) of the patch embedding
    num_blocks: int  # self-attention blocks per forward (main stack)
    layout: str  # "wan": [B, L, H*D], video only; "joint": [B, H, L, D], video then text
    note: str = ""  # caveat shown once in the log (e.g. ambiguous detection)
    vace_layers: tuple[int, ...] = field(default=())  # Wan VACE: main blocks followed by VACE blocks
    double_blocks: int = 0  # HunyuanVideo: double-stream blocks (numbered before the single ones)

    @property
    def name(self) -> str:
        return FAMILY_NAMES[self.family]


def default_decay(family: str) -> float:
    """The authors' decay factor for a family (radial_core.geometry's table when present)."""
    try:
        from ..radial_core import geometry  # noqa: PLC0415  (lands separately)

        value = geometry.default_decay(family)
        if value is not None:
            return float(value)
    except (ImportError, AttributeError, KeyError, ValueError):
        pass
    return _FALLBACK_DECAY[family]


def _wan_family(base, dm) -> ModelFamily | None:
    import comfy.ldm.wan.model as wan  # noqa: PLC0415

    patch = tuple(int(p) for p in dm.patch_size)
    n = len(dm.blocks)
    cls = type(base).__name__
    model_type = getattr(dm, "model_type", "t2v")
    in_dim = int(dm.patch_embedding.weight.shape[1])
    out_dim = int(getattr(dm, "out_dim", 16))
    has_img = getattr(dm, "img_emb", None) is not None
    has_ref = getattr(dm, "ref_conv", None) is not None

    # Variants whose block loop or token layout differs (audio, face, motion tokens): not
    # covered by the paper and not checked here, so they pass through.
    if cls in ("WAN22_S2V", "WAN21_HuMo", "WAN22_Animate"):
        return None
    if type(dm) not in (wan.WanModel, wan.VaceWanModel, wan.CameraWanModel):
        return None

    if out_dim == 48:
        return ModelFamily("wan22_5b", "Wan 2.2 TI2V-5B", "wan", patch, n, "wan")
    if isinstance(dm, wan.VaceWanModel):
        mapping = getattr(dm, "vace_layers_mapping", {})
        return ModelFamily("wan21", "Wan 2.1 VACE", "wan", patch, n, "wan",
                           vace_layers=tuple(sorted(int(i) for i in mapping)))
    if isinstance(dm, wan.CameraWanModel):
        if has_img:
            return ModelFamily("wan21", "Wan 2.1 Fun Camera", "wan", patch, n, "wan")
        return ModelFamily("wan22_14b", "Wan 2.2 Fun Camera", "wan", patch, n, "wan")
    if in_dim == 48:
        return ModelFamily("wan21", "Wan 2.1 Fun Control", "wan", patch, n, "wan")
    if model_type == "i2v" and has_img:
        flf = getattr(dm.img_emb, "emb_pos", None) is not None
        return ModelFamily("wan21", "Wan 2.1 FLF2V" if flf else "Wan 2.1 I2V", "wan", patch, n, "wan")
    if in_dim == 36 and not has_img:
        return ModelFamily("wan22_14b", "Wan 2.2 A14B I2V", "wan", patch, n, "wan")
    if has_ref:  # Wan Fun 1.1 / 2.2 Fun with a reference-image conv: the version is not visible
        return ModelFamily("wan21", "Wan Fun (reference image)", "wan", patch, n, "wan",
                           note="Wan 2.1 Fun and Wan 2.2 Fun weights look alike here; using Wan 2.1's "
                                "defaults. For Wan 2.2 Fun set the node's family to 'wan22_14b'.")
    note = ""
    if int(getattr(dm, "dim", 0)) == 5120:  # 14B: Wan 2.1 T2V or a Wan 2.2 A14B T2V expert
        note = (
            "Wan 2.1-14B T2V and Wan 2.2-A14B T2V weights have the same shapes; using Wan 2.1's "
            "defaults. For a Wan 2.2 A14B expert set the node's family to 'wan22_14b' (decay 0.8)."
        )
    return ModelFamily("wan21", "Wan 2.1 T2V", "wan", patch, n, "wan", note=note)


def _hunyuan_family(base, dm) -> ModelFamily | None:
    cls = type(base).__name__
    if cls not in ("HunyuanVideo", "HunyuanVideoI2V", "HunyuanVideoSkyreelsI2V"):
        return None  # HunyuanVideo 1.5, HunyuanImage: other models, not in the paper
    patch = tuple(int(p) for p in dm.patch_size)
    if len(patch) != 3:
        return None
    n = len(dm.double_blocks) + len(dm.single_blocks)
    variant = "HunyuanVideo T2V" if cls == "HunyuanVideo" else "HunyuanVideo I2V"
    return ModelFamily("hunyuan", variant, "hunyuan", patch, n, "joint", double_blocks=len(dm.double_blocks))


def _mochi_family(base, dm) -> ModelFamily:
    p = int(dm.patch_size)
    return ModelFamily("mochi", "Mochi 1", "hunyuan", (1, p, p), len(dm.blocks), "joint")


def _unwrap(module):
    """The model inside torch.compile's wrapper (ComfyUI's TorchCompileModel node puts one in
    place while the model is loaded)."""
    seen = 0
    while hasattr(module, "_orig_mod") and seen < 8:
        module = module._orig_mod
        seen += 1
    return module


def detect_family(model) -> ModelFamily | None:
    """Family of a ModelPatcher (or a comfy.model_base model); None when not supported."""
    base = getattr(model, "model", model)
    dm = _unwrap(getattr(base, "diffusion_model", None))
    if dm is None:
        return None
    import comfy.model_base as mb  # noqa: PLC0415

    if isinstance(base, mb.WAN21):
        return _wan_family(base, dm)
    if isinstance(base, mb.HunyuanVideo):
        return _hunyuan_family(base, dm)
    if isinstance(base, mb.GenmoMochi):
        return _mochi_family(base, dm)
    return None


def override_family(detected: ModelFamily, family: str) -> ModelFamily:
    """Apply the user's family choice (only between families of the same architecture)."""
    if family in ("auto", "", None) or family == detected.family:
        return detected
    wan = ("wan21", "wan22_14b", "wan22_5b")
    if family not in FAMILY_NAMES or not (detected.family in wan and family in wan):
        raise ValueError(
            f"family: {family!r} does not match this model, which is {detected.variant} "
            f"(family {detected.family!r}). Fix: set family to 'auto' or {detected.family!r}."
        )
    return ModelFamily(
        family,
        f"{detected.variant} (family set to {FAMILY_NAMES[family]})",
        detected.mask_model,
        detected.patch_size,
        detected.num_blocks,
        detected.layout,
        vace_layers=detected.vace_layers,
        double_blocks=detected.double_blocks,
    )


def describe_model(model) -> str:
    """Short description of an unsupported model for the pass-through warning."""
    base = getattr(model, "model", model)
    dm = getattr(base, "diffusion_model", None)
    return f"{type(base).__name__} ({type(dm).__name__ if dm is not None else 'no diffusion model'})"
