"""``Reports``: the report of a run that happened outside the platform: its body and its one route.

``Reports.body`` builds the 8-key body (pure); ``Reports.send`` posts it. The foreground call,
the background thread and the outbox flush all send through ``Reports.send``
(see :mod:`xpander_sync.reporting`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import attrs

from .._async import async_twin
from .._converter import unstructure
from ..errors import InvalidInputError
from ..models.task import Task
from ..models.tokens import Tokens
from ._base import Resource, route
from .tasks import Tasks

#: The report body keys, all always present.
REPORT_KEYS = ("id", "input", "llm_response", "tokens", "is_success", "result", "duration", "used_tools")
_TOKEN_FIELDS = ("completion_tokens", "prompt_tokens", "cache_read_tokens", "cache_write_tokens")


def _tokens_json(tokens: Union[Tokens, Mapping[str, Any], None]) -> Optional[Dict[str, Any]]:
    if tokens is None:
        return None
    if isinstance(tokens, Mapping):
        unknown = set(tokens) - set(_TOKEN_FIELDS) - {"total_tokens"}
        if unknown:
            raise InvalidInputError(
                f"tokens has unknown keys {sorted(unknown)}; allowed: {', '.join(_TOKEN_FIELDS)}"
            )
        tokens = Tokens(**{key: tokens.get(key, None if key == "total_tokens" else 0)
                           for key in (*_TOKEN_FIELDS, "total_tokens")})
    if not isinstance(tokens, Tokens):
        raise InvalidInputError("tokens must be an xpander_sync.Tokens, a dict, or None")
    data = unstructure(tokens)
    for key, value in data.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidInputError(f"tokens.{key} must be a non-negative integer")
    return data


def _finite(number: Union[int, float]) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an int too large for a float (10**400)
        return False


def _jsonable(value: Any, field: str) -> Any:
    """Turn ``llm_response`` into JSON: dicts/lists as they are; attrs, dataclass and pydantic objects converted."""
    if value is None:
        return None
    if attrs.has(type(value)):
        value = unstructure(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    elif hasattr(value, "model_dump") and callable(value.model_dump):
        value = value.model_dump(mode="json")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise InvalidInputError(
            f"{field} must be JSON-serialisable (a dict, list, str, number, bool, None, or an "
            f"attrs/dataclass/pydantic object); got {type(value).__name__}"
        ) from None
    return value


def build_report_body(
    *,
    id: Optional[str],
    input: Optional[str],
    llm_response: Any,
    tokens: Union[Tokens, Mapping[str, Any], None],
    is_success: bool,
    result: Optional[str],
    duration: float,
    used_tools: Optional[Sequence[str]],
) -> Dict[str, Any]:
    """The report body: always the 8 keys of the reference. ``id`` defaults to a new uuid4.

    Args:
        id: the task id to record, or ``None`` for a new uuid4.
        input: the input text, or ``None``.
        llm_response: the raw LLM response: JSON, or an attrs/dataclass/pydantic object
            (converted to JSON).
        tokens: a :class:`Tokens`, a dict of its fields, or ``None``.
        is_success: whether the run succeeded (a real ``bool``).
        result: the result text, or ``None``.
        duration: seconds the run took (finite, not negative).
        used_tools: names of the tools used (``None`` sends ``[]``).

    Returns:
        The JSON body for ``POST /agent-execution/{agent_id}/report_task``.

    Raises:
        InvalidInputError: a value of the wrong kind; the message names the field.
    """
    if id is not None and (not isinstance(id, str) or not id.strip()):
        raise InvalidInputError("id must be a non-empty string (or None for a new uuid4)")
    if input is not None and not isinstance(input, str):
        raise InvalidInputError("input must be a string (the task's input text) or None")
    if result is not None and not isinstance(result, str):
        raise InvalidInputError("result must be a string or None (serialise structured results first)")
    if not isinstance(is_success, bool):
        raise InvalidInputError("is_success must be True or False")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not _finite(duration) \
            or duration < 0:
        raise InvalidInputError("duration must be a non-negative number of seconds")
    if used_tools is None:
        tools: List[str] = []
    elif isinstance(used_tools, (str, bytes, Mapping)) or not isinstance(used_tools, Sequence) \
            or not all(isinstance(t, str) for t in used_tools):
        raise InvalidInputError("used_tools must be a list of tool names (strings)")
    else:
        tools = list(used_tools)
    return {
        "id": id or str(uuid.uuid4()),
        "input": input,
        "llm_response": _jsonable(llm_response, "llm_response"),
        "tokens": _tokens_json(tokens),
        "is_success": is_success,
        "result": result,
        "duration": float(duration),
        "used_tools": tools,
    }


class Reports(Resource):
    """External-task reports.

    Args:
        configuration: settings; default: a :class:`~xpander_sync.Configuration` read from the
            environment. Objects built with equal configurations share one transport.
        transport: an explicit transport (tests inject one with a fake ``sleep``).

    Raises:
        InvalidInputError: ``configuration`` is not a :class:`~xpander_sync.Configuration`.
    """

    body = staticmethod(build_report_body)

    def send(self, agent_id: str, body: Dict[str, Any]) -> Any:
        """Post one report (``POST /agent-execution/{agent_id}/report_task``).

        The body carries its own task id, so the request is safe to repeat: the platform
        stores it once. That is why it is retried like a GET. The answer is returned
        undecoded: a background or outbox delivery is done at the 2xx, whatever the body;
        :meth:`task` decodes it into a :class:`~xpander_sync.Task`.

        Args:
            agent_id: the agent the run belongs to.
            body: a body from :meth:`body`.

        Returns:
            The platform's JSON answer (the recorded task).

        Raises:
            InvalidInputError: ``agent_id`` is unusable in a path.
            ModuleException: the platform refused it or could not be reached.
        """
        path = route("/agent-execution/{agent_id}/report_task", agent_id=agent_id)
        return self._transport.request("POST", path, json=body, repeatable=True).data

    def _handle_for(self, model: Any) -> Any:
        # A recorded task reloads, saves and stops through Tasks, on this resource's transport.
        return Tasks(self.configuration, transport=self._transport)

    def task(self, answer: Any) -> Task:
        """Decode the answer of :meth:`send` into the recorded task, bound to this resource.

        Args:
            answer: what :meth:`send` returned.

        Returns:
            The recorded :class:`~xpander_sync.Task`.

        Raises:
            ResponseDecodeError: the answer is not a task.
        """
        return self._structure(answer, Task)

    asend = async_twin(send)
