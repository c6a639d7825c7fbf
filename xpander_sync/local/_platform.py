"""The platform's REST routes on the local backend: agents, tasks, external-task reports, events, metrics, tools.

Each route function takes a :class:`~xpander_sync.local._routing.Request` and returns ``(status, JSON payload)``;
the JSON shapes are built and checked in ``_payloads``, and everything to remember goes to the SQLite
:class:`~xpander_sync.local.store.Store`. A task that becomes ``pending`` (created, continued or reopened) is
announced through the ``on_pending`` callback, which the worker-stream hub (``_hub``) uses to deliver it.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Optional

from .._redact import redact_headers
from ..errors import ToolError
from . import _payloads as payloads
from ._agents import AgentCatalog
from ._routing import HTTPError, Request
from .store import Store

logger = logging.getLogger(__name__)

#: A local tool handler: ``fn(payload, headers) -> JSON-able result``.
ToolHandler = Callable[[Any, dict[str, str]], Any]

#: Tool-call headers recorded by the tool-call route.
TOOL_CALL_HEADERS = ("x-agent-version", "x-execution-id", "x-preflight-check", "x-tool-call-id")


class Platform:
    """The route functions of the platform's REST API (everything but the worker stream and MCP auth).

    Args:
        agents: The agents served.
        store: Where tasks, reports, events, tool calls and metrics are kept.
        default_llm_headers: The answer of the default-LLM-headers route.
        on_pending: Called as ``on_pending(task_id, release)`` when a task becomes deliverable to workers;
            ``release`` says whether a worker that was sent it before may lose it.
        serve_agent: Adjusts an agent's JSON as it is served (the LLM proxy points agents at itself).
    """

    def __init__(
        self,
        agents: AgentCatalog,
        store: Store,
        *,
        default_llm_headers: dict[str, str],
        on_pending: Callable[[str, bool], None],
        serve_agent: Optional[Callable[[dict[str, Any]], dict[str, Any]]] = None,
    ) -> None:
        self._agents = agents
        self._serve_agent = serve_agent
        self._store = store
        self._default_llm_headers = dict(default_llm_headers)
        self._on_pending = on_pending
        self._loaded_at = payloads.now_iso()
        self._tools_lock = threading.Lock()
        self._tools: dict[str, ToolHandler] = {}

    def register_tool(self, tool_id: str, fn: ToolHandler) -> None:
        """Serve the calls of ``tool_id`` with ``fn`` (see :meth:`LocalBackend.register_tool`).

        Args:
            tool_id: The tool id of the route.
            fn: The handler.
        """
        with self._tools_lock:
            self._tools[tool_id] = fn

    # -- agents --------------------------------------------------------------------------------------

    def agents_list(self, req: Request) -> tuple[int, Any]:
        """``GET /agents/list``: the latest version of every agent, as list items."""
        org = self._agents.organization_id
        return 200, [payloads.agent_list_item(a, org, self._loaded_at) for a in self._agents.latest()]

    def agent_get(self, req: Request) -> tuple[int, Any]:
        """``GET /agents/{agent_id}``: one agent (the version ``x-agent-version`` names, or the latest)."""
        agent = self._agents.get(req.params["agent_id"], req.headers.get("x-agent-version"))
        served = payloads.public_agent(agent)
        return 200, self._serve_agent(served) if self._serve_agent is not None else served

    def agent_db(self, req: Request) -> tuple[int, Any]:
        """``GET /agents/{agent_id}/db``: the agent's database (``_local_db_uri``, else the backend's SQLite file)."""
        agent = self._agents.get(req.params["agent_id"])
        uri = agent.get("_local_db_uri") or payloads.sessions_db_uri(self._store.path)
        return 200, {
            "id": agent["id"],
            "name": agent.get("name", agent["id"]),
            "organization_id": self._agents.org(agent),
            "connection_uri": {"uri": uri},
        }

    def llm_headers(self, req: Request) -> tuple[int, Any]:
        """``GET /metadata/default_llm_extra_headers``: the configured default LLM headers."""
        return 200, dict(self._default_llm_headers)

    # -- tasks ---------------------------------------------------------------------------------------

    def task_create(self, req: Request) -> tuple[int, Any]:
        """``POST /agent-execution/{agent_id}``: create a task, or continue one when the body names its id."""
        agent = self._agents.get(req.params["agent_id"], req.headers.get("x-agent-version"))
        payloads.validate_create_body(req.body)
        body = req.body
        task_id = body.get("id") or payloads.new_id()

        was_pending = False

        def build(previous: Optional[dict[str, Any]]) -> dict[str, Any]:
            nonlocal was_pending
            if previous is not None and previous.get("agent_id") != agent["id"]:
                raise HTTPError(409, "Task id belongs to another agent")
            was_pending = previous is not None and previous.get("status") == "pending"
            return payloads.task_from_create_body(
                body,
                task_id=task_id,
                agent_id=agent["id"],
                organization_id=self._agents.org(agent),
                agent_version=str(payloads.agent_version(agent)),
                previous=previous,
            )

        task = self._store.upsert_task(task_id, build)
        # New, or continued after it ran (pending again): deliverable, even to a worker that had it before.
        # Re-posted while still pending: whoever holds it keeps it (sending it twice could run it twice).
        self._on_pending(task_id, not was_pending)
        return 200, task

    def task_status(self, req: Request) -> tuple[int, Any]:
        """``GET /agent-execution/{task_id}/status``: the stored task."""
        task = self._store.get_task(req.params["task_id"])
        if task is None:
            raise HTTPError(404, "Task not found")
        return 200, task

    def task_update(self, req: Request) -> tuple[int, Any]:
        """``PATCH /agent-execution/{task_id}/update``: merge a partial task; back to pending means redeliver."""
        reopened = False

        def build(previous: Optional[dict[str, Any]]) -> dict[str, Any]:
            nonlocal reopened
            if previous is None:
                raise HTTPError(404, "Task not found")
            task = payloads.merge_task_update(previous, req.body)
            reopened = previous.get("status") != "pending" and task.get("status") == "pending"
            return task

        task = self._store.upsert_task(req.params["task_id"], build)
        if reopened:
            self._on_pending(req.params["task_id"], True)
        return 200, task

    def task_stop(self, req: Request) -> tuple[int, Any]:
        """``DELETE /agent-execution/{task_id}``: mark the task stopped (manually)."""

        def build(previous: Optional[dict[str, Any]]) -> dict[str, Any]:
            if previous is None:
                raise HTTPError(404, "Task not found")
            task = payloads.merge_task_update(previous, {"status": "stopped"})
            task["is_manually_stopped"] = True
            return task

        return 200, self._store.upsert_task(req.params["task_id"], build)

    def report_task(self, req: Request) -> tuple[int, Any]:
        """``POST /agent-execution/{agent_id}/report_task``: store an external-task report (idempotent by id)."""
        agent = self._agents.get(req.params["agent_id"])
        payloads.validate_report_body(req.body)
        body = req.body
        task_id = body["id"] or payloads.new_id()

        def build(previous: Optional[dict[str, Any]]) -> dict[str, Any]:
            return payloads.task_from_report(
                body,
                task_id=task_id,
                agent_id=agent["id"],
                organization_id=self._agents.org(agent),
                previous=previous,
            )

        task, created = self._store.add_report(task_id, agent["id"], body, build)
        if not created:
            logger.debug("report %s already stored; returning the stored task", task_id)
        return 200, task

    def events_push(self, req: Request) -> tuple[int, Any]:
        """``POST /agent-execution/{task_id}/events/push``: store a JSON array of task events."""
        if not isinstance(req.body, list):
            raise HTTPError(400, "invalid request body: the body must be a JSON array of events")
        self._store.add_events(req.params["task_id"], req.body)
        return 200, {}

    def metrics(self, req: Request) -> tuple[int, Any]:
        """``POST /agents-metrics/{agent_id}/execution``: store an execution-metrics report."""
        agent = self._agents.get(req.params["agent_id"])
        if not isinstance(req.body, dict):
            raise HTTPError(400, "invalid request body: the body must be a JSON object")
        self._store.add_metric(agent["id"], req.body)
        return 200, {}

    # -- tools ---------------------------------------------------------------------------------------

    def tool_call(self, req: Request) -> tuple[int, Any]:
        """``POST /agents/{agent_id}/operations/{tool_id}``: record the call; answer from a handler or echo it."""
        agent_id, tool_id = req.params["agent_id"], req.params["tool_id"]
        self._agents.get(agent_id)
        self._store.add_tool_call(
            {
                "agent_id": agent_id,
                "tool_id": tool_id,
                "method": req.method,
                "headers": {h: req.headers[h] for h in TOOL_CALL_HEADERS if h in req.headers},
                "body": req.body,
                "received_at": payloads.now_iso(),
            }
        )
        with self._tools_lock:
            handler = self._tools.get(tool_id)
        if handler is None:
            return 200, {
                "tool_id": tool_id,
                "agent_id": agent_id,
                "execution_id": req.headers.get("x-execution-id"),
                "payload": req.body,
            }
        payload = req.body if req.body is not None else {}
        try:
            result = handler(payload, redact_headers(req.headers))
            json.dumps(result)
        except ToolError as exc:
            raise HTTPError(exc.status_code, exc.detail) from None
        except Exception as exc:
            logger.warning("local tool handler %r raised %s", tool_id, exc.__class__.__name__, exc_info=True)
            raise HTTPError(500, f"Tool handler {tool_id!r} failed: {exc.__class__.__name__}") from None
        return 200, result
