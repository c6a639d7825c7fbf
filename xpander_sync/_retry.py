"""The retry decision, as pure functions (no I/O, randomness injected).

What is retried (see ``docs/reliability.md``):

* connect-phase failures (refused, DNS, connect timeout) for every request: no byte
  reached the server, so even a POST is safe to send again;
* for requests that are safe to repeat (GET, PUT, PATCH, DELETE, and POSTs that carry
  their own id, such as a report): read timeouts, resets, and 502/503/504;
* 429 for every request (the server refused it, nothing happened), honouring
  ``Retry-After`` up to :attr:`RetryPolicy.max_retry_after`; a longer hint raises
  :class:`~xpander_sync.errors.RateLimitError` at once.
"""

from __future__ import annotations

from typing import Callable, Optional

import attrs

RETRY_STATUSES = frozenset({502, 503, 504})


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How many times and how long to retry.

    Args:
        max_retries: retries after the first attempt (``0`` disables retrying).
        backoff_base: first backoff in seconds; doubles each retry.
        backoff_max: cap of one backoff, in seconds.
        max_retry_after: the longest ``Retry-After`` we wait for, in seconds.
    """

    max_retries: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    backoff_base: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    backoff_max: float = attrs.field(default=8.0, validator=attrs.validators.ge(0))
    max_retry_after: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))


def backoff_delay(policy: RetryPolicy, retry_number: int, rand: Callable[[], float]) -> float:
    """Delay before retry ``retry_number`` (1-based): base * 2**(n-1), capped, 50-100% jitter."""
    raw = min(policy.backoff_max, policy.backoff_base * (2 ** (retry_number - 1)))
    return raw * (0.5 + 0.5 * rand())


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); ``None`` if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import datetime as _dt
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return max(0.0, (when - _dt.datetime.now(_dt.timezone.utc)).total_seconds())


def retry_delay(
    policy: RetryPolicy,
    *,
    attempt: int,
    repeatable: bool,
    connect_failure: bool = False,
    other_transport_failure: bool = False,
    status: Optional[int] = None,
    retry_after: Optional[float] = None,
    rand: Callable[[], float],
) -> Optional[float]:
    """Seconds to wait before the next attempt, or ``None`` to give up.

    Args:
        attempt: the number of attempts made so far (1 after the first).
        repeatable: the request is safe to send twice.
        connect_failure: no connection was made (nothing reached the server).
        other_transport_failure: read timeout or reset after (maybe) sending.
        status: the HTTP status of the answer, if there was one.
        retry_after: the server's ``Retry-After`` in seconds.
    """
    if attempt > policy.max_retries:
        return None
    if connect_failure:
        return backoff_delay(policy, attempt, rand)
    if other_transport_failure:
        return backoff_delay(policy, attempt, rand) if repeatable else None
    if status == 429 or (status == 503 and retry_after is not None and repeatable):
        if retry_after is not None:
            return retry_after if retry_after <= policy.max_retry_after else None
        return backoff_delay(policy, attempt, rand)
    if status in RETRY_STATUSES and repeatable:
        return backoff_delay(policy, attempt, rand)
    return None
