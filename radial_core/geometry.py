"""From a video's size to the mask's inputs: latent frames, tokens per frame, text tokens.

One table of model families; the ComfyUI patch reads the real latent shape instead
(:func:`geometry_from_latent`), the preview node and the HTTP route start from pixels
(:func:`geometry_from_pixels`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .mask import radial_block_mask


@dataclass(frozen=True)
class FamilySpec:
    label: str
    vae_stride: tuple[int, int, int]  # (time, height, width) compression of the VAE
    patch: tuple[int, int, int]  # (time, height, width) patch size of the transformer
    mask_model: str  # "wan" (attention sink) or "hunyuan" (no sink, text tokens allowed)
    default_decay: float  # the decay factor the authors use for this family
    text_tokens: int  # text tokens inside the self-attention sequence (joint attention)


FAMILIES: dict[str, FamilySpec] = {
    "wan21": FamilySpec("Wan 2.1 (14B / 1.3B)", (4, 8, 8), (1, 2, 2), "wan", 0.2, 0),
    "wan22_14b": FamilySpec("Wan 2.2 A14B", (4, 8, 8), (1, 2, 2), "wan", 0.8, 0),
    "wan22_5b": FamilySpec("Wan 2.2 5B (TI2V)", (4, 16, 16), (1, 2, 2), "wan", 0.8, 0),
    "hunyuan": FamilySpec("HunyuanVideo", (4, 8, 8), (1, 2, 2), "hunyuan", 0.95, 256),
    "mochi": FamilySpec("Mochi", (6, 8, 8), (1, 2, 2), "hunyuan", 0.95, 256),
}


def family_spec(family: str) -> FamilySpec:
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; expected one of {sorted(FAMILIES)}") from None


def default_decay(family: str) -> float:
    """The decay factor the paper's authors use for ``family``."""
    return family_spec(family).default_decay


@dataclass(frozen=True)
class VideoGeometry:
    num_frames: int  # latent frames after patchify (F)
    height_tokens: int
    width_tokens: int
    text_tokens: int
    mask_model: str

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
        )


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def geometry_from_latent(latent_thw, patch=(1, 2, 2), *, text_tokens=0, mask_model="wan") -> VideoGeometry:
    """Geometry of a latent of (frames, height, width) for a transformer with ``patch``.

    ComfyUI pads the latent up to a multiple of the patch before patchifying, hence ceil.
    """
    t, h, w = (int(x) for x in latent_thw)
    if min(t, h, w) < 1:
        raise ValueError(f"latent (frames, height, width) must all be >= 1; got {(t, h, w)}")
    pt, ph, pw = patch
    return VideoGeometry(_ceil_div(t, pt), _ceil_div(h, ph), _ceil_div(w, pw), int(text_tokens), mask_model)


def geometry_from_pixels(family: str, width: int, height: int, frames: int, text_tokens=None) -> VideoGeometry:
    """Geometry of a ``width`` x ``height`` video of ``frames`` pixel frames for ``family``.

    Latent frames are ``(frames - 1) // stride_t + 1`` (the first frame is encoded alone), the
    latent size is ``pixels // stride`` as ComfyUI's empty-latent nodes make it.
    """
    spec = family_spec(family)
    for name, value in (("width", width), ("height", height), ("frames", frames)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    st, sh, sw = spec.vae_stride
    if width < sw or height < sh:
        raise ValueError(f"{spec.label} needs width and height >= {sw} pixels; got {width}x{height}")
    latent = ((int(frames) - 1) // st + 1, int(height) // sh, int(width) // sw)
    text = spec.text_tokens if text_tokens is None else int(text_tokens)
    if text < 0:
        raise ValueError(f"text_tokens must be >= 0; got {text}")
    return geometry_from_latent(latent, spec.patch, text_tokens=text, mask_model=spec.mask_model)
