"""The stream reader (:mod:`xpander_sync.worker._stream`): reconnects, refusals, environment conflicts,
and frames read as they arrive."""

from __future__ import annotations

import json
import logging
import time
from typing import Callable

import pytest

from xpander_sync import Configuration, RetryPolicy
from xpander_sync.local import LocalBackend
from xpander_sync.worker import Worker

from .conftest import AGENT, API_KEY, FAST, config_for, handle, invoke, wait_task


def test_stream_loss_reconnects_and_serving_resumes(
    backend: LocalBackend, running: Callable[..., Worker]
) -> None:
    config = config_for(backend)
    worker = running(handle, config)
    first_id = worker.worker_id
    assert backend.disconnect_workers(abrupt=True) == 1
    deadline = time.monotonic() + 5
    while worker.stats()["connections"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.stats()["connections"] == 2 and worker.worker_id != first_id
    assert backend.disconnect_workers() == 1  # a clean end of the stream too
    deadline = time.monotonic() + 5
    while worker.stats()["connections"] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert wait_task(backend, invoke(config, "after"))["status"] == "completed"
    assert [w["connected"] for w in backend.workers()] == [False, False, True]


def test_refused_stream_is_retried_forever_and_logged_without_the_key(
    backend: LocalBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="xpander_sync.worker")
    worker = Worker(handle, configuration=config_for(backend, api_key="xpk-WRONG-KEY-123456"), agent_id=AGENT,
                    **FAST)
    worker.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        attempts = [e for e in backend.requests_log if e["method"] == "GET" and "/events/" in e["path"]]
        if len(attempts) >= 4:
            break
        time.sleep(0.01)
    worker.stop()
    assert worker.join(5)
    assert len(attempts) >= 4 and all(e["status"] == 403 for e in attempts)
    assert "HTTP 403: Invalid API key (check the API key" in caplog.text
    assert "xpk-WRONG-KEY-123456" not in caplog.text
    delays = [worker.settings.delay(n) for n in range(1, 12)]
    assert all(0.5 * min(0.2, 0.02 * 2 ** (n - 1)) <= d <= 0.2 for n, d in zip(range(1, 12), delays))
    assert 0.1 <= worker.settings.delay(10_000) <= 0.2  # hours of outage: still the cap (no float overflow)


def test_environment_conflict_waits_the_longest_backoff(
    raw_server: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="xpander_sync.worker")
    url = raw_server([
        b'event: worker-registration\r\ndata: {"id": "wrk-raw"}\r\n\r\n',
        b'event: worker-environment-conflict\r\ndata: {"error": "agent already has a worker"}\r\n\r\n',
    ])
    config = Configuration(base_url=url, api_key=API_KEY, organization_id="local-org")
    worker = Worker(handle, configuration=config, agent_id=AGENT, heartbeat_interval=5, backoff_base=0.01,
                    backoff_max=0.3)
    started = time.monotonic()
    worker.start()
    deadline = time.monotonic() + 5
    while worker.stats()["connections"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    worker.stop()
    assert worker.join(5)
    assert worker.stats()["connections"] == 2 and elapsed >= 0.3  # not the 0.01 s first backoff
    assert "worker-environment-conflict: agent already has a worker; retrying in 0.3s" in caplog.text


def test_frames_on_an_unchunked_stream_are_read_as_they_arrive(raw_server: Callable[..., str]) -> None:
    task = {"id": "t-raw", "agent_id": AGENT, "organization_id": "o", "created_at": "2026-03-21T09:15:02Z",
            "input": {"text": "x", "files": [], "user": None}, "status": "pending"}
    url = raw_server(
        [b'event: worker-registration\ndata: {"id": "wrk-raw"}\n\n',
         b"event: agent-execution\ndata: " + json.dumps(task).encode() + b"\n\n"],
        hold=10.0,  # the connection stays open: the frames must be read before the end of the stream
    )
    config = Configuration(base_url=url, api_key=API_KEY, organization_id="local-org",
                           retry=RetryPolicy(max_retries=0))
    worker = Worker(handle, configuration=config, agent_id=AGENT, heartbeat_interval=5, backoff_base=0.01,
                    backoff_max=0.1)
    worker.start()
    try:
        assert worker.wait_registered(3)
        deadline = time.monotonic() + 3
        while worker.stats()["received"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.stats()["received"] == 1
    finally:
        started = time.monotonic()
        worker.stop()
        assert worker.join(5)
        assert time.monotonic() - started < 2  # stop() cut the open stream, it did not wait for it
