"""The tool-call layer: what happens around every xpander tool call, in every framework.

Every adapter wraps :class:`~xpander_sync.frameworks._toolspec.XpanderToolSpec` objects, whose
``invoke`` coerces the model's arguments (:func:`coerce_arguments`) and hands the call to
``BuildContext.invoke_tool``, which runs :meth:`ToolCalls.run`. So sync and async runs of every
framework get the same layer (the official SDK's is an agno tool hook, skipped by agno's sync
runs). In order:

1. **Activity** (when there is a task): a ``tool_call_request`` event is queued
   (:mod:`xpander_sync.reporting.activity`: written ahead, pushed in the background with
   ``Events.push``, in order, retried while the platform is down; never on the call's path).
   The call's path only appends a tuple (kind, task and organization ids, ``time.time()``, the
   :class:`ToolCall`, the raw result, the approval id) to the delivery thread's handoff; the
   thread builds the ``TaskUpdateEvent`` JSON (:func:`event_json`) later. So neither the call's
   arguments nor the result object may change after the call: the layer never changes them, and
   the adapters only read them (``ToolInvocationResult.result`` is made anew for every call).
2. **The call** (``Tools.invoke``), with ``x-tool-call-id`` set to the call's ``request_id``, and
   **transient retries**: a timeout, a failed connection, a 429 or a 5xx is tried again twice,
   after 1.5 s then 3 s (:data:`RETRY_DELAYS`). The transport's own retries are off for this call
   (``RetryPolicy(max_retries=0)``), so a tool call is sent at most three times in all, never
   3 x 3: the transport would otherwise retry connection failures and 429s of the same POST
   on its own.
3. **Approvals**: an answer ``{"type": "approval_required", "request_id", "wait_seconds",
   "self_approve"?, "message"?}`` means the agent's approval rules hold the call. With
   ``self_approve`` the decision is polled (``Approvals.get``) every 2 s, for at most
   ``min(wait_seconds, 600)`` s, 10 s per poll, until it is ``settled``; approved, the call is
   sent again (once); refused or undecided, the model gets the refusal. Without ``self_approve``
   the model gets the message (the platform parks the task until someone decides).
4. **Activity**: the ``tool_call_result`` event (the result clamped to :data:`DISPLAY_LIMIT`
   characters, ``is_error``, ``approval_request_id``).

Not here: the official SDK's ``tool-approvals/check`` for tools of MCP servers with an approval
rule (``Approvals.check`` exists; MCP tools are run by each framework's own MCP client, which
this layer does not wrap: see docs/feature_toolcalls.md), its refusal guards, result compaction,
workspace offload and steering.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
import uuid
from typing import Any, Callable, Dict, Optional, Tuple

from .._converter import structure, unstructure
from .._retry import RetryPolicy
from ..errors import APIError, ModuleException, TransportError, XpanderError
from ..models.agent import Agent
from ..models.common import TaskUpdateEventType
from ..models.events import TaskUpdateEvent
from ..models.task import Task
from ..models.tools import ToolInvocationResult
from ..reporting import activity
from ..resources import Approvals, Events, Tools

logger = logging.getLogger(__name__)

#: Waits before the retries of a transient failure (seconds): two retries.
RETRY_DELAYS: Tuple[float, ...] = (1.5, 3.0)
#: Seconds between two polls of an approval decision.
APPROVAL_POLL_INTERVAL = 2.0
#: The longest an approval is waited for (seconds), whatever ``wait_seconds`` says.
APPROVAL_MAX_WAIT = 600.0
#: Characters of a result shown in a ``tool_call_result`` event.
DISPLAY_LIMIT = 4000
_NO_TRANSPORT_RETRY = RetryPolicy(max_retries=0)


# -- pure helpers ------------------------------------------------------------------------------


def _wants(schema: Any, kind: str) -> bool:
    if not isinstance(schema, dict):
        return False
    declared = schema.get("type")
    if declared == kind or (isinstance(declared, list) and kind in declared):
        return True
    return kind == "object" and declared is None and isinstance(schema.get("properties"), dict)


def _parsed(text: str, kind: str) -> Any:
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{":
        return None
    try:
        value = json.loads(stripped)
    except (ValueError, RecursionError):
        return None
    if kind == "object" and isinstance(value, dict):
        return value
    if kind == "array" and isinstance(value, list):
        return value
    return None


def coerce_arguments(arguments: Any, schema: Any) -> Any:
    """The model's arguments with stringified JSON turned back into objects and arrays (pure).

    Models sometimes send ``"{\\"a\\": 1}"`` where the schema wants an object (or the whole
    arguments as one JSON string). A string is replaced by its parsed value only when it is
    the JSON text of the type the schema asks for at that place (an object or an array);
    everything else is left exactly as it came.

    Args:
        arguments: the arguments as the model sent them (a dict, or a JSON string of one).
        schema: the tool's JSON schema of the arguments.

    Returns:
        The coerced arguments (a new object where something changed).
    """
    if isinstance(arguments, str):
        whole = _parsed(arguments, "object")
        if whole is None:
            return arguments
        arguments = whole
    return _coerce(arguments, schema if isinstance(schema, dict) else {"type": "object"}, 0)


def _coerce(value: Any, schema: Any, depth: int) -> Any:
    if depth > 32 or not isinstance(schema, dict):
        return value
    if isinstance(value, str):
        for kind in ("object", "array"):
            if _wants(schema, kind):
                parsed = _parsed(value, kind)
                if parsed is not None:
                    return _coerce(parsed, schema, depth + 1)
        return value
    if isinstance(value, dict):
        declared = schema.get("properties")
        properties: Dict[str, Any] = declared if isinstance(declared, dict) else {}
        extra = schema.get("additionalProperties")
        return {key: _coerce(item, properties.get(key, extra), depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        items = schema.get("items")
        return [_coerce(item, items, depth + 1) for item in value]
    return value


def is_transient(exc: BaseException) -> bool:
    """Whether a failed tool call may pass when sent again: a timeout, no connection, 429 or 5xx."""
    if isinstance(exc, TransportError):
        return True
    if isinstance(exc, APIError):
        status = exc.status_code or 0
        return status == 429 or status >= 500
    return False


def approval_request(result: ToolInvocationResult) -> Optional[Dict[str, Any]]:
    """The approval request a tool answered with (``{"type": "approval_required", ...}``), else ``None``."""
    data = result.result
    if not result.is_success or not isinstance(data, dict) or data.get("type") != "approval_required":
        return None
    if not isinstance(data.get("request_id"), str) or not data["request_id"].strip():
        return None
    return data


def approval_wait(request: Dict[str, Any]) -> float:
    """Seconds to wait for a decision: ``min(wait_seconds, 600)``; 600 when not a positive number."""
    wait = request.get("wait_seconds")
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or wait <= 0:
        return APPROVAL_MAX_WAIT
    return min(float(wait), APPROVAL_MAX_WAIT)


def decision(answer: Any) -> Optional[bool]:
    """``None`` while a decision is not settled; then whether the call was approved."""
    if not isinstance(answer, dict) or not answer.get("settled"):
        return None
    if isinstance(answer.get("approved"), bool):
        return bool(answer["approved"])
    status = str(answer.get("status") or answer.get("decision") or "").strip().lower()
    return status in ("approved", "approve", "granted", "allowed")


def display(value: Any, limit: int = DISPLAY_LIMIT) -> str:
    """A result as the platform shows it in the run: text (JSON for anything else), at most ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"


def request_data(call: ToolCall) -> Dict[str, Any]:
    """The ``data`` of a ``tool_call_request`` event (pure)."""
    return {
        "request_id": call.request_id,
        "operation_id": call.tool_id,
        "tool_call_id": call.request_id,
        "graph_node_id": call.graph_node_id,
        "tool_name": call.tool_name,
        "payload": call.arguments,
        "plan_task_id": None,
    }


def result_data(call: ToolCall, result: ToolInvocationResult, approval_id: Optional[str]) -> Dict[str, Any]:
    """The ``data`` of a ``tool_call_result`` event (pure): the request's fields and the outcome."""
    data = request_data(call)
    data.update(result=display(result.result), is_error=bool(result.is_error), approval_request_id=approval_id)
    return data


class ToolCall:
    """One tool call: what the events say about it.

    Args:
        tool_id: the tool (operation) id.
        payload: the body sent.
        arguments: the model's arguments (after coercion).
        tool_name: the tool's name.
        graph_node_id: the agent graph node of the tool, if any.
    """

    def __init__(self, tool_id: str, payload: Dict[str, Any], arguments: Any, tool_name: str,
                 graph_node_id: Optional[str]) -> None:
        self.tool_id = tool_id
        self.payload = payload
        self.arguments = arguments
        self.tool_name = tool_name
        self.graph_node_id = graph_node_id
        #: the call's id: the events' ``request_id`` and the ``x-tool-call-id`` header.
        self.request_id = uuid.uuid4().hex


# -- the layer ---------------------------------------------------------------------------------


class ToolCalls:
    """The tool-call layer of one build (its transport, sleep and clock).

    Args:
        transport: the build's transport.
        sleep: waits (retry backoff, approval polls); injected by tests.
        clock: a monotonic clock; injected by tests.
    """

    def __init__(self, transport: Any, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        configuration = transport.configuration
        self.transport = transport
        self._sleep = sleep
        self._clock = clock
        self._tools = Tools(configuration, transport=transport)
        self._approvals = Approvals(configuration, transport=transport)
        self._events = Events(configuration, transport=transport)
        api_key = configuration.api_key.reveal() if configuration.api_key else None
        self._scope = activity.scope_of(configuration.base_url, configuration.organization_id, api_key)
        #: whether calls with a task queue activity events (``False``: the layer without them, as
        #: the benchmark's events-off series uses it)
        self.events = True
        self._dispatcher: Optional[activity.EventDispatcher] = None  # looked up at the first event
        self._dispatcher_forks = -1  # ...and again in a forked child

    def run(self, agent: Agent, task: Optional[Task], call: ToolCall) -> ToolInvocationResult:
        """Run one tool call for *this* agent and task (the module docstring's steps).

        Never raises for a platform or network failure: the result then has ``is_error`` and
        the message, so the model can react.

        Returns:
            The :class:`~xpander_sync.models.tools.ToolInvocationResult` the model reads.
        """
        if task is None or not self.events:
            return self._call(agent, None if task is None else task.id, call)[0]
        # The request event does not wake the delivery thread in the middle of the call; the
        # result event does (or, should the call raise, the finally clause).
        self._emit(task, _REQUEST, call, None, None, wake=False)
        done = False
        try:
            result, approval_id = self._call(agent, task.id, call)
            done = True
        finally:
            if not done and self._dispatcher is not None:
                self._dispatcher.wake()
        self._emit(task, _RESULT, call, result, approval_id)
        return result

    def _call(self, agent: Agent, task_id: Optional[str], call: ToolCall) -> Tuple[ToolInvocationResult,
                                                                                   Optional[str]]:
        result = self._send(agent, task_id, call)
        approval_id: Optional[str] = None
        request = approval_request(result)
        if request is not None:
            approval_id = str(request["request_id"])
            result = self._approval(agent, task_id, call, request, result)
        return result, approval_id

    # -- the call and its retries ----------------------------------------------------------------

    def _send(self, agent: Agent, task_id: Optional[str], call: ToolCall) -> ToolInvocationResult:
        attempt = 0
        while True:
            try:
                return self._tools.invoke(
                    agent.id, call.tool_id, call.payload, agent_version=agent.version, task_id=task_id,
                    tool_call_id=call.request_id, retry=_NO_TRANSPORT_RETRY,
                )
            except XpanderError as exc:
                if attempt < len(RETRY_DELAYS) and is_transient(exc):
                    delay = RETRY_DELAYS[attempt]
                    attempt += 1
                    logger.info("tool %s: %s; retrying in %.1f s (retry %d of %d)",
                                call.tool_id, type(exc).__name__, delay, attempt, len(RETRY_DELAYS))
                    self._sleep(delay)
                    continue
                return _error_result(exc, call, task_id)

    # -- approvals -------------------------------------------------------------------------------

    def _approval(self, agent: Agent, task_id: Optional[str], call: ToolCall, request: Dict[str, Any],
                  result: ToolInvocationResult) -> ToolInvocationResult:
        request_id = str(request["request_id"])
        message = request.get("message") if isinstance(request.get("message"), str) else None
        if not request.get("self_approve"):
            text = message or f"This tool call needs an approval (request {request_id}); it waits for a decision."
            return _answer(call, task_id, text, is_error=False, status=result.status_code)
        approved, answer = self._wait_for_decision(agent, request_id, approval_wait(request))
        if approved:
            again = self._send(agent, task_id, call)
            if approval_request(again) is None:
                return again
            return _answer(call, task_id, message or f"The tool call still needs an approval (request {request_id}).",
                           is_error=True, status=again.status_code)
        if approved is None:
            return _answer(call, task_id, f"The approval request {request_id} was not decided in time; "
                           "the tool was not called.", is_error=True, status=None)
        reason = answer.get("message") or answer.get("reason") if isinstance(answer, dict) else None
        text = reason if isinstance(reason, str) and reason else (message or "The tool call was not approved.")
        return _answer(call, task_id, text, is_error=True, status=result.status_code)

    def _wait_for_decision(self, agent: Agent, request_id: str, wait: float) -> Tuple[Optional[bool], Any]:
        deadline = self._clock() + wait
        while True:
            answer: Any = None
            try:
                answer = self._approvals.get(agent.id, request_id)
            except ModuleException as exc:
                logger.debug("approval %s: poll failed (%s); polling on", request_id, exc)
            except XpanderError as exc:  # an id the route cannot carry: no decision will ever come
                logger.warning("approval %r cannot be polled (%s); the call stays held", request_id, exc)
                return None, None
            settled = decision(answer)
            if settled is not None:
                return settled, answer
            if self._clock() + APPROVAL_POLL_INTERVAL > deadline:
                return None, answer
            self._sleep(APPROVAL_POLL_INTERVAL)

    # -- activity --------------------------------------------------------------------------------

    def _emit(self, task: Task, kind: TaskUpdateEventType, call: ToolCall, result: Optional[ToolInvocationResult],
              approval_id: Optional[str], wake: bool = True) -> None:
        """Hand one event to the delivery thread: a tuple appended under its lock, nothing more."""
        dispatcher = self._dispatcher
        if dispatcher is None or self._dispatcher_forks != activity.forks:
            dispatcher = self._dispatcher = activity.dispatcher(
                self.transport, send=self._push, scope=self._scope, outbox_path=self.transport.configuration.outbox)
            self._dispatcher_forks = activity.forks
            if dispatcher is None:  # no events outbox: dropped (logged); try again at the next event
                return
        task_id = task.id
        dispatcher.hand_over(task_id, event_json,
                             (kind, task_id, task.organization_id, time.time(), call, result, approval_id), wake)

    def _push(self, task_id: str, body: Dict[str, Any]) -> None:
        events = [structure(item, TaskUpdateEvent) for item in body.get("events") or []]
        self._events.push(task_id, events)


_REQUEST = TaskUpdateEventType.TOOL_CALL_REQUEST
_RESULT = TaskUpdateEventType.TOOL_CALL_RESULT


def event_json(raw: Tuple[Any, ...]) -> Dict[str, Any]:
    """The JSON of one activity event, built on the delivery thread from what the call handed over.

    Args:
        raw: ``(kind, task_id, organization_id, time.time(), call, result or None, approval_id)``.

    Returns:
        The unstructured :class:`~xpander_sync.models.events.TaskUpdateEvent`: ``data`` is
        :func:`request_data` without a result, :func:`result_data` with one.
    """
    kind, task_id, organization_id, at, call, result, approval_id = raw
    data = request_data(call) if result is None else result_data(call, result, approval_id)
    event = TaskUpdateEvent(type=kind, task_id=task_id, organization_id=organization_id,
                            time=_dt.datetime.fromtimestamp(at, _dt.timezone.utc), data=data)
    return unstructure(event)


def flush_activity(transport: Any, timeout: Optional[float] = None) -> bool:
    """Wait until the activity events queued for ``transport``'s platform were tried.

    Args:
        transport: the transport the tool calls went through.
        timeout: seconds to wait at most; ``None`` waits as long as it takes.

    Returns:
        ``False`` if ``timeout`` passed first; else ``True``.
    """
    return activity.flush(transport, timeout)


def _error_result(exc: XpanderError, call: ToolCall, task_id: Optional[str]) -> ToolInvocationResult:
    if isinstance(exc, APIError):
        message: Any = exc.message
        status: Optional[int] = exc.status_code
    elif isinstance(exc, ModuleException):
        message, status = exc.description, exc.status_code
    else:  # an id the route cannot carry
        message, status = str(exc), None
    return ToolInvocationResult(tool_id=call.tool_id, payload=call.payload, status_code=status, result=message,
                                is_success=False, is_error=True, task_id=task_id, tool_call_id=call.request_id)


def _answer(call: ToolCall, task_id: Optional[str], text: str, *, is_error: bool,
            status: Optional[int]) -> ToolInvocationResult:
    return ToolInvocationResult(tool_id=call.tool_id, payload=call.payload, status_code=status, result=text,
                                is_success=not is_error, is_error=is_error, task_id=task_id,
                                tool_call_id=call.request_id)
