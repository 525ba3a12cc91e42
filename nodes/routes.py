"""HTTP route behind the front-end density readout.

``GET /radial_attention/estimate`` (also under ``/api/...``, as ComfyUI mirrors every route)
answers the density and expected speedup of the radial mask for the widget values of a node:

    /radial_attention/estimate?family=wan21&width=1280&height=720&frames=81
        &block_size=128&decay_factor=0.2&dist1=full&text_tokens=-1

``decay_factor`` 0 (or absent) and ``text_tokens`` -1 (or absent) take the family's defaults.
All mask math stays in Python (``radial_core.preview``). Every parameter is read by the settings
contract (``radial_core.settings``): ASCII digits only (no Arabic-Indic or fullwidth digits, no
spaces, no trailing newline), finite numbers, the contract's ranges. Bad or huge values get a 400
with a short message naming the value (cut short), the rule and the fix; answers are cached per
parameter set. ``GET /radial_attention/limits`` gives
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
import sys
from collections.abc import Mapping
from functools import lru_cache

from ..radial_core import preview as rpreview
from ..radial_core import settings as S
from ..radial_core.families import families, family_spec
from .model_family import families_json, text_first_of

logger = logging.getLogger(__name__)

ROUTE = "/radial_attention/estimate"
LIMITS_ROUTE = "/radial_attention/limits"
FAMILIES_ROUTE = "/radial_attention/families"
# the integer parameters of the estimate route and their ranges: the settings contract's
LIMITS = {name: (S.SETTINGS[name].minimum, S.SETTINGS[name].maximum)
          for name in ("width", "height", "frames", "text_tokens")}
_registered = False


class BadRequest(ValueError):
    """A query parameter is missing, malformed or out of range (answered with HTTP 400)."""


def _shown(raw) -> str:
    """A query value quoted back in a message, cut short (a message never echoes unbounded input)."""
    return S.quote(raw, 24)


def _param(query: Mapping[str, str], name: str, *, default=None, required: bool = False):
    """One query parameter by the settings contract's parser (ASCII digits, no spaces or line
    break, the contract's range); raises :class:`BadRequest` naming the value, the rule and the fix."""
    raw = query.get(name)
    if raw is None or raw == "":
        if required:
            raise BadRequest(f"missing parameter {name!r}: add {name}=<{S.SETTINGS[name].rule()}> to the query")
        return default
    s = S.SETTINGS[name]
    try:
        return s.parse_query(raw)
    except S.SettingError:
        fix = s.fix or f"e.g. {s.default}"
        kind = "must be a whole number in [{}, {}], written in ASCII digits".format(s.minimum, s.maximum) \
            if s.kind == "int" else f"must be {s.rule()}"
        raise BadRequest(f"{name} {kind}; got {_shown(raw)}. Fix: {fix}.") from None


def parse_query(query: Mapping[str, str]) -> dict:
    """Validated, normalised parameters of an estimate request; raises :class:`BadRequest`."""
    family = query.get("family", "")
    if family not in families():
        raise BadRequest(f"family must be a key of {FAMILIES_ROUTE} (e.g. wan21, hunyuan; "
                         f"{len(families())} families); got {_shown(family)}")
    decay = _param(query, "decay_factor", default=0.0)
    text = _param(query, "text_tokens", default=-1)
    return {
        "family": family,
        "width": _param(query, "width", required=True),
        "height": _param(query, "height", required=True),
        "frames": _param(query, "frames", required=True),
        "block_size": _param(query, "block_size", default=128),
        "decay_factor": None if decay == 0 else decay,
        "dist1": _param(query, "dist1", default="full"),
        "text_tokens": None if text < 0 else text,
    }


def limits() -> dict:
    """``GET /radial_attention/limits``: every setting of the pack, from the settings contract
    (``radial_core.settings.limits_json``)::

        {"settings": {name: {"type", "default", "tooltip", "rule", "min"/"max"/"step" (numbers),
                             "choices" (dropdowns), "max_index"/"max_chars" (dense_blocks),
                             "zero" (what 0 / empty means)}, ...},
         "lora_settings": [...], "override_unset": {...},
         # what the estimate route accepts, in the form the readout has always read:
         "families": [...], "block_sizes": [128, 64], "dist1": ["full", "half"],
         "decay_factor": [min, max], "width": [min, max], "height": [...], "frames": [...],
         "text_tokens": [...]}

    The front end checks a value being typed against it before it asks the server.
    """
    out = S.limits_json()
    out.update({
        "families": list(families()),
        "block_sizes": list(S.SETTINGS["block_size"].choices),
        "dist1": list(S.SETTINGS["dist1"].choices),
        "decay_factor": [S.SETTINGS["decay_factor"].minimum, S.SETTINGS["decay_factor"].maximum],
        **{name: list(span) for name, span in LIMITS.items()},
    })
    return out


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


def _refused(request) -> int:
    """HTTP status for a refused query: 400, or 200 for the front-end readout (header
    ``X-Radial-Readout: 1``), which shows the ``error`` of the body as it is typed; a 400 would be
    logged by the browser as a failed request on every keystroke."""
    return 200 if request.headers.get("X-Radial-Readout") == "1" else 400


async def handle_estimate(request):
    from aiohttp import web

    try:
        body = await asyncio.to_thread(estimate_json, request.rel_url.query)
    except BadRequest as exc:
        return web.json_response({"error": str(exc)}, status=_refused(request))
    except Exception:  # a bug, not bad input: log it, answer with a message
        logger.exception("radial_attention estimate failed for %s", dict(request.rel_url.query))
        return web.json_response({"error": "internal error, see the ComfyUI log"}, status=500)
    return web.json_response(body, headers={"Cache-Control": "max-age=3600"})


LORA_ROUTE = "/radial_attention/lora_settings"
_LORA_OVERRIDES = ("decay_factor", "block_size", "dense_blocks", "dense_steps_first", "dense_steps_last",
                   "dist1", "family")


def lora_settings_json(query: Mapping[str, str]) -> dict:
    """What the Radial LoRA Loader will apply: ``lora_name`` plus the node's override widgets.

    Each override is read as the node reads it (the settings contract, ASCII digits only; its
    "from LoRA" value or an absent parameter = none): a bad one is a 400 naming it, never dropped.
    Messages name the LoRA relative to the loras folder, never by its server path.
    """
    from .lora_node import node_overrides, planned_settings, scrub_paths

    name = query.get("lora_name") or ""
    if not name or len(name) > 1024:
        raise BadRequest("missing or overlong parameter 'lora_name': add lora_name=<a name from the node's list>")
    raw = {k: query.get(k) for k in _LORA_OVERRIDES}
    args = {}
    for key, value in raw.items():
        unset = S.OVERRIDE_UNSET[key]
        if value is None or value == "" or value == str(unset):
            args[key] = None
            continue
        if key == "dense_blocks":
            args[key] = value
            continue
        s = S.SETTINGS[key]
        if s.kind in ("int", "float") and value == (f"{unset:g}" if isinstance(unset, float) else str(unset)):
            args[key] = None
            continue
        try:
            args[key] = s.parse_query(value)
        except S.SettingError as exc:
            raise BadRequest(f"{key}: {exc.problem}"[:400]) from None
    try:
        overrides = node_overrides(**args)
        return planned_settings(name, overrides)
    except ValueError as exc:
        text = scrub_paths(str(exc))
        raise BadRequest(text if len(text) <= 400 else text[:396] + " ...") from None


async def handle_lora_settings(request):
    from aiohttp import web

    try:
        body = await asyncio.to_thread(lora_settings_json, request.rel_url.query)
    except BadRequest as exc:
        return web.json_response({"error": str(exc)}, status=_refused(request))
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
