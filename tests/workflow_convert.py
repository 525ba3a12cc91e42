"""Convert a workflow saved by ComfyUI's front end (UI format) into the API prompt format.

ComfyUI 0.3.75 has no Python converter: the browser does it (``app.graphToPrompt`` in the front-end
package). This module re-implements the rules that matter for plain graphs, from node definitions
as ``/object_info`` gives them (here: each class's ``INPUT_TYPES()``), so a test can feed the result
to ComfyUI's own ``execution.validate_prompt`` without a browser:

* every input that the front end shows as a widget (INT, FLOAT, STRING, BOOLEAN, COMBO, not
  ``forceInput``) takes the next entry of ``widgets_values``, in the node's input order (required
  then optional);
* an INT or COMBO with ``control_after_generate`` (or an INT named ``seed`` / ``noise_seed``) is
  followed by the control widget's value ("randomize", "fixed", ...): skipped, it is UI-only;
* a combo with an upload button (``image_upload`` and friends) is followed by the button's value:
  skipped;
* a linked input takes ``[origin node id, origin slot]`` instead of its widget value;
* note nodes (``Note``, ``MarkdownNote``) are UI-only and dropped; muted nodes (mode 2) are
  dropped; bypassed nodes (mode 4) are spliced out (each consumer gets the bypassed node's first
  input of the same type), as the front end does.

Anything else (leftover or missing widget values, an unknown node type, a dangling link) raises
``WorkflowError`` with the node id and what was expected: a workflow that no longer matches the
node definitions must fail loudly, never be "fixed" silently.
"""

from __future__ import annotations

import re

from typing import Any, Callable

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"  # node API v3 DynamicCombo (ComfyUI 0.33+): a combo whose
# choice adds the chosen option's own inputs right after it, named "<combo>.<input>"
UI_ONLY_NODES = {"Note", "MarkdownNote"}
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload", "upload")
MODE_MUTED, MODE_BYPASSED = 2, 4


class WorkflowError(ValueError):
    pass


def input_specs(input_types: dict) -> list[tuple[str, Any, dict]]:
    """``[(name, type, options)]`` in the order the front end creates inputs and widgets."""
    out = []
    for section in ("required", "optional"):
        for name, spec in (input_types.get(section) or {}).items():
            kind = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            out.append((name, kind, opts))
    return out


def is_widget(kind: Any, opts: dict) -> bool:
    if opts.get("forceInput"):
        return False
    return isinstance(kind, (list, tuple)) or kind in WIDGET_TYPES or kind == DYNAMIC_COMBO


def dynamic_default(opts: dict):
    """A DynamicCombo's default choice: its ``default``, else its first option's key."""
    keys = [o["key"] for o in opts.get("options") or []]
    return opts.get("default", keys[0] if keys else None)


def dynamic_option_specs(name: str, kind: Any, opts: dict, value) -> list[tuple[str, Any, dict]]:
    """The inputs a DynamicCombo ``name`` adds for the chosen ``value`` (empty for other kinds),
    named as the front end names them (``format.codec``)."""
    if kind != DYNAMIC_COMBO:
        return []
    for option in opts.get("options") or []:
        if option.get("key") == value:
            return [(f"{name}.{n}", k, o) for n, k, o in input_specs(option.get("inputs") or {})]
    return []


def extra_values_after(name: str, kind: Any, opts: dict) -> int:
    """How many UI-only widget values follow this widget in ``widgets_values``."""
    extra = 0
    is_combo = isinstance(kind, (list, tuple)) or kind == "COMBO"
    control = opts.get("control_after_generate")
    if kind == "INT" and (control if control is not None else name in ("seed", "noise_seed")):
        extra += 1
    elif is_combo and control:
        extra += 1
    if is_combo and any(opts.get(flag) for flag in UPLOAD_FLAGS):
        extra += 1
    return extra


def widget_inputs(node: dict, specs: list[tuple[str, Any, dict]], lenient: bool = False) -> dict[str, Any]:
    """Map a UI node's ``widgets_values`` onto its widget inputs by name.

    ``lenient``: the workflow was saved by another ComfyUI version; as the front end does, widgets
    past the saved values keep their defaults and saved values past the widgets are ignored."""
    values = node.get("widgets_values")
    if values is None:
        values = []
    widgets = [(n, k, o) for n, k, o in specs if is_widget(k, o)]
    if isinstance(values, dict):  # some front-end versions save {name: value}
        return {n: values[n] for n, _, _ in widgets if n in values}
    out: dict[str, Any] = {}
    pos = 0
    pending = list(widgets)
    while pending:
        name, kind, opts = pending.pop(0)
        if pos >= len(values):
            if lenient and ("default" in opts or kind == DYNAMIC_COMBO):  # added since: its default
                out[name] = dynamic_default(opts) if kind == DYNAMIC_COMBO else opts.get("default")
                pending[:0] = [w for w in dynamic_option_specs(name, kind, opts, out[name]) if is_widget(w[1], w[2])]
                continue
            raise WorkflowError(
                f"node {node['id']} ({node['type']}): widgets_values has {len(values)} entries, "
                f"but the node definition needs a value for '{name}' (widget inputs: "
                f"{[w[0] for w in widgets]}). Re-save the workflow from a ComfyUI with the current nodes."
            )
        out[name] = values[pos]
        pos += 1 + extra_values_after(name, kind, opts)
        pending[:0] = [w for w in dynamic_option_specs(name, kind, opts, out[name]) if is_widget(w[1], w[2])]
    if pos != len(values) and not (lenient and pos < len(values)):
        raise WorkflowError(
            f"node {node['id']} ({node['type']}): widgets_values has {len(values)} entries, expected "
            f"{pos} for widget inputs {[w[0] for w in widgets]}; got {values!r}. The node's inputs "
            "changed: re-save the workflow from a ComfyUI with the current nodes."
        )
    return out


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def running_comfyui_version() -> str:
    """The version of the ComfyUI the tests run against (its ``comfyui_version.py``)."""
    from conftest import comfyui_dir

    text = (comfyui_dir() / "comfyui_version.py").read_text(encoding="utf-8")
    return re.search(r"__version__\s*=\s*[\"']([^\"']+)", text).group(1)


def saved_by_this_comfyui(workflow: dict) -> bool:
    """The workflow records (in ``extra``) that it was written from this ComfyUI's node definitions."""
    saved = ((workflow.get("extra") or {}).get("radial_attention") or {}).get("comfyui")
    return bool(saved) and _version(saved) == _version(running_comfyui_version())


def ui_to_api(workflow: dict, input_types_of: Callable[[str], dict | None]) -> dict[str, dict]:
    """The API prompt ``{id: {"class_type", "inputs"}}`` for a UI-format ``workflow``.

    ``input_types_of(class_type)`` returns the class's ``INPUT_TYPES()`` dict, or ``None`` when
    ComfyUI has no such node. A workflow written from this ComfyUI's own node definitions
    (``scripts/build_workflows.py`` records the version) must match them exactly; any other one is
    read as the front end reads it: widgets added at the end since it was saved keep their
    defaults, values of widgets the running nodes do not have (yet) are ignored.
    """
    if "nodes" not in workflow or "links" not in workflow:
        raise WorkflowError(
            f"not a UI-format workflow (keys: {sorted(workflow)[:8]}); expected 'nodes' and 'links' "
            "as ComfyUI's Save (not Export (API)) writes them"
        )
    nodes = {int(n["id"]): n for n in workflow["nodes"]}
    links: dict[int, tuple[int, int, str]] = {}
    for link in workflow["links"]:
        if isinstance(link, dict):
            links[int(link["id"])] = (int(link["origin_id"]), int(link["origin_slot"]), link.get("type"))
        else:
            lid, origin, slot, _target, _tslot, ltype = link[:6]
            links[int(lid)] = (int(origin), int(slot), ltype)

    def resolve(link_id: int, seen: frozenset = frozenset()) -> list | None:
        if link_id not in links:
            raise WorkflowError(f"link {link_id} is used by an input but missing from 'links'")
        origin, slot, ltype = links[link_id]
        src = nodes.get(origin)
        if src is None:
            raise WorkflowError(f"link {link_id} starts at node {origin}, which is not in the workflow")
        mode = src.get("mode", 0)
        if mode == MODE_MUTED:
            return None
        if mode == MODE_BYPASSED:
            if origin in seen:
                raise WorkflowError(f"bypassed nodes form a cycle at node {origin}")
            for inp in src.get("inputs") or []:
                if inp.get("link") is not None and inp.get("type") == ltype:
                    return resolve(int(inp["link"]), seen | {origin})
            return None
        return [str(origin), slot]

    lenient = not saved_by_this_comfyui(workflow)
    prompt: dict[str, dict] = {}
    for nid, node in sorted(nodes.items()):
        ctype = node["type"]
        if ctype in UI_ONLY_NODES or node.get("mode", 0) in (MODE_MUTED, MODE_BYPASSED):
            continue
        input_types = input_types_of(ctype)
        if input_types is None:
            raise WorkflowError(
                f"node {nid}: type '{ctype}' is not a node this ComfyUI knows; install the pack "
                "that provides it or use core nodes only"
            )
        specs = input_specs(input_types)
        inputs = widget_inputs(node, specs, lenient=lenient)
        for inp in node.get("inputs") or []:
            if inp.get("link") is None:
                continue
            src = resolve(int(inp["link"]))
            if src is None:
                inputs.pop(inp["name"], None)
            else:
                inputs[inp["name"]] = src
        entry = {"class_type": ctype, "inputs": inputs}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        prompt[str(nid)] = entry
    return prompt


def input_types_from_object_info(object_info: dict) -> Callable[[str], dict | None]:
    """``input_types_of`` for ``ui_to_api`` from a server's ``GET /object_info`` answer (the
    definitions the front end itself works from; ``input_order`` keeps the widget order)."""

    def get(class_type: str) -> dict | None:
        node = object_info.get(class_type)
        if node is None:
            return None
        order = node.get("input_order") or {}
        out = {}
        for section in ("required", "optional"):
            inputs = node["input"].get(section)
            if inputs:
                out[section] = {name: inputs[name] for name in order.get(section, list(inputs))}
        return out

    return get
