"""HTTP route behind the front-end density readout.

``GET /radial_attention/estimate`` (also under ``/api/...``, as ComfyUI mirrors every route)
answers the density and expected speedup of the radial mask for the widget values of a node:

    /radial_attention/estimate?family=wan21&width=1280&height=720&frames=81
        &block_size=128&decay_factor=0.2&dist1=full&text_tokens=-1

``decay_factor`` 0 (or absent) and ``text_tokens`` -1 (or absent) take the family's defaults.
All mask math stays in Python (``radial_core.preview``). Bad or huge numbers (non-finite, written
as floats such as ``1e3``, out of range) get a 400 with a short message naming the value (cut
short) and the fix; answers are cached per parameter set. ``GET /radial_attention/limits`` gives
the accepted ranges, so the front end can check a value being typed before it asks;
``GET /radial_attention/lora_settings?lora_name=...`` the radial settings the Radial LoRA Loader will
apply (the file's metadata, the node's overrides, or the defaults; read from the header only);
``GET /radial_attention/families`` the family registry (``radial_core.families``: label, strides,
defaults, token layout; with the adapters' ComfyUI classes, file-name pieces and the text position
this ComfyUI uses, ``nodes/model_family.py``), which the front end reads instead of keeping a list
of its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import sys
from collections.abc import Mapping
from functools import lru_cache

from ..radial_core import preview as rpreview
from ..radial_core.families import families, family_spec
from .model_family import families_json, text_first_of
from .radial_patcher import MAX_DECAY

logger = logging.getLogger(__name__)

ROUTE = "/radial_attention/estimate"
LIMITS_ROUTE = "/radial_attention/limits"
FAMILIES_ROUTE = "/radial_attention/families"
LIMITS = {  # name: (min, max) for integer parameters
    "width": (16, 8192),
    "height": (16, 8192),
    "frames": (1, 2049),
    "text_tokens": (-1, 4096),
}
_registered = False


class BadRequest(ValueError):
    """A query parameter is missing, malformed or out of range (answered with HTTP 400)."""


_INT_TEXT = re.compile(r"^[+-]?\d{1,7}$")  # plain digits: no 1e3, no 12.0, nothing unbounded
_FLOAT_TEXT = re.compile(r"^[+-]?(\d{1,7}(\.\d{0,20})?|\.\d{1,20})$")


def _shown(raw) -> str:
    """A query value quoted back in a message, cut short (a message never echoes unbounded input)."""
    text = repr(raw)
    return text if len(text) <= 24 else text[:20] + "...'"


def _int_param(query: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise BadRequest(f"missing parameter {name!r}: add {name}=<integer> to the query")
        return default
    lo, hi = LIMITS[name]
    if not _INT_TEXT.match(raw.strip()) or not lo <= int(raw) <= hi:
        raise BadRequest(f"{name} must be a whole number in [{lo}, {hi}], written in digits; got {_shown(raw)}. "
                         "Use a value in that range.")
    return int(raw)


def parse_query(query: Mapping[str, str]) -> dict:
    """Validated, normalised parameters of an estimate request; raises :class:`BadRequest`."""
    family = query.get("family", "")
    if family not in families():
        raise BadRequest(f"family must be a key of {FAMILIES_ROUTE} (e.g. wan21, hunyuan; "
                         f"{len(families())} families); got {_shown(family)}")
    block_raw = query.get("block_size") or "128"
    if block_raw not in ("64", "128"):
        raise BadRequest(f"block_size must be 64 or 128; got {_shown(block_raw)}")
    dist1 = query.get("dist1") or "full"
    if dist1 not in ("full", "half"):
        raise BadRequest(f"dist1 must be 'full' or 'half'; got {_shown(dist1)}")
    decay_raw = query.get("decay_factor") or "0"
    decay = float(decay_raw) if _FLOAT_TEXT.match(decay_raw.strip()) else float("nan")
    if not (math.isfinite(decay) and 0.0 <= decay <= MAX_DECAY):
        raise BadRequest(
            f"decay_factor must be a number in (0, {MAX_DECAY:g}], or 0 for the family's default; "
            f"got {_shown(decay_raw)}"
        )
    text = _int_param(query, "text_tokens", -1)
    return {
        "family": family,
        "width": _int_param(query, "width"),
        "height": _int_param(query, "height"),
        "frames": _int_param(query, "frames"),
        "block_size": int(block_raw),
        "decay_factor": None if decay == 0 else decay,
        "dist1": dist1,
        "text_tokens": None if text < 0 else text,
    }


def limits() -> dict:
    """What the route accepts, for the front end to check values before asking (no mask math)."""
    return {
        "families": list(families()),
        "block_sizes": [128, 64],
        "dist1": ["full", "half"],
        "decay_factor": [0.0, MAX_DECAY],
        **{name: list(span) for name, span in LIMITS.items()},
    }


@lru_cache(maxsize=256)
def _estimate_cached(family, width, height, frames, block_size, decay_factor, dist1, text_tokens) -> dict:
    try:
        est = rpreview.estimate(family, width, height, frames, block_size=block_size,
                                decay_factor=decay_factor, dist1=dist1, text_tokens=text_tokens,
                                text_first=text_first_of(family))
    except ValueError as exc:  # e.g. too large for a preview, or an impossible geometry
        raise BadRequest(str(exc)) from None
    s = est.stats
    return {
        "family": family,
        "label": family_spec(family).label,
        "width": width,
        "height": height,
        "frames": frames,
        "decay_factor": est.decay_factor,
        "dist1": dist1,
        "model": est.model,
        "num_frames": s.num_frames,
        "tokens_per_frame": s.tokens_per_frame,
        "text_tokens": s.text_tokens,
        "text_first": s.text_first,
        "tokens": s.tokens,
        "block_size": s.block_size,
        "num_blocks": s.num_blocks,
        "kept_blocks": s.kept_blocks,
        "density": s.density,
        "flop_density": s.flop_density,
        "flops_saved": s.flops_saved,
        "expected_speedup": s.expected_speedup,
        "distance_density": s.distance_density,
        "rate_source": rpreview.RATE_SOURCE,
        "summary": est.summary(),
    }


def estimate_json(query: Mapping[str, str]) -> dict:
    """The route's answer for a query (cached); raises :class:`BadRequest` for bad input."""
    p = parse_query(query)
    return _estimate_cached(p["family"], p["width"], p["height"], p["frames"], p["block_size"],
                            p["decay_factor"], p["dist1"], p["text_tokens"])


async def handle_estimate(request):
    from aiohttp import web

    try:
        body = await asyncio.to_thread(estimate_json, request.rel_url.query)
    except BadRequest as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except Exception:  # a bug, not bad input: log it, answer with a message
        logger.exception("radial_attention estimate failed for %s", dict(request.rel_url.query))
        return web.json_response({"error": "internal error, see the ComfyUI log"}, status=500)
    return web.json_response(body, headers={"Cache-Control": "max-age=3600"})


LORA_ROUTE = "/radial_attention/lora_settings"
_LORA_OVERRIDES = ("decay_factor", "block_size", "dense_blocks", "dense_steps_first", "dense_steps_last",
                   "dist1", "family")


def lora_settings_json(query: Mapping[str, str]) -> dict:
    """What the Radial LoRA Loader will apply: ``lora_name`` plus the node's override widgets."""
    from .lora_node import node_overrides, planned_settings

    name = query.get("lora_name") or ""
    if not name or len(name) > 1024:
        raise BadRequest("missing or overlong parameter 'lora_name': add lora_name=<a name from the node's list>")
    raw = {k: query.get(k) for k in _LORA_OVERRIDES}
    try:
        decay = float(raw["decay_factor"]) if raw["decay_factor"] and _FLOAT_TEXT.match(raw["decay_factor"]) else 0.0
        first = int(raw["dense_steps_first"]) if raw["dense_steps_first"] and _INT_TEXT.match(raw["dense_steps_first"]) else -1
        last = int(raw["dense_steps_last"]) if raw["dense_steps_last"] and _INT_TEXT.match(raw["dense_steps_last"]) else -1
        overrides = node_overrides(decay, raw["block_size"] or None, (raw["dense_blocks"] or "")[:200], first, last,
                                   raw["dist1"] or None, raw["family"] or None)
        return planned_settings(name, overrides)
    except ValueError as exc:
        text = str(exc)
        raise BadRequest(text if len(text) <= 400 else text[:396] + " ...") from None


async def handle_lora_settings(request):
    from aiohttp import web

    try:
        body = await asyncio.to_thread(lora_settings_json, request.rel_url.query)
    except BadRequest as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except Exception:  # a bug, not bad input
        logger.exception("radial_attention lora_settings failed")
        return web.json_response({"error": "internal error, see the ComfyUI log"}, status=500)
    return web.json_response(body)


async def handle_families(request):
    from aiohttp import web

    return web.json_response(families_json(), headers={"Cache-Control": "max-age=3600"})


async def handle_limits(request):
    from aiohttp import web

    return web.json_response(limits(), headers={"Cache-Control": "max-age=3600"})


def register() -> bool:
    """Add the route to ComfyUI's server; returns False (harmlessly) when no server exists.

    Idempotent. Must run before the server adds its routes (during custom-node loading).
    """
    global _registered
    if _registered:
        return True
    # ComfyUI's main.py imports its `server` module before loading custom nodes; when it is not
    # imported (ComfyUI used as a library, tests), no server runs and there is nothing to do.
    server = sys.modules.get("server")
    prompt_server = getattr(server, "PromptServer", None)
    instance = getattr(prompt_server, "instance", None)
    if instance is None:
        return False
    instance.routes.get(ROUTE)(handle_estimate)
    instance.routes.get(LIMITS_ROUTE)(handle_limits)
    instance.routes.get(FAMILIES_ROUTE)(handle_families)
    instance.routes.get(LORA_ROUTE)(handle_lora_settings)
    _registered = True
    logger.debug("registered GET %s", ROUTE)
    return True
