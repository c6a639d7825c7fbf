"""How a worker runs: :class:`WorkerSettings`, frozen and validated when built, and its backoff.

Every number a :class:`~xpander_sync.worker.Worker` takes (concurrency, intervals,
timeouts) is checked here, once, and a bad one raises
:class:`~xpander_sync.errors.ConfigurationError` (a ``ValueError``) naming the argument.

**Backoff.** The worker has two loops that outlive single requests: reopening a lost event
stream, and setting ``executing`` / saving a result through a backend outage. Both wait
:meth:`WorkerSettings.delay` between attempts: the one backoff formula of
:func:`xpander_sync._retry.backoff_delay` (base doubling to a cap, 50-100% jitter) applied to
:data:`RECONNECT_BACKOFF`, whose base and cap the worker's ``backoff_base``/``backoff_max``
arguments may replace. Those loops end when they succeed or the worker stops, never after a
count. Each single platform call inside them is retried by the transport, with the
configuration's ``retry`` policy.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Optional

import attrs

from .._retry import RetryPolicy, backoff_delay
from ..config import is_cloud
from ..errors import ConfigurationError

#: The worker's reconnect / re-save backoff: 1 s doubling up to 30 s (``max_retries`` is unused:
#: these loops end when the call succeeds or the worker stops).
RECONNECT_BACKOFF = RetryPolicy(max_retries=0, backoff_base=1.0, backoff_max=30.0)

#: The exponent is capped: after hours of outage ``2 ** failures`` would overflow a float.
_MAX_DOUBLINGS = 32

ENVIRONMENTS = ("local", "xpander")


def _environment_or_default(value: Any) -> Any:
    # None (the default) means: ask the environment, as the official SDK does.
    if value is None:
        return "xpander" if is_cloud() else "local"
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_seconds(value: Any) -> Any:
    # Numbers become floats; anything else is left for the validator to reject with its message.
    return float(value) if _is_number(value) else value


def _positive_seconds(instance: Any, attribute: Any, value: Any) -> None:
    if not _is_number(value) or not value > 0:
        raise ConfigurationError(f"{attribute.name} must be a positive number of seconds")


def _seconds_or_zero(instance: Any, attribute: Any, value: Any) -> None:
    if not _is_number(value) or not value >= 0:
        raise ConfigurationError(f"{attribute.name} must be a number of seconds >= 0")


def _concurrency(instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError("concurrency must be an integer >= 1")


def _environment(instance: Any, attribute: Any, value: Any) -> None:
    if value not in ENVIRONMENTS:
        raise ConfigurationError("environment must be 'local' or 'xpander'")


@attrs.frozen(kw_only=True)
class WorkerSettings:
    """The validated, immutable knobs of a worker.

    Example::

        WorkerSettings(concurrency=4, drain_timeout=10)

    Args:
        concurrency: tasks handled at once (default 6, as the official SDK).
        environment: ``"local"`` or ``"xpander"`` (default, or ``None``: ``xpander`` iff
            ``IS_XPANDER_CLOUD=true``).
        heartbeat_interval: seconds between heartbeats while connected.
        backoff_base: first reconnect/re-save delay in seconds (doubles per failure, 50-100% jitter).
        backoff_max: cap of that delay in seconds; also the wait after a
            ``worker-environment-conflict``.
        stream_idle_timeout: seconds without a byte on the stream after which it is
            considered dead and reopened.
        drain_timeout: seconds in-flight tasks get to finish (and be saved) after a stop.
        handle_signals: install SIGTERM/SIGINT handlers while ``run`` runs on the main thread.

    Raises:
        ConfigurationError: a value out of range or of the wrong type (the message names it).
    """

    concurrency: int = attrs.field(default=6, validator=_concurrency)
    environment: str = attrs.field(default=None, converter=_environment_or_default, validator=_environment)
    heartbeat_interval: float = attrs.field(default=2.0, converter=_as_seconds, validator=_positive_seconds)
    backoff_base: float = attrs.field(
        default=RECONNECT_BACKOFF.backoff_base, converter=_as_seconds, validator=_positive_seconds
    )
    backoff_max: float = attrs.field(
        default=RECONNECT_BACKOFF.backoff_max, converter=_as_seconds, validator=_positive_seconds
    )
    stream_idle_timeout: float = attrs.field(default=120.0, converter=_as_seconds, validator=_positive_seconds)
    drain_timeout: float = attrs.field(default=25.0, converter=_as_seconds, validator=_seconds_or_zero)
    handle_signals: bool = True
    _backoff: RetryPolicy = attrs.field(init=False, repr=False, eq=False, default=RECONNECT_BACKOFF)

    def __attrs_post_init__(self) -> None:
        # Validators have run: base and cap are positive floats. The policy is the documented
        # constant with this worker's base and cap, built once.
        object.__setattr__(
            self, "_backoff",
            attrs.evolve(RECONNECT_BACKOFF, backoff_base=self.backoff_base, backoff_max=self.backoff_max),
        )

    def delay(self, failures: int, rand: Optional[Callable[[], float]] = None) -> float:
        """Seconds to wait after ``failures`` consecutive failures of a reconnect or re-save loop.

        Args:
            failures: failures so far (values below 1 count as 1; very large ones stay at the cap).
            rand: a float in [0, 1) for the jitter (default :func:`random.random`).

        Returns:
            ``backoff_base * 2**(failures-1)``, capped at ``backoff_max``, times 0.5 to 1.
        """
        return backoff_delay(self._backoff, min(max(1, failures), _MAX_DOUBLINGS), rand or random.random)
