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


# -- issue 16, finding 1: a report called "queued" is on disk before the call returns --------------

_CHILD = r"""
import os, sys, time
from xpander_sync import Backend, Configuration, RetryPolicy
url, outbox, count, ending = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
backend = Backend(Configuration(base_url=url, outbox=outbox, background_reports=True, connect_timeout=0.5,
                                read_timeout=2, retry=RetryPolicy(max_retries=0)))
for n in range(count):
    receipt = backend.report_external_task(agent_id="agt-openai", id=f"r{n:04d}", input=str(n))
    print(receipt.task_id, flush=True)
if ending == "exit":
    sys.exit(0)
time.sleep(60)  # wait to be killed
"""


def _child(url, outbox, count, ending):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", _CHILD, url, outbox, str(count), ending],
                            stdout=subprocess.PIPE, text=True)


def _returned_ids(proc, count=None):
    ids = []
    for line in proc.stdout:
        ids.append(line.strip())
        if count is not None and len(ids) == count:
            break
    return ids


def _flush_with_the_cli(url, outbox):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "xpander_sync", "--base-url", url, "outbox", "flush",
                           "--outbox", outbox], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("ending", ["exit", "SIGTERM", "SIGKILL"])
def test_no_background_report_is_lost_when_the_platform_is_down_and_the_process_ends(tmp_path, ending):
    import signal

    from ..faults import closed_port

    port = closed_port()
    url, outbox = f"http://127.0.0.1:{port}", str(tmp_path / "bg.sqlite3")
    proc = _child(url, outbox, 100, ending)
    returned = _returned_ids(proc, 100)
    if ending == "exit":
        assert proc.wait(timeout=60) == 0
    else:
        proc.send_signal(getattr(signal, ending))
        proc.wait(timeout=30)
    assert len(returned) == 100
    assert {r["task_id"] for r in Outbox(outbox).pending()} == set(returned)  # none only in memory
    with LocalBackend(db_path=str(tmp_path / "b.sqlite3"), port=port) as platform:  # the platform comes back
        _flush_with_the_cli(url, outbox)
        stored = [r["body"]["id"] for r in platform.reports()]
    assert sorted(stored) == sorted(returned) and len(Outbox(outbox)) == 0


def test_1000_background_reports_with_a_sigkill_at_a_random_point_are_each_delivered_once(tmp_path):
    import random
    import signal

    port_holder = LocalBackend(db_path=str(tmp_path / "b.sqlite3")).start()
    url, outbox = port_holder.url, str(tmp_path / "bg.sqlite3")
    try:
        proc = _child(url, outbox, 1000, "kill-me")
        kill_after = random.Random().randint(1, 999)
        returned = _returned_ids(proc, kill_after)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        _flush_with_the_cli(url, outbox)
        stored = [r["body"]["id"] for r in port_holder.reports()]
        posts = [r["body"]["id"] for r in port_holder.requests_log if r["path"].endswith("/report_task")]
    finally:
        port_holder.stop()
    assert len(stored) == len(set(stored))  # the platform stored each report once
    assert set(returned) <= set(stored), f"killed after {kill_after}: lost {sorted(set(returned) - set(stored))}"
    # Whatever was written to disk (at most the one being written at the kill) is delivered too.
    assert set(stored) <= {f"r{n:04d}" for n in range(kill_after + 1)}
    assert len(Outbox(outbox)) == 0 and set(posts) == set(stored)


def test_a_broken_outbox_does_not_stop_a_background_report_that_can_be_delivered(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with LocalBackend(db_path=str(tmp_path / "b.sqlite3")) as platform:
        cfg = Configuration(base_url=platform.url, outbox=str(blocker / "outbox.sqlite3"), background_reports=True)
        task = Backend(cfg).report_external_task(agent_id="agt-openai", id="r-direct")
        assert not isinstance(task, QueuedReport) and task.id == "r-direct"
        assert [r["body"]["id"] for r in platform.reports()] == ["r-direct"]


def test_a_forked_child_delivers_its_own_background_reports(tmp_path):
    import os

    with LocalBackend(db_path=str(tmp_path / "b.sqlite3")) as platform:
        cfg = Configuration(base_url=platform.url, outbox=str(tmp_path / "bg.sqlite3"), background_reports=True)
        backend = Backend(cfg)
        backend.report_external_task(agent_id="agt-openai", id="parent")  # the dispatcher exists before fork
        assert backend.flush(timeout=30)
        pid = os.fork()
        if pid == 0:  # the child: its reports must not wait for a thread that was not forked
            code = 1
            try:
                for n in range(5):
                    backend.report_external_task(agent_id="agt-openai", id=f"child-{n}")
                code = 0 if backend.flush(timeout=30) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        ids = sorted(r["body"]["id"] for r in platform.reports())
    assert ids == ["child-0", "child-1", "child-2", "child-3", "child-4", "parent"]
