"""``_retry``: the retry decision as pure math (no I/O; the jitter source is injected)."""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime

import pytest

from xpander_sync._retry import RetryPolicy, backoff_delay, parse_retry_after, retry_delay

POLICY = RetryPolicy(max_retries=3, backoff_base=0.5, backoff_max=3.0, max_retry_after=30.0)


@pytest.mark.parametrize(("retry", "low", "high"), [(1, 0.25, 0.5), (2, 0.5, 1.0), (3, 1.0, 2.0), (4, 1.5, 3.0)])
def test_backoff_doubles_with_50_to_100_percent_jitter_and_a_cap(retry, low, high):
    assert backoff_delay(POLICY, retry, rand=lambda: 0.0) == pytest.approx(low)
    assert backoff_delay(POLICY, retry, rand=lambda: 1.0) == pytest.approx(high)


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), (" 2.5 ", 2.5), ("-3", 0.0), (None, None), ("", None),
                                                 ("soon", None)])
def test_retry_after_in_seconds(header, seconds):
    assert parse_retry_after(header) == seconds


def test_retry_after_as_an_http_date():
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=20)
    assert 15 <= parse_retry_after(format_datetime(when, usegmt=True)) <= 20
    past = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
    assert parse_retry_after(format_datetime(past, usegmt=True)) == 0.0


def _delay(**kwargs):
    kwargs.setdefault("attempt", 1)
    kwargs.setdefault("repeatable", True)
    return retry_delay(POLICY, rand=lambda: 1.0, **kwargs)


def test_connect_failures_are_retried_even_when_not_repeatable():
    assert _delay(connect_failure=True, repeatable=False) == pytest.approx(0.5)


def test_read_failures_are_retried_only_when_repeatable():
    assert _delay(other_transport_failure=True) == pytest.approx(0.5)
    assert _delay(other_transport_failure=True, repeatable=False) is None


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_statuses_are_retried_only_when_repeatable(status):
    assert _delay(status=status, attempt=2) == pytest.approx(1.0)
    assert _delay(status=status, repeatable=False) is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 500])
def test_refusals_and_500_are_not_retried(status):
    assert _delay(status=status) is None


def test_429_waits_the_servers_hint_up_to_the_cap_for_any_request():
    assert _delay(status=429, retry_after=4.0, repeatable=False) == 4.0
    assert _delay(status=429, retry_after=31.0) is None
    assert _delay(status=429) == pytest.approx(0.5)  # no hint: back off


def test_503_with_a_hint_is_honoured_when_repeatable():
    assert _delay(status=503, retry_after=2.0) == 2.0
    assert _delay(status=503, retry_after=2.0, repeatable=False) is None


def test_no_retry_past_the_budget():
    assert _delay(connect_failure=True, attempt=3) is not None
    assert _delay(connect_failure=True, attempt=4) is None
    assert retry_delay(RetryPolicy(max_retries=0), attempt=1, repeatable=True, connect_failure=True,
                       rand=lambda: 1.0) is None


def test_policy_values_are_validated():
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)
