"""A tool call with activity events on, against the same tool call with events off.

Issue 15's point: events are delivered off the call path, so a tool call with events on is no
slower than the bare tool POST beyond noise. The honest comparison is the same tool call through
the same layer and path, with and without events: the agno tool of ``get_args(agent_id, task=task)``
(events on: a ``tool_call_request`` and a ``tool_call_result`` handed to the delivery thread)
against the agno tool of another ``get_args(agent_id, task=task)`` whose layer has its events
turned off (``ToolCalls.events = False``: the same task, the same ``x-execution-id``, no event),
both called the way agno calls them (the entrypoint: argument coercion, the payload, the POST
with ``x-tool-call-id``).
The server (this module's copy of the minimal server, which also answers the tool and the events
route) runs in a child process: the platform is another machine, its work must not take the
client's GIL.

Three series, interleaved call by call (in a new random order each round, seeded, so that no
series always follows another one: a call right after a pause, or right after the thread's
delivery, runs on a colder or a warmer CPU) so that machine noise hits them alike: events off,
timed twice (``A`` and ``B``: the same function; their difference is the noise), and events on.
Two blocks:

* **paced** (the realistic one): an untimed pause of :data:`PAUSE_S` (50 ms) before each call, longer
  than the delivery thread's quiet period (20 ms), as an agent's tool calls come between model
  turns, which take far longer. The thread delivers in the pause.
* **back to back** (the worst case): no pause; the thread delivers only every ``max_delay`` (1 s),
  while the calls run.

**Noise** of a block: ``|median(A) - median(B)|``, but at least two standard errors of the
difference of two medians, estimated from the samples' spread (the median absolute deviation:
``SE(median) ~ 1.2533 * 1.4826 * MAD / sqrt(n)`` per series, ``sqrt(2)`` of it for a
difference), so that an A/B pair that happens to land on the same median does not claim a noise of
zero. **Target**: the events-on median at most the events-off median (A and B pooled) plus the
noise, with every event delivered after the timing (flushed; none left in the outbox, where a row
is deleted only after its push's 2xx).

As information: a raw ``requests.Session`` POST, the bare ``Tools.invoke`` (the resource, no
layer) and the layer without a task (``get_args(agent_id)``: no events and no ``x-execution-id``).
Run alone: ``python bench/toolcall_bench.py [RUNS]``.
"""

from __future__ import annotations

import gc
import math
import random
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import requests
from _common import (
    AGENT_ID,
    API_KEY,
    DUMMY_OPENAI_KEY,
    Context,
    Row,
    Stats,
    our_configuration,
    run_alone,
    timed_ms,
)
from _server import BenchServer

TOOL_ID = "XpanderCrmSearchContacts"
ANSWER = {"contacts": [{"id": "c-1", "name": "Ada Lovelace", "company": "Acme"}]}
#: The untimed pause before each call of the paced block: longer than the delivery thread's quiet
#: period (``EventDispatcher.quiet``, 20 ms); an LLM turn takes far longer.
PAUSE_S = 0.05
WARMUP = 30


def _serve(routes: Any, ready: Any, stop: Any, log: Any) -> None:  # in a child process
    server = BenchServer(routes).__enter__()
    ready.put(server.url)
    stop.wait()
    log.put([path for _, path, _ in server.entries()])
    server.__exit__(None, None, None)


def samples(fns: Dict[str, Callable[[], Any]], runs: int, *, pause: float = 0.0) -> Dict[str, List[float]]:
    """Every function timed ``runs`` times (ms), call by call, in a new (seeded) random order each
    round, after a warm-up; ``pause`` seconds of untimed sleep before each call."""
    for _ in range(WARMUP):
        for fn in fns.values():
            if pause:
                time.sleep(pause)
            fn()
    out: Dict[str, List[float]] = {name: [] for name in fns}
    order = list(fns)
    rng = random.Random(15)
    gc.collect()
    for _ in range(runs):
        rng.shuffle(order)
        for name in order:
            if pause:
                time.sleep(pause)
            out[name].append(timed_ms(fns[name]))
    return out


def _layer(function: Any) -> Any:
    """The tool-call layer (``ToolCalls``) behind an agno tool's entrypoint (its spec's build context)."""
    spec = next(cell.cell_contents for cell in function.entrypoint.__closure__ or ()
                if hasattr(cell.cell_contents, "context"))
    layer = spec.context._toolcalls
    if layer is None:
        raise RuntimeError("call the tool once before looking its layer up")
    return layer


def _mad(values: Sequence[float]) -> float:
    middle = statistics.median(values)
    return statistics.median(abs(v - middle) for v in values)


def noise(a: Sequence[float], b: Sequence[float]) -> Tuple[float, float, float]:
    """``(noise, |A-B|, 2 SE)``: the A/B difference of the medians, at least two standard errors of a
    difference of two medians (from the median absolute deviation of each series)."""
    diff = abs(statistics.median(a) - statistics.median(b))
    se = math.hypot(*(1.2533 * 1.4826 * _mad(s) / math.sqrt(len(s)) for s in (a, b)))
    return max(diff, 2 * se), diff, 2 * se


def measure(ctx: Context) -> List[Row]:
    import multiprocessing
    import os

    from xpander_sync import Backend, Task
    from xpander_sync._converter import structure
    from xpander_sync.frameworks._toolcall import flush_activity
    from xpander_sync.reporting import activity
    from xpander_sync.resources import Tools

    os.environ.setdefault("OPENAI_API_KEY", DUMMY_OPENAI_KEY)
    task_id = ctx.fixtures.task["id"]
    routes = dict(ctx.fixtures.routes())
    routes[("POST", f"/agents/{AGENT_ID}/operations/{TOOL_ID}")] = ANSWER
    routes[("POST", f"/agent-execution/{task_id}/events/push")] = {}
    # The platform is another machine: its work must not share this process's GIL with the client's.
    mp = multiprocessing.get_context("fork")
    ready, log, stop = mp.Queue(), mp.Queue(), mp.Event()
    child = mp.Process(target=_serve, args=(routes, ready, stop, log), daemon=True)
    child.start()
    url = ready.get(timeout=30)
    try:
        backend = Backend(our_configuration(url, agent_cache_ttl=3600, metadata_cache_ttl=3600))
        task = structure(ctx.fixtures.task, Task)
        on_tool = next(t for t in backend.get_args(agent_id=AGENT_ID, task=task)["tools"] if t.name == TOOL_ID)
        off_tool = next(t for t in backend.get_args(agent_id=AGENT_ID, task=task)["tools"] if t.name == TOOL_ID)
        no_task_tool = next(t for t in backend.get_args(agent_id=AGENT_ID)["tools"] if t.name == TOOL_ID)
        tools = Tools(backend.configuration, transport=backend._transport)
        arguments = {"query_params": {"q": "ada"}}
        body = {"query_params": {"q": "ada"}, "path_params": {}, "body_params": {}}
        session = requests.Session()
        headers = {"x-api-key": API_KEY, "Accept": "application/json", "x-agent-version": "3"}
        post_url = f"{url}/agents/{AGENT_ID}/operations/{TOOL_ID}"

        def raw() -> None:
            response = session.post(post_url, json=body, headers=headers, timeout=(10, 60))
            response.raise_for_status()
            response.json()

        def bare() -> None:
            tools.invoke(AGENT_ID, TOOL_ID, body, agent_version=3)

        def off() -> None:
            off_tool.entrypoint(**arguments)

        def no_task() -> None:
            no_task_tool.entrypoint(**arguments)

        def on() -> None:
            on_tool.entrypoint(**arguments)

        off()
        on()
        off_layer = _layer(off_tool)
        assert off_layer is not _layer(on_tool), "one layer per build"
        off_layer.events = False  # the same layer and task, without events

        calls = {"off_a": off, "on": on, "off_b": off}
        info = samples({"raw": raw, "bare": bare, "no_task": no_task}, ctx.runs)
        back_to_back = samples(calls, ctx.runs)
        flushed = flush_activity(backend._transport, timeout=30)  # untimed: not into the next block
        paced = samples(calls, ctx.runs, pause=PAUSE_S)
        flushed = flush_activity(backend._transport, timeout=30) and flushed
        left = len(activity.events_outbox(None).pending())  # a row is deleted only after its push's 2xx
        session.close()
    finally:
        stop.set()
        paths = log.get(timeout=30)
        child.join(10)
    pushes = sum(1 for path in paths if path.endswith("/events/push"))
    expected = 2 + 2 * 2 * (ctx.runs + WARMUP)  # two events per call with events on, two blocks
    delivered = flushed and left == 0

    rows = [
        Row("tool POST, raw requests.Session", Stats(info["raw"]), note=f"{ctx.runs} runs, information"),
        Row("tool POST, bare Tools.invoke (no layer)", Stats(info["bare"]), floor=Stats(info["raw"]),
            floor_label="raw POST", note="information"),
        Row("tool call, layer without a task (no events, no x-execution-id)", Stats(info["no_task"]),
            floor=Stats(info["bare"]), floor_label="bare Tools.invoke", note="information"),
    ]
    for label, block in ((f"paced, {PAUSE_S * 1000:g} ms before each call", paced),
                         ("back to back (worst case)", back_to_back)):
        a, b, events = block["off_a"], block["off_b"], block["on"]
        off_stats = Stats(a + b)
        spread, diff, two_se = noise(a, b)
        on_stats = Stats(events)
        extra = on_stats.median - off_stats.median
        ctx.notes.append(
            f"tool call, {label}: events off A/B medians {statistics.median(a):.3f} / {statistics.median(b):.3f} ms "
            f"(|A-B| {diff:.3f} ms, 2 SE {two_se:.3f} ms: noise {spread:.3f} ms); events on {on_stats.median:.3f} ms, "
            f"{extra:+.3f} ms over events off"
        )
        rows += [
            Row(f"tool call, events off (A), {label}", Stats(a), note="same task, layer events off"),
            Row(f"tool call, events off (B), {label}", Stats(b), note=f"noise {spread:.3f} ms"),
            Row(f"tool call, events on, {label}", on_stats, floor=off_stats, floor_label="events off, A+B",
                target=f"<= floor + noise ({spread:.3f} ms)",
                met=on_stats.median <= off_stats.median + spread and delivered,
                note=f"{extra:+.3f} ms"),
        ]
    ctx.notes.append(f"tool call: {expected} events in {pushes} background pushes, {left} left undelivered"
                     f"{'' if flushed else ' (flush timed out)'}")
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_alone(measure, argv, default_runs=300)


if __name__ == "__main__":
    sys.exit(main())


__all__: Any = ["measure", "noise", "samples"]
