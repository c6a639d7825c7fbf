"""reporting.outbox: the durable outbox (and stale-if-error agents, which keep a web app up in the same outage)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from xpander_sync import Backend, Configuration, ConfigurationError, NotFoundError, RetryPolicy, TransportError
from xpander_sync.frameworks._context import BuildContext
from xpander_sync.local import LocalBackend
from xpander_sync.reporting import Outbox, QueuedReport
from xpander_sync.transport import Transport

from ..conftest import BASE, body_of, load_fixture

REPORT_URL = f"{BASE}/agent-execution/agt-openai/report_task"
FAST = RetryPolicy(max_retries=1, backoff_base=0.0, backoff_max=0.0)


@pytest.fixture
def outbox_config(tmp_path):
    return Configuration(api_key="xpk-OUTBOX-SENTINEL", base_url=BASE, retry=FAST,
                         outbox=str(tmp_path / "outbox.sqlite3"))


def test_undeliverable_report_is_queued_and_flushed_exactly_as_sent(mocked, outbox_config):
    backend = Backend(outbox_config)
    mocked.post(REPORT_URL, json={"detail": "down"}, status=503)
    mocked.post(REPORT_URL, json={"detail": "down"}, status=503)
    queued = backend.report_external_task(agent_id="agt-openai", input="q", result="r", used_tools=["x"])
    assert isinstance(queued, QueuedReport) and queued.delivered is False
    assert queued.outbox == outbox_config.outbox and "503" in queued.reason
    sent_first = body_of(mocked.calls[0])
    (row,) = Outbox(outbox_config.outbox).pending()
    assert row["body"] == sent_first and row["task_id"] == queued.task_id

    mocked.post(REPORT_URL, json=load_fixture("report_response"))
    result = backend.flush_outbox()
    assert result.delivered == [queued.task_id] and result.remaining == 0 and result.failed == []
    assert body_of(mocked.calls[-1]) == sent_first  # same id, same body
    with open(outbox_config.outbox, "rb") as fh:
        assert b"xpk-OUTBOX-SENTINEL" not in fh.read()


def test_client_errors_are_raised_not_queued(mocked, outbox_config):
    mocked.post(REPORT_URL, json={"detail": "no such agent"}, status=404)
    with pytest.raises(NotFoundError):
        Backend(outbox_config).report_external_task(agent_id="agt-openai")
    assert len(Outbox(outbox_config.outbox)) == 0


def test_flush_keeps_order_and_stops_at_the_first_outage(mocked, outbox_config):
    outbox = Outbox(outbox_config.outbox)
    for n in range(3):
        outbox.put("agt-openai", BASE, {"id": f"r{n}", "input": str(n)})
    mocked.post(REPORT_URL, json={})
    mocked.post(REPORT_URL, json={}, status=503)
    mocked.post(REPORT_URL, json={}, status=503)
    result = Backend(outbox_config).flush_outbox()
    assert result.delivered == ["r0"] and result.remaining == 2 and result.failed[0][0] == "r1"
    assert [body_of(c)["id"] for c in mocked.calls] == ["r0", "r1", "r1"]  # r2 never overtook r1
    assert [r["task_id"] for r in outbox.pending()] == ["r1", "r2"] and outbox.pending()[0]["attempts"] == 1


def test_a_rejected_row_does_not_block_the_rest(mocked, outbox_config):
    outbox = Outbox(outbox_config.outbox)
    outbox.put("agt-openai", BASE, {"id": "bad"})
    outbox.put("agt-openai", BASE, {"id": "good"})
    mocked.post(REPORT_URL, json={"detail": "invalid"}, status=400)
    mocked.post(REPORT_URL, json={})
    result = Backend(outbox_config).flush_outbox()
    assert result.delivered == ["good"] and [r["task_id"] for r in outbox.pending()] == ["bad"]


def test_flush_without_outbox_is_a_clear_error(config):
    with pytest.raises(ConfigurationError, match="outbox"):
        Backend(config).flush_outbox()


def test_two_processes_flushing_one_outbox_deliver_each_report_once(tmp_path):
    path = str(tmp_path / "shared.sqlite3")
    with LocalBackend(db_path=str(tmp_path / "b.sqlite3")) as local:
        outbox = Outbox(path)
        for n in range(60):
            outbox.put("agt-openai", local.url, {
                "id": f"job-{n:03d}", "input": str(n), "llm_response": None, "tokens": None, "is_success": True,
                "result": None, "duration": 0.0, "used_tools": [],
            })
        script = textwrap.dedent(
            """
            import sys
            from xpander_sync import Backend, Configuration
            backend = Backend(Configuration(base_url=sys.argv[1], outbox=sys.argv[2]))
            while backend.flush_outbox(limit=7).remaining:
                pass
            """
        )
        procs = [subprocess.Popen([sys.executable, "-c", script, local.url, path]) for _ in range(2)]
        assert [p.wait(timeout=60) for p in procs] == [0, 0]
        posts = [r for r in local.requests_log if r["path"].endswith("/report_task")]
        ids = [r["body"]["id"] for r in posts]
    assert len(outbox) == 0
    assert sorted(ids) == [f"job-{n:03d}" for n in range(60)]  # each exactly once
    assert ids == sorted(ids)  # and in order


def test_stale_agent_is_used_when_the_platform_is_down(tmp_path, caplog):
    with LocalBackend(db_path=str(tmp_path / "b.sqlite3")) as local:
        cfg = Configuration(base_url=local.url, agent_cache_ttl=0, retry=RetryPolicy(max_retries=0))
        transport = Transport(cfg)
        assert BuildContext(transport).load_agent("agt-openai").name == "CRM Assistant"
    with caplog.at_level(logging.WARNING, logger="xpander_sync"):
        agent = BuildContext(transport).load_agent("agt-openai")  # the backend is gone now
    assert agent.name == "CRM Assistant" and "using the copy fetched" in caplog.text
    with pytest.raises(TransportError):
        BuildContext(transport).load_agent("agt-anthropic")  # never fetched: the typed error

    stale_limit = Configuration(base_url=cfg.base_url, agent_cache_ttl=0, agent_max_staleness=0,
                                retry=RetryPolicy(max_retries=0))
    strict = Transport(stale_limit)
    strict.caches.agents.put(("agt-openai", "latest"), load_fixture("agent_openai"))
    with pytest.raises(TransportError):
        BuildContext(strict).load_agent("agt-openai")  # staleness 0 disables the fallback


def test_threads_creating_one_outbox_at_once_all_queue(tmp_path):
    """Regression: two connections switching a new file to WAL at once got "database is locked"
    (SQLite's busy timeout does not cover it), which killed a reporting thread."""
    from socket import socket

    with socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens: every report is queued
    for trial in range(20):
        cfg = Configuration(base_url=f"http://127.0.0.1:{port}", retry=RetryPolicy(max_retries=0),
                            outbox=str(tmp_path / f"race-{trial}.sqlite3"))
        barrier = threading.Barrier(8)
        outcomes, errors = [], []

        def report(n, cfg=cfg, barrier=barrier, outcomes=outcomes, errors=errors):
            barrier.wait()
            try:
                outcomes.append(Backend(cfg).report_external_task(agent_id="agt-openai", id=f"r{n}"))
            except Exception as exc:  # the regression: an OperationalError escaped here
                errors.append(exc)

        threads = [threading.Thread(target=report, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and all(isinstance(o, QueuedReport) for o in outcomes)
        assert sorted(r["task_id"] for r in Outbox(cfg.outbox).pending()) == [f"r{n}" for n in range(8)]


def test_an_unusable_outbox_file_is_a_typed_error(tmp_path):
    from xpander_sync.errors import OutboxError

    bad = tmp_path / "not-a-db.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match=r"not-a-db\.sqlite3"):
        Outbox(str(bad))


# -- issue 16, findings 5, 9 and 10 -------------------------------------------------------------------

def test_a_broken_outbox_does_not_stop_a_report_the_platform_takes(mocked, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    cfg = Configuration(api_key="k", base_url=BASE, retry=FAST, outbox=str(blocker / "outbox.sqlite3"))
    mocked.post(REPORT_URL, json=load_fixture("report_response"))
    task = Backend(cfg).report_external_task(agent_id="agt-openai")  # the outbox is never opened
    assert not isinstance(task, QueuedReport)


def test_a_report_that_must_be_queued_in_a_broken_outbox_says_both_failures(mocked, tmp_path):
    from xpander_sync.errors import OutboxError

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    cfg = Configuration(api_key="k", base_url=BASE, retry=FAST, outbox=str(blocker / "outbox.sqlite3"))
    mocked.post(REPORT_URL, status=503)
    mocked.post(REPORT_URL, status=503)
    with pytest.raises(OutboxError, match=r"not delivered \(\[503\].*could not be queued"):
        Backend(cfg).report_external_task(agent_id="agt-openai")


def test_a_row_that_is_not_json_is_parked_and_the_rest_flow(mocked, outbox_config):
    import sqlite3

    outbox = Outbox(outbox_config.outbox)
    outbox.put("agt-openai", BASE, {"id": "before"})
    with sqlite3.connect(outbox_config.outbox) as conn:
        conn.execute("INSERT INTO reports (task_id, agent_id, base_url, body, created_at) "
                     "VALUES ('poison', 'agt-openai', ?, '{not json', 0)", (BASE,))
    outbox.put("agt-openai", BASE, {"id": "after"})
    listed = outbox.pending()  # listing does not die on it
    assert [r["task_id"] for r in listed] == ["before", "poison", "after"] and listed[1]["body"] is None
    mocked.post(REPORT_URL, json={})
    mocked.post(REPORT_URL, json={})
    result = Backend(outbox_config).flush_outbox()
    assert result.delivered == ["before", "after"] and result.parked == 1 and result.remaining == 0
    (row,) = outbox.pending()
    assert row["task_id"] == "poison" and row["parked"] and "not a JSON object" in row["last_error"]
    assert Backend(outbox_config).flush_outbox().delivered == []  # parked: not sent again


def test_a_refused_row_is_parked_until_unparked(mocked, outbox_config):
    outbox = Outbox(outbox_config.outbox)
    outbox.put("agt-openai", BASE, {"id": "bad"})
    mocked.post(REPORT_URL, json={"detail": "invalid"}, status=422)
    first = Backend(outbox_config).flush_outbox()
    assert (first.delivered, first.remaining, first.parked) == ([], 0, 1)
    assert Backend(outbox_config).flush_outbox().failed == []  # not retried on every flush
    assert outbox.unpark() == 1
    mocked.post(REPORT_URL, json={})
    assert Backend(outbox_config).flush_outbox().delivered == ["bad"]


def test_a_long_flush_renews_its_lease_so_a_second_flusher_sends_nothing_twice(tmp_path):
    path = str(tmp_path / "lease.sqlite3")
    seeding = Outbox(path)
    for n in range(6):
        seeding.put("agt-openai", BASE, {"id": f"r{n}"})
    sent: list = []
    second_round: list = []

    def slow_send(agent_id, body):
        sent.append(body["id"])
        time.sleep(0.4)  # longer than the lease below, in total
        if body["id"] == "r2":  # meanwhile another process flushes the same outbox
            second_round.append(Outbox(path, lease=0.6).flush(lambda a, b: sent.append("2nd:" + b["id"]), BASE))

    result = Outbox(path, lease=0.6).flush(slow_send, BASE)
    assert result.delivered == [f"r{n}" for n in range(6)]
    assert not any(s.startswith("2nd:") for s in sent), sent  # the claim was renewed: nothing sent twice


def test_the_claim_of_a_killed_flusher_is_taken_over_at_once(tmp_path):
    script = textwrap.dedent(
        """
        import os, sys, time
        from xpander_sync.reporting import Outbox
        def hang(agent_id, body):
            print("sending", flush=True)
            time.sleep(60)
        Outbox(sys.argv[1]).flush(hang, sys.argv[2])
        """
    )
    path = str(tmp_path / "killed.sqlite3")
    outbox = Outbox(path)
    for n in range(3):
        outbox.put("agt-openai", BASE, {"id": f"r{n}"})
    proc = subprocess.Popen([sys.executable, "-c", script, path, BASE], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "sending"  # it holds the rows (120 s lease)
    proc.kill()
    proc.wait(10)
    delivered = []
    result = Outbox(path).flush(lambda a, b: delivered.append(b["id"]), BASE)
    assert result.delivered == ["r0", "r1", "r2"] and delivered == ["r0", "r1", "r2"]


def test_a_2xx_whose_answer_cannot_be_read_counts_as_delivered(mocked, outbox_config):
    outbox = Outbox(outbox_config.outbox)
    outbox.put("agt-openai", BASE, {"id": "t1"})
    outbox.put("agt-openai", BASE, {"id": "t2"})
    mocked.post(REPORT_URL, body="<html>ok</html>", status=200)  # the platform took it
    mocked.post(REPORT_URL, json={})
    result = Backend(outbox_config).flush_outbox()
    assert result.delivered == ["t1", "t2"] and result.remaining == 0 and len(outbox) == 0


def test_a_refused_row_is_parked_with_a_warning(mocked, outbox_config, caplog):
    Outbox(outbox_config.outbox).put("agt-openai", BASE, {"id": "bad"})
    mocked.post(REPORT_URL, json={"detail": "no such agent"}, status=404)
    with caplog.at_level(logging.WARNING, logger="xpander_sync"):
        assert Backend(outbox_config).flush_outbox().parked == 1
    assert "report bad refused by the platform" in caplog.text and "parked" in caplog.text


def test_rows_for_another_platform_are_not_counted_as_waiting(mocked, outbox_config):
    outbox = Outbox(outbox_config.outbox)
    outbox.put("agt-openai", "https://staging.example", {"id": "elsewhere"})
    outbox.put("agt-openai", BASE, {"id": "mine"})
    mocked.post(REPORT_URL, json={})
    result = Backend(outbox_config).flush_outbox()
    assert (result.delivered, result.remaining) == (["mine"], 0)  # a background thread stops probing
    assert [r["task_id"] for r in outbox.pending()] == ["elsewhere"]
