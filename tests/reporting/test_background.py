"""reporting.background: reports delivered by one thread per platform client, in order, none lost."""

from __future__ import annotations

import threading

import pytest

from xpander_sync import Backend, Configuration, ConfigurationError, RetryPolicy
from xpander_sync.local import LocalBackend
from xpander_sync.reporting import Outbox, QueuedReport

FAST = RetryPolicy(max_retries=1, backoff_base=0.0, backoff_max=0.0)


def test_background_mode_needs_an_outbox():
    with pytest.raises(ConfigurationError, match="outbox"):
        Configuration(background_reports=True)


def test_background_reports_1000_from_8_threads_in_order_with_an_outage(tmp_path):
    from socket import socket

    with socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = str(tmp_path / "b.sqlite3")
    first = LocalBackend(db_path=db, port=port).start()
    cfg = Configuration(base_url=first.url, outbox=str(tmp_path / "bg.sqlite3"), background_reports=True,
                        retry=FAST, connect_timeout=0.5, read_timeout=2)
    backend = Backend(cfg)
    half_done = threading.Event()

    def reporter(thread_no):
        for n in range(125):
            if thread_no == 0 and n == 60:
                half_done.set()
            receipt = backend.report_external_task(agent_id="agt-openai", id=f"t{thread_no}-{n:03d}")
            assert isinstance(receipt, QueuedReport) and receipt.reason == "background"

    threads = [threading.Thread(target=reporter, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    half_done.wait(10)
    first.stop()  # the backend fails mid-way
    for t in threads:
        t.join()
    assert backend.flush(timeout=60) is True
    queued = {r["task_id"] for r in Outbox(cfg.outbox).pending()}

    with LocalBackend(db_path=db, port=port) as second:  # the same store, back up
        delivered_before = {r["body"]["id"] for r in second.reports()}
        # None lost: what did not reach the platform is in the outbox. (A report whose answer was
        # cut off by the outage may be in both; its id makes the second delivery a no-op.)
        assert len(delivered_before | queued) == 1000 and queued
        while backend.flush_outbox().remaining:
            pass
        ids = [r["body"]["id"] for r in second.reports()]
    assert len(ids) == 1000 and len(set(ids)) == 1000
    for thread_no in range(8):  # per-thread order across the outage
        mine = [i for i in ids if i.startswith(f"t{thread_no}-")]
        assert mine == sorted(mine) and len(mine) == 125
