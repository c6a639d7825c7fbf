"""A tool call through the tool-call layer, with activity events on, against the bare tool POST.

Issue 15's point: events are delivered off the call path, so a tool call with events on is no
slower than the bare tool POST beyond noise. Three series, interleaved call by call against this
module's own copy of the minimal server (it also answers the tool and the events route), run in a
child process: the platform is another machine, its work must not take the client's GIL:

* **bare POST**: ``Tools.invoke`` (the resource: ``POST /agents/{id}/operations/{tool}`` through the
  transport, no layer), timed twice in a quiet block (``A`` and ``B``): the difference between the
  two medians is the noise; a raw ``requests.Session`` POST is shown as the floor under it.
* **tool call, events on**: the agno tool of ``get_args(agent_id, task=task)`` called the way agno
  calls it (its entrypoint): argument coercion, the payload, the POST (``x-tool-call-id``), and two
  activity events handed to the delivery thread, which writes and pushes them in the background.
* **tool call, no task** (no events): the layer without activity.

Two ways of calling: back to back (the worst case: every call competes with the previous calls'
pushes for the two CPUs and the GIL) and paced (an untimed 5 ms pause before each call, as an
agent's tool calls come between model turns, which take far longer). Target, on the paced block:
the events-on median at most the bare POST's plus the noise plus 0.5 ms (building the body and
rendering the result). After the timing the events are flushed: none may be left in the outbox (a
row is deleted only after its push's 2xx). Run alone:
``python bench/toolcall_bench.py [RUNS]``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, List, Optional, Sequence

import requests
from _common import AGENT_ID, API_KEY, DUMMY_OPENAI_KEY, Context, Row, interleaved, our_configuration, run_alone
from _server import BenchServer

TOOL_ID = "XpanderCrmSearchContacts"
ANSWER = {"contacts": [{"id": "c-1", "name": "Ada Lovelace", "company": "Acme"}]}
#: What the layer may add on top of the bare POST besides noise (building the body, rendering the result).
ALLOWANCE_MS = 0.5
#: The untimed pause before each call of the paced block (an LLM turn takes far longer).
PAUSE_S = 0.005


def _serve(routes: Any, ready: Any, stop: Any, log: Any) -> None:  # in a child process
    server = BenchServer(routes).__enter__()
    ready.put(server.url)
    stop.wait()
    log.put([path for _, path, _ in server.entries()])
    server.__exit__(None, None, None)


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
        with_task = backend.get_args(agent_id=AGENT_ID, task=task)
        no_task = backend.get_args(agent_id=AGENT_ID)
        tool = next(t for t in with_task["tools"] if t.name == TOOL_ID).entrypoint
        bare_tool = next(t for t in no_task["tools"] if t.name == TOOL_ID).entrypoint
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

        quiet = interleaved({"raw": raw, "bare_a": bare, "bare_b": bare}, ctx.runs, warmup=30)
        busy = interleaved({"bare": bare, "no_task": lambda: bare_tool(**arguments),
                            "events": lambda: tool(**arguments)}, ctx.runs, warmup=30)
        # An agent's tool calls come between model turns: a pause (untimed) before each call lets the
        # background thread deliver the previous call's events, as it does between real turns.
        paced = interleaved({"bare": bare, "events": lambda: tool(**arguments)}, ctx.runs, warmup=30,
                            before_each=lambda: time.sleep(PAUSE_S))
        flushed = flush_activity(backend._transport, timeout=30)
        left = len(activity.events_outbox(None).pending())  # a row is deleted only after its push's 2xx
        session.close()
    finally:
        stop.set()
        paths = log.get(timeout=30)
        child.join(10)
    pushes = sum(1 for path in paths if path.endswith("/events/push"))

    a, b, raw_stats = quiet["bare_a"], quiet["bare_b"], quiet["raw"]
    floor = a if a.median <= b.median else b
    noise = abs(a.median - b.median)
    events, plain, busy_bare = busy["events"], busy["no_task"], busy["bare"]
    expected = 2 * 2 * (ctx.runs + 30)  # events submitted: two per call with a task
    delivered = flushed and left == 0
    paced_bare, paced_events = paced["bare"], paced["events"]
    ctx.notes.append(
        f"tool call: bare POST (Tools.invoke, quiet) A/B medians {a.median:.3f} / {b.median:.3f} ms "
        f"(noise {noise:.3f} ms); {expected} events in {pushes} background pushes (batched per task), "
        f"{left} left undelivered"
    )
    return [
        Row("tool POST, raw requests.Session", raw_stats, note=f"{ctx.runs} runs"),
        Row("tool POST, bare Tools.invoke (A)", a, floor=raw_stats, floor_label="raw POST"),
        Row("tool POST, bare Tools.invoke (B)", b, floor=raw_stats, floor_label="raw POST",
            note="A/B difference = noise"),
        Row("tool POST, bare, among event-pushing calls", busy_bare, floor=floor, floor_label="bare POST"),
        Row("tool call, layer, no task (no events)", plain, floor=floor, floor_label="bare POST"),
        Row("tool call, layer, events on, back to back", events, floor=floor, floor_label="bare POST",
            note="worst case: each call pays for the previous calls' pushes"),
        Row(f"tool POST, bare, paced ({PAUSE_S * 1000:g} ms between calls)", paced_bare),
        Row(f"tool call, layer, events on, paced ({PAUSE_S * 1000:g} ms between calls)", paced_events,
            floor=paced_bare, floor_label="bare POST, paced",
            target=f"<= floor + noise + {ALLOWANCE_MS:g} ms",
            met=paced_events.median <= paced_bare.median + noise + ALLOWANCE_MS and delivered,
            note=f"{expected} events, {pushes} pushes, {left} undelivered"),
    ]


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_alone(measure, argv, default_runs=300)


if __name__ == "__main__":
    sys.exit(main())


__all__: Any = ["measure"]
