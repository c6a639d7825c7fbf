"""The worker's settings (:mod:`xpander_sync.worker.settings`): validation, defaults, the backoff."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from xpander_sync.errors import ConfigurationError
from xpander_sync.local import LocalBackend
from xpander_sync.worker import Worker, WorkerSettings
from xpander_sync.worker.settings import RECONNECT_BACKOFF

from .conftest import AGENT, config_for, handle


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("concurrency", 0, "concurrency must be an integer >= 1"),
        ("concurrency", 2.0, "concurrency must be an integer >= 1"),
        ("concurrency", True, "concurrency must be an integer >= 1"),
        ("heartbeat_interval", 0, "heartbeat_interval must be a positive number of seconds"),
        ("backoff_base", -1, "backoff_base must be a positive number of seconds"),
        ("backoff_max", "30", "backoff_max must be a positive number of seconds"),
        ("stream_idle_timeout", float("nan"), "stream_idle_timeout must be a positive number of seconds"),
        ("drain_timeout", -0.5, "drain_timeout must be a number of seconds >= 0"),
        ("drain_timeout", False, "drain_timeout must be a number of seconds >= 0"),
        ("environment", "prod", "environment must be 'local' or 'xpander'"),
    ],
)
def test_a_bad_value_raises_configuration_error_naming_it(field: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        WorkerSettings(**{field: value})
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)  # what the worker raised before


def test_defaults_are_frozen_and_numbers_are_floats(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = WorkerSettings(heartbeat_interval=1, drain_timeout=0)
    assert settings.concurrency == 6 and settings.environment == "local" and settings.handle_signals is True
    assert settings.heartbeat_interval == 1.0 and isinstance(settings.heartbeat_interval, float)
    assert settings.drain_timeout == 0.0 and settings.stream_idle_timeout == 120.0
    assert settings.backoff_base == RECONNECT_BACKOFF.backoff_base == 1.0
    assert settings.backoff_max == RECONNECT_BACKOFF.backoff_max == 30.0
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.concurrency = 7  # type: ignore[misc]
    monkeypatch.setenv("IS_XPANDER_CLOUD", "true")
    assert WorkerSettings().environment == "xpander" and WorkerSettings(environment="local").environment == "local"
    assert WorkerSettings(concurrency=2) == WorkerSettings(concurrency=2)


def test_delay_doubles_from_the_base_to_the_cap_with_jitter() -> None:
    settings = WorkerSettings(backoff_base=0.5, backoff_max=4.0)
    assert [settings.delay(n, rand=lambda: 1.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert settings.delay(3, rand=lambda: 0.0) == 1.0  # 50% of 2.0
    assert settings.delay(0, rand=lambda: 1.0) == 0.5  # counted as the first failure
    assert settings.delay(10**9, rand=lambda: 1.0) == 4.0  # no float overflow after a long outage


def test_the_worker_validates_through_its_settings(backend: LocalBackend) -> None:
    with pytest.raises(ConfigurationError, match="drain_timeout"):
        Worker(handle, configuration=config_for(backend), agent_id=AGENT, drain_timeout=-1)
    worker = Worker(handle, configuration=config_for(backend), agent_id=AGENT, concurrency=3, environment="xpander",
                    heartbeat_interval=0.5)
    assert worker.settings == WorkerSettings(concurrency=3, environment="xpander", heartbeat_interval=0.5)
    assert (worker.concurrency, worker.environment, worker.heartbeat_interval) == (3, "xpander", 0.5)
