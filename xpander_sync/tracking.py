"""``Backend.track``: time a block or a function and report it once, on exit.

A :class:`Tracked` is a context manager (``with`` and ``async with``) and a decorator (sync and
async functions). On exit it reports exactly once: through the backend's
:meth:`~xpander_sync.Backend.report_run` when a framework's run result is known (given to
:meth:`Tracked.set_run`, or returned by the decorated function), else through
:meth:`~xpander_sync.Backend.report_external_task` with the measured duration and what
:meth:`Tracked.set_result` gave (or the decorated function's returned text). When the block
raises, the report says ``is_success=False`` with the exception's text (scrubbed of the API key
and the providers' environment keys) as the result, and the exception is re-raised; a failure to
report is then logged, never raised over the block's own exception. The reports go through the
same delivery as ``report_external_task`` (the outbox, and a background thread when configured).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import json
import logging
import time
from contextvars import ContextVar, Token
from typing import Any, Callable, Dict, Optional, TypeVar

import attrs

from .errors import InvalidInputError
from .resources.reports import build_report_body

logger = logging.getLogger(__name__)

__all__ = ["Tracked"]

F = TypeVar("F", bound=Callable[..., Any])
_UNSET: Any = object()
#: The innermost tracked run entered in this context (thread or async task).
_CURRENT: ContextVar[Optional[Tracked]] = ContextVar("xpander_sync_tracked", default=None)
#: The report fields a tracked run may set (``report_external_task``'s, but ``input`` and
#: ``duration``: given to ``track`` and measured).
FIELDS = ("tokens", "used_tools", "is_success", "llm_response", "id")


def _checked(fields: Dict[str, Any], method: str, result: Any = None) -> Dict[str, Any]:
    """``fields`` if each is a report field of the right kind; else an error naming the field."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        hint = " (track() measures the duration and takes the input)" if {"input", "duration"} & set(unknown) else ""
        raise InvalidInputError(f"{method}() got an unknown field {', '.join(map(repr, unknown))}{hint}; "
                                f"allowed: {', '.join(FIELDS)}")
    build_report_body(id=fields.get("id"), input=None, llm_response=fields.get("llm_response"),
                      tokens=fields.get("tokens"), is_success=fields.get("is_success", True), result=result,
                      duration=0, used_tools=fields.get("used_tools"))  # raises, naming the bad field
    return dict(fields)


def _returned_text(value: Any) -> Optional[str]:
    """A decorated function's return value as the result text: a string as it is, a dict or a
    list (or a pydantic, attrs or dataclass object) as JSON text; ``None`` for anything else.

    The library's own models (a ``Task``, an ``Agent``, ...) are not a run's answer and carry
    secrets (user tokens, the gateway token, OAuth tokens): they give ``None``, never their fields.
    """
    if isinstance(value, str):
        return value
    if type(value).__module__.split(".")[0] == "xpander_sync":
        return None
    if hasattr(value, "model_dump") and callable(value.model_dump) and not isinstance(value, type):
        value = value.model_dump(mode="json")
    elif attrs.has(type(value)):
        value = attrs.asdict(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, (dict, list, tuple)):
        try:
            return json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError, RecursionError):
            return None
    return None


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
        self._given = False  # set_run/set_result was called: wins over a decorated function's return value
        self._token: Optional[Token[Optional[Tracked]]] = None
        self.duration: Optional[float] = None
        self.report: Any = None

    @staticmethod
    def current() -> Optional[Tracked]:
        """The innermost tracked run being timed here (this thread or async task), or ``None``.

        What a decorated function uses to give its result::

            @backend.track(agent_id="agt-1", input="nightly")
            def nightly():
                rows = export()
                Tracked.current().set_result(f"exported {len(rows)} rows", used_tools=["export"])

        Returns:
            The :class:`Tracked` of the innermost ``with``/``async with`` block or decorated call
            running in this context, or ``None`` outside of any.
        """
        return _CURRENT.get()

    def _fresh(self) -> Tracked:
        return Tracked(self._backend, self._target["agent_id"], self._input, self._task, self._target["agent"])

    def set_run(self, run: Any, **fields: Any) -> None:
        """The run result to report (a framework's result), and report fields that win over it.

        Args:
            run: the framework's run result (see :meth:`Backend.report_run <xpander_sync.Backend.report_run>`).
            **fields: ``result``, ``tokens``, ``used_tools``, ``is_success``, ``llm_response``, ``id``.

        Raises:
            InvalidInputError: an unknown field, or a value of the wrong kind (the message names it).
        """
        result = fields.pop("result", None)
        checked = _checked(fields, "set_run", result)
        if result is not None:
            checked["result"] = result
        self._run = run
        self._fields = checked
        self._given = True

    def set_result(self, result: Optional[str], **fields: Any) -> None:
        """The run's result when there is no framework run result: text you produced, and its numbers.

        ::

            with backend.track(agent_id="agt-1", input=prompt) as tracked:
                reply = my_llm_call(prompt)
                tracked.set_result(reply.text, tokens={"prompt_tokens": 12, "completion_tokens": 40},
                                   used_tools=["Search"])

        The last of :meth:`set_run` and :meth:`set_result` wins. When the block raises, the
        report is the failure whatever was set (only ``id`` is kept).

        Args:
            result: the result text (serialise structured output first), or ``None``.
            **fields: :meth:`~xpander_sync.Backend.report_external_task`'s fields: ``tokens``
                (a :class:`~xpander_sync.Tokens` or a dict of its fields), ``used_tools`` (tool
                names), ``is_success`` (default ``True``), ``llm_response`` (JSON or an
                attrs/dataclass/pydantic object), ``id`` (the task id to record).

        Raises:
            InvalidInputError: an unknown field (``input`` and ``duration`` belong to ``track``),
                or a value of the wrong kind; the message names the field.
        """
        checked = _checked(fields, "set_result", result)
        self._run = _UNSET
        self._fields = dict(checked, result=result)
        self._given = True

    # -- context manager ------------------------------------------------------------------------

    def __enter__(self) -> Tracked:
        self._start()
        return self

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        self._leave()
        self._finish(exc)

    async def __aenter__(self) -> Tracked:
        self._start()
        return self

    async def __aexit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        self._leave()
        await asyncio.to_thread(self._finish, exc)

    def _start(self) -> None:
        if self._started is not None:
            raise InvalidInputError("a Tracked run is entered once: call backend.track(...) again for another run")
        self._started = time.monotonic()
        self._token = _CURRENT.set(self)

    def _leave(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            try:
                _CURRENT.reset(token)
            except ValueError:  # left in another context than the one it was entered in
                pass

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
        """The decorated function's return value: a run result to report, or a result text
        (a string; a dict, list, pydantic/attrs/dataclass object as JSON text)."""
        if self._given or value is None:
            return
        if not isinstance(value, str):
            from .frameworks import summarize_run

            try:
                summarize_run(value)
            except InvalidInputError:
                pass  # not a run result
            else:
                self._run = value
                return
        text = _returned_text(value)
        if text is not None:
            self._fields.setdefault("result", text)

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
