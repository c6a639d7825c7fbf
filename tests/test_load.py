"""Load: 1,000 concurrent ``areport_external_task`` calls with bounded threads and sockets; a fork
in the middle of a ``get_args`` load; 1,000 background reports written ahead and delivered once.

The async twins run the blocking call on the event loop's default executor
(``min(32, cpu + 4)`` threads), and the transport's pool keeps at most
``pool_maxsize`` connections per host. This test checks both bounds while the calls
run, against a real :class:`~xpander_sync.local.LocalBackend` on loopback, and that
urllib3 never had to discard a connection ("Connection pool is full"). The figures it
prints (``pytest -s``) are the ones quoted in ``docs/reliability.md``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
import time
from collections import Counter
from typing import Set

import pytest

from xpander_sync import Backend, Configuration, RetryPolicy, Task
from xpander_sync._cache import _every_cache
from xpander_sync.local import LocalBackend
from xpander_sync.reporting import Outbox, QueuedReport

from .faults import FaultProxy

CALLS = 1000
EXECUTOR_SIZE = min(32, (os.cpu_count() or 1) + 4)  # asyncio's default executor (concurrent.futures)
EXTRA_THREADS = 2  # slack for short-lived helper threads


def _socket_inodes() -> Set[str]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def client_sockets(port: int) -> int:
    """This process's TCP sockets whose *remote* port is ``port`` (the client ends only)."""
    ours = _socket_inodes()
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    fields = line.split()
                    remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                    if remote_port == port and fields[9] in ours:
                        count += 1
        except FileNotFoundError:
            continue
    return count


def client_threads() -> int:
    """Threads of this process, the local backend's own server threads excluded."""
    return sum(1 for t in threading.enumerate() if not t.name.startswith(("xpander-local", "load-monitor")))


class Monitor:
    """Samples thread and socket counts every few milliseconds while the load runs."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.max_threads = 0
        self.max_sockets = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-monitor", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.max_threads = max(self.max_threads, client_threads())
            self.max_sockets = max(self.max_sockets, client_sockets(self.port))
            self.samples += 1
            self._stop.wait(0.003)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)


def run_load(backend: Backend, calls: int, prefix: str) -> list:
    async def main() -> list:
        return await asyncio.gather(
            *(backend.areport_external_task(agent_id="agt-openai", id=f"{prefix}-{n:04d}", input=str(n))
              for n in range(calls))
        )

    return asyncio.run(main())


@pytest.fixture
def local(tmp_path):
    backend = LocalBackend(db_path=str(tmp_path / "load.sqlite3")).start()
    yield backend
    backend.stop()


def test_1000_concurrent_async_reports_with_bounded_threads_and_sockets(local, caplog, capsys):
    caplog.set_level(logging.WARNING, logger="urllib3")
    cfg = Configuration(api_key="xpk-load", base_url=local.url)
    backend = Backend(cfg)
    port = int(local.url.rsplit(":", 1)[1])
    baseline_threads = client_threads()

    started = time.perf_counter()
    with Monitor(port) as monitor:
        results = run_load(backend, CALLS, "load")
    wall = time.perf_counter() - started

    assert len(results) == CALLS and all(isinstance(r, Task) for r in results)
    ids = [r["body"]["id"] for r in local.reports()]
    assert len(ids) == CALLS and len(set(ids)) == CALLS
    assert sorted(ids) == sorted(r.id for r in results)
    assert monitor.samples > 10  # the monitor really watched the run
    assert monitor.max_threads - baseline_threads <= EXECUTOR_SIZE + EXTRA_THREADS
    assert 1 <= monitor.max_sockets <= cfg.pool_maxsize
    assert monitor.max_sockets <= EXECUTOR_SIZE  # one connection per busy thread, none discarded
    assert not [r for r in caplog.records if "Connection pool is full" in r.getMessage()]
    with capsys.disabled():
        print(
            f"\nload: {CALLS} areport_external_task in {wall:.2f} s ({CALLS / wall:.0f}/s), cpus={os.cpu_count()}, "
            f"executor={EXECUTOR_SIZE}, extra threads={monitor.max_threads - baseline_threads}, "
            f"max sockets={monitor.max_sockets} (pool_maxsize={cfg.pool_maxsize}), samples={monitor.samples}"
        )


def test_an_undersized_pool_is_what_the_checks_would_catch(local, caplog):
    """The control: with pool_maxsize below the thread count, urllib3 opens extra
    connections and discards them, and says so. (So the checks above can fail.)"""
    caplog.set_level(logging.WARNING, logger="urllib3")
    cfg = Configuration(api_key="xpk-load", base_url=local.url, pool_maxsize=1)
    port = int(local.url.rsplit(":", 1)[1])
    with Monitor(port) as monitor:
        results = run_load(Backend(cfg), 200, "small")
    assert len(results) == 200
    assert [r for r in caplog.records if "Connection pool is full" in r.getMessage()]
    assert monitor.max_sockets > cfg.pool_maxsize


# -- issue 16: fork during a load; background reports written ahead under load -------------------------

FORK_CALLS = 200
CHILD_BOUND = 15.0  # seconds the forked child's get_args may take (one cold load is ~1 s)


def _held_load_lock() -> bool:
    """Whether a thread holds an agent cache's per-key loading lock right now."""
    return any(entry[0].locked() for cache in list(_every_cache) for entry in list(cache._loading.values()))


def _wait_for_child(pid: int, bound: float) -> int:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"the forked child's get_args did not finish within {bound} s (a lock copied while held?)")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_child_forked_during_a_get_args_load_finishes(local):
    """200 ``get_args``/``aget_args`` for one agent run on 4 threads and an event loop; agent
    loads are slowed to ~0.35 s each (every answer trickled), so the fork lands while a parent
    thread holds that agent's loading lock. The child's own ``get_args`` must still finish."""
    pytest.importorskip("agno")
    with FaultProxy(local.url, default="drip_fast", fast_pieces=8, fast_gap=0.05) as proxy:
        backend = Backend(Configuration(api_key="xpk-load", base_url=proxy.url, agent_cache_ttl=0.3))
        results: list = []
        errors: list = []

        def sync_load() -> None:
            for _ in range(FORK_CALLS // 8):
                try:
                    results.append(backend.get_args(agent_id="agt-openai", framework="agno"))
                except Exception as exc:  # collected, asserted below
                    errors.append(exc)

        async def async_load() -> list:
            return await asyncio.gather(
                *(backend.aget_args(agent_id="agt-openai", framework="agno") for _ in range(FORK_CALLS // 2)),
                return_exceptions=True,
            )

        threads = [threading.Thread(target=sync_load) for _ in range(4)]
        threads.append(threading.Thread(target=lambda: results.extend(asyncio.run(async_load()))))
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while not _held_load_lock() and time.monotonic() < deadline:
            time.sleep(0.001)
        held = _held_load_lock()
        pid = os.fork()
        if pid == 0:  # the child: one get_args for the same agent, on a thread it can give up on
            code = 1
            try:
                done: list = []
                worker = threading.Thread(
                    target=lambda: done.append(backend.get_args(agent_id="agt-openai", framework="agno")),
                    daemon=True,
                )
                worker.start()
                worker.join(CHILD_BOUND - 2)
                code = 0 if len(done) == 1 and isinstance(done[0], dict) else 3
            finally:
                os._exit(code)
        started = time.monotonic()
        exit_code = _wait_for_child(pid, CHILD_BOUND)
        child_seconds = time.monotonic() - started
        for t in threads:
            t.join(60)
    assert held, "no load was in flight at the fork: the test did not test anything"
    assert exit_code == 0 and child_seconds < CHILD_BOUND
    assert not errors and not [r for r in results if isinstance(r, BaseException)]
    assert len(results) == FORK_CALLS and all(isinstance(r, dict) and r for r in results)
    assert not any(t.is_alive() for t in threads)


BACKGROUND_THREADS, BACKGROUND_EACH = 8, 125


def test_1000_background_reports_from_8_threads_are_written_ahead_and_delivered_once(local, tmp_path):
    """The platform answers for the first part of the run, then hangs. Every call returns a
    QueuedReport at once; at that moment the report is on disk (in the outbox, or already
    delivered and deleted). When the platform answers again, each report is forwarded exactly once."""
    with FaultProxy(local.url, hang_limit=5) as proxy:
        cfg = Configuration(api_key="xpk-load", base_url=proxy.url, outbox=str(tmp_path / "bg.sqlite3"),
                            background_reports=True, connect_timeout=0.5, read_timeout=2.0,
                            retry=RetryPolicy(max_retries=0))
        backend = Backend(cfg)
        receipts: list = []
        errors: list = []

        def reporter(thread_no: int) -> None:
            try:
                for n in range(BACKGROUND_EACH):
                    if thread_no == 0 and n == BACKGROUND_EACH // 2:
                        proxy.set_default("hang")  # the platform stops answering mid-run
                    receipts.append(backend.report_external_task(agent_id="agt-openai", id=f"bg{thread_no}-{n:03d}"))
            except Exception as exc:
                errors.append(exc)

        started = time.perf_counter()
        threads = [threading.Thread(target=reporter, args=(i,)) for i in range(BACKGROUND_THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        wall = time.perf_counter() - started
        # Written ahead: checked before any flush, while the platform hangs. A report missing from
        # the outbox was deleted after its delivery, so the outbox is read first.
        pending = {r["task_id"] for r in Outbox(cfg.outbox).pending()}
        delivered = {r["body"]["id"] for r in local.reports()}
        expected = {f"bg{i}-{n:03d}" for i in range(BACKGROUND_THREADS) for n in range(BACKGROUND_EACH)}
        assert not errors and len(receipts) == len(expected)
        assert all(isinstance(r, QueuedReport) and r.reason == "background" for r in receipts)
        assert {r.task_id for r in receipts} == expected
        assert pending | delivered == expected and pending, (len(pending), len(delivered))

        proxy.set_default("pass")  # the platform is back: the dispatcher delivers the rest
        deadline = time.monotonic() + 60
        while len(Outbox(cfg.outbox)) and time.monotonic() < deadline:
            backend.flush(timeout=1)
        assert len(Outbox(cfg.outbox)) == 0
        forwarded = Counter(json.loads(s.body)["id"] for s in proxy.seen
                            if s.fault == "pass" and s.path.endswith("/report_task"))
    stored = [r["body"]["id"] for r in local.reports()]
    assert sorted(stored) == sorted(expected)  # stored once each
    assert set(forwarded) == expected and set(forwarded.values()) == {1}  # and sent once each
    print(f"\nbackground: {len(expected)} reports from {BACKGROUND_THREADS} threads returned in {wall:.2f} s, "
          f"{len(delivered)} delivered before the platform hung")
