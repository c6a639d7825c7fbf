"""Heartbeats and capacity updates (:mod:`xpander_sync.worker._heartbeat`)."""

from __future__ import annotations

import logging

import pytest

from xpander_sync.local import LocalBackend
from xpander_sync.worker import Worker

from .conftest import AGENT, FAST, config_for, handle


def test_worker_posts_check_the_status(backend: LocalBackend, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="xpander_sync.worker")
    worker = Worker(handle, configuration=config_for(backend), agent_id=AGENT, **FAST)
    assert worker._heartbeat.beat("wrk-unknown") is False
    assert "worker-heartbeat for worker wrk-unknown not accepted: [404] Worker not found" in caplog.text
