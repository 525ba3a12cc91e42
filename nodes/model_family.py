"""Which video model family a ComfyUI MODEL is, and how its model calls read: one adapter per family.

The registry (``radial_core.families``) says what each family is without ComfyUI: label, strides,
patch, mask rule, defaults. This module is the ComfyUI side of the same families: :data:`ADAPTERS`,
one :class:`FamilyAdapter` per registry family in the registry's order, each holding

- the ``comfy.model_base`` classes it serves and the variant each one is (``classes``);
- its detection from the live model (:meth:`~FamilyAdapter.detect`: patch, block count,
  attention widths, read from the diffusion model ComfyUI built);
- what one model call carries for it: the video latent's shape (:meth:`~FamilyAdapter.video_latent_shape`),
  frames that join the video in the sequence (:meth:`~FamilyAdapter.extra_frames`), the length of a
  text-only self-attention (:meth:`~FamilyAdapter.refiner_text_len`), self-attention of another stream
  (:meth:`~FamilyAdapter.other_stream_reason`) and where its text sits (:meth:`~FamilyAdapter.text_first`);
- the pieces of model file names that tell it (``file_names``, for the front end's readout).

Each architecture is one template class (Wan, the Wan variants, HunyuanVideo, LTX, ...) whose
defaults its families share; a family is one instance of it. Detection: models that pass through
(:data:`PASS_THROUGH`) first, then the adapters that name the model's class, then those that take
any subclass of their base class (Wan's T2V / I2V template: ComfyUI has many ``WAN21`` subclasses,
told apart by the weights); an adapter may detect a sibling family of its architecture (Wan 2.1 /
Wan 2.2 A14B / Wan 2.2 5B, CogVideoX 1.0 / 1.5).

Two cases cannot be told apart from the weights: Wan 2.1-14B T2V and Wan 2.2-A14B T2V have
identical shapes (the 2.2 I2V experts can be told: 36 input channels without a CLIP image
projection). They are reported as Wan 2.1 with a note; the node's ``family`` input overrides
detection.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch

from ..radial_core.families import FamilySpec, families, family_spec
from . import comfy_compat

logger = logging.getLogger(__name__)

# The families a user may name on the nodes: those the weights cannot tell apart (one Wan
# architecture: Wan 2.1-14B T2V and Wan 2.2-A14B T2V look the same). Every other family is read
# from the model itself, so naming it could only repeat or contradict the detection.
OVERRIDE_FAMILIES = ("wan21", "wan22_14b", "wan22_5b")
FAMILY_CHOICES = ("auto",) + OVERRIDE_FAMILIES

# Video models that stay dense, by comfy.model_base class, with the reason (logged once); asked
# before any adapter.
PASS_THROUGH: dict[str, str] = {
    "WAN21_CausalAR": (
        "causal autoregressive Wan generates chunk by chunk: each self-attention call takes one "
        "chunk's queries against a KV cache of every earlier frame (queries != keys, causal, a "
        "different sequence every call); Radial Attention's mask is one static, bidirectional "
        "mask over the whole video, so it does not apply"),
    "SeedVR2": (
        "SeedVR2 (video restoration) attends only within 3-D windows (Swin-style, shifted by half a "
        "window in every other block: up to 8 latent frames by about a 3 x 3 split of the frame, each "
        "window with its own copy of the text): there is no self-attention over the whole video for "
        "the radial mask to thin (the windows already make it local), and its per-window attention "
        "calls carry no transformer_options, so no attention override reaches them"),
}

AUDIO_STREAM = "audio-stream attention (LTX-2 audio self-attention, or an audio-video call of the audio width)"


@dataclass(frozen=True)
class ModelFamily:
    """What the patch needs to know about one model."""

    family: str  # registry key (radial_core.families)
    variant: str  # e.g. "Wan 2.1 I2V", for logs
    mask_model: str  # "wan" or "hunyuan" (radial_block_mask's model argument)
    patch_size: tuple[int, int, int]  # (t, h, w) of the patch embedding
    num_blocks: int  # self-attention blocks per forward (main stack)
    layout: str  # "wan": [B, L, H*D], video only; "joint": [B, H, L, D], video then text
    note: str = ""  # caveat shown once in the log (e.g. ambiguous detection)
    vace_layers: tuple[int, ...] = field(default=())  # Wan VACE: main blocks followed by VACE blocks
    double_blocks: int = 0  # HunyuanVideo: double-stream blocks (numbered before the single ones)
    video_width: int = 0  # heads x head dim of the video self-attention, when another stream
    # (LTX-2's audio) has self-attention of its own: a call of another width is not video
    exact_video: bool = False  # the video self-attention is exactly frames x tokens (no extra frames)

    @property
    def adapter(self) -> FamilyAdapter:
        """The family's adapter (its model calls' extra token groups, its text position)."""
        return adapter(self.family)

    @property
    def other_tokens(self) -> str:
        """What the non-video tokens of its self-attention are ("text", "reference + motion", ...)."""
        return family_spec(self.family).other_tokens


def _ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def _frames_of(latent, pt: int) -> int:
    """Token frames of a 5-D latent ``(B, C, F, H, W)`` at temporal patch ``pt``; 0 for anything else."""
    if isinstance(latent, torch.Tensor) and latent.ndim == 5:
        return _ceil_div(latent.shape[2], pt)
    return 0


def _text_len(context) -> int | None:
    """Tokens of the text a text-only self-attention runs over (the model call's ``context``)."""
    if isinstance(context, torch.Tensor) and context.ndim >= 2:
        return int(context.shape[1])
    return None


def _video_patch(dm) -> tuple[int, int, int] | None:
    """The diffusion model's (t, h, w) patch size, or None when it is not a 3-D (video) patch."""
    patch = tuple(int(p) for p in dm.patch_size)
    return patch if len(patch) == 3 else None


# ----------------------------------------------------------------------------- the template
class FamilyAdapter:
    """One registry family as ComfyUI runs it (the template: defaults for a video-only model).

    ``classes``: ``comfy.model_base`` class name -> the variant it is ("" where :meth:`detect`
    works it out). ``file_names``: lower-case pieces of model file names (as ComfyUI's templates
    name them) that tell this family, for the front end's readout before a run (the longest piece
    found wins; the patch itself detects from the weights). An architecture subclasses this and
    overrides what its model calls do differently.
    """

    layout = "wan"  # "wan": [B, L, H*D] (or [B, H, L, D]) over the video only; "joint": video + others
    exact_video = False  # every video self-attention is exactly the latent's frames x tokens

    def __init__(self, key: str, classes: Mapping[str, str] | None = None, file_names: tuple[str, ...] = ()):
        family_spec(key)  # a key of the registry, or a ValueError at import
        self.key = key
        self.classes: Mapping[str, str] = dict(classes or {})
        self.file_names = tuple(file_names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"

    @property
    def spec(self) -> FamilySpec:
        return family_spec(self.key)

    @property
    def label(self) -> str:
        """The family's one label (the registry's)."""
        return self.spec.label

    # ---- detection
    def takes_subclass(self, base) -> bool:
        """Does this adapter detect a model whose class no adapter names (a subclass of its base)?"""
        return False

    def detect(self, base, dm) -> ModelFamily | None:
        """The family of ``base`` (a comfy.model_base model) with diffusion model ``dm``, or None."""
        patch = _video_patch(dm)
        if patch is None:
            return None
        return self.found(self.classes[type(base).__name__], patch, self.num_blocks(dm))

    def num_blocks(self, dm) -> int:
        return len(dm.blocks)

    def found(self, variant: str, patch, num_blocks: int, **kw) -> ModelFamily:
        """A :class:`ModelFamily` of this adapter's family (``key=`` for a sibling of its architecture)."""
        key = kw.pop("key", self.key)
        kw.setdefault("exact_video", self.exact_video)
        return ModelFamily(key, variant, family_spec(key).mask_model, tuple(int(p) for p in patch),
                           int(num_blocks), kw.pop("layout", self.layout), **kw)

    # ---- one model call
    def video_latent_shape(self, x, model_kwargs: dict) -> tuple[int, ...] | None:
        """``(B, C, F, H, W)`` of the video latent of one model call, None when it is not a video."""
        if isinstance(x, torch.Tensor) and x.ndim == 5:
            return tuple(int(s) for s in x.shape)
        return None

    def extra_frames(self, family: ModelFamily, model_kwargs: dict, diffusion_model) -> int:
        """Frames that join the video in the self-attention sequence besides the latent's own."""
        return 0

    def refiner_text_len(self, context) -> int | None:
        """Length of the text that a text-only self-attention runs over (dense), if the model has one."""
        return None

    def other_stream_reason(self, family: ModelFamily, width: int, length: int, video_tokens: int) -> str | None:
        """Why a self-attention call belongs to a non-video stream, else None."""
        return None

    def text_first(self, diffusion_model) -> bool:
        """Does this model's self-attention put its non-video tokens before the video?"""
        return bool(self.spec.text_first)

    def text_first_here(self) -> bool:
        """The same without a model (the preview, the estimate route): for the running ComfyUI."""
        return bool(self.spec.text_first)


# ----------------------------------------------------------------------- the architectures
class WanAdapter(FamilyAdapter):
    """Wan 2.1 / 2.2 (comfy/ldm/wan/model.py): video-only self-attention as ``[B, L, H*D]``.

    The one template whose families are told apart by the weights: ``WAN21`` and its subclasses
    that no other adapter names (T2V, I2V, FLF2V, VACE, Fun, Camera, FlowRVS, Wan 2.2), detected
    by the ``wan21`` adapter as Wan 2.1, Wan 2.2 A14B or Wan 2.2 TI2V-5B.
    """

    def takes_subclass(self, base) -> bool:
        import comfy.model_base as mb  # nodes/ may import ComfyUI

        return self.key == "wan21" and isinstance(base, mb.WAN21)

    def detect(self, base, dm) -> ModelFamily | None:
        import comfy.ldm.wan.model as wan

        patch = tuple(int(p) for p in dm.patch_size)
        n = len(dm.blocks)
        cls = type(base).__name__
        model_type = getattr(dm, "model_type", "t2v")
        in_dim = int(dm.patch_embedding.weight.shape[1])
        out_dim = int(getattr(dm, "out_dim", 16))
        has_img = getattr(dm, "img_emb", None) is not None
        has_ref = getattr(dm, "ref_conv", None) is not None

        if type(dm) not in (wan.WanModel, wan.VaceWanModel, wan.CameraWanModel):
            logger.info("Radial Attention: %s passes through: its diffusion model %s has a token layout the "
                        "pack does not know.", cls, type(dm).__name__)
            return None
        if cls == "WAN21_FlowRVS":  # Wan 2.1 T2V weights run as a video-to-mask flow: same tokens
            return self.found("Wan 2.1 FlowRVS (video segmentation)", patch, n)
        if out_dim == 48:
            return self.found("Wan 2.2 TI2V-5B", patch, n, key="wan22_5b")
        if isinstance(dm, wan.VaceWanModel):
            mapping = getattr(dm, "vace_layers_mapping", {})
            return self.found("Wan 2.1 VACE", patch, n, vace_layers=tuple(sorted(int(i) for i in mapping)))
        if isinstance(dm, wan.CameraWanModel):
            if has_img:
                return self.found("Wan 2.1 Fun Camera", patch, n)
            return self.found("Wan 2.2 Fun Camera", patch, n, key="wan22_14b")
        if in_dim == 48:
            return self.found("Wan 2.1 Fun Control", patch, n)
        if model_type == "i2v" and has_img:
            flf = getattr(dm.img_emb, "emb_pos", None) is not None
            return self.found("Wan 2.1 FLF2V" if flf else "Wan 2.1 I2V", patch, n)
        if in_dim == 36 and not has_img:
            return self.found("Wan 2.2 A14B I2V", patch, n, key="wan22_14b")
        if has_ref:  # Wan Fun 1.1 / 2.2 Fun with a reference-image conv: the version is not visible
            return self.found("Wan Fun (reference image)", patch, n,
                              note="Wan 2.1 Fun and Wan 2.2 Fun weights look alike here; using Wan 2.1's "
                                   "defaults. For Wan 2.2 Fun set the node's family to 'wan22_14b'.")
        note = ""
        if int(getattr(dm, "dim", 0)) == 5120:  # 14B: Wan 2.1 T2V or a Wan 2.2 A14B T2V expert
            note = (
                "Wan 2.1-14B T2V and Wan 2.2-A14B T2V weights have the same shapes; using Wan 2.1's "
                "defaults. For a Wan 2.2 A14B expert set the node's family to 'wan22_14b' (decay 0.8)."
            )
        return self.found("Wan 2.1 T2V", patch, n, note=note)

    def extra_frames(self, family: ModelFamily, model_kwargs: dict, diffusion_model) -> int:
        """Wan's concatenated frames (``time_dim_concat``) and reference image (``ref_conv``). Token
        groups of other grids (S2V's motion frames, SCAIL's pose video) are not frames: the joint
        layout takes them as the dense group after the video."""
        extra = _frames_of(model_kwargs.get("time_dim_concat"), family.patch_size[0])
        if model_kwargs.get("reference_latent") is not None and getattr(diffusion_model, "ref_conv", None) is not None:
            extra += 1
        return extra


class WanVariantAdapter(WanAdapter):
    """A Wan variant with a diffusion model of its own, by class name. What each one's
    self-attention sequence holds (comfy/ldm/wan/*.py, ComfyUI 0.33):

    - S2V (WanModel_S2V): [video | reference frame | motion frames at 3 resolutions]; the audio is
      added by AudioInjector_WAN's per-frame cross-attention, which passes no transformer_options
      (ComfyUI's own attention serves it, the override never sees it).
    - HuMo (HumoWanModel): [video | reference frame(s)]; the audio cross-attention reaches the
      override as a gathered call (each frame's tokens against its 16 audio tokens): dense.
    - Animate (AnimateWanModel): video only (pose latents are added to the video tokens; the face
      adapter's attention passes no transformer_options).
    - Animate 2 (WanAnimate2Model): video only, frame 0 the reference slot; with the pose branch on,
      the pose video's own self-attention (F - 1 frames, same grid) is video self-attention too, and
      the generation attends per frame (one frame's queries against [video | its pose frame]): dense.
    - SCAIL / SCAIL-2 (SCAILWanModel): [reference frame(s) | video | pose video at half resolution];
      the reference frames go through the video's patch embedding and count as frames.
    - WanDancer (WanDancerModel): video only; the music cross-attention and the music encoder's
      self-attention pass no transformer_options.

    ``layout`` "joint": the tokens after the video frames (reference, motion, pose) are one dense
    group, the text rule; "wan": video tokens only.
    """

    def __init__(self, key: str, classes: Mapping[str, str], file_names: tuple[str, ...] = (), *, layout: str):
        super().__init__(key, classes, file_names)
        self.layout = layout

    def takes_subclass(self, base) -> bool:
        return False

    def detect(self, base, dm) -> ModelFamily | None:
        if not comfy_compat.blocks_get_transformer_options(dm):
            logger.info("Radial Attention: %s passes through: %s.", type(base).__name__,
                        comfy_compat.UNREACHABLE % type(dm).__name__)
            return None
        return self.found(self.classes[type(base).__name__], tuple(int(p) for p in dm.patch_size), len(dm.blocks))


class ScailAdapter(WanVariantAdapter):
    def extra_frames(self, family: ModelFamily, model_kwargs: dict, diffusion_model) -> int:
        """SCAIL's reference frame(s) go in front of the video, through its own patch embedding."""
        front = _frames_of(model_kwargs.get("reference_latent"), family.patch_size[0])
        return front + super().extra_frames(family, model_kwargs, diffusion_model)


class HunyuanVideoAdapter(FamilyAdapter):
    """HunyuanVideo and HunyuanVideo 1.5 (one ComfyUI model code, told apart by the class that
    ComfyUI's detection chose; HunyuanImage 2.1 and other users of that code are not video): one
    joint self-attention over video and text as ``[B, H, L, D]``, a token refiner before the blocks."""

    layout = "joint"

    def num_blocks(self, dm) -> int:
        return len(dm.double_blocks) + len(dm.single_blocks)

    def detect(self, base, dm) -> ModelFamily | None:
        patch = _video_patch(dm)
        if patch is None:
            return None
        cls = type(base).__name__
        variant = self.classes[cls]
        if self.key == "hunyuan15" and getattr(dm, "time_r_in", None) is not None and not cls.endswith("SR_Distilled"):
            variant += " (step-distilled)"
        return self.found(variant, patch, self.num_blocks(dm), double_blocks=len(dm.double_blocks))

    def extra_frames(self, family: ModelFamily, model_kwargs: dict, diffusion_model) -> int:
        """HunyuanVideo's reference latent (prepended)."""
        return _frames_of(model_kwargs.get("ref_latent"), family.patch_size[0])

    def refiner_text_len(self, context) -> int | None:
        """The token refiner's self-attention runs over the text alone."""
        return _text_len(context)

    def text_first(self, diffusion_model) -> bool:
        """Asked of the model itself: ComfyUI's double-stream blocks (Flux's) put [text, video]
        (see comfy_compat.text_after_video for the versions that put the video first)."""
        blocks = getattr(diffusion_model, "double_blocks", None)
        if not blocks:
            return False
        return not comfy_compat.text_after_video(blocks[0])

    def text_first_here(self) -> bool:
        return not comfy_compat.double_stream_blocks_flip()


class MochiAdapter(FamilyAdapter):
    """Mochi 1 (comfy/ldm/genmo): [video | text] joint self-attention, a square spatial patch."""

    layout = "joint"

    def detect(self, base, dm) -> ModelFamily | None:
        p = int(dm.patch_size)
        return self.found(self.classes[type(base).__name__], (1, p, p), len(dm.blocks))


class _PackedStreamsAdapter(FamilyAdapter):
    """A model whose latent packs an audio and a video stream into one ``(B, 1, N)`` tensor; ComfyUI
    passes the streams' shapes as ``latent_shapes``, video first."""

    def video_latent_shape(self, x, model_kwargs: dict) -> tuple[int, ...] | None:
        shape = super().video_latent_shape(x, model_kwargs)
        if shape is not None:
            return shape
        shapes = model_kwargs.get("latent_shapes")
        if shapes and len(shapes[0]) == 5 and isinstance(x, torch.Tensor):
            # the shapes are the sampler's (batch 1); the call's batch is x's (CFG: 2)
            return (int(x.shape[0]),) + tuple(int(s) for s in shapes[0][1:])
        return None


class LtxAdapter(_PackedStreamsAdapter):
    """LTX-Video (``LTXV``) and LTX-2 (``LTXAV``: a video and an audio stream in every block).

    Video self-attention gets ``[B, L, H*D]`` like Wan, video tokens only (the patchifier's
    patch is 1x1x1; guide latents are frames appended to the latent). In LTX-2 the audio stream's
    self-attention and the audio<->video cross-attention reach the same function: only calls of
    the video stream's width over exactly the video's tokens are video self-attention.
    """

    exact_video = True

    def detect(self, base, dm) -> ModelFamily | None:
        patch = tuple(int(p) for p in getattr(dm.patchifier, "patch_size", (1, 1, 1)))
        if len(patch) != 3:
            return None
        width = int(dm.inner_dim) if self.key == "ltxav" else 0
        return self.found(self.classes[type(base).__name__], patch, len(dm.transformer_blocks), video_width=width)

    def other_stream_reason(self, family: ModelFamily, width: int, length: int, video_tokens: int) -> str | None:
        if family.video_width and width != family.video_width:
            return AUDIO_STREAM
        if self.key == "ltxav" and length != video_tokens:
            return AUDIO_STREAM
        return None


class Kandinsky5Adapter(FamilyAdapter):
    """Kandinsky 5 video (``Kandinsky5``; the image model ``Kandinsky5Image`` is not video).

    Text blocks first (text-only self-attention), then visual blocks: video self-attention as
    ``[B, H, L, D]`` over the video tokens only, text by cross-attention.
    """

    exact_video = True

    def num_blocks(self, dm) -> int:
        return len(dm.visual_transformer_blocks)

    def refiner_text_len(self, context) -> int | None:
        """The text blocks' self-attention runs over the text alone."""
        return _text_len(context)


class CosmosAdapter(FamilyAdapter):
    """Cosmos Predict2 (``CosmosPredict2``: Text2Image and Video2World; not Cosmos 1 nor Anima) and
    Cosmos 1 (Predict1: ``CosmosVideo``, Text2World and Video2World; comfy/ldm/cosmos/model.py).

    Self-attention as ``[B, H, L, D]`` over the video tokens only (frame-major), text by
    cross-attention (Cosmos 1: each block self-attention, cross-attention, MLP). ``classes``
    names the variant without and with ``image_to_video``.
    """

    exact_video = True

    def __init__(self, key: str, classes: Mapping[str, tuple[str, str]], file_names: tuple[str, ...] = ()):
        super().__init__(key, {cls: "" for cls in classes}, file_names)
        self.variants = dict(classes)

    def detect(self, base, dm) -> ModelFamily | None:
        pt, ps = int(dm.patch_temporal), int(dm.patch_spatial)
        plain, i2v = self.variants[type(base).__name__]
        return self.found(i2v if getattr(base, "image_to_video", False) else plain, (pt, ps, ps), len(dm.blocks))


class CogVideoXAdapter(FamilyAdapter):
    """CogVideoX 1.0 and 1.5 (ComfyUI's one ``CogVideoX`` class: T2V, I2V and inpainting, e.g. VOID),
    told apart by the temporal patch (``patch_size_t``: None in 1.0, 2 in 1.5).

    One self-attention per block over the joint sequence ``[text | video]`` as ``[B, L, H*D]``
    (comfy/ldm/cogvideo/model.py: the prompt's T5 tokens first, rotary positions on the video
    only); no cross-attention. The text is treated as HunyuanVideo's (dense rows and columns).
    """

    layout = "joint"
    KINDS = {16: " T2V", 32: " I2V", 48: " inpainting"}  # input channels of ComfyUI's 3 configs

    def detect(self, base, dm) -> ModelFamily | None:
        pt = int(dm.patch_size_t or 1)
        key = "cogvideox15" if dm.patch_size_t else "cogvideox"
        p = int(dm.patch_size)
        return self.found(family_spec(key).label + self.KINDS.get(int(dm.in_channels), ""), (pt, p, p),
                           len(dm.blocks), key=key)


class MiniMaxH3Adapter(_PackedStreamsAdapter):
    """MiniMax H3 (video + stereo audio in ONE packed sequence): ``[text | conditioning rows |
    audio | video]``, the target video always last (``PackedLayout`` in comfy/ldm/minimax).

    The joint audio-video rule: everything before the video (text, keyframe / reference rows,
    audio) is treated like HunyuanVideo's text: those tokens attend to every token and every
    token attends to them (dense rows and columns); only video-to-video attention is radial.
    """

    layout = "joint"


# ------------------------------------------------------------------------- the families
# One adapter per registry family, in the registry's order (radial_core.families).
ADAPTERS: tuple[FamilyAdapter, ...] = (
    WanAdapter("wan21", file_names=("wan",)),
    WanAdapter("wan22_14b", file_names=("wan2.2", "wan2_2", "wan22")),
    WanAdapter("wan22_5b", file_names=("wan2.2_ti2v_5b", "wan2_2_ti2v_5b", "ti2v_5b", "wan22_5b")),
    HunyuanVideoAdapter("hunyuan", {"HunyuanVideo": "HunyuanVideo T2V", "HunyuanVideoI2V": "HunyuanVideo I2V",
                                    "HunyuanVideoSkyreelsI2V": "HunyuanVideo I2V"}, ("hunyuan",)),
    MochiAdapter("mochi", {"GenmoMochi": "Mochi 1"}, ("mochi",)),
    HunyuanVideoAdapter("hunyuan15", {"HunyuanVideo15": "HunyuanVideo 1.5",
                                      "HunyuanVideo15_SR_Distilled": "HunyuanVideo 1.5 SR (distilled)"},
                        ("hunyuanvideo1.5", "hunyuan_video_1.5", "hunyuanvideo_1.5", "hunyuanvideo15")),
    LtxAdapter("ltxv", {"LTXV": "LTX-Video"}, ("ltx-video", "ltxv", "ltx_video")),
    LtxAdapter("ltxav", {"LTXAV": "LTX-2 (video + audio)"}, ("ltx-2", "ltx2", "ltx_2")),
    Kandinsky5Adapter("kandinsky5", {"Kandinsky5": "Kandinsky 5 video"}, ("kandinsky5", "kandinsky_5", "kandinsky-5")),
    CosmosAdapter("cosmos_predict2", {"CosmosPredict2": ("Cosmos Predict2 Text2Image", "Cosmos Predict2 Video2World")},
                  ("cosmos_predict2", "cosmos-predict2", "cosmos_predict_2")),
    MiniMaxH3Adapter("minimax_h3", {"MiniMaxH3": "MiniMax H3 (video + audio)"}, ("minimax",)),
    # one ComfyUI class for both: the first adapter that names it tells 1.0 from 1.5
    CogVideoXAdapter("cogvideox", {"CogVideoX": ""}, ("cogvideox", "cogvideo")),
    CogVideoXAdapter("cogvideox15", {"CogVideoX": ""},
                     ("cogvideox1.5", "cogvideox-1.5", "cogvideox_1.5", "cogvideox1_5", "cogvideox15", "void_pass")),
    CosmosAdapter("cosmos1", {"CosmosVideo": ("Cosmos 1 Text2World", "Cosmos 1 Video2World")},
                  ("cosmos-1_0", "cosmos_1_0", "cosmos-1.0", "cosmos1")),
    WanVariantAdapter("wan22_s2v", {"WAN22_S2V": "Wan 2.2 S2V"}, ("wan2.2_s2v", "wan2_2_s2v", "s2v_14b"),
                      layout="joint"),
    WanVariantAdapter("wan21_humo", {"WAN21_HuMo": "HuMo"}, ("humo",), layout="joint"),
    WanVariantAdapter("wan22_animate", {"WAN22_Animate": "Wan 2.2 Animate"},
                      ("wan2.2_animate", "wan2_2_animate", "animate_14b"), layout="wan"),
    WanVariantAdapter("wan_animate2", {"WAN_Animate2": "Wan Animate 2"},
                      ("wan_animate2", "wan-animate-2", "wan_animate_2", "animate2"), layout="wan"),
    ScailAdapter("wan21_scail", {"WAN21_SCAIL": "SCAIL", "WAN21_SCAIL2": "SCAIL-2"}, ("scail",), layout="joint"),
    WanVariantAdapter("wan22_dancer", {"WAN22_WanDancer": "WanDancer"}, ("wandancer", "wan_dancer"), layout="wan"),
)
_BY_KEY = {a.key: a for a in ADAPTERS}
if tuple(_BY_KEY) != tuple(families()):
    raise RuntimeError(f"model_family.ADAPTERS and the family registry differ: {tuple(_BY_KEY)} vs {tuple(families())}")


def adapter(family: str) -> FamilyAdapter:
    """The adapter of a registry family (ValueError naming the known keys for any other)."""
    family_spec(family)
    return _BY_KEY[family]


# ------------------------------------------------------------------------------ detection
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
    cls = type(base).__name__
    reason = PASS_THROUGH.get(cls)  # models whose attention radial cannot serve
    if reason is not None:
        logger.info("Radial Attention: %s passes through: %s.", cls, reason)
        return None
    found = next((a for a in ADAPTERS if cls in a.classes), None)
    if found is None:
        found = next((a for a in ADAPTERS if a.takes_subclass(base)), None)
    return found.detect(base, dm) if found is not None else None


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
                   variant=f"{detected.variant} (family set to {family_spec(family).label})")


def describe_model(model) -> str:
    """Short description of an unsupported model for the pass-through warning."""
    base = getattr(model, "model", model)
    dm = getattr(base, "diffusion_model", None)
    return f"{type(base).__name__} ({type(dm).__name__ if dm is not None else 'no diffusion model'})"


# ------------------------------------------------------------------- texts and the front end
def text_first_of(family: str) -> bool:
    """Does the running ComfyUI put ``family``'s text (and other non-video tokens) before the
    video? Without a model (the preview, the estimate route); the patch asks the loaded model
    (:meth:`FamilyAdapter.text_first`)."""
    return adapter(family).text_first_here()


def families_json() -> dict:
    """The family registry as the front end reads it (``GET /radial_attention/families``): every
    family's entry, its ComfyUI classes and file-name pieces, its text position resolved for this
    ComfyUI, and the pass-through list."""
    return {
        "families": {a.key: {**a.spec.as_dict(), "comfy_classes": list(a.classes), "file_names": list(a.file_names),
                             "text_first": a.text_first_here()} for a in ADAPTERS},
        "pass_through": dict(PASS_THROUGH),
    }


def family_keys_text() -> str:
    """``key = label`` for every family of the registry, for tooltips that take a family key."""
    return ", ".join(f"{key} = {spec.label}" for key, spec in families().items())


def supported_names() -> str:
    """The families the pack patches, by label, for messages (from the registry)."""
    return ", ".join(spec.label for spec in families().values())
