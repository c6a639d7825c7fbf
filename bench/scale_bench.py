"""Scale-out: platform tasks per second through the local worker, then through Celery with 1, 2, 4 processes.

1,000 platform tasks (``--quick``: 200) are created on a fresh local backend
(:class:`xpander_sync.local.LocalBackend`) while nothing is connected; the clock starts when the
consumer starts and stops when the last task is saved ``completed``. The handler waits 100 ms (a
stand-in for the model) and counts its runs in Redis (``INCR runs:<task id>``): every run checks
that each task ran exactly once.

* local worker: :class:`xpander_sync.worker.Worker` in this process with its default pool
  (``concurrency=6``: six handler threads).
* Celery: a ``redis-server`` (Debian's) on a free loopback port, the stream reader as
  ``xpander-sync worker handlers:handle --dispatch celery --celery-app proj:app``, and 1, 2 or 4
  separate ``celery worker --pool prefork --concurrency 1`` processes (one task at a time each,
  ``worker_prefetch_multiplier=1``): the figure is what N single-slot machines would give.

Target (issue 18): 4 Celery worker processes at least 3x the throughput of 1. Run alone:
``python bench/scale_bench.py [TASKS]``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from _common import Context, Row, Stats

PROJECT = Path(__file__).resolve().parent.parent / "tests" / "integrations" / "celery_project"
sys.path.insert(0, str(PROJECT))

API_KEY = "xpk-scale-bench"
AGENT = "agt-openai"
SLEEP = 0.1
TARGET = 3.0
PROCESSES = (1, 2, 4)


def _platform() -> Any:
    from xpander_sync.local import LocalBackend

    return LocalBackend(api_key=API_KEY, stream_poll_interval=0.02, keepalive_interval=1.0).start()


def _xpander_env(url: str) -> Dict[str, str]:
    return {"XPANDER_BASE_URL": url, "XPANDER_API_KEY": API_KEY, "XPANDER_ORGANIZATION_ID": "local-org",
            "XPANDER_AGENT_ID": AGENT}


def _create(platform: Any, count: int) -> List[str]:
    from xpander_sync import Backend, Configuration

    client = Backend(Configuration(base_url=platform.url, api_key=API_KEY, organization_id="local-org"))
    return [client.invoke_agent(agent_id=AGENT, prompt=f"task {i}").id for i in range(count)]


def _wait_completed(platform: Any, count: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while True:
        done = sum(1 for t in platform.tasks() if t["status"] == "completed")
        if done >= count:
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done} of {count} tasks completed in {timeout:.0f} s")
        time.sleep(0.1)


def _exactly_once(redis_url: str, ids: List[str]) -> bool:
    import redis

    client = redis.Redis.from_url(redis_url)
    values = client.mget([f"runs:{tid}" for tid in ids])
    return all(v is not None and int(v) == 1 for v in values)


def _local_worker(count: int, redis_url: str) -> float:
    """Tasks per second through the local worker, default pool; handler as the Celery one."""
    os.environ["XPANDER_TEST_BROKER"] = redis_url
    os.environ["XPANDER_TEST_SLEEP"] = str(SLEEP)
    import handlers

    from xpander_sync import Configuration
    from xpander_sync.worker import Worker

    platform = _platform()
    try:
        ids = _create(platform, count)
        worker = Worker(handlers.handle, configuration=Configuration(
            base_url=platform.url, api_key=API_KEY, organization_id="local-org"), agent_id=AGENT,
            handle_signals=False, journal_dir=None)
        started = time.perf_counter()
        worker.start()
        finished = _wait_completed(platform, count, timeout=count * SLEEP * 2 + 60)
        worker.stop()
        worker.join(30)
        if not _exactly_once(redis_url, ids):
            raise RuntimeError("local worker: a task did not run exactly once")
        return count / (finished - started)
    finally:
        platform.stop()


def _celery(count: int, processes: int, server: Any, state_dir: str) -> float:
    import harness
    import redis

    redis.Redis.from_url(server.url).flushall()
    platform = _platform()
    started_processes: List[Any] = []
    try:
        ids = _create(platform, count)
        env = harness.environment(server.url, _xpander_env(platform.url), XPANDER_TEST_SLEEP=str(SLEEP),
                                  XDG_STATE_HOME=state_dir)
        workers = [harness.start_celery_worker(env, concurrency=1, name=f"w{i}") for i in range(processes)]
        started_processes.extend(workers)
        deadline = time.monotonic() + 60
        while not all(" ready." in harness.output(w) for w in workers):
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                raise RuntimeError("a Celery worker did not start: " + harness.output(workers[0])[-2000:])
            time.sleep(0.1)
        started = time.perf_counter()
        started_processes.append(harness.start_reader(env))
        finished = _wait_completed(platform, count, timeout=count * SLEEP * 2 / processes + 120)
        if not _exactly_once(server.url, ids):
            raise RuntimeError(f"celery x{processes}: a task did not run exactly once")
        return count / (finished - started)
    finally:
        for process in reversed(started_processes):
            harness.stop(process)
        platform.stop()


def measure(ctx: Context) -> List[Row]:
    import tempfile

    import harness

    count = getattr(ctx, "scale_tasks", None) or (200 if ctx.quick else 1000)
    server = harness.RedisServer().start()
    rows: List[Row] = []
    try:
        figures: Dict[str, float] = {"local": _local_worker(count, server.url)}
        with tempfile.TemporaryDirectory() as state_dir:
            for n in PROCESSES:
                print(f"... scale: celery x{n}", file=sys.stderr, flush=True)
                figures[f"celery{n}"] = _celery(count, n, server, state_dir)
    finally:
        server.stop()
    speedup = figures["celery4"] / figures["celery1"]
    rows.append(Row(f"{count} tasks (100 ms each), local worker, default pool (6 threads)",
                    Stats([figures["local"]]), unit="tasks/s", note="one process"))
    for n in PROCESSES:
        rows.append(Row(f"{count} tasks (100 ms each), Celery, {n} worker process(es) x concurrency 1",
                        Stats([figures[f"celery{n}"]]), unit="tasks/s",
                        target=f">= {TARGET:g}x of 1 process" if n == 4 else "",
                        met=(speedup >= TARGET) if n == 4 else None,
                        note=f"{figures[f'celery{n}'] / figures['celery1']:.2f}x of 1 process"))
    ctx.notes.append(f"scale: every task ran exactly once in every configuration (Redis counters); "
                     f"Celery 4 processes / 1 process = {speedup:.2f}x")
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    from _common import render_table

    args = list(sys.argv[1:] if argv is None else argv)
    count = int(args[0]) if args else 1000
    ctx = Context.__new__(Context)
    ctx.quick, ctx.notes = count < 1000, []
    ctx.scale_tasks = count
    rows = measure(ctx)
    print(render_table(rows))
    for note in ctx.notes:
        print("note:", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
