"""Run one of the Playwright scripts (tests/browser/*_ui.mjs, see page_helpers.mjs) with node and
read the one JSON line it prints last: what the browser saw, for the test's assertions."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from radial_server import ARTIFACTS, CHROMIUM

HERE = Path(__file__).resolve().parent


def run_page_script(script: str, *args: str, timeout: float = 300, env: dict | None = None,
                    save_as: str | None = None) -> dict:
    """``node tests/browser/<script> <args>``; its result (saved to artifacts/``save_as`` when
    given). Fails with the script's output when it printed no result."""
    proc = subprocess.run(["node", str(HERE / script), *args], cwd=HERE, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "CHROMIUM_PATH": CHROMIUM, **(env or {})})
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    assert lines, f"{script} printed no result (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1])
    if save_as:
        (ARTIFACTS / save_as).write_text(json.dumps(result, indent=1))
    return result
