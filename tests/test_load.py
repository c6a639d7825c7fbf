"""Load: 1,000 concurrent ``areport_external_task`` calls with bounded threads and sockets.

The async twins run the blocking call on the event loop's default executor
(``min(32, cpu + 4)`` threads), and the transport's pool keeps at most
``pool_maxsize`` connections per host. This test checks both bounds while the calls
run, against a real :class:`~xpander_sync.local.LocalBackend` on loopback, and that
urllib3 never had to discard a connection ("Connection pool is full"). The figures it
prints (``pytest -s``) are the ones quoted in ``docs/reliability.md``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Set

import pytest

from xpander_sync import Backend, Configuration, Task
from xpander_sync.local import LocalBackend

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
