"""The local, xpander-compatible HTTP backend: :class:`LocalBackend`, built on the standard library only.

:class:`LocalBackend` serves the REST routes the Backend module of the official SDK calls (agents, tasks,
external-task reports, tool calls, MCP OAuth, event pushes, metrics) and the worker stream from a folder of
agent JSON files and a SQLite store (:mod:`xpander_sync.local.store`). It is meant for tests, demos and offline
development: point the client's ``base_url`` at :attr:`LocalBackend.url` (the routes carry no organization
segment).

This module holds the public class and the routing table; the work is done by:

* ``_http``: HTTP plumbing (the socket server and request handler: bytes in, JSON or an event stream out);
* ``_routing``: the router, JSON bodies, client errors, the request log and the API-key check (the table of
  routes itself is :func:`_routing_table` below: a new platform area is a component plus its lines there);
* ``_agents``: the agents served, by id and version;
* ``_platform``: the platform's routes (agents, tasks, reports, events, metrics, tool calls);
* ``_hub``: the worker-stream hub (the event stream ``xpander-sync worker`` connects to);
* ``_mcp``: the MCP-auth emulation (``get_token`` and the simulated login page);
* ``_prompts``: the prompt routes (an agent's dynamic prompt and channel presence);
* ``_llm_proxy``: the platform's LLM proxy route, served by a mounted scripted model (:meth:`LocalBackend.mount_llm`);
* ``_knowledge``: knowledge-base details and search, and memories (read and written), from the agents' JSON;
* ``_approvals``: tool approvals (agents' ``_local_approvals`` rules), the custom LLM endpoint, the LLM gateway route;
* ``_payloads`` (JSON shapes) and :mod:`xpander_sync.local.store` (SQLite).

Design notes:

* ``http.server.ThreadingHTTPServer`` on ``127.0.0.1`` and an ephemeral port (never a fixed one), one thread
  per connection, HTTP/1.1 keep-alive with a ``Content-Length`` on every response so a ``requests.Session``
  reuses its connections.
* Every response, error or not, is JSON with ``Content-Type: application/json`` (the worker stream aside);
  errors are ``{"detail": "..."}``. Protocol errors raised inside ``http.server`` (garbage request lines,
  unsupported methods) are answered in the same JSON shape, and the server keeps serving.
* :meth:`LocalBackend.stop` shuts the listening socket *and* every open keep-alive connection and worker
  stream, so no request is served after it returns.
* Secrets: the configured API key is compared in constant time and never echoed; secret headers
  (``x-api-key``, ``authorization``, cookies, ... as :mod:`xpander_sync._redact` lists them) are replaced
  by ``"***"`` in :attr:`LocalBackend.requests_log` and in what tool handlers receive. Issued MCP tokens are only
  returned by ``get_token`` (``token_ready``) and :meth:`LocalBackend.complete_login`.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Optional, Union

from .._scripted_model import ScriptedModel
from ..errors import ConfigurationError, ToolError
from ._agents import AgentCatalog, sample_agents_dir
from ._approvals import Approvals
from ._http import MAX_BODY_BYTES, Server
from ._hub import WorkerHub
from ._knowledge import KnowledgeRoutes
from ._llm_proxy import PROXY_ROUTE, LLMProxy
from ._mcp import McpAuth
from ._platform import TOOL_CALL_HEADERS, Platform, ToolHandler
from ._prompts import PromptRoutes
from ._routing import Dispatcher, Router
from .store import Store

__all__ = [
    "MAX_BODY_BYTES",
    "REQUEST_LOG_LIMIT",
    "TOOL_CALL_HEADERS",
    "LocalBackend",
    "ToolError",
    "ToolHandler",
    "sample_agents_dir",
]

logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an interface to bind) is a loopback address or ``localhost``.

    Args:
        host: An IP address or host name.

    Returns:
        ``True`` for ``localhost``, ``127.0.0.0/8`` and ``::1``.
    """
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

#: Most entries kept in :attr:`LocalBackend.requests_log` (oldest dropped first).
REQUEST_LOG_LIMIT = 10_000

_STOP_JOIN_S = 2.0


def _routing_table(platform: Platform, hub: WorkerHub, mcp: McpAuth, llm: LLMProxy,
                   knowledge: KnowledgeRoutes, prompts: PromptRoutes, approvals: Approvals) -> Router:
    """Every route the local backend serves. Order matters: the first full match wins."""
    router = Router()
    add = router.add
    add("GET", "/agents/list", platform.agents_list)  # before /agents/{agent_id}
    add("GET", "/agents/{agent_id}", platform.agent_get)
    add("GET", "/agents/{agent_id}/db", platform.agent_db)
    add("POST", "/agents/{agent_id}/operations/{tool_id}", approvals.gate(platform.tool_call))
    add("POST", "/agents/{agent_id}/tool-approvals/check", approvals.approval_check)
    add("GET", "/agents/{agent_id}/tool-approvals/{request_id}", approvals.approval_get)
    add("POST", "/agents/{agent_id}/custom-llm-endpoint/{task_id}", approvals.custom_llm_endpoint)
    add("POST", "/agents/{agent_id}/llm-gateway-route/{task_id}", approvals.llm_gateway_route)
    add("GET", "/metadata/default_llm_extra_headers", platform.llm_headers)
    add("POST", "/tools/{agent_id}/dynamic-prompt", prompts.dynamic_prompt)
    add("POST", "/tools/{agent_id}/channel-presence", prompts.channel_presence)
    add("POST", "/agent-execution/{agent_id}/report_task", platform.report_task)
    add("POST", "/agent-execution/{task_id}/events/push", platform.events_push)
    add("GET", "/agent-execution/{task_id}/status", platform.task_status)
    add("PATCH", "/agent-execution/{task_id}/update", platform.task_update)
    add("POST", "/agent-execution/{agent_id}", platform.task_create)
    add("DELETE", "/agent-execution/{task_id}", platform.task_stop)
    add("POST", "/agents-metrics/{agent_id}/execution", platform.metrics)
    add("GET", "/knowledge_bases/{kb_id}/details", knowledge.details)
    add("GET", "/knowledge_bases/{kb_id}", knowledge.search)
    add("GET", "/memories/{agent_id}", knowledge.memories_get)
    add("POST", "/memories/{agent_id}", knowledge.memories_write)
    add("GET", "/mcp_auth/login", mcp.login_page, auth=False)  # the user's browser: no API key
    add("POST", "/mcp_auth/{agent_id}/{user_id}/get_token", mcp.get_token)
    # The LLM proxy authenticates with the model key (the provider's own header), not x-api-key.
    add("POST", PROXY_ROUTE, llm.route, auth=False, raw=True)
    # The worker stream and its POST route live under the organization segment (Configuration.events_root).
    add("GET", "/{org}/events/{agent_id}/", hub.open_stream)
    add("GET", "/{org}/events/{agent_id}", hub.open_stream)
    add("POST", "/{org}/events/{worker_id}", hub.worker_event)
    return router


class LocalBackend:
    """A local HTTP server speaking the xpander.ai Backend REST API.

    Agents come from ``*.json`` files (one agent object per file, keyed by its ``id``; older versions may sit
    in ``{id}@{version}.json`` files, the highest ``version`` is the latest). Tasks, reports, events, tool
    calls, metrics and MCP tokens live in SQLite, so they survive a restart on the same ``db_path`` and
    several processes may share one file.

    Example::

        with LocalBackend() as backend:
            requests.get(backend.url + "/agents/agt-openai").json()["name"]  # 'CRM Assistant'

    Args:
        agents_dir: Folder of agent JSON files; ``None`` uses :func:`sample_agents_dir`.
        db_path: SQLite file; ``None`` (or ``":memory:"``) uses a private temporary file deleted by
            :meth:`stop`.
        api_key: When set, every route except the simulated login page requires ``x-api-key``: missing → 401,
            wrong → 403. Required when ``host`` is not a loopback address: the backend holds the agents'
            stored LLM credentials, and any host that can reach it could read them.
        host: Interface to bind (default loopback only). Bound to loopback, the backend also refuses requests
            whose ``Host`` header is not a loopback name (DNS rebinding).
        port: Port to bind; ``0`` (default) picks a free one.
        organization_id: Used for agents (and their tasks) whose JSON has no ``organization_id``; also the
            organization segment of the worker routes (``Configuration(base_url=backend.url,
            organization_id=...).events_root``).
        default_llm_headers: Returned by ``GET /metadata/default_llm_extra_headers`` (default ``{}``).
        keepalive_interval: Seconds of silence after which a worker stream gets a ``: keep-alive`` comment.
        stream_poll_interval: Seconds between a worker stream's checks for new pending tasks (tasks created
            through this backend are sent at once) and for a vanished worker.

    Raises:
        FileNotFoundError: ``agents_dir`` is not a folder.
        ValueError: An agent file is not a JSON object with a string ``id`` and an integer ``version``, or
            ``keepalive_interval`` or ``stream_poll_interval`` is not positive.
        ConfigurationError: ``host`` is beyond loopback and no ``api_key`` is given.
    """

    def __init__(
        self,
        agents_dir: Union[str, os.PathLike[str], None] = None,
        db_path: Union[str, os.PathLike[str], None] = None,
        *,
        api_key: Optional[str] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        organization_id: str = "local-org",
        default_llm_headers: Optional[dict[str, str]] = None,
        keepalive_interval: float = 15.0,
        stream_poll_interval: float = 0.25,
    ) -> None:
        if keepalive_interval <= 0 or stream_poll_interval <= 0:
            raise ValueError("keepalive_interval and stream_poll_interval must be positive")
        loopback = is_loopback(host)
        if not loopback:
            if not api_key:
                raise ConfigurationError(
                    f"binding the local backend to {host!r} (beyond loopback) needs api_key= (serve --require-api-key"
                    " KEY): it holds the agents' stored LLM credentials"
                )
            logger.warning("local backend bound to %s: reachable from other hosts (API key required)", host)
        self._host = host
        self._port = int(port)
        self.organization_id = organization_id
        self._lock = threading.RLock()  # guards the lifecycle below

        self._agents = AgentCatalog(organization_id)
        self._agents.load_dir(Path(agents_dir) if agents_dir is not None else sample_agents_dir())
        self._store = Store(None if db_path is None else os.fspath(db_path))
        self._hub = WorkerHub(
            self._agents,
            self._store,
            organization_id=organization_id,
            keepalive_interval=float(keepalive_interval),
            poll_interval=float(stream_poll_interval),
        )
        self._llm = LLMProxy(lambda: self.url)
        self._platform = Platform(
            self._agents,
            self._store,
            default_llm_headers=dict(default_llm_headers or {}),
            on_pending=self._hub.task_deliverable,
            serve_agent=self._llm.point,
        )
        self._mcp = McpAuth(self._agents, self._store, lambda: self.url)
        self._knowledge = KnowledgeRoutes(self._agents, self._store)
        self._prompts = PromptRoutes(self._agents)
        self._approvals = Approvals(self._agents, self._llm.base_url)
        self._app = Dispatcher(
            _routing_table(self._platform, self._hub, self._mcp, self._llm, self._knowledge, self._prompts,
                           self._approvals),
            api_key=api_key,
            log_limit=REQUEST_LOG_LIMIT, check_host=loopback,
        )

        self._httpd: Optional[Server] = None
        self._thread: Optional[threading.Thread] = None  # the thread running the accept loop
        self._owns_thread = False  # True when start() created that thread
        self._stopped = False

    def __repr__(self) -> str:
        where = self.url if self._httpd is not None and not self._stopped else "not serving"
        return f"<LocalBackend {where} agents={len(self._agents)}>"

    # -- agents and tools --------------------------------------------------------------------------

    def add_agent(self, agent: dict[str, Any]) -> None:
        """Add (or replace) one version of an agent.

        The agent is served as given (a deep copy), except keys starting with ``_local``, which configure the
        local backend (``_local_db_uri`` overrides the ``GET /agents/{id}/db`` connection string, by default a
        SQLite file next to the backend's store, where agno keeps the agents' sessions;
        ``_local_knowledge`` and ``_local_memories`` define knowledge bases and memories, see ``_knowledge``;
        ``_local_prompts`` holds the ``dynamic_prompt`` and ``channel_presence`` texts the prompt routes
        answer) and are stripped from every response.

        Args:
            agent: The agent JSON; needs a string ``id``; ``version`` (integer) defaults to 1.

        Raises:
            ValueError: ``agent`` is not an object with a string ``id``, or ``version`` is not an integer.
        """
        self._agents.add(agent)

    def register_tool(self, tool_id: str, fn: Optional[ToolHandler] = None) -> Any:
        """Serve ``POST /agents/{agent_id}/operations/{tool_id}`` with a Python function.

        The handler is called as ``fn(payload, headers)`` with the parsed JSON body (``{}`` when empty) and
        the request headers (lower-case names, API key redacted); its return value is sent as JSON. Raising
        :class:`ToolError` answers with that status; any other exception answers 500. Usable as a decorator:
        ``@backend.register_tool("MyTool")``.

        Args:
            tool_id: The tool id of the route.
            fn: The handler; omit to get a decorator.

        Returns:
            ``fn`` unchanged, or a decorator when ``fn`` is omitted.

        Raises:
            TypeError: ``fn`` is not callable.
        """
        if fn is None:
            return lambda f: self.register_tool(tool_id, f)
        if not callable(fn):
            raise TypeError("fn must be callable")
        self._platform.register_tool(tool_id, fn)
        return fn

    # -- the LLM proxy -------------------------------------------------------------------------------

    def mount_llm(self, model: Optional[ScriptedModel] = None, *, point_agents: bool = True) -> ScriptedModel:
        """Serve a scripted model under the platform's LLM proxy route, ``/llm-proxy/{provider}/...``.

        The route is the one the platform's custom LLM endpoint sends an agent's model requests to; the
        model answers each request in the format its path names (OpenAI Chat Completions or Responses,
        Anthropic Messages, Gemini), JSON or streamed, and records it. With ``point_agents`` (the default),
        every agent served without an ``llm_api_base`` of its own is served with the proxy of its provider
        as ``llm_api_base``, so ``get_args`` builds a model that talks to it: no key from the environment,
        no network. The key the model receives follows the client's rule for a custom endpoint (the
        agent's stored key, else ``"EMPTY"``).

        Example::

            model = backend.mount_llm(ScriptedModel([call_first_tool("Search"), answer_with_tool_result()]))
            args = Backend(configuration).get_args(agent_id="agt-openai")
            Agent(**args).run("find Ada")
            assert model.requests[1].tool_results

        Args:
            model: The scripted model (need not be started); ``None`` mounts a new, empty one.
            point_agents: Point agents without their own ``llm_api_base`` at the proxy.

        Returns:
            The mounted model (its ``requests`` record every model request).
        """
        mounted = model if model is not None else ScriptedModel()
        self._llm.mount(mounted, point_agents=point_agents)
        return mounted

    def unmount_llm(self) -> None:
        """Stop serving the LLM proxy (it answers 503) and serve agents as stored again."""
        self._llm.mount(None)

    @property
    def llm(self) -> Optional[ScriptedModel]:
        """The model mounted with :meth:`mount_llm`, or ``None``."""
        return self._llm.model

    def llm_proxy_url(self, provider: str = "openai") -> str:
        """The LLM proxy's base URL for ``provider``: what a mounted model is reached through.

        Args:
            provider: The provider, as an agent's ``model_provider`` names it.

        Returns:
            ``{url}/llm-proxy/{provider}`` (set it as an agent's ``llm_api_base`` to use the proxy explicitly).

        Raises:
            RuntimeError: The server is not bound yet (call :meth:`start`).
        """
        return self._llm.base_url(provider)

    # -- lifecycle ---------------------------------------------------------------------------------

    def _bind(self) -> Server:
        with self._lock:
            if self._stopped:
                raise RuntimeError(
                    "this LocalBackend was stopped; create a new one (same db_path to keep data)"
                )
            if self._httpd is None:
                self._httpd = Server(self._app, self._host, self._port)
                logger.debug("local backend listening on %s", self.url)
            return self._httpd

    def start(self) -> LocalBackend:
        """Start serving in a daemon thread (idempotent).

        Returns:
            ``self``, so ``backend = LocalBackend().start()`` works.

        Raises:
            RuntimeError: The backend was already stopped.
            OSError: The address cannot be bound.
        """
        httpd = self._bind()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=httpd.serve,
                    name="xpander-local-backend",
                    daemon=True,
                )
                self._owns_thread = True
                self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until :meth:`stop` (from another thread) or Ctrl-C; then clean up.

        Meant for a command line; tests use :meth:`start`.

        Raises:
            RuntimeError: The backend is already serving in a thread, or was stopped.
        """
        httpd = self._bind()
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("already serving (start() was called)")
            self._thread = threading.current_thread()
        try:
            httpd.serve()
        except KeyboardInterrupt:
            logger.debug("local backend interrupted")
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving, close every connection and the store. Idempotent.

        A private temporary database (``db_path=None``) is deleted; a named ``db_path`` keeps its data.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            httpd, thread = self._httpd, self._thread
        self._hub.close()  # worker streams end now, not at their next poll
        if httpd is not None:
            if thread is not None and thread is not threading.current_thread():
                httpd.stop_serving()  # returns once the accept loop has ended
                if self._owns_thread:
                    thread.join(_STOP_JOIN_S)
            httpd.server_close()
            httpd.close_connections(_STOP_JOIN_S)
        self._store.close()
        logger.debug("local backend stopped")

    def __enter__(self) -> LocalBackend:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash).

        Raises:
            RuntimeError: The server is not bound yet (call :meth:`start`).
        """
        if self._httpd is None:
            raise RuntimeError("the local backend is not started")
        address = self._httpd.server_address
        host, port = str(address[0]), address[1]
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in str(host):
            host = f"[{host}]"
        return f"http://{host}:{port}"

    # -- read-only helpers for tests ---------------------------------------------------------------

    @property
    def requests_log(self) -> list[dict[str, Any]]:
        """Every request that reached routing (newest last), as dicts.

        Requests rejected while still being read (garbage request line, bad ``Content-Length``) are not
        listed.

        Keys: ``method``, ``path``, ``query`` (dict), ``headers`` (lower-case names; ``x-api-key`` and
        ``authorization`` values are ``"***"``), ``body`` (parsed JSON; ``None`` when empty; the raw text when
        not JSON), ``status`` (the response status) and ``client_port`` (the peer's port: equal ports mean a
        reused connection).
        """
        return self._app.requests_log()

    def tasks(self) -> list[dict[str, Any]]:
        """Return every stored Task JSON, oldest first.

        Returns:
            A list of Task JSON dicts.
        """
        return self._store.list_tasks()

    def reports(self) -> list[dict[str, Any]]:
        """Return every external-task report as ``{"id", "agent_id", "body", "received_at"}``.

        Returns:
            A list of report dicts, oldest first.
        """
        return self._store.list_reports()

    def events(self, task_id: Optional[str] = None) -> list[dict[str, Any]]:
        """Return pushed events as ``{"task_id", "event", "received_at"}``, optionally for one task.

        Args:
            task_id: Only the events of this task; ``None`` for every task.

        Returns:
            A list of event dicts, oldest first.
        """
        return self._store.list_events(task_id)

    def tool_calls(self) -> list[dict[str, Any]]:
        """Return tool calls as ``{"agent_id", "tool_id", "method", "headers", "body", "received_at"}``.

        ``headers`` holds only the tool headers that were sent (``x-agent-version``, ``x-execution-id``,
        ``x-preflight-check``, ``x-tool-call-id``).

        Returns:
            A list of tool-call dicts, oldest first.
        """
        return self._store.list_tool_calls()

    def memories(self, agent_id: Optional[str] = None) -> list[dict[str, Any]]:
        """Return the agents' stored memories (``_local_memories`` starting rows once read, and every write).

        Args:
            agent_id: Only this agent's memories; ``None`` for every agent's.

        Returns:
            Memory rows (``memory_id``, ``memory``, ``scope``, ``user_id``, ``writer_agent_id``,
            ``writer_agent_name``, ``updated_at``), oldest first.
        """
        return self._store.list_memories(agent_id)

    def metrics(self) -> list[dict[str, Any]]:
        """Return execution-metrics reports as ``{"agent_id", "body", "received_at"}``.

        Returns:
            A list of metrics dicts, oldest first.
        """
        return self._store.list_metrics()

    def workers(self, *, connected: Optional[bool] = None) -> list[dict[str, Any]]:
        """Return the worker streams opened on this backend (oldest first), optionally only (dis)connected ones.

        Keys: ``id``, ``agent_id``, ``environment``, ``connected``, ``is_busy`` (last capacity update),
        ``heartbeats`` (count), ``last_heartbeat`` (the datetime string sent), ``capacity_updates`` (every
        ``is_busy`` received, in order), ``finished``, ``delivered`` (task ids sent on the stream, in order),
        ``connected_at`` and ``disconnected_at`` (epoch seconds).

        Args:
            connected: ``True`` for open streams only, ``False`` for closed ones only, ``None`` for all.

        Returns:
            A list of worker snapshot dicts (copies).
        """
        return self._hub.workers(connected)

    def disconnect_workers(self, *, abrupt: bool = False) -> int:
        """End every open worker stream (the workers are expected to reconnect), as a platform restart would.

        Args:
            abrupt: Cut the TCP connection instead of ending the stream cleanly.

        Returns:
            How many streams were open.
        """
        return self._hub.disconnect(abrupt=abrupt)

    # -- MCP login -----------------------------------------------------------------------------------

    def complete_login(
        self,
        state: Optional[str] = None,
        *,
        user_id: Optional[str] = None,
        server_url: Optional[str] = None,
        token: Optional[str] = None,
    ) -> str:
        """Finish an MCP OAuth login, as if the user completed it in a browser.

        Either pass the ``state`` of a login URL handed out by ``get_token`` (``login_required``), or
        ``user_id`` and ``server_url`` directly (no pending login needed). The next ``get_token`` for that
        user and server answers ``token_ready``.

        Args:
            state: The ``state`` query value of the login URL.
            user_id: The user id as used in the ``get_token`` route (used when ``state`` is omitted).
            server_url: The MCP server URL (used when ``state`` is omitted).
            token: The access token to issue; a random one when omitted.

        Returns:
            The issued access token.

        Raises:
            ValueError: Neither ``state`` nor both ``user_id`` and ``server_url`` were given.
            KeyError: ``state`` is unknown.
        """
        return self._mcp.complete_login(state, user_id=user_id, server_url=server_url, token=token)
