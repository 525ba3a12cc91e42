"""Run ComfyUI prompts in this process, the way its server's prompt worker does.

Used by the demo and the tests (import it after ComfyUI is importable). ``EventLog`` is what the
executor needs of its server: it keeps every message the browser would get, with a clock.
``execute(prompt)`` validates the prompt with ComfyUI's own ``validate_prompt`` and runs it with
its ``PromptExecutor``.

The executor's ``cache_args`` differ between ComfyUI versions (0.33 reads ``ram_inactive``, which
0.3.75 does not know); :class:`NoCacheLimits` answers 0 for every limit a version asks for, so
the same call works on each without naming them.
"""

from __future__ import annotations

import asyncio
import time
import uuid


class EventLog:
    """The executor's message sink: what PromptServer would push to the browser, timestamped."""

    def __init__(self) -> None:
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata: dict = {}
        self.timed: list[tuple[float, str, dict]] = []

    @property
    def events(self) -> list[tuple[str, dict]]:
        return [(e, d) for _, e, d in self.timed]

    def send_sync(self, event, data, sid=None) -> None:
        self.timed.append((time.perf_counter(), event, data))

    def queue_updated(self) -> None:
        pass

    def node_seconds(self) -> dict[str, float]:
        """Seconds from each node's start to the next node's start (or the end of the prompt)."""
        out: dict[str, float] = {}
        starts = [(t, d.get("node")) for t, e, d in self.timed if e == "executing" and d.get("node")]
        ends = [t for t, e, _ in self.timed if e in ("executing", "execution_success", "execution_error")]
        for t, node in starts:
            later = [x for x in ends if x > t]
            if later:
                out[node] = later[0] - t
        return out


class NoCacheLimits(dict):
    """``cache_args`` for ``PromptExecutor``: 0 for any limit (nothing kept beyond a prompt's
    own outputs), whichever keys this ComfyUI version reads."""

    def __missing__(self, key):
        return 0


def validate(prompt: dict, outputs=None):
    """ComfyUI's ``validate_prompt``: ``(valid, error, outputs, node_errors)``."""
    import execution

    return asyncio.run(execution.validate_prompt(str(uuid.uuid4()), prompt, outputs))


def new_executor(events: EventLog | None = None, classic_cache: bool = False):
    import execution

    cache_type = execution.CacheType.CLASSIC if classic_cache else False
    return execution.PromptExecutor(events or EventLog(), cache_type=cache_type, cache_args=NoCacheLimits())


def execute(prompt: dict, outputs=None, *, executor=None, extra_data=None, check: bool = True):
    """Validate and run ``prompt`` (API format). Returns ``(executor, events)``.

    ``check``: assert that it validates and runs without an error (tests want the message)."""
    valid, error, out_nodes, node_errors = validate(prompt, outputs)
    if not valid or (check and node_errors):  # node_errors: outputs ComfyUI would drop
        if check:
            raise AssertionError(f"ComfyUI rejected the prompt: {error} {node_errors}")
        return None, None
    events = EventLog()
    if executor is None:
        executor = new_executor(events)
    executor.server = events
    executor.execute(prompt, str(uuid.uuid4()), extra_data or {}, out_nodes)
    if check and not executor.success:
        raise AssertionError(f"ComfyUI reported an error: {executor.status_messages}")
    return executor, events


def cached_output(executor, node_id: str):
    """The cache entry of a node after ``execute`` (``.outputs``, ``.ui``), or None.

    ComfyUI's output cache is asynchronous in newer versions (``get`` returns a coroutine)."""
    import inspect

    entry = executor.caches.outputs.get(node_id)
    if inspect.isawaitable(entry):
        entry = asyncio.run(entry)
    return entry
