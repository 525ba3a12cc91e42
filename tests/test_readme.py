"""The README stays true: the newcomer's commands, every node input, the pictures and workflows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_quick_start_commands_come_first():
    quick = README.index("## Quick start")
    assert quick == README.index("## "), "the Quick start must be the first section"
    block = README[quick:README.index("## ", quick + 3)]
    for command in ("make demo", "make test", "make serve"):
        assert command in block, f"Quick start lacks `{command}`"
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test", "serve", "bench"):
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no '{target}' target"


def test_links_and_pictures_exist():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if target.startswith(("http://", "https://")):
            continue
        assert (ROOT / target).exists(), f"README links to {target}, which is not in the repository"


def test_every_shipped_workflow_is_listed():
    for path in (ROOT / "workflows").glob("*.json"):
        if path.name == "demo_wan_tiny.json":
            continue  # make demo's own graph, not a template
        assert f"`{path.stem}`" in README, f"README does not list workflows/{path.name}"


@pytest.mark.comfy
@pytest.mark.parametrize("node", ["RadialAttentionPatch", "RadialLoraLoader", "SparsityPreview", "SaveRadialLora",
                                  "RadialAttentionCalibrate", "RadialAttentionLoadCalibration"])
def test_every_node_input_is_explained(comfy, node):
    cls = comfy.nodes.NODE_CLASS_MAPPINGS[node]
    start = README.index(f"(`{node}`)")
    section = README[start:README.index("\n## ", start) if "\n## " in README[start:] else None]
    section = section.split("\n### ", 1)[0]
    inputs = cls.INPUT_TYPES()
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    for group in ("required", "optional"):
        for name, spec in inputs.get(group, {}).items():
            row = next((r for r in rows if re.search(rf"`{re.escape(name)}`", r.split("|")[1])), None)
            assert row, f"README's {node} table does not explain `{name}`"
            opts = spec[1] if len(spec) > 1 else {}
            if spec[0] in ("INT", "FLOAT") and "min" in opts and "max" in opts:
                span = f"{number(opts['min'])}–{number(opts['max'])}"
                assert span in row, f"README gives `{name}` of {node} another range than the node's {span}: {row}"


def number(x) -> str:
    """How the README writes a bound: 10 not 10.0, a real minus sign."""
    text = str(int(x)) if float(x).is_integer() else str(x)
    return text.replace("-", "−")
