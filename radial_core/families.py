"""The registry of the video model families the pack serves: what each one is without ComfyUI.

Per family (a key such as ``"wan21"``): its label, the VAE's compression and the transformer's
patch (pixels -> tokens), the mask rule, the recommended settings and how they were chosen, and
what the self-attention sequence holds. :func:`families` is the one way to read it (ordered as
the README's family table); :func:`family_spec` looks one family up by key.

How ComfyUI names and builds these models (its model classes, its file names, where a model
call carries its extra token groups) is the ComfyUI adapter's business: ``nodes/model_family.py``
holds one adapter per family of this registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

@dataclass(frozen=True)
class FamilySpec:
    """One model family: everything about it that needs no ComfyUI.

    ``default_decay``, ``dense_blocks`` and ``dense_steps_fraction`` are the recommended settings;
    ``tuned`` is False where no published quality figure backs them (then ``defaults_rule`` says
    how they were chosen). ``token_groups`` and ``block_numbering`` document the sequence the
    self-attention sees and how ``dense_blocks`` counts.
    """

    label: str
    vae_stride: tuple[int, int, int]  # (time, height, width) compression of the VAE
    patch: tuple[int, int, int]  # (time, height, width) patch size of the transformer
    mask_model: str  # "wan" (attention sink) or "hunyuan" (no sink, text tokens allowed)
    default_decay: float  # the decay factor the authors use for this family
    text_tokens: int  # text tokens inside the self-attention sequence (joint attention)
    dense_blocks: str = "1"  # recommended dense_blocks
    dense_steps_fraction: float = 0.25  # recommended dense_steps_first / steps (authors: 12 of 50)
    tuned: bool = True  # the authors published quality figures for these defaults
    defaults_rule: str = "the paper authors' settings"
    token_groups: str = "video tokens only"
    block_numbering: str = "transformer blocks 0..N-1"
    latent_channels: int = 16
    # pixel frames -> (latent frames, extra joint tokens that grow with the length, e.g. audio rows),
    # for VAEs whose time compression is not "first frame alone, then vae_stride[0] per latent"
    frames_rule: Callable[[int], tuple[int, int]] | None = None
    # where the non-video tokens of the self-attention sequence sit: True before the video, False
    # after it, None = the host's model code decides (HunyuanVideo: the adapter asks it)
    text_first: bool | None = False
    # the Wan generation a Wan variant was trained from ("2.1" / "2.2"; "" for other families)
    wan_base: str = ""
    # conditioning frames of the video's own grid that join the sequence as frames (SCAIL's
    # reference frame in front), and (latent frames, height tokens, width tokens) -> tokens of the
    # other groups after the video that grow with the size (reference / motion / pose tokens),
    # for the preview; the patch reads both from the real model call instead
    extra_frames: int = 0
    extra_tokens: Callable[[int, int, int], int] | None = None
    # what the non-video tokens of the self-attention sequence are, as the log line and the
    # preview name them ("+ 256 text", "+ 1 640 reference + motion")
    other_tokens: str = "text"

    def as_dict(self) -> dict:
        """JSON-ready entry (the HTTP route /radial_attention/families serves these)."""
        return {
            "label": self.label, "vae_stride": list(self.vae_stride), "patch": list(self.patch),
            "mask_model": self.mask_model, "default_decay": self.default_decay,
            "text_tokens": self.text_tokens, "text_first": self.text_first,
            "dense_blocks": self.dense_blocks, "dense_steps_fraction": self.dense_steps_fraction,
            "tuned": self.tuned, "defaults_rule": self.defaults_rule, "token_groups": self.token_groups,
            "block_numbering": self.block_numbering, "latent_channels": self.latent_channels,
            "other_tokens": self.other_tokens,
        }


def _minimax_h3_frames(frames: int) -> tuple[int, int]:
    """MiniMax H3 as its empty-latent node counts (comfy_extras/nodes_minimax_h3.py): the length
    snaps up to 17k + 5 frames at 24 fps, 5 latent frames per 17 pixel frames (+2), and the audio
    (40 latents per second, stereo: 2 rows each) joins the joint sequence."""
    n = max(5, int(frames))
    n += (5 - n) % 17
    latent_t = 2 if n <= 5 else ((n - 5) // 17) * 5 + 2
    return latent_t, 2 * round(n / 24 * 40)


# Rules for the untuned families (no published quality figure): the mask rule of the authors'
# family with the same token layout (joint text -> HunyuanVideo's rule without sink; video only
# -> Wan's rule with the frame-0 sink, the denser and safer of the two), and the decay factor of
# the authors' family with the same pixels per token (16x16: HunyuanVideo 0.95; 32x32: Wan
# 2.2-5B 0.8), so that a video of the same size and length gets about the mask density the
# authors ran; dense steps the authors' quarter, dense blocks as that family.
_RULE_HY = ("untuned: HunyuanVideo's rule and decay (same 16x16 pixels per token, joint text), "
            "its dense blocks (0) and a quarter of the steps dense")
_RULE_LTX = ("untuned: Wan's rule with the frame-0 sink (video-only self-attention), the decay of "
             "Wan 2.2-5B (same 32x32 pixels per token), 1 dense block, a quarter of the steps dense")

_RULE_K5 = ("untuned: HunyuanVideo's decay (same VAE and patch: the same tokens for the same video), "
            "Wan's rule with the frame-0 sink (video-only self-attention), 1 dense block, a quarter "
            "of the steps dense")

_RULE_COSMOS = ("untuned: Wan 2.1's rule and decay (Cosmos Predict2 runs on Wan 2.1's VAE with the same "
                "1x2x2 patch: the same tokens for the same video; video-only self-attention), 1 dense "
                "block, a quarter of the steps dense")

_RULE_MINIMAX = ("untuned: HunyuanVideo's rule (joint sequence, no sink; text, conditioning and audio "
                 "tokens dense like text) with the decay of Wan 2.2-5B (same 32x32 pixels per token), "
                 "dense blocks 0, a quarter of the steps dense")

# CogVideoX: _RULE_HY (8x8 VAE and 2x2 patch: 16x16 pixels per token; joint [text | video]); 1.5:
_RULE_COGVIDEOX15 = (_RULE_HY + "; the temporal patch of 2 halves the latent frames of a video (denser than "
                     "HunyuanVideo at the same length)")

_RULE_COSMOS1 = ("untuned: Wan 2.1's rule and decay (video-only self-attention; 16x16 pixels per token as in Wan "
                 "2.1; its 8x time compression gives 121 frames 16 latent frames, near Wan 2.1's 21 for 81), "
                 "1 dense block, a quarter of the steps dense")

_RULE_WAN_VARIANT = ("untuned: Wan's rule with the frame-0 sink and the decay of the Wan generation the "
                     "variant was trained from (Wan 2.1: 0.2, Wan 2.2: 0.8, as ComfyUI's class name "
                     "says; same VAE and patch, so the same tokens), every extra token group dense like "
                     "text, 1 dense block, a quarter of the steps dense")


def _cdiv(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def _s2v_extra(frames: int, h: int, w: int) -> int:
    """Wan 2.2 S2V's tokens after the video: one reference frame, and the motion frames its frame
    packer makes (comfy/ldm/wan/model.py FramePackMotioner: 1 frame at the video's grid, 1 at half
    and 4 at a quarter of its sides)."""
    return h * w + h * w + (h // 2) * (w // 2) + 4 * (h // 4) * (w // 4)


def _humo_extra(frames: int, h: int, w: int) -> int:
    """HuMo: the reference image's latent frame after the video (the HuMo node always adds one)."""
    return h * w


def _scail_extra(frames: int, h: int, w: int) -> int:
    """SCAIL: the pose video after the video, one pose frame per frame at half the resolution."""
    return frames * _cdiv(h, 2) * _cdiv(w, 2)


_FAMILIES: dict[str, FamilySpec] = {
    "wan21": FamilySpec("Wan 2.1 (14B / 1.3B)", (4, 8, 8), (1, 2, 2), "wan", 0.2, 0),
    "wan22_14b": FamilySpec("Wan 2.2 A14B", (4, 8, 8), (1, 2, 2), "wan", 0.8, 0),
    "wan22_5b": FamilySpec("Wan 2.2 TI2V-5B", (4, 16, 16), (1, 2, 2), "wan", 0.8, 0, latent_channels=48),
    "hunyuan": FamilySpec("HunyuanVideo", (4, 8, 8), (1, 2, 2), "hunyuan", 0.95, 256, dense_blocks="0",
                          token_groups="video tokens and text tokens (text first in ComfyUI 0.5+, "
                                       "last before); text attends and is attended fully",
                          block_numbering="20 double-stream blocks, then 40 single-stream (0-59)",
                          text_first=None),
    "mochi": FamilySpec("Mochi", (6, 8, 8), (1, 2, 2), "hunyuan", 0.95, 256, dense_blocks="0", tuned=False,
                        defaults_rule="untuned: HunyuanVideo's settings (same joint layout, no sink)",
                        token_groups="video tokens then the prompt's real text tokens",
                        latent_channels=12),
    "hunyuan15": FamilySpec("HunyuanVideo 1.5", (4, 16, 16), (1, 1, 1), "hunyuan", 0.95, 256,
                            dense_blocks="0", tuned=False, defaults_rule=_RULE_HY,
                            token_groups="text first (image-encoder tokens in I2V, ByT5 glyph tokens, "
                                         "the prompt), then video; all non-video tokens attend and are "
                                         "attended fully",
                            block_numbering="54 double-stream blocks (0-53), no single-stream blocks",
                            latent_channels=32, text_first=None, other_tokens="text / image"),
    "ltxv": FamilySpec("LTX-Video", (8, 32, 32), (1, 1, 1), "wan", 0.8, 0, tuned=False,
                       defaults_rule=_RULE_LTX,
                       token_groups="video tokens only (guide / keyframe latents appended as frames "
                                    "at the end); text is cross-attention",
                       block_numbering="transformer blocks 0..N-1 (28 in LTXV-2B, 48 in 13B)",
                       latent_channels=128),
    "ltxav": FamilySpec("LTX-2 (video + audio)", (8, 32, 32), (1, 1, 1), "wan", 0.8, 0, tuned=False,
                        defaults_rule=_RULE_LTX,
                        token_groups="video self-attention over video tokens only; the audio stream "
                                     "(audio self-attention, audio-video cross-attention in both "
                                     "directions) and text cross-attention stay dense",
                        block_numbering="joint audio-video blocks 0..N-1 (48 in LTX-2)",
                        latent_channels=128),
    "kandinsky5": FamilySpec("Kandinsky 5 (video)", (4, 8, 8), (1, 2, 2), "wan", 0.95, 0, tuned=False,
                             defaults_rule=_RULE_K5,
                             token_groups="video tokens only; the text runs through its own text blocks "
                                          "first (text-only self-attention, dense) and reaches the "
                                          "video by cross-attention",
                             block_numbering="visual blocks 0..N-1 (32 in Lite, 60 in Pro); the text "
                                             "blocks are not counted"),
    "cosmos_predict2": FamilySpec("Cosmos Predict2", (4, 8, 8), (1, 2, 2), "wan", 0.2, 0, tuned=False,
                                  defaults_rule=_RULE_COSMOS,
                                  token_groups="video tokens only (Video2World: the conditioning "
                                               "frames are latent frames, marked by a mask channel); "
                                               "text is cross-attention",
                                  block_numbering="blocks 0..N-1 (28 in 2B, 36 in 14B)"),
    # latent frames: MiniMax's VAE packs 1 pixel frame, then 4 per latent frame (about 4x)
    "minimax_h3": FamilySpec("MiniMax H3 (video + audio)", (4, 16, 16), (1, 2, 2), "hunyuan", 0.8, 256,
                             dense_blocks="0", tuned=False, defaults_rule=_RULE_MINIMAX,
                             token_groups="one packed sequence [text | keyframe / reference rows | "
                                          "audio (2 rows per audio latent) | video]; every token before "
                                          "the video attends and is attended fully",
                             block_numbering="single-stream blocks 0..N-1 (the text refiner runs once "
                                             "per sampling, outside the blocks)",
                             latent_channels=24, frames_rule=_minimax_h3_frames,
                             text_first=True, other_tokens="text + reference + audio"),
    # CogVideoX 1.0 and 1.5: one architecture, told apart by the temporal patch
    "cogvideox": FamilySpec("CogVideoX", (4, 8, 8), (1, 2, 2), "hunyuan", 0.95, 226, dense_blocks="0", tuned=False,
                            defaults_rule=_RULE_HY, text_first=True,
                            token_groups="one joint sequence [text | video] (the T5 prompt, padded to 226 "
                                         "tokens, first); the text attends and is attended fully; no "
                                         "cross-attention",
                            block_numbering="blocks 0..N-1 (30 in 2B, 42 in 5B)"),
    "cogvideox15": FamilySpec("CogVideoX 1.5", (4, 8, 8), (2, 2, 2), "hunyuan", 0.95, 226, dense_blocks="0",
                              tuned=False, defaults_rule=_RULE_COGVIDEOX15, text_first=True,
                              token_groups="one joint sequence [text | video] (the T5 prompt, padded to 226 "
                                           "tokens, first; 2 latent frames per token frame); the text "
                                           "attends and is attended fully; no cross-attention",
                              block_numbering="blocks 0..N-1 (42 in 5B)"),
    # Cosmos 1 (Predict1): 8x time compression
    "cosmos1": FamilySpec("Cosmos 1 (Predict1)", (8, 8, 8), (1, 2, 2), "wan", 0.2, 0, tuned=False,
                          defaults_rule=_RULE_COSMOS1,
                          token_groups="video tokens only (Video2World: the conditioning frames are latent "
                                       "frames, marked by a mask channel); text is cross-attention",
                          block_numbering="blocks 0..N-1 (28 in 7B, 36 in 14B), each self-attention, "
                                          "cross-attention, MLP"),
    # Wan variants: Wan's VAE and patch, other token groups besides the video
    "wan22_s2v": FamilySpec("Wan 2.2 S2V (speech to video)", (4, 8, 8), (1, 2, 2), "wan", 0.8, 0, tuned=False,
                            defaults_rule=_RULE_WAN_VARIANT, wan_base="2.2", extra_tokens=_s2v_extra,
                            other_tokens="reference + motion",
                            token_groups="[video | reference frame | motion frames (1 at the video's grid, "
                                         "1 at half, 4 at a quarter of its sides)]: the reference and motion "
                                         "tokens attend and are attended fully (the text rule); the audio "
                                         "enters by per-frame cross-attention (dense)",
                            block_numbering="blocks 0..N-1 (40 in 14B)"),
    "wan21_humo": FamilySpec("HuMo (Wan 2.1, audio + reference)", (4, 8, 8), (1, 2, 2), "wan", 0.2, 0,
                             tuned=False, defaults_rule=_RULE_WAN_VARIANT, wan_base="2.1",
                             extra_tokens=_humo_extra, other_tokens="reference",
                             token_groups="[video | reference frame]: the reference tokens attend and are "
                                          "attended fully (the text rule); the audio cross-attention (each "
                                          "frame's tokens to its 16 audio tokens) stays dense",
                             block_numbering="blocks 0..N-1 (40 in 17B, 30 in 1.7B)"),
    "wan22_animate": FamilySpec("Wan 2.2 Animate", (4, 8, 8), (1, 2, 2), "wan", 0.8, 0, tuned=False,
                                defaults_rule=_RULE_WAN_VARIANT, wan_base="2.2",
                                token_groups="video tokens only (the pose latents are added to the video "
                                             "tokens; the face adapter is cross-attention, dense)",
                                block_numbering="blocks 0..N-1 (40 in 14B)"),
    "wan_animate2": FamilySpec("Wan Animate 2", (4, 8, 8), (1, 2, 2), "wan", 0.2, 0, tuned=False,
                               defaults_rule=_RULE_WAN_VARIANT, wan_base="2.1",
                               token_groups="video tokens, frame 0 the reference image (the sink); with the "
                                            "pose branch on, its own self-attention over the pose video "
                                            "(F - 1 frames) is radial too and the generation attends per "
                                            "frame to [video | its pose frame] (dense)",
                               block_numbering="blocks 0..N-1 (40 in 14B)"),
    "wan21_scail": FamilySpec("SCAIL (Wan 2.1, pose)", (4, 8, 8), (1, 2, 2), "wan", 0.2, 0, tuned=False,
                              defaults_rule=_RULE_WAN_VARIANT, wan_base="2.1", extra_frames=1,
                              extra_tokens=_scail_extra, other_tokens="pose",
                              token_groups="[reference frame(s) | video | pose video at half resolution]: "
                                           "the reference frames are frames (the first is the sink), the "
                                           "pose tokens attend and are attended fully (the text rule)",
                              block_numbering="blocks 0..N-1 (40 in 14B)"),
    "wan22_dancer": FamilySpec("WanDancer (Wan 2.2, music)", (4, 8, 8), (1, 2, 2), "wan", 0.8, 0, tuned=False,
                               defaults_rule=_RULE_WAN_VARIANT, wan_base="2.2",
                               token_groups="video tokens only; the music enters by per-frame cross-attention "
                                            "and its encoder's self-attention is audio only (both dense)",
                               block_numbering="blocks 0..N-1 (40 in 14B)"),
}


_REGISTRY: Mapping[str, FamilySpec] = MappingProxyType(_FAMILIES)


def families() -> Mapping[str, FamilySpec]:
    """Every family of the registry, key -> :class:`FamilySpec`, in the README's order (read-only)."""
    return _REGISTRY


def family_spec(family: str) -> FamilySpec:
    """The registry's entry for ``family``; ValueError naming the known keys for any other."""
    try:
        return _REGISTRY[family]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model family {family!r}; expected one of {sorted(_REGISTRY)}") from None


def default_decay(family: str) -> float:
    """The family's recommended decay factor (the authors' where ``tuned``, else ``defaults_rule``'s)."""
    return family_spec(family).default_decay
