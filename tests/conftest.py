"""Shared fixtures: a clean environment, a responses mock, sentinel secrets, sample payloads."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest
import responses

from xpander_sync import Configuration, RetryPolicy
from xpander_sync.reporting.activity import discard_pending
from xpander_sync.transport import Transport, reset_shared_transports

pytest_plugins = ("xpander_sync.testing",)

FIXTURES = Path(__file__).parent / "fixtures"
BASE = "https://api.test.xpander"
SENTINEL_KEY = "xpk-SENTINEL-7f3a9c1e5b2d"

_ENV_PREFIXES = ("XPANDER_", "IS_STG", "IS_XPANDER_CLOUD")
_LLM_ENV = (
    "OPENAI_API_KEY", "AGENTS_OPENAI_API_KEY", "ANTHROPIC_API_KEY", "NVIDIA_API_KEY", "HELICONE_API_KEY",
    "NEBIUS_API_KEY", "OPENROUTER_API_KEY", "GOOGLE_API_KEY", "FIREWORKS_API_KEY", "AWS_BEARER_TOKEN_BEDROCK",
    "AZURE_API_KEY", "CLOUDFLARE_AI_GW_API_KEY", "OPENAI_COMPATIBLE_API_KEY",
)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test starts with no xpander or LLM variables, no shared transports, and its own state
    folder (the CLI's default outbox and the worker's journal live there, never in the real home)."""
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES) or name in _LLM_ENV:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
    reset_shared_transports()
    yield
    discard_pending()  # a test's queued activity events never reach the next test's mocks
    reset_shared_transports()


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    """A strict responses mock: every registered response must be used."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def config() -> Configuration:
    """A configuration with a sentinel API key and fast retries."""
    return Configuration(
        api_key=SENTINEL_KEY,
        organization_id="org-test",
        base_url=BASE,
        retry=RetryPolicy(max_retries=2, backoff_base=0.01, backoff_max=0.02),
    )


class SleepRecorder:
    """Records the delays a transport would have slept."""

    def __init__(self) -> None:
        self.delays: List[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def transport(config: Configuration, sleeps: SleepRecorder) -> Transport:
    """A transport that records its retry sleeps instead of sleeping (jitter fixed at 1.0)."""
    return Transport(config, sleep=sleeps, rand=lambda: 1.0)


def load_fixture(name: str) -> Any:
    """A sample payload from ``tests/fixtures`` (taken from the reference's section 13)."""
    with open(FIXTURES / f"{name}.json", encoding="utf-8") as fh:
        return json.load(fh)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="xpander_sync")
    return caplog


def body_of(call: Any) -> Any:
    """The decoded JSON body of a recorded ``responses`` call."""
    return json.loads(call.request.body) if call.request.body else None


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``condition`` every ``interval`` seconds until it is truthy (its value is returned), or fail
    after ``timeout`` seconds naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
