"""The example workflows opened in ComfyUI's real front end (headless chromium, playwright-core).

tests/browser/workflows_ui.mjs loads each workflow as the template browser serves it, checks every
node is known and drawn, and converts it with the front end's own ``app.graphToPrompt()``. Here that
API prompt must equal what ``tests/workflow_convert.py`` makes of the same file (the converter the
validation tests rely on), and ComfyUI's server must accept it for validation up to the missing
model files. Screenshots of each graph land in tests/browser/artifacts/workflows/ (git-ignored);
RADIAL_DOCS_SCREENSHOT=1 also refreshes docs/images/workflow_*.png for the README.

Needs `bash scripts/setup_browser.sh` once; skips with the reason without chromium/node/playwright
locally and fails under CI=true (the same rule as tests/browser/test_browser.py).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

import pytest

from workflow_convert import input_types_from_object_info, ui_to_api

sys.path.insert(0, str(Path(__file__).resolve().parent / "browser"))
from page_script import run_page_script
from radial_server import FRONT_ENDS, artifacts_for, get_server, require_browser_tools

pytestmark = [pytest.mark.comfy, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
UI_NOTES = {"Note", "MarkdownNote"}
# every bundled UI workflow (workflows/*.json with a "nodes" list; the template browser lists them)
NAMES = sorted(p.stem for p in (ROOT / "workflows").glob("*.json")
               if "nodes" in json.loads(p.read_text(encoding="utf-8")))
DOCS_TEMPLATES = ROOT / "docs" / "images" / "template_browser.png"
DOCS_SHOTS = {  # README pictures
    "Wan 2.2 I2V A14B, 720p 81 frames": ROOT / "docs" / "images" / "workflow_wan22_i2v.png",
    "Wan 2.1 T2V 14B, 321 frames with LoRA": ROOT / "docs" / "images" / "workflow_wan21_long_lora.png",
}


# raylight's nodes and the pack's node registered only with raylight (tests/test_workflows.py)
RAYLIGHT_NODES = {"RayInitializer", "RayUNETLoader", "XFuserKSamplerAdvanced", "RadialAttentionPatchRay"}


def not_loadable_here(name: str, object_info: dict, version: str) -> str | None:
    """Why a workflow written from a newer ComfyUI cannot load in this one (a node it lacks: LTX-2 on
    0.3.75; a node whose linked outputs differ: Train LoRA on 0.3.75), or None. On the ComfyUI it was
    written from, nothing is excused."""
    wf = json.loads((ROOT / "workflows" / f"{name}.json").read_text(encoding="utf-8"))
    raylight = sorted({n["type"] for n in wf["nodes"]} & RAYLIGHT_NODES - set(object_info))
    if raylight:
        return f"needs raylight's nodes ({', '.join(raylight)}), not installed in this ComfyUI (Ray, xDiT, NCCL)"
    saved_with = wf.get("extra", {}).get("radial_attention", {}).get("comfyui")
    if not saved_with or saved_with == version:
        return None
    missing = sorted({n["type"] for n in wf["nodes"]} - UI_NOTES - set(object_info))
    if missing:
        return f"needs {', '.join(missing)}, which ComfyUI {version} lacks (written from ComfyUI {saved_with})"
    changed = sorted({
        n["type"] for n in wf["nodes"] if n["type"] in object_info
        for slot, o in enumerate(n.get("outputs") or [])
        if o.get("links") and (slot >= len(object_info[n["type"]]["output"])
                               or object_info[n["type"]]["output"][slot] != o["type"])})
    if changed:
        return (f"links outputs of {', '.join(changed)}, whose outputs differ in ComfyUI {version} "
                f"(written from ComfyUI {saved_with})")
    return None


@pytest.fixture(scope="module", params=FRONT_ENDS)
def front_end(request):
    """workflows_ui.mjs's result on each front end (radial_server.FRONT_ENDS: the one this ComfyUI
    pins, and the newest with ComfyUI 0.33)."""
    require_browser_tools()
    server = get_server(request.param)
    object_info = fetch_json(server.url + "/object_info")
    version = fetch_json(server.url + "/system_stats")["system"]["comfyui_version"]
    skipped = {n: why for n in NAMES if (why := not_loadable_here(n, object_info, version))}
    names = [n for n in NAMES if n not in skipped]
    templates = fetch_json(server.url + "/workflow_templates")
    module = next((m for m, listed in templates.items() if set(NAMES) <= set(listed)), None)
    assert module, f"the server's template browser does not list the workflows: {templates}"
    upload_start_image(server.url)
    out = artifacts_for(request.param) / "workflows"
    result = run_page_script("workflows_ui.mjs", server.url, module, str(out), *names, timeout=400,
                             env={"RADIAL_NOT_TEMPLATES": ",".join(not_templates())},
                             save_as=f"workflows-result-{request.param}.json")
    result["out"] = str(out)
    result["pinned"] = request.param == "pinned"
    assert result["ok"], f"front-end check failed: {result.get('error')}\nconsole: {result['consoleErrors']}"
    result["skipped"] = skipped
    # a workflow that needs nodes this ComfyUI lacks is not offered (web/js/radial_readout.js)
    result["hidden"] = sorted(n for n, why in skipped.items() if why.startswith("needs "))
    return result, object_info


def upload_start_image(url: str) -> None:
    """The I2V workflow's Load Image names example.png, which a real ComfyUI ships in input/; the
    test server's input folder is empty, so upload one the way the node's upload button does."""
    import io

    import requests
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (320, 180), (70, 120, 190)).save(buf, format="PNG")
    r = requests.post(url + "/upload/image", files={"image": ("example.png", buf.getvalue(), "image/png")},
                      data={"overwrite": "true", "type": "input"}, timeout=30)
    assert r.status_code == 200 and r.json()["name"] == "example.png", r.text


def not_templates() -> list[str]:
    """API-format files in workflows/ (see test_workflows.py's xfail): the template browser lists them
    but has no thumbnail for them; reported, not failed here."""
    out = []
    for p in (ROOT / "workflows").glob("*.json"):
        data = json.loads(p.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "nodes" not in data:
            out.append(p.stem)
    return out


def fetch_json(url: str):
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


def comparable(prompt: dict, object_info: dict) -> dict:
    """The prompt without titles, and without inputs the node does not define: front-end extensions
    add display-only widgets (PreviewAny's text box 'preview') that the server ignores."""
    out = {}
    for k, v in prompt.items():
        spec = object_info[v["class_type"]]["input"]
        known = set(spec.get("required", {})) | set(spec.get("optional", {}))
        out[k] = {"class_type": v["class_type"], "inputs": {n: x for n, x in v["inputs"].items() if n in known}}
    return out


@pytest.mark.parametrize("name", NAMES)
def test_front_end_converts_like_our_converter(front_end, name):
    result, object_info = front_end
    if name in result["skipped"]:
        pytest.skip(f"{name}: {result['skipped'][name]}")
    seen = result["workflows"][name]
    wf = json.loads((ROOT / "workflows" / f"{name}.json").read_text())
    ours = comparable(ui_to_api(wf, input_types_from_object_info(object_info)), object_info)
    theirs = comparable(seen["prompt"], object_info)
    assert theirs == ours, (
        f"{name}: the front end's graphToPrompt differs from tests/workflow_convert.py:\n"
        f"front end: {json.dumps(theirs, sort_keys=True)[:3000]}\nours: {json.dumps(ours, sort_keys=True)[:3000]}"
    )
    assert {n["type"] for n in seen["nodes"]} == {n["type"] for n in wf["nodes"]}
    shot = Path(seen["screenshot"])
    assert shot.stat().st_size > 30_000, "the screenshot is (nearly) empty"
    if os.environ.get("RADIAL_DOCS_SCREENSHOT") == "1" and name in DOCS_SHOTS and result["pinned"]:
        from PIL import Image

        DOCS_SHOTS[name].parent.mkdir(parents=True, exist_ok=True)
        with Image.open(shot) as im:
            im.convert("RGB").resize((1600, round(1600 * im.height / im.width)), Image.LANCZOS).save(
                DOCS_SHOTS[name], optimize=True)


def test_template_browser_shows_human_titles(front_end):
    """Both front ends title a custom node's template by its file name: the names read as titles.
    A workflow that needs nodes this ComfyUI lacks (LTX-2 on 0.3.75) is not offered at all."""
    result, _ = front_end
    text = result.get("templateDialogText", "")
    for name in NAMES:
        if name in result["hidden"]:
            assert name not in text, f"{name} is offered, but this ComfyUI lacks its nodes: {result['skipped'][name]}"
        else:
            assert name in text, f"the template browser does not show the title {name!r}"
    assert "radial_wan" not in text and "_720p_" not in text, "a raw file-name title is shown"


def test_template_browser_shows_thumbnails(front_end):
    result, _ = front_end
    thumbs = result.get("thumbnails", {})
    for name in set(NAMES) - set(result["hidden"]):
        assert thumbs.get(name) == 200, f"the template browser did not load {name}.jpg (got {thumbs})"
    shot = Path(result["out"]) / "template_browser.png"
    assert shot.stat().st_size > 30_000
    if os.environ.get("RADIAL_DOCS_SCREENSHOT") == "1" and result["pinned"]:
        from PIL import Image

        with Image.open(shot) as im:
            im.convert("RGB").resize((1200, round(1200 * im.height / im.width)), Image.LANCZOS).save(
                DOCS_TEMPLATES, optimize=True)


@pytest.mark.parametrize("name", NAMES)
def test_no_node_overlaps_another_with_vue_nodes(front_end, name):
    """With Vue nodes ("Nodes 2.0") nodes are as tall as their content (the pack's readouts, the
    front end's own widgets): the bundled layout leaves room for it, no two nodes overlap."""
    result, _ = front_end
    if name in result["skipped"]:
        pytest.skip(f"{name}: {result['skipped'][name]}")
    assert result["canvasRenderer"] and result["vueRenderer"], "the renderers were not switched"
    unmeasured = [b for b in result["vueBoxes"][name] if b["x1"] - b["x0"] < 50 or b["y1"] - b["y0"] < 30]
    assert unmeasured == [], f"{name}: Vue nodes not drawn (culled or hidden), so not measured: {unmeasured}"
    overlaps = result["vueOverlaps"][name]
    assert overlaps == [], f"{name}: nodes overlap with Vue nodes (graph units): {overlaps}"


@pytest.mark.parametrize("name", NAMES)
def test_readouts_take_the_size_from_the_workflow(front_end, name):
    """Every readout of a bundled workflow finds its video size in the graph (the training workflow's
    from Save Radial LoRA's tuned_* widgets): none says "assumed"."""
    result, _ = front_end
    if name in result["skipped"]:
        pytest.skip(f"{name}: {result['skipped'][name]}")
    readouts = result["workflows"][name]["readouts"]
    assumed = [r for r in readouts if r["assumed"] == "true"]
    assert assumed == [], f"{name}: readouts that assume a size or family: {assumed}"
