"""``Backend.track``: time a block or a function and report it once, on exit.

A :class:`Tracked` is a context manager (``with`` and ``async with``) and a decorator (sync and
async functions). On exit it reports exactly once, through the backend's
:meth:`~xpander_sync.Backend.report_run` when a run result is known (given to
:meth:`Tracked.set_run`, or returned by the decorated function), else through
:meth:`~xpander_sync.Backend.report_external_task` with the measured duration. When the block
raises, the report says ``is_success=False`` with the exception's text (scrubbed of the API key
and the providers' environment keys) as the result, and the exception is re-raised; a failure to
report is then logged, never raised over the block's own exception. The reports go through the
same delivery as ``report_external_task`` (the outbox, and a background thread when configured).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from typing import Any, Callable, Dict, Optional, TypeVar

from .errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = ["Tracked"]

F = TypeVar("F", bound=Callable[..., Any])
_UNSET: Any = object()


class Tracked:
    """One tracked run (built by :meth:`Backend.track <xpander_sync.Backend.track>`).

    Args:
        backend: the :class:`~xpander_sync.Backend` that reports it.
        agent_id: the agent the run belongs to.
        input: the input text.
        task: the task the run is for, or ``None``.
        agent: an :class:`~xpander_sync.Agent` (wins over ``agent_id``).

    Attributes:
        duration: seconds the block took (set on exit).
        report: what the report call returned (a ``Task`` or a ``QueuedReport``), set on exit.
    """

    def __init__(self, backend: Any, agent_id: Optional[str], input: Optional[str], task: Any,
                 agent: Any) -> None:
        self._backend = backend
        self._target: Dict[str, Any] = {"agent_id": agent_id, "agent": agent}
        self._input = input
        self._task = task
        self._run: Any = _UNSET
        self._fields: Dict[str, Any] = {}
        self._started: Optional[float] = None
        self._done = False
        self.duration: Optional[float] = None
        self.report: Any = None

    def _fresh(self) -> Tracked:
        return Tracked(self._backend, self._target["agent_id"], self._input, self._task, self._target["agent"])

    def set_run(self, run: Any, **fields: Any) -> None:
        """The run result to report (a framework's result), and report fields that win over it.

        Args:
            run: the framework's run result (see :meth:`Backend.report_run <xpander_sync.Backend.report_run>`).
            **fields: ``result``, ``tokens``, ``used_tools``, ``is_success``, ``llm_response``, ``id``.
        """
        self._run = run
        self._fields.update(fields)

    # -- context manager ------------------------------------------------------------------------

    def __enter__(self) -> Tracked:
        self._start()
        return self

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        self._finish(exc)

    async def __aenter__(self) -> Tracked:
        self._start()
        return self

    async def __aexit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        await asyncio.to_thread(self._finish, exc)

    def _start(self) -> None:
        if self._started is not None:
            raise InvalidInputError("a Tracked run is entered once: call backend.track(...) again for another run")
        self._started = time.monotonic()

    # -- decorator ------------------------------------------------------------------------------

    def __call__(self, fn: F) -> F:
        if not callable(fn):
            raise InvalidInputError("track() decorates a function")
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with self._fresh() as tracked:
                    value = await fn(*args, **kwargs)
                    tracked._adopt(value)
                    return value

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self._fresh() as tracked:
                value = fn(*args, **kwargs)
                tracked._adopt(value)
                return value

        return run  # type: ignore[return-value]

    def _adopt(self, value: Any) -> None:
        """The decorated function's return value: a run result to report, or a text result."""
        if self._run is not _UNSET or value is None:
            return
        if isinstance(value, str):
            self._fields.setdefault("result", value)
            return
        from .frameworks import summarize_run

        try:
            summarize_run(value)
        except InvalidInputError:
            return  # not a run result: reported as a plain timed run
        self._run = value

    # -- the report -----------------------------------------------------------------------------

    def _finish(self, exc: Optional[BaseException]) -> None:
        if self._done:
            return
        self._done = True
        self.duration = round(time.monotonic() - (self._started or time.monotonic()), 3)
        common: Dict[str, Any] = dict(self._target, input=self._input, duration=self.duration)
        try:
            if exc is not None:
                fields = {k: v for k, v in self._fields.items() if k == "id"}
                self.report = self._backend.report_run(run=exc, task=self._task, **common, **fields)
            elif self._run is not _UNSET:
                self.report = self._backend.report_run(run=self._run, task=self._task, **common, **self._fields)
            else:
                fields = dict(self._fields)
                if self._task is not None:
                    fields.setdefault("id", self._task.id)
                    if common["input"] is None:
                        common["input"] = getattr(self._task.input, "text", None)
                self.report = self._backend.report_external_task(**common, **fields)
        except Exception:
            if exc is None:
                raise
            logger.warning("could not report the failed run", exc_info=True)
