"""Pure helpers of the local backend: Task JSON shapes, request-body validation, agent views.

Everything here is plain data in, plain data out (no I/O, no locks), so the HTTP layer in ``server.py`` stays
a thin dispatcher. Shapes follow the reference: the Task fields of the official SDK 2.0.0 plus those added by
2.0.537 (``docs/reference``: *xpander-api.md* §6.1, *xpander-api-current.md* §4).

Validation messages name the offending field and the expected type, never the value that was sent (bodies can
hold tokens and secrets).
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import uuid
from typing import Any, Iterable, Optional

#: ``AgentExecutionStatus`` values.
TASK_STATUSES = frozenset({"pending", "executing", "paused", "error", "failed", "completed", "stopped"})
#: Statuses after which a task is finished (``finished_at`` gets set).
TERMINAL_STATUSES = frozenset({"completed", "failed", "error", "stopped"})
OUTPUT_FORMATS = frozenset({"text", "markdown", "json", "voice"})
THINK_MODES = frozenset({"default", "harder"})

#: The file name suffix of the session store the local backend gives agents (next to its own SQLite file).
SESSIONS_DB_SUFFIX = "-agno-sessions.sqlite3"


def sessions_db_uri(store_path: str) -> str:
    """The connection string ``GET /agents/{id}/db`` answers for agents without ``_local_db_uri``.

    A SQLite file next to the backend's own store: reachable whenever the backend is, so an agno run
    stores its sessions instead of logging a refused connection on every run (a placeholder Postgres
    address that nothing listens on did). ``_local_db_uri`` on an agent names a real database instead.

    Args:
        store_path: The path of the backend's SQLite store.

    Returns:
        ``sqlite:///<store path>-agno-sessions.sqlite3``.
    """
    return "sqlite:///" + store_path + SESSIONS_DB_SUFFIX
#: Agent keys starting with this prefix configure the local backend and are never sent to clients.
LOCAL_KEY_PREFIX = "_local"

# Every Task field with its default, in the order of the reference (2.0.0 fields plus the 2.0.537 additions).
# ``id``, ``agent_id``, ``organization_id``, ``input`` and ``created_at`` are always filled by the builders.
_TASK_DEFAULTS: dict[str, Any] = {
    "id": None,
    "agent_id": None,
    "organization_id": None,
    "input": None,
    "status": "pending",
    "internal_status": None,
    "last_executed_node_id": None,
    "agent_version": None,
    "created_at": None,
    "started_at": None,
    "paused_at": None,
    "finished_at": None,
    "result": None,
    "parent_execution": None,
    "conversation_id": None,
    "conversation_kind": None,
    "sub_executions": [],
    "should_update_parent": False,
    "is_manually_stopped": False,
    "payload_extension": None,
    "execution_kind": None,
    "hitl_request": None,
    "pending_eca_request": None,
    "source": None,
    "voice_id": None,
    "output_format": None,
    "output_schema": None,
    "events_streaming": False,
    "is_orchestration": False,
    "is_gateway": False,
    "is_app": False,
    "background_auth_eligible": False,
    "additional_context": None,
    "tool_call_limit": None,
    "instructions_override": None,
    "test_run_node_id": None,
    "user_oidc_token": None,
    "expected_output": None,
    "mcp_servers": [],
    "triggering_agent_id": None,
    "title": None,
    "think_mode": "default",
    "disable_attachment_injection": False,
    "user_tokens": None,
    "deep_planning": {
        "enabled": False,
        "enforce": False,
        "started": False,
        "question_raised": False,
        "tasks": [],
    },
    "must_deep_plan": False,
    "execution_attempts": 1,
    "return_metrics": False,
    "llm_model_provider": None,
    "llm_model_name": None,
    "llm_reasoning_effort": None,
    "harness_cli": None,
    "permission_mode": None,
    "tokens": None,
    "used_tools": [],
    "duration": 0.0,
}

#: Task fields in reference order (public for tests).
TASK_FIELDS: tuple[str, ...] = tuple(_TASK_DEFAULTS)

# Create-task body keys (27 in 2.0.537, 21 in 2.0.0) by expected JSON type; ``input`` is checked apart.
_CREATE_STR_KEYS = (
    "source",
    "worker_id",
    "additional_context",
    "instructions_override",
    "test_run_node_id",
    "user_oidc_token",
    "expected_output",
    "triggering_agent_id",
    "title",
    "llm_model_provider",
    "llm_model_name",
    "llm_reasoning_effort",
    "harness_cli",
    "permission_mode",
)
_CREATE_OBJECT_KEYS = ("payload_extension", "output_schema", "user_tokens")
_CREATE_BOOL_KEYS = ("run_locally", "events_streaming", "disable_attachment_injection", "return_metrics")
# Body keys copied verbatim onto the task (``worker_id`` is not a Task field, but the platform echoes it).
_CREATE_COPIED_KEYS = (
    *_CREATE_STR_KEYS,
    *_CREATE_OBJECT_KEYS,
    "output_format",
    "events_streaming",
    "disable_attachment_injection",
    "return_metrics",
    "tool_call_limit",
)

#: The exact key set of a ``report_task`` body.
REPORT_KEYS = frozenset(
    {"id", "input", "llm_response", "tokens", "is_success", "result", "duration", "used_tools"}
)

_TIMESTAMP_KEYS = ("started_at", "paused_at", "finished_at")
_IMMUTABLE_TASK_KEYS = frozenset({"id", "agent_id", "organization_id", "created_at"})


class BodyError(ValueError):
    """A request body failed validation; ``str()`` lists the problems (field names only)."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid request body: " + "; ".join(self.problems))


# -- small helpers -------------------------------------------------------------------------------------


def now_iso() -> str:
    """Return the current UTC time as ISO 8601 with milliseconds and a ``Z`` suffix."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def new_id() -> str:
    """Return a fresh task id (uuid4 string)."""
    return str(uuid.uuid4())


def _is_str_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _type_problems(body: dict[str, Any], keys: Iterable[str], check: Any, expected: str) -> list[str]:
    return [f"{key} must be {expected}" for key in keys if key in body and not check(body[key])]


# -- agents --------------------------------------------------------------------------------------------


def agent_version(agent: dict[str, Any]) -> int:
    """Return the agent's integer ``version`` (1 when absent).

    Raises:
        ValueError: ``version`` is present but not an integer.
    """
    version = agent.get("version", 1)
    if not _is_int(version):
        raise ValueError("agent 'version' must be an integer")
    return int(version)


def public_agent(agent: dict[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``agent`` without its private ``_local*`` keys."""
    return {k: copy.deepcopy(v) for k, v in agent.items() if not str(k).startswith(LOCAL_KEY_PREFIX)}


def agent_list_item(agent: dict[str, Any], organization_id: str, fallback_created_at: str) -> dict[str, Any]:
    """Return the ``AgentsListItem`` view of an agent (the 11 keys of ``GET /agents/list``).

    Args:
        agent: The full agent JSON.
        organization_id: Used when the agent has no ``organization_id``.
        fallback_created_at: Used when the agent has no ``created_at`` (the item requires one).
    """
    return {
        "id": agent["id"],
        "name": agent.get("name", agent["id"]),
        "icon": agent.get("icon", "🚀"),
        "instructions": copy.deepcopy(agent.get("instructions", {"role": [], "goal": [], "general": ""})),
        "status": agent.get("status", "ACTIVE"),
        "organization_id": agent.get("organization_id") or organization_id,
        "created_at": agent.get("created_at") or fallback_created_at,
        "description": agent.get("description"),
        "access_scope": agent.get("access_scope", "organizational"),
        "created_by": agent.get("created_by"),
        "type": agent.get("type"),
    }


# -- tasks ---------------------------------------------------------------------------------------------


def new_task(task_id: str, agent_id: str, organization_id: str, **fields: Any) -> dict[str, Any]:
    """Return a complete Task JSON with every field at its default, then ``fields`` applied.

    Args:
        task_id: The task id.
        agent_id: The agent id.
        organization_id: The organization id.
        **fields: Field values overriding the defaults (``created_at`` defaults to now).
    """
    task = copy.deepcopy(_TASK_DEFAULTS)
    task.update(
        id=task_id,
        agent_id=agent_id,
        organization_id=organization_id,
        input={"text": "", "files": [], "user": None},
        created_at=now_iso(),
    )
    task.update(fields)
    return task


def validate_create_body(body: Any) -> None:
    """Check a create-task body (``POST /agent-execution/{agent_id}``).

    Only ``input`` is required (an object); every other key of the 27-key body is optional (older clients send
    21 keys) but must have the reference type when present. Unknown keys are ignored.

    Raises:
        BodyError: The body is not an object, or a field has the wrong type.
    """
    if not isinstance(body, dict):
        raise BodyError(["the body must be a JSON object"])
    problems: list[str] = []
    if "id" in body and not (body["id"] is None or (isinstance(body["id"], str) and body["id"])):
        problems.append("id must be a non-empty string or null")
    inp = body.get("input")
    if not isinstance(inp, dict):
        problems.append("input is required and must be an object")
    else:
        problems += [f"input.{p}" for p in _input_problems(inp)]
    problems += _type_problems(body, _CREATE_STR_KEYS, _is_str_or_none, "a string or null")
    problems += _type_problems(
        body, _CREATE_OBJECT_KEYS, lambda v: v is None or isinstance(v, dict), "an object or null"
    )
    problems += _type_problems(body, _CREATE_BOOL_KEYS, lambda v: isinstance(v, bool), "a boolean")
    problems += _type_problems(
        body,
        ("output_format",),
        lambda v: v is None or v in OUTPUT_FORMATS,
        "one of " + ", ".join(sorted(OUTPUT_FORMATS)) + " or null",
    )
    problems += _type_problems(
        body, ("think_mode",), lambda v: v in THINK_MODES, "one of " + ", ".join(sorted(THINK_MODES))
    )
    problems += _type_problems(
        body,
        ("mcp_servers",),
        lambda v: isinstance(v, list) and all(isinstance(s, dict) for s in v),
        "an array of objects",
    )
    problems += _type_problems(
        body, ("tool_call_limit",), lambda v: v is None or _is_int(v), "an integer or null"
    )
    if problems:
        raise BodyError(problems)


def _input_problems(inp: dict[str, Any]) -> list[str]:
    problems = _type_problems(inp, ("text",), _is_str_or_none, "a string or null")
    problems += _type_problems(
        inp, ("files",), lambda v: v is None or _is_str_list(v), "an array of strings or null"
    )
    problems += _type_problems(inp, ("attachments",), lambda v: isinstance(v, list), "an array")
    problems += _type_problems(
        inp, ("principal",), lambda v: v is None or isinstance(v, dict), "an object or null"
    )
    user = inp.get("user")
    if user is not None:
        if not isinstance(user, dict):
            problems.append("user must be an object or null")
        elif not isinstance(user.get("email"), str):
            problems.append("user.email is required and must be a string")
    return problems


def task_from_create_body(
    body: dict[str, Any],
    *,
    task_id: str,
    agent_id: str,
    organization_id: str,
    agent_version: str,
    previous: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """Build the Task for a (validated) create-task body.

    Args:
        body: The request body (already checked by :func:`validate_create_body`).
        task_id: The id to use (the body's, or a fresh one).
        agent_id: The agent from the route.
        organization_id: The agent's organization.
        agent_version: The version as a string (the Task model requires a string).
        previous: The stored task when ``body["id"]`` names an existing task: that task is continued (same
            ``created_at``, ``execution_attempts`` + 1) with the new input, back in ``pending``.
    """
    inp = body["input"]
    task_input: dict[str, Any] = {
        "text": inp.get("text") or "",
        "files": list(inp.get("files") or []),
        "user": copy.deepcopy(inp.get("user")),
    }
    for optional in ("attachments", "principal"):
        if inp.get(optional):
            task_input[optional] = copy.deepcopy(inp[optional])
    fields = {key: copy.deepcopy(body[key]) for key in _CREATE_COPIED_KEYS if key in body}
    fields.update(
        input=task_input,
        agent_version=agent_version,
        think_mode=body.get("think_mode") or "default",
        mcp_servers=copy.deepcopy(body.get("mcp_servers") or []),
    )
    if previous is None:
        return new_task(task_id, agent_id, organization_id, **fields)
    task = copy.deepcopy(previous)
    task.update(fields)
    task.update(
        status="pending",
        result=None,
        started_at=None,
        paused_at=None,
        finished_at=None,
        is_manually_stopped=False,
        execution_attempts=int(previous.get("execution_attempts") or 1) + 1,
    )
    return task


def validate_report_body(body: Any) -> None:
    """Check a ``report_task`` body: exactly the 8 keys of the reference, each with its type.

    Raises:
        BodyError: Missing or unknown keys, or a wrong type.
    """
    if not isinstance(body, dict):
        raise BodyError(["the body must be a JSON object"])
    problems: list[str] = []
    missing = sorted(REPORT_KEYS - body.keys())
    unknown = sorted(str(k) for k in body.keys() - REPORT_KEYS)
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if unknown:
        problems.append("unknown keys: " + ", ".join(unknown))
    if "id" in body and not (body["id"] is None or (isinstance(body["id"], str) and body["id"])):
        problems.append("id must be a non-empty string or null")
    problems += _type_problems(body, ("input", "result"), _is_str_or_none, "a string or null")
    problems += _type_problems(body, ("is_success",), lambda v: isinstance(v, bool), "a boolean")
    problems += _type_problems(body, ("duration",), _is_number, "a number")
    problems += _type_problems(body, ("used_tools",), _is_str_list, "an array of strings")
    tokens = body.get("tokens")
    if tokens is not None:
        if not isinstance(tokens, dict):
            problems.append("tokens must be an object or null")
        else:
            problems += [
                f"tokens.{key} must be an integer or null"
                for key, value in tokens.items()
                if not (value is None or _is_int(value))
            ]
    if problems:
        raise BodyError(problems)


def task_from_report(
    body: dict[str, Any],
    *,
    task_id: str,
    agent_id: str,
    organization_id: str,
    previous: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """Build the Task recorded for an external-task report.

    A report for an id that is already a task (created through ``POST /agent-execution/{agent_id}``) finishes
    that task and keeps its input; otherwise a new task is made with
    ``input = {"text": <report input or "">, "files": [], "user": null}``.
    """
    now = now_iso()
    outcome = {
        "status": "completed" if body["is_success"] else "failed",
        "result": body["result"],
        "tokens": copy.deepcopy(body["tokens"]),
        "used_tools": list(body["used_tools"]),
        "duration": float(body["duration"]),
        "finished_at": now,
    }
    if previous is not None:
        task = copy.deepcopy(previous)
        task.update(outcome)
        return task
    return new_task(
        task_id,
        agent_id,
        organization_id,
        input={"text": body["input"] or "", "files": [], "user": None},
        created_at=now,
        source="sdk",
        output_format="text",
        **outcome,
    )


def merge_task_update(task: dict[str, Any], body: Any) -> dict[str, Any]:
    """Return ``task`` with a ``PATCH …/update`` body merged in.

    Works for full-task dumps (``Task.save``) and for partial bodies (``Tasks.update``: ``status``,
    ``result``, ``source``, ``last_executed_node_id``, ``tool_call_payload_extension``). ``id`` must match
    when present; ``agent_id``, ``organization_id`` and ``created_at`` never change; an explicit ``null``
    does not erase a timestamp the server already set. Entering ``executing``/``paused``/a terminal status
    stamps ``started_at``/``paused_at``/``finished_at`` when they are still empty.

    Raises:
        BodyError: The body is not an object, names another task id, or has an unknown status.
    """
    if not isinstance(body, dict):
        raise BodyError(["the body must be a JSON object"])
    problems: list[str] = []
    if "id" in body and body["id"] != task["id"]:
        problems.append("id does not match the task id in the path")
    if "status" in body and body["status"] not in TASK_STATUSES:
        problems.append("status must be one of " + ", ".join(sorted(TASK_STATUSES)))
    if "input" in body and not isinstance(body["input"], dict):
        problems.append("input must be an object")
    if problems:
        raise BodyError(problems)
    merged = copy.deepcopy(task)
    for key, value in body.items():
        if key in _IMMUTABLE_TASK_KEYS or (key in _TIMESTAMP_KEYS and value is None):
            continue
        if key == "tool_call_payload_extension":
            key = "payload_extension"
        merged[key] = copy.deepcopy(value)
    status = merged.get("status")
    now = now_iso()
    if status == "executing" and not merged.get("started_at"):
        merged["started_at"] = now
    elif status == "paused" and not merged.get("paused_at"):
        merged["paused_at"] = now
    elif status in TERMINAL_STATUSES and not merged.get("finished_at"):
        merged["finished_at"] = now
    return merged


# -- the worker stream -----------------------------------------------------------------------------------

#: Events a worker may POST to ``/{org}/events/{worker_id}?type=worker``.
WORKER_EVENTS = frozenset({"worker-heartbeat", "worker-capacity-update", "worker-finished"})
#: Environments a worker may ask for (``?environment=``).
WORKER_ENVIRONMENTS = frozenset({"local", "xpander"})


def sse_frame(event: str, data: Any) -> bytes:
    """One server-sent event: ``event: <name>`` and a single ``data:`` line of compact JSON."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode()


#: An SSE comment: ignored by clients, but it proves the connection is alive (both ways).
SSE_KEEPALIVE = b": keep-alive\n\n"


def worker_asset(
    worker_id: str, agent: dict[str, Any], organization_id: str, environment: str, number: int
) -> dict[str, Any]:
    """The ``DeployedAsset`` sent as the ``worker-registration`` event (reference §13 shape).

    Args:
        worker_id: The new worker's id.
        agent: The agent the worker serves.
        organization_id: The agent's organization.
        environment: ``local`` or ``xpander``.
        number: A per-agent counter, for a readable ``name``.
    """
    now = now_iso()
    return {
        "id": worker_id,
        "name": f"worker-{agent['id']}-{number}",
        "organization_id": organization_id,
        "type": "worker",
        "created_at": now,
        "created_by": None,
        "last_heartbeat": now,
        "configuration": None,
        "dedicated_agent_id": agent["id"],
        "parent_asset_id": None,
        "is_busy": False,
        "metadata": {
            "unique_name": agent.get("unique_name") or agent["id"],
            "name": agent.get("name", agent["id"]),
            "environment": environment,
        },
    }


def validate_worker_event(body: Any) -> tuple[str, Any]:
    """Check a worker POST body ``{"id", "event", "data"}``; return ``(event, data)``.

    ``worker-heartbeat`` carries a datetime string, ``worker-capacity-update`` ``{"is_busy": bool}``,
    ``worker-finished`` an object.

    Raises:
        BodyError: The body does not have that shape.
    """
    if not isinstance(body, dict):
        raise BodyError(["the body must be a JSON object"])
    problems: list[str] = []
    if not isinstance(body.get("id"), str) or not body["id"]:
        problems.append("id must be a non-empty string")
    event = body.get("event")
    if event not in WORKER_EVENTS:
        problems.append("event must be one of " + ", ".join(sorted(WORKER_EVENTS)))
    data = body.get("data")
    if event == "worker-heartbeat":
        if not isinstance(data, str):
            problems.append("data must be a datetime string")
        else:
            try:
                _dt.datetime.fromisoformat(data.replace("Z", "+00:00"))
            except ValueError:
                problems.append("data must be an ISO 8601 datetime")
    elif event == "worker-capacity-update":
        if not isinstance(data, dict) or not isinstance(data.get("is_busy"), bool):
            problems.append("data must be an object with a boolean is_busy")
    elif event == "worker-finished" and not isinstance(data, dict):
        problems.append("data must be an object")
    if problems:
        raise BodyError(problems)
    return str(event), data
