"""``get_args`` warm and cold, against the raw HTTP round trips it needs, and its HTTP calls.

* **warm**: the agent, the organization's LLM headers and the DB address are cached (a
  configuration with long TTLs, so no refetch happens during the runs); no HTTP at all. Measured
  without and with a task. Target: at most 2 ms (median).
* **cold**: the caches are cleared before every call, so each call makes the requests of the
  reference: the three GETs (``/agents/{id}``, ``/metadata/default_llm_extra_headers``,
  ``/agents/{id}/db``) and the channel presence (``POST /tools/{id}/channel-presence``, which the
  official SDK sends on every build and xpander-sync on every cold one), and builds the agno
  arguments. The floor is those four requests with a raw ``requests.Session`` (``.json()`` each)
  against the same server. Target: at most 2x the floor.
* **HTTP calls per get_args**: counted in the server's log between markers, for cold, warm, and
  cold/warm with a task.

Every timed call builds the full agno arguments (an ``OpenAIChat`` model, two tool ``Function``
objects, a ``PostgresDb`` that does not connect). Run alone: ``python bench/get_args_bench.py [RUNS]``.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence

import requests
from _common import AGENT_ID, API_KEY, Context, Row, Stats, interleaved, our_configuration, run_alone
from _official import parse

WARM_TARGET_MS = 2.0
COLD_TARGET_RATIO = 2.0


def our_task(ctx: Context) -> Any:
    from xpander_sync import Task
    from xpander_sync._converter import structure

    return structure(ctx.fixtures.task, Task)


def count_calls(ctx: Context, label: str, fn: Any) -> List[Any]:
    ctx.server.mark(label)
    fn()
    ctx.server.mark(label + "-end")
    return ctx.server.calls_between(label, label + "-end")


def describe(calls: List[Any]) -> str:
    counts = Counter((method, path) for method, path, _ in calls)
    return ", ".join(f"{method} {path}" + (f" x{n}" if n > 1 else "") for (method, path), n in counts.items())


def measure(ctx: Context) -> List[Row]:
    from xpander_sync import Backend

    url = ctx.server.url
    warm = Backend(our_configuration(url, agent_cache_ttl=3600, metadata_cache_ttl=3600))
    cold = Backend(our_configuration(url))
    task = our_task(ctx)
    session = requests.Session()
    headers = {"x-api-key": API_KEY, "Accept": "application/json"}
    requests_made = [("GET", f"/agents/{AGENT_ID}"), ("GET", "/metadata/default_llm_extra_headers"),
                     ("GET", f"/agents/{AGENT_ID}/db"), ("POST", f"/tools/{AGENT_ID}/channel-presence")]

    def raw_round_trips() -> None:
        for method, path in requests_made:
            response = session.request(method, url + path, headers=headers, timeout=(10, 60))
            response.raise_for_status()
            response.json()

    def clear() -> None:
        cold._transport.caches.clear()  # the caches of this configuration's shared transport

    def cold_call() -> None:
        clear()
        cold.get_args(agent_id=AGENT_ID)

    def cold_task_call() -> None:
        clear()
        cold.get_args(agent_id=AGENT_ID, task=task)

    # HTTP calls per get_args (one call each, between markers)
    clear()
    calls = {
        "cold": count_calls(ctx, "ours-cold", lambda: cold.get_args(agent_id=AGENT_ID)),
        "warm": count_calls(ctx, "ours-warm", lambda: cold.get_args(agent_id=AGENT_ID)),
    }
    clear()
    calls["cold, task"] = count_calls(ctx, "ours-cold-task", lambda: cold.get_args(agent_id=AGENT_ID, task=task))
    calls["warm, task"] = count_calls(ctx, "ours-warm-task", lambda: cold.get_args(agent_id=AGENT_ID, task=task))

    # Timings. Warm calls are sub-millisecond: time them in their own interleaved block, and the
    # cold calls against their raw floor in another (alternating call by call).
    warm.get_args(agent_id=AGENT_ID)
    warm_stats = interleaved({
        "warm": lambda: warm.get_args(agent_id=AGENT_ID),
        "warm_task": lambda: warm.get_args(agent_id=AGENT_ID, task=task),
    }, ctx.runs, warmup=50)
    cold_runs = max(50, ctx.runs // 2)
    cold_stats = interleaved({
        "cold": lambda: cold_call(),
        "cold_task": lambda: cold_task_call(),
        "raw": raw_round_trips,
    }, cold_runs, warmup=20)
    session.close()

    official = ctx.official(["get_args"], ctx.runs)
    off_calls: Dict[str, List[Any]] = {}
    if official:
        off_calls = {
            "cold, task": ctx.server.calls_between("official-cold-task", "official-warm-task"),
            "warm, task": ctx.server.calls_between("official-warm-task", "official-cold-notask"),
            "cold": ctx.server.calls_between("official-cold-notask", "official-end"),
        }
        unserved = sorted({f"{m} {p} -> {s}" for calls_ in off_calls.values() for m, p, s in calls_
                           if s is not None and s >= 400})
        hidden = "_xpander_hidden_mcp_toolkits" if official.get("hidden_key_returned") else "no private key"
        ctx.notes.append(
            f"official SDK {official.get('version')}: get_args without a task -> {official.get('no_task')}; "
            f"with a task it returns {hidden}"
            f", Agent(**args) -> {official.get('agent_from_args')}; Agent(**copy without that key) -> "
            f"{official.get('agent_from_clean_copy')}. All its get_args figures are with a task."
        )
        if unserved:
            ctx.notes.append("official SDK called routes the server does not serve (fail-open paths): "
                             + "; ".join(unserved))
    ctx.notes.append("HTTP calls per get_args (ours): " + "; ".join(
        f"{name}: {len(c)}" + (f" ({describe(c)})" if c else "") for name, c in calls.items()))
    if off_calls:
        ctx.notes.append("HTTP calls per get_args (official): " + "; ".join(
            f"{name}: {len(c)}" + (f" ({describe(c)})" if c else "") for name, c in off_calls.items()))

    off_warm = parse(official, "get_args_warm_task")
    off_cold = parse(official, "get_args_cold_task")
    crash = "crashes without a task" if official else ""
    w, wt = warm_stats["warm"], warm_stats["warm_task"]
    c, ct, raw = cold_stats["cold"], cold_stats["cold_task"], cold_stats["raw"]
    floor_label = "3 raw GETs + 1 raw POST"

    def n(calls_: List[Any]) -> Stats:
        return Stats([len(calls_)])

    rows = [
        Row("get_args warm, no task", w, target=f"<= {WARM_TARGET_MS:g} ms", met=w.median <= WARM_TARGET_MS,
            official_note=crash, note=f"{ctx.runs} runs"),
        Row("get_args warm, with task", wt, official=off_warm, target=f"<= {WARM_TARGET_MS:g} ms",
            met=wt.median <= WARM_TARGET_MS, note=f"{ctx.runs} runs"),
        Row("get_args cold, no task", c, floor=raw, floor_label=floor_label,
            target=f"<= {COLD_TARGET_RATIO:g}x floor", met=c.median / raw.median <= COLD_TARGET_RATIO,
            official_note=crash, note=f"{cold_runs} runs"),
        Row("get_args cold, with task", ct, floor=raw, floor_label=floor_label, official=off_cold,
            target=f"<= {COLD_TARGET_RATIO:g}x floor", met=ct.median / raw.median <= COLD_TARGET_RATIO,
            note=f"{cold_runs} runs"),
    ]
    for name in ("cold", "warm", "cold, task", "warm, task"):
        off = off_calls.get(name)
        rows.append(Row(f"HTTP calls per get_args ({name})", n(calls[name]), unit="calls",
                        floor=Stats([4]) if name.startswith("cold") else None,
                        floor_label="the reference's 4" if name.startswith("cold") else "",
                        official=n(off) if off is not None else None,
                        official_note="then crashes" if name == "cold" and off is not None else ""))
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_alone(measure, argv, default_runs=300)


if __name__ == "__main__":
    sys.exit(main())
