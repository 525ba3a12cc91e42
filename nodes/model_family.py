"""Which video model family a ComfyUI MODEL is, read from the model object itself.

Radial attention needs, per family: the mask rule (``"wan"``: attention sink on frame 0;
``"hunyuan"``: no sink, text tokens after the video), the patch size (to turn the latent shape
into frames x tokens per frame), the attention layout that reaches ``optimized_attention`` and
the number of transformer blocks (for ``dense_blocks``).

Detection looks at the ``comfy.model_base`` class and the diffusion model's configuration
(``model_type``, input channels, output channels). Families other than Wan are found by the
``comfy.model_base`` class names listed in ``radial_core.geometry.FAMILIES`` (the one family
table: label, strides, defaults, token layout); this module adds what needs the live model
(block counts, attention widths) and the per-architecture adapters that read a model call's
extra token groups (:func:`video_latent_shape`, :func:`extra_frames`, :func:`refiner_text_len`,
:func:`other_stream_reason`).

Two cases cannot be told apart from the weights: Wan 2.1-14B T2V and Wan 2.2-A14B T2V have
identical shapes (the 2.2 I2V experts can be told: 36 input channels without a CLIP image
projection). They are reported as Wan 2.1 with a note; the node's ``family`` input overrides
detection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import torch

logger = logging.getLogger(__name__)

from ..radial_core.geometry import FAMILIES as _SPECS
from ..radial_core.geometry import PASS_THROUGH as _PASS_THROUGH

# family key -> human name, from the one family table (radial_core.geometry.FAMILIES).
FAMILY_NAMES = {key: spec.label for key, spec in _SPECS.items()}
# The families a user may name on the nodes: those the weights cannot tell apart (one Wan
# architecture: Wan 2.1-14B T2V and Wan 2.2-A14B T2V look the same). Every other family is read
# from the model itself, so naming it could only repeat or contradict the detection.
OVERRIDE_FAMILIES = ("wan21", "wan22_14b", "wan22_5b")
FAMILY_CHOICES = ("auto",) + OVERRIDE_FAMILIES

# comfy.model_base class name -> family key (every family but Wan, which needs its weights read)
_CLASS_FAMILY = {cls: key for key, spec in _SPECS.items() for cls in spec.comfy_classes}


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
    # the ComfyUI model code the family runs on ("wan", "hunyuan_video", "mochi", "ltx"): which
    # adapter reads the extra token groups of a model call (see extra_frames and friends)
    arch: str = ""
    video_width: int = 0  # heads x head dim of the video self-attention, when another stream
    # (LTX-2's audio) has self-attention of its own: a call of another width is not video
    exact_video: bool = False  # the video self-attention is exactly frames x tokens (no extra frames)
    text_first: bool | None = None  # joint layout: the other tokens come before the video (None: ask the blocks)

    @property
    def name(self) -> str:
        return FAMILY_NAMES[self.family]

    @property
    def other_tokens(self) -> str:
        """What the non-video tokens of its self-attention are ("text", "reference + motion", ...)."""
        return _SPECS[self.family].other_tokens


def default_decay(family: str) -> float:
    """The family's default decay factor (the family table; see its ``tuned`` / ``defaults_rule``)."""
    return float(_SPECS[family].default_decay)


def text_first_of(family: str) -> bool:
    """Does the running ComfyUI put ``family``'s text (and other non-video tokens) before the video?

    The family table says so where the model's code fixes it; for HunyuanVideo (and 1.5) ComfyUI
    decides: 0.3.x builds its Flux double-stream blocks with ``flipped_img_txt=True`` ([video,
    text]); versions whose ``DoubleStreamBlock`` has no such switch put the text first (the patch
    asks the loaded model's blocks, :func:`nodes.run_state.text_comes_first`; the preview, which
    has no model, asks the block class).
    """
    spec = _SPECS[family]
    if spec.text_first is not None:
        return bool(spec.text_first)
    import inspect  # noqa: PLC0415

    from comfy.ldm.flux.layers import DoubleStreamBlock  # noqa: PLC0415

    return "flipped_img_txt" not in inspect.signature(DoubleStreamBlock.__init__).parameters


def families_json() -> dict:
    """The family registry as the front end reads it (``GET /radial_attention/families``): every
    family's entry with its text position resolved for this ComfyUI, and the pass-through list."""
    return {
        "families": {key: {**spec.as_dict(), "text_first": text_first_of(key)} for key, spec in _SPECS.items()},
        "pass_through": dict(_PASS_THROUGH),
    }


def family_keys_text() -> str:
    """``key = label`` for every family of the registry, for tooltips that take a family key."""
    return ", ".join(f"{key} = {spec.label}" for key, spec in _SPECS.items())


def decay_defaults_text() -> str:
    """The default decay factor of every family, for the node's tooltip (from the registry): the
    families with published settings first, then the untuned ones."""
    tuned = [f"{spec.label} {spec.default_decay:g}" for spec in _SPECS.values() if spec.tuned]
    untuned = [f"{spec.label} {spec.default_decay:g}" for spec in _SPECS.values() if not spec.tuned]
    return ("the authors' settings: " + ", ".join(tuned)
            + ("; untuned (no published quality figure, chosen by the rule the README's family table "
               "states): " + ", ".join(untuned) if untuned else ""))


def supported_names() -> str:
    """The families the pack patches, by label, for messages (from the registry)."""
    return ", ".join(spec.label for spec in _SPECS.values())


# Models that pass through unchanged, and why (the family registry's PASS_THROUGH table): asked by
# comfy.model_base class before any family's detection (Wan CausalAR, SeedVR2).
PASS_THROUGH = dict(_PASS_THROUGH)

# Wan variants with a diffusion model of their own: comfy.model_base class -> (family key, label,
# layout). What each one's self-attention sequence holds (comfy/ldm/wan/*.py, ComfyUI 0.33):
# - S2V (WanModel_S2V): [video | reference frame | motion frames at 3 resolutions]; the audio is
#   added by AudioInjector_WAN's per-frame cross-attention, which passes no transformer_options
#   (ComfyUI's own attention serves it, the override never sees it).
# - HuMo (HumoWanModel): [video | reference frame(s)]; the audio cross-attention reaches the
#   override as a gathered call (each frame's tokens against its 16 audio tokens): dense.
# - Animate (AnimateWanModel): video only (pose latents are added to the video tokens; the face
#   adapter's attention passes no transformer_options).
# - Animate 2 (WanAnimate2Model): video only, frame 0 the reference slot; with the pose branch on,
#   the pose video's own self-attention (F - 1 frames, same grid) is video self-attention too, and
#   the generation attends per frame (one frame's queries against [video | its pose frame]): dense.
# - SCAIL / SCAIL-2 (SCAILWanModel): [reference frame(s) | video | pose video at half resolution];
#   the reference frames go through the video's patch embedding and count as frames.
# - WanDancer (WanDancerModel): video only; the music cross-attention and the music encoder's
#   self-attention pass no transformer_options.
# "joint" layout: the tokens after the video frames (reference, motion, pose) are one dense group,
# the text rule; "wan": video tokens only.
_WAN_VARIANTS = {
    "WAN22_S2V": ("wan22_s2v", "Wan 2.2 S2V", "joint"),
    "WAN21_HuMo": ("wan21_humo", "HuMo", "joint"),
    "WAN22_Animate": ("wan22_animate", "Wan 2.2 Animate", "wan"),
    "WAN_Animate2": ("wan_animate2", "Wan Animate 2", "wan"),
    "WAN21_SCAIL": ("wan21_scail", "SCAIL", "joint"),
    "WAN21_SCAIL2": ("wan21_scail", "SCAIL-2", "joint"),
    "WAN22_WanDancer": ("wan22_dancer", "WanDancer", "wan"),
}


UNREACHABLE = ("this ComfyUI's %s does not hand transformer_options to its blocks, so ComfyUI's "
               "attention override never reaches their attention (ComfyUI 0.33's does)")


def blocks_get_transformer_options(dm) -> bool:
    """Does the model's forward hand ``transformer_options`` to its blocks? Without them ComfyUI's
    attention override (the patch's only way in) never sees their attention: ComfyUI 0.3.75's
    Wan 2.2 S2V calls ``block(x, e=..., freqs=..., context=...)``. Asked of the model's code."""
    import inspect  # noqa: PLC0415

    try:
        src = inspect.getsource(type(dm).forward_orig)
    except (OSError, TypeError, AttributeError):
        return True  # no source to read: assume it does (the run warns if nothing reached us)
    return "transformer_options=transformer_options" in src or "transformer_options=args[" in src


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

    if cls in _WAN_VARIANTS:
        if not blocks_get_transformer_options(dm):
            logger.info("Radial Attention: %s passes through: %s.", cls, UNREACHABLE % type(dm).__name__)
            return None
        key, label, layout = _WAN_VARIANTS[cls]
        arch = "wan_scail" if key == "wan21_scail" else "wan"
        return ModelFamily(key, label, _SPECS[key].mask_model, patch, n, layout, arch=arch, text_first=False)
    if type(dm) not in (wan.WanModel, wan.VaceWanModel, wan.CameraWanModel):
        logger.info("Radial Attention: %s passes through: its diffusion model %s has a token layout the "
                    "pack does not know.", cls, type(dm).__name__)
        return None
    if cls == "WAN21_FlowRVS":  # Wan 2.1 T2V weights run as a video-to-mask flow: same tokens
        return ModelFamily("wan21", "Wan 2.1 FlowRVS (video segmentation)", "wan", patch, n, "wan")

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
    """HunyuanVideo and HunyuanVideo 1.5 (one ComfyUI model code, told apart by the class that
    ComfyUI's detection chose); HunyuanImage 2.1 and other users of that code are not video."""
    cls = type(base).__name__
    family = _CLASS_FAMILY.get(cls)
    if family not in ("hunyuan", "hunyuan15"):
        return None
    patch = tuple(int(p) for p in dm.patch_size)
    if len(patch) != 3:
        return None
    n = len(dm.double_blocks) + len(dm.single_blocks)
    if family == "hunyuan":
        variant = "HunyuanVideo T2V" if cls == "HunyuanVideo" else "HunyuanVideo I2V"
    else:
        variant = "HunyuanVideo 1.5 SR (distilled)" if cls.endswith("SR_Distilled") else "HunyuanVideo 1.5"
        if getattr(dm, "time_r_in", None) is not None and not cls.endswith("SR_Distilled"):
            variant += " (step-distilled)"
    return ModelFamily(family, variant, _SPECS[family].mask_model, patch, n, "joint",
                       double_blocks=len(dm.double_blocks), arch="hunyuan_video")


def _mochi_family(base, dm) -> ModelFamily:
    p = int(dm.patch_size)
    return ModelFamily("mochi", "Mochi 1", "hunyuan", (1, p, p), len(dm.blocks), "joint", arch="mochi")


def _ltx_family(base, dm) -> ModelFamily | None:
    """LTX-Video (``LTXV``) and LTX-2 (``LTXAV``: a video and an audio stream in every block).

    Video self-attention gets ``[B, L, H*D]`` like Wan, video tokens only (the patchifier's
    patch is 1x1x1; guide latents are frames appended to the latent). In LTX-2 the audio stream's
    self-attention and the audio<->video cross-attention reach the same function: only calls of
    the video stream's width over exactly the video's tokens are video self-attention.
    """
    family = _CLASS_FAMILY.get(type(base).__name__)
    if family not in ("ltxv", "ltxav"):
        return None
    patch = tuple(int(p) for p in getattr(dm.patchifier, "patch_size", (1, 1, 1)))
    if len(patch) != 3:
        return None
    variant = "LTX-2 (video + audio)" if family == "ltxav" else "LTX-Video"
    return ModelFamily(family, variant, _SPECS[family].mask_model, patch, len(dm.transformer_blocks), "wan",
                       arch="ltx", video_width=int(dm.inner_dim) if family == "ltxav" else 0,
                       exact_video=True)


def _video_patch(dm) -> tuple[int, int, int] | None:
    """The diffusion model's (t, h, w) patch size, or None when it is not a 3-D (video) patch."""
    patch = tuple(int(p) for p in dm.patch_size)
    return patch if len(patch) == 3 else None


def _kandinsky5_family(base, dm) -> ModelFamily | None:
    """Kandinsky 5 video (``Kandinsky5``; the image model ``Kandinsky5Image`` is not video).

    Text blocks first (text-only self-attention), then visual blocks: video self-attention as
    ``[B, H, L, D]`` over the video tokens only, text by cross-attention.
    """
    if _CLASS_FAMILY.get(type(base).__name__) != "kandinsky5" or (patch := _video_patch(dm)) is None:
        return None
    return ModelFamily("kandinsky5", "Kandinsky 5 video", _SPECS["kandinsky5"].mask_model, patch,
                       len(dm.visual_transformer_blocks), "wan", arch="kandinsky5", exact_video=True)


def _cosmos_predict2_family(base, dm) -> ModelFamily | None:
    """Cosmos Predict2 (``CosmosPredict2``: Text2Image and Video2World; not Cosmos 1 nor Anima).

    Self-attention as ``[B, H, L, D]`` over the video tokens only, text by cross-attention.
    """
    if _CLASS_FAMILY.get(type(base).__name__) != "cosmos_predict2":
        return None
    pt, ps = int(dm.patch_temporal), int(dm.patch_spatial)
    variant = "Cosmos Predict2 Video2World" if getattr(base, "image_to_video", False) else "Cosmos Predict2 Text2Image"
    return ModelFamily("cosmos_predict2", variant, _SPECS["cosmos_predict2"].mask_model, (pt, ps, ps),
                       len(dm.blocks), "wan", arch="cosmos_predict2", exact_video=True)


def _cogvideox_family(base, dm) -> ModelFamily:
    """CogVideoX 1.0 and 1.5 (ComfyUI's one ``CogVideoX`` class: T2V, I2V and inpainting, e.g. VOID),
    told apart by the temporal patch (``patch_size_t``: None in 1.0, 2 in 1.5).

    One self-attention per block over the joint sequence ``[text | video]`` as ``[B, L, H*D]``
    (comfy/ldm/cogvideo/model.py: the prompt's T5 tokens first, rotary positions on the video
    only); no cross-attention. The text is treated as HunyuanVideo's (dense rows and columns).
    """
    pt = int(dm.patch_size_t or 1)
    family = "cogvideox15" if dm.patch_size_t else "cogvideox"
    kind = {16: " T2V", 32: " I2V", 48: " inpainting"}.get(int(dm.in_channels), "")  # ComfyUI's 3 configs
    p = int(dm.patch_size)
    return ModelFamily(family, _SPECS[family].label + kind, _SPECS[family].mask_model, (pt, p, p),
                       len(dm.blocks), "joint", arch="cogvideox", text_first=True)


def _cosmos1_family(base, dm) -> ModelFamily:
    """Cosmos 1 (Predict1: ``CosmosVideo``, Text2World and Video2World; comfy/ldm/cosmos/model.py).

    Each block runs self-attention, cross-attention to the text and an MLP; the self-attention
    reaches ``optimized_attention`` as ``[B, H, L, D]`` over the video tokens only (frame-major).
    """
    pt, ps = int(dm.patch_temporal), int(dm.patch_spatial)
    variant = "Cosmos 1 Video2World" if getattr(base, "image_to_video", False) else "Cosmos 1 Text2World"
    return ModelFamily("cosmos1", variant, _SPECS["cosmos1"].mask_model, (pt, ps, ps), len(dm.blocks), "wan",
                       arch="cosmos1", exact_video=True)


def _minimax_h3_family(base, dm) -> ModelFamily | None:
    """MiniMax H3 (video + stereo audio in ONE packed sequence): ``[text | conditioning rows |
    audio | video]``, the target video always last (``PackedLayout`` in comfy/ldm/minimax).

    The joint audio-video rule: everything before the video (text, keyframe / reference rows,
    audio) is treated like HunyuanVideo's text: those tokens attend to every token and every
    token attends to them (dense rows and columns); only video-to-video attention is radial.
    """
    if _CLASS_FAMILY.get(type(base).__name__) != "minimax_h3" or (patch := _video_patch(dm)) is None:
        return None
    return ModelFamily("minimax_h3", "MiniMax H3 (video + audio)", _SPECS["minimax_h3"].mask_model, patch,
                       len(dm.blocks), "joint", arch="minimax_h3", text_first=True)


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

    cls = type(base).__name__
    reason = PASS_THROUGH.get(cls)  # models whose attention radial cannot serve
    if reason is not None:
        logger.info("Radial Attention: %s passes through: %s.", cls, reason)
        return None
    if isinstance(base, mb.WAN21):
        fam = _wan_family(base, dm)
        return replace(fam, arch="wan") if fam is not None and not fam.arch else fam
    if isinstance(base, mb.HunyuanVideo):
        return _hunyuan_family(base, dm)
    if isinstance(base, mb.GenmoMochi):
        return _mochi_family(base, dm)
    by_class = _CLASS_FAMILY.get(cls)
    if by_class in ("cogvideox", "cogvideox15"):
        return _cogvideox_family(base, dm)
    if by_class == "cosmos1":
        return _cosmos1_family(base, dm)
    if by_class in ("ltxv", "ltxav"):
        return _ltx_family(base, dm)
    if by_class == "kandinsky5":
        return _kandinsky5_family(base, dm)
    if by_class == "cosmos_predict2":
        return _cosmos_predict2_family(base, dm)
    if by_class == "minimax_h3":
        return _minimax_h3_family(base, dm)
    return None


def override_family(detected: ModelFamily, family: str) -> ModelFamily:
    """Apply the user's family choice (only between families of the same architecture)."""
    if family in ("auto", "", None) or family == detected.family:
        return detected
    if family not in OVERRIDE_FAMILIES or detected.family not in OVERRIDE_FAMILIES:
        raise ValueError(
            f"family: {family!r} does not match this model, which is {detected.variant} "
            f"(family {detected.family!r}). Fix: set family to 'auto' or {detected.family!r}."
        )
    return replace(detected, family=family, note="",
                   variant=f"{detected.variant} (family set to {FAMILY_NAMES[family]})")


# ------------------------------------------------------------------ per-architecture adapters
def _ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def video_latent_shape(family: ModelFamily, x, model_kwargs: dict) -> tuple[int, ...] | None:
    """``(B, C, F, H, W)`` of the video latent of one model call, None when it is not a video.

    Usually ``x`` itself. ComfyUI packs an audio + video latent (LTX-2, MiniMax H3) into one
    ``(B, 1, N)`` tensor and passes the streams' shapes as ``latent_shapes``; video comes first.
    """
    if isinstance(x, torch.Tensor) and x.ndim == 5:
        return tuple(int(s) for s in x.shape)
    if family.arch in ("ltx", "minimax_h3"):
        shapes = model_kwargs.get("latent_shapes")
        if shapes and len(shapes[0]) == 5 and isinstance(x, torch.Tensor):
            # the shapes are the sampler's (batch 1); the call's batch is x's (CFG: 2)
            return (int(x.shape[0]),) + tuple(int(s) for s in shapes[0][1:])
    return None


def extra_frames(family: ModelFamily, model_kwargs: dict, diffusion_model) -> int:
    """Frames that join the video in the self-attention sequence besides the latent's own:
    Wan's concatenated frames (``time_dim_concat``) and reference image (``ref_conv``), SCAIL's
    reference frames (in front, through the video's own patch embedding), HunyuanVideo's
    reference latent (prepended). Token groups of other grids (S2V's motion frames, SCAIL's pose
    video) are not frames: the joint layout takes them as the dense group after the video."""
    pt = family.patch_size[0]
    extra = 0
    if family.arch == "wan_scail":  # SCAIL: the reference frame(s) go in front of the video
        ref = model_kwargs.get("reference_latent")
        if isinstance(ref, torch.Tensor) and ref.ndim == 5:
            extra += _ceil_div(ref.shape[2], pt)
    if family.arch in ("wan", "wan_scail"):
        tdc = model_kwargs.get("time_dim_concat")
        if isinstance(tdc, torch.Tensor) and tdc.ndim == 5:
            extra += _ceil_div(tdc.shape[2], pt)
        if model_kwargs.get("reference_latent") is not None and getattr(diffusion_model, "ref_conv", None) is not None:
            extra += 1
    elif family.arch == "hunyuan_video":
        ref = model_kwargs.get("ref_latent")
        if isinstance(ref, torch.Tensor) and ref.ndim == 5:
            extra += _ceil_div(ref.shape[2], pt)
    return extra


def refiner_text_len(family: ModelFamily, context) -> int | None:
    """Length of the text that a text-only self-attention runs over (dense): HunyuanVideo's token
    refiner, Kandinsky 5's text blocks."""
    if family.arch in ("hunyuan_video", "kandinsky5") and isinstance(context, torch.Tensor) and context.ndim >= 2:
        return int(context.shape[1])
    return None


def other_stream_reason(family: ModelFamily, width: int, length: int, video_tokens: int) -> str | None:
    """Why a self-attention call belongs to a non-video stream (LTX-2's audio), else None."""
    if family.video_width and width != family.video_width:
        return "audio-stream attention (LTX-2 audio self-attention, or an audio-video call of the audio width)"
    if family.arch == "ltx" and family.family == "ltxav" and length != video_tokens:
        return "audio-stream attention (LTX-2 audio self-attention, or an audio-video call of the audio width)"
    return None


def describe_model(model) -> str:
    """Short description of an unsupported model for the pass-through warning."""
    base = getattr(model, "model", model)
    dm = getattr(base, "diffusion_model", None)
    return f"{type(base).__name__} ({type(dm).__name__ if dm is not None else 'no diffusion model'})"
