"""From a video's size to the mask's inputs: latent frames, tokens per frame, text tokens.

The ComfyUI patch reads the real latent shape (:func:`geometry_from_latent`); the preview node
and the HTTP route start from pixels and a family of the registry (:func:`geometry_from_pixels`,
:mod:`radial_core.families`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .families import family_spec
from .mask import radial_block_mask


@dataclass(frozen=True)
class VideoGeometry:
    num_frames: int  # latent frames after patchify (F)
    height_tokens: int
    width_tokens: int
    text_tokens: int
    mask_model: str
    text_first: bool = False  # the text (and other non-video) tokens come before the video
    other_label: str = "text"  # what the ``text_tokens`` are (the family's ``other_tokens``)

    @property
    def tokens_per_frame(self) -> int:  # T
        return self.height_tokens * self.width_tokens

    @property
    def video_tokens(self) -> int:
        return self.num_frames * self.tokens_per_frame

    @property
    def seq_len(self) -> int:
        return self.video_tokens + self.text_tokens

    def block_mask(self, *, block_size=128, decay_factor=1.0, dist1="full"):
        """The radial block mask of this geometry (cached by ``radial_block_mask``)."""
        return radial_block_mask(
            self.num_frames,
            self.tokens_per_frame,
            text_tokens=self.text_tokens,
            block_size=block_size,
            decay_factor=decay_factor,
            model=self.mask_model,
            dist1=dist1,
            text_first=self.text_first,
        )


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def geometry_from_latent(latent_thw, patch=(1, 2, 2), *, text_tokens=0, mask_model="wan",
                         text_first=False) -> VideoGeometry:
    """Geometry of a latent of (frames, height, width) for a transformer with ``patch``.

    ComfyUI pads the latent up to a multiple of the patch before patchifying, hence ceil.
    """
    t, h, w = (int(x) for x in latent_thw)
    if min(t, h, w) < 1:
        raise ValueError(f"latent (frames, height, width) must all be >= 1; got {(t, h, w)}")
    pt, ph, pw = patch
    return VideoGeometry(_ceil_div(t, pt), _ceil_div(h, ph), _ceil_div(w, pw), int(text_tokens), mask_model,
                         bool(text_first))


def geometry_from_pixels(family: str, width: int, height: int, frames: int, text_tokens=None,
                         text_first: bool | None = None) -> VideoGeometry:
    """Geometry of a ``width`` x ``height`` video of ``frames`` pixel frames for ``family``.

    Latent frames are ``(frames - 1) // stride_t + 1`` (the first frame is encoded alone), the
    latent size is ``pixels // stride`` as ComfyUI's empty-latent nodes make it. A family with a
    ``frames_rule`` (MiniMax H3) counts its own way and adds the tokens that grow with the length
    (its audio) to ``text_tokens``; a Wan variant adds its conditioning frames (``extra_frames``)
    and the tokens of its other groups (``extra_tokens``: reference, motion, pose). ``text_first``
    None takes the family's (a family whose ComfyUI version decides counts as text last here;
    the ComfyUI adapter passes what the running version does).
    """
    spec = family_spec(family)
    for name, value in (("width", width), ("height", height), ("frames", frames)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    st, sh, sw = spec.vae_stride
    if width < sw or height < sh:
        raise ValueError(f"{spec.label} needs width and height >= {sw} pixels; got {width}x{height}")
    latent_t, grows = ((int(frames) - 1) // st + 1, 0) if spec.frames_rule is None else spec.frames_rule(int(frames))
    latent = (latent_t, int(height) // sh, int(width) // sw)
    text = spec.text_tokens if text_tokens is None else int(text_tokens)
    if text < 0:
        raise ValueError(f"text_tokens must be >= 0; got {text}")
    text += grows
    if text_first is None:
        text_first = bool(spec.text_first)
    geo = geometry_from_latent(latent, spec.patch, text_tokens=text, mask_model=spec.mask_model,
                               text_first=text_first)
    return with_extra_groups(family, geo)


def with_extra_groups(family: str, geo: VideoGeometry) -> VideoGeometry:
    """``geo`` (the video's own frames) with the family's conditioning frames and the other token
    groups of its sequence added (the Wan variants' ``extra_frames`` / ``extra_tokens``), and
    their name (``other_tokens``) as the geometry's ``other_label``."""
    spec = family_spec(family)
    geo = replace(geo, other_label=spec.other_tokens)
    if not spec.extra_frames and spec.extra_tokens is None:
        return geo
    extra = spec.extra_tokens(geo.num_frames, geo.height_tokens, geo.width_tokens) if spec.extra_tokens else 0
    return replace(geo, num_frames=geo.num_frames + spec.extra_frames, text_tokens=geo.text_tokens + int(extra))
