"""100 concurrent ``aget_args`` and 100 concurrent ``areport_external_task`` (``asyncio.gather``), wall time.

Each round is one ``asyncio.run(gather(...))`` of ``ctx.concurrency`` calls with a task (the
official SDK needs one). Our twins are ``asyncio.to_thread`` over the blocking calls, so they run on
the default executor (``min(32, cpu + 4)`` threads: 6 on a 2-core machine) and share one pooled
session; the official SDK runs them as coroutines, each request on a new ``httpx.AsyncClient``.

* ``aget_args`` cold: caches cleared before the round; ours makes the three GETs once
  (single-flight), so the floor shown is what a client without a shared cache would send:
  100 x the three raw GETs, each set in ``asyncio.to_thread`` with one ``requests.Session``.
* ``aget_args`` warm: no HTTP for ours; no floor.
* ``areport_external_task``: floor = 100 raw POSTs, each in ``asyncio.to_thread``, one session.

Target (issue 7): at least 10x faster than the official SDK. Run alone:
``python bench/concurrency_bench.py [ROUNDS]``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence

import requests
from _common import AGENT_ID, API_KEY, Context, Row, Stats, our_configuration, run_alone, timed_ms
from _official import parse
from get_args_bench import our_task
from requests.adapters import HTTPAdapter

TARGET_SPEEDUP = 10.0
TOKENS = {"prompt_tokens": 3, "completion_tokens": 4}


def rounds_of(fns: Dict[str, Callable[[], Any]], rounds: int, before: Optional[Dict[str, Callable[[], Any]]] = None
              ) -> Dict[str, Stats]:
    """Alternate the ``asyncio.run`` rounds of each function; ``before[name]`` runs untimed first."""
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            if before and name in before:
                before[name]()
            samples[name].append(timed_ms(fn))
    return {name: Stats(values) for name, values in samples.items()}


def measure(ctx: Context) -> List[Row]:
    from xpander_sync import Backend

    n = ctx.concurrency
    url = ctx.server.url
    backend = Backend(our_configuration(url))
    task = our_task(ctx)
    session = requests.Session()
    adapter = HTTPAdapter(pool_maxsize=32)  # as ours: more than the executor's threads
    session.mount("http://", adapter)
    headers = {"x-api-key": API_KEY, "Accept": "application/json"}
    paths = [f"/agents/{AGENT_ID}", "/metadata/default_llm_extra_headers", f"/agents/{AGENT_ID}/db"]

    def raw_gets() -> None:
        for path in paths:
            response = session.get(url + path, headers=headers, timeout=(10, 60))
            response.raise_for_status()
            response.json()

    def raw_post() -> None:
        body = {"id": str(uuid.uuid4()), "input": "q", "llm_response": None,
                "tokens": {"completion_tokens": 4, "prompt_tokens": 3, "cache_read_tokens": 0,
                           "cache_write_tokens": 0},
                "is_success": True, "result": "a", "duration": 1.2, "used_tools": ["t"]}
        response = session.post(url + f"/agent-execution/{AGENT_ID}/report_task", data=json.dumps(body),
                                headers=dict(headers, **{"Content-Type": "application/json"}), timeout=(10, 60))
        response.raise_for_status()
        response.json()

    async def gather_args() -> None:
        await asyncio.gather(*(backend.aget_args(agent_id=AGENT_ID, task=task) for _ in range(n)))

    async def gather_reports() -> None:
        await asyncio.gather(*(backend.areport_external_task(
            agent_id=AGENT_ID, input="q", result="a", tokens=TOKENS, duration=1.2, used_tools=["t"])
            for _ in range(n)))

    async def gather_raw(fn: Callable[[], None]) -> None:
        await asyncio.gather(*(asyncio.to_thread(fn) for _ in range(n)))

    def clear() -> None:
        backend._transport.caches.clear()

    # warm-up: imports (the async DB class), connections
    asyncio.run(gather_args())
    asyncio.run(gather_reports())
    asyncio.run(gather_raw(raw_post))
    clear()
    ctx.server.mark("ours-concurrent-cold")
    asyncio.run(gather_args())
    ctx.server.mark("ours-concurrent-end")
    our_calls = len(ctx.server.calls_between("ours-concurrent-cold", "ours-concurrent-end"))

    stats = rounds_of({
        "args_cold": lambda: asyncio.run(gather_args()),
        "raw_gets": lambda: asyncio.run(gather_raw(raw_gets)),
        "args_warm": lambda: asyncio.run(gather_args()),
        "reports": lambda: asyncio.run(gather_reports()),
        "raw_posts": lambda: asyncio.run(gather_raw(raw_post)),
    }, ctx.rounds, before={"args_cold": clear})
    session.close()

    official = ctx.official(["concurrent"], ctx.runs)
    off_calls = None
    if official:
        off_calls = len(ctx.server.calls_between("official-concurrent-cold", "official-concurrent-end"))
    ctx.notes.append(
        f"{n} concurrent cold aget_args made {our_calls} HTTP calls (ours)"
        + (f", {off_calls} (official)" if off_calls is not None else "") + "."
    )
    rows = []
    for key, label, floor, floor_label, off_key in (
        ("args_cold", f"{n} concurrent aget_args, cold, with task", stats["raw_gets"],
         f"{n} x 3 raw GETs in threads", "concurrent_args_cold"),
        ("args_warm", f"{n} concurrent aget_args, warm, with task", None, "", "concurrent_args_warm"),
        ("reports", f"{n} concurrent areport_external_task", stats["raw_posts"],
         f"{n} raw POSTs in threads", "concurrent_reports"),
    ):
        off = parse(official, off_key)
        ours = stats[key]
        met = None if off is None else off.median / ours.median >= TARGET_SPEEDUP
        rows.append(Row(label, ours, floor=floor, floor_label=floor_label, official=off,
                        target=f">= {TARGET_SPEEDUP:g}x faster than official", met=met,
                        note=f"{ctx.rounds} rounds" + (f", official {ctx.concurrent_rounds}" if off else "")))
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    def measure_alone(ctx: Context) -> List[Row]:
        ctx.rounds = max(3, ctx.runs)
        return measure(ctx)

    return run_alone(measure_alone, argv, default_runs=15)


if __name__ == "__main__":
    sys.exit(main())
