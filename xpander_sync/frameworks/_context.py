"""What a framework adapter may ask of the platform while it builds arguments.

An adapter never talks HTTP itself: it receives a :class:`BuildContext` bound to one
``get_args`` call (its configuration, transport, caches, the caller's auth callback),
so the identity used by a tool call or an OAuth flow is always *this* call's agent and
task, never shared state (the official SDK reads a "current task" from its
configuration at call time, which leaks between concurrent tasks).
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional

from .._async import call_maybe_async
from .._converter import structure
from .._redact import Secret, scrub
from ..config import Configuration
from ..errors import AuthenticationRequiredError, ModuleException, ResponseDecodeError, XpanderError
from ..handlers import auth_event_handlers
from ..models.agent import Agent, MCPServerDetails
from ..models.common import MCPServerAuthType, TaskUpdateEventType
from ..models.events import TaskUpdateEvent
from ..models.task import Task
from ..resources import Agents, Events, MCPAuth, Metadata, Tools
from ..resources._base import check_id
from ..transport import Transport
from ._toolcall import ToolCall, ToolCalls

logger = logging.getLogger(__name__)

AuthCallback = Callable[[Optional[Agent], Task, Any], Any]

#: A user_tokens header map replaces the server headers and suppresses the bearer token.
_BYPASS = "__bypass__"
_NO_TOKEN = "__none__"
_HANDLER_TIMEOUT = 60.0


def sanitize_headers(value: Any) -> Dict[str, str]:
    """Header dicts from the platform: string keys, non-blank values, stripped; anything else → ``{}``."""
    if not isinstance(value, dict):
        return {}
    out: Dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key.strip() or item is None:
            continue
        text = str(item).strip()
        if text:
            out[key.strip()] = text
    return out


class BuildContext:
    """Platform access for one ``get_args`` call.

    Args:
        transport: the backend's transport (its caches are shared by every call).
        auth_events_callback: the per-call auth callback, if any.
        is_async: the call came from an async twin (``aget_args``).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        auth_events_callback: Optional[AuthCallback] = None,
        is_async: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.auth_events_callback = auth_events_callback
        self.is_async = is_async
        self._sleep = sleep
        self._clock = clock
        self._agents = Agents(transport.configuration, transport=transport)
        self._metadata = Metadata(transport.configuration, transport=transport)
        self._tools = Tools(transport.configuration, transport=transport)
        self._mcp_auth = MCPAuth(transport.configuration, transport=transport)
        self._events = Events(transport.configuration, transport=transport)
        self._toolcalls: Optional[ToolCalls] = None

    @property
    def configuration(self) -> Configuration:
        """The configuration of this call."""
        return self.transport.configuration

    # -- agents ------------------------------------------------------------------------

    def load_agent(self, agent_id: str, version: Optional[int] = None) -> Agent:
        """A fresh :class:`Agent`; its raw payload comes from the TTL cache when warm.

        Every call structures a new object, so callers may modify it freely. When the
        platform cannot be reached (or answers 5xx/429) and a copy fetched within
        ``agent_max_staleness`` exists, that copy is used, with a warning.
        """
        check_id("agent_id", agent_id)
        key = (agent_id, str(version) if version else "latest")
        cache = self.transport.caches.agents
        try:
            raw = cache.get_or_load(key, lambda: self._agents.get_raw(agent_id, version))
        except ModuleException as exc:
            # Stale-if-error: keep a web app answering through a platform outage.
            stale = cache.get_stale(key) if exc.retryable else None
            if stale is None:
                raise
            age, raw = stale
            logger.warning(
                "agent %s: the platform failed (%s); using the copy fetched %.0f s ago", agent_id, exc, age
            )
        return self._agents.bind(structure(raw, Agent))

    def load_agents(self, agent_ids: List[str]) -> List[Agent]:
        """Several agents (team members), fetched concurrently, in the given order."""
        if len(agent_ids) <= 1:
            return [self.load_agent(i) for i in agent_ids]
        with ThreadPoolExecutor(max_workers=min(8, len(agent_ids)), thread_name_prefix="xpander-members") as pool:
            return list(pool.map(self.load_agent, agent_ids))

    # -- metadata ----------------------------------------------------------------------

    def org_llm_headers(self) -> Dict[str, str]:
        """The organization's default LLM extra headers (:meth:`Metadata.default_llm_extra_headers`).

        Cached for ``metadata_cache_ttl``. Fail-open: on an error the build goes on without
        them, with a warning (the official SDK aborts get_args with a raw httpx error).
        """

        def fetch() -> Dict[str, str]:
            return sanitize_headers(self._metadata.default_llm_extra_headers())

        try:
            return dict(self.transport.caches.org_headers.get_or_load("org", fetch))
        except ModuleException as exc:
            logger.warning("organization LLM headers unavailable, building without them: %s", exc)
            return {}

    def db_connection_uri(self, agent: Agent) -> str:
        """The agent's session-storage URI (:meth:`Agents.db`), cached for ``metadata_cache_ttl``.

        The URI holds a password: it is never logged. Like agents, a copy fetched within
        ``agent_max_staleness`` is used when the platform fails.

        Raises:
            ResponseDecodeError: the platform returned no ``connection_uri.uri``.
            ModuleException: the request failed.
        """

        def fetch() -> str:
            data = self._agents.db(agent.id)
            uri = None
            if isinstance(data, dict) and isinstance(data.get("connection_uri"), dict):
                uri = data["connection_uri"].get("uri")
            if not isinstance(uri, str) or not uri.strip():
                raise ResponseDecodeError("AgentDB", ["connection_uri.uri missing or empty @ $.connection_uri.uri"])
            return uri.strip()

        cache = self.transport.caches.db
        try:
            return cache.get_or_load(agent.id, fetch)
        except ModuleException as exc:
            stale = cache.get_stale(agent.id) if exc.retryable else None
            if stale is None:
                raise
            logger.warning("agent %s: the platform failed (%s); using the DB address fetched %.0f s ago",
                           agent.id, exc, stale[0])
            return str(stale[1])

    # -- tools -------------------------------------------------------------------------

    def invoke_tool(self, agent: Agent, task: Optional[Task], tool_id: str, payload: Dict[str, Any], *,
                    arguments: Any = None, tool_name: Optional[str] = None,
                    graph_node_id: Optional[str] = None) -> Any:
        """Call an xpander tool for *this* agent and task, through the tool-call layer.

        :meth:`~._toolcall.ToolCalls.run`: ``Tools.invoke`` with the agent's version, the
        task's id and the call's ``x-tool-call-id``; transient failures retried twice (1.5 s,
        then 3 s); the agent's approval rules honoured; ``tool_call_request`` /
        ``tool_call_result`` activity events queued for the task (delivered in the background).
        Never raises for a platform or network failure: the result then has ``is_error=True``
        and the message, so the LLM can react.

        Args:
            agent: the agent the tool belongs to.
            task: the task the call is made for, or ``None``.
            tool_id: the tool (operation) id.
            payload: the body to send.
            arguments: the model's arguments (shown in the activity events; default ``payload``).
            tool_name: the tool's name for the events (default ``tool_id``).
            graph_node_id: the agent graph node of the tool, for the events.

        Returns:
            A :class:`~xpander_sync.models.tools.ToolInvocationResult`.
        """
        if self._toolcalls is None:
            self._toolcalls = ToolCalls(self.transport, sleep=self._sleep, clock=self._clock)
        call = ToolCall(tool_id, payload, payload if arguments is None else arguments, tool_name or tool_id,
                        graph_node_id)
        return self._toolcalls.run(agent, task, call)

    # -- MCP ---------------------------------------------------------------------------

    def mcp_headers(self, agent: Agent, task: Optional[Task], server: MCPServerDetails) -> Dict[str, str]:
        """Headers to reach a remote MCP server, token included. ``server`` is not modified.

        Token order (the reference's): the OIDC MCP-audience token; for ``oauth2`` servers a
        token from ``task.user_tokens[<graph item id>]`` (a dict replaces the headers), else
        the OAuth flow for the task's user; for every server, ``user_tokens`` entries; a
        static ``api_key``. The bearer goes into ``Authorization``. A token the OAuth flow
        gets (``token_ready``) is kept in memory, as a :class:`~xpander_sync.Secret`, per
        ``(agent id, token user id, server id, server url)`` for ``agent_cache_ttl`` (``0``: never),
        so a warm build asks nothing and pushes no event; another user's task runs its own flow,
        and a login required or a failure is not cached.

        Raises:
            AuthenticationRequiredError: an OAuth server and no task user, a token issue, or
                the login did not complete within ``mcp_auth_timeout``.
        """
        headers = {str(k): str(v) for k, v in (server.headers or {}).items()}
        api_key = server.api_key.reveal() if server.api_key else None
        item = agent.graph_item_for(server)
        token_key = (item.id or item.item_id) if item is not None else server.id
        user_tokens = task.user_tokens if task is not None and isinstance(task.user_tokens, dict) else {}
        used_user_token = False

        oidc_handled = False
        oidc = user_tokens.get("oidc_tokens")
        if agent.pre_auth_audiences and agent.oidc_pre_auth_token_mcp_audience and isinstance(oidc, dict):
            token = oidc.get(agent.oidc_pre_auth_token_mcp_audience)
            if token:
                oidc_handled = True
                if isinstance(token, str) and token != _NO_TOKEN:
                    api_key = token

        if server.auth_type == MCPServerAuthType.OAUTH2 and not oidc_handled:
            supplied = user_tokens.get(token_key) if token_key else None
            if isinstance(supplied, dict):
                headers, api_key, used_user_token = sanitize_headers(supplied), _BYPASS, True
            elif isinstance(supplied, str) and supplied:
                api_key, used_user_token = supplied, True
            if not api_key:
                api_key = self._oauth_token(agent, task, server)

        if not used_user_token and token_key and token_key in user_tokens:
            supplied = user_tokens[token_key]
            if isinstance(supplied, dict):
                headers = sanitize_headers(supplied)
            elif isinstance(supplied, str) and supplied and not api_key:
                api_key = supplied

        if api_key and api_key != _BYPASS:
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    def _oauth_token(self, agent: Agent, task: Optional[Task], server: MCPServerDetails) -> str:
        label = server.name or server.url or "MCP server"
        user = task.input.user if task is not None else None
        if task is None or user is None or not user.id:
            raise AuthenticationRequiredError(
                f"MCP server {label!r} uses OAuth and needs a user: pass task= with task.input.user.id set",
                server=label,
            )
        uid = user.id if server.share_user_token_across_other_agents else f"{task.agent_id}_{user.id}"
        cache = self.transport.caches.mcp_tokens
        cache_key = (task.agent_id, uid, server.id or "", server.url or "")
        cached = cache.get(cache_key)
        if isinstance(cached, Secret):  # warm: no lookup, no event
            return cached.reveal()
        deadline = self._clock() + self.configuration.mcp_auth_timeout
        login_url: Optional[str] = None
        generate = True
        while True:
            answer = self._mcp_auth.get_token(
                task.agent_id, uid, server, execution_id=task.id, generate_login_url=generate
            )
            kind = answer.get("type")
            data: Dict[str, Any] = answer["data"] if isinstance(answer.get("data"), dict) else {}
            if kind == "token_ready" and isinstance(data.get("access_token"), str) and data["access_token"]:
                token: str = data["access_token"]
                event_data = {
                    "type": "token_ready",
                    "data": {"access_token": "REDACTED", "server_url": server.url, "server_name": server.name},
                }
                self.push_auth_event(agent, task, event_data)
                cache.put(cache_key, Secret(token))
                return token
            if kind == "login_required" and generate:
                login_url = data.get("url") if isinstance(data.get("url"), str) else None
                self.push_auth_event(agent, task, {"type": "login_required", "data": dict(data)})
                generate = False
            elif kind in ("token_issue", "not_supported") and generate:
                message = data["message"] if isinstance(data.get("message"), str) else str(kind)
                raise AuthenticationRequiredError(
                    f"MCP server {label!r} authentication failed: {scrub(message, self.transport.secrets)}",
                    server=label,
                )
            elif kind not in ("login_required", "token_issue", "token_ready", "not_supported"):
                raise ResponseDecodeError("MCP token response", ["unknown type @ $.type"])
            if self._clock() >= deadline:
                raise AuthenticationRequiredError(
                    f"MCP server {label!r} needs a login that did not complete within "
                    f"{self.configuration.mcp_auth_timeout:g} s: open the login URL from the auth event "
                    "and call get_args again (or raise Configuration(mcp_auth_timeout=...))",
                    server=label,
                    login_url=login_url,
                )
            self._sleep(self.configuration.mcp_auth_poll_interval)

    # -- events ------------------------------------------------------------------------

    def push_auth_event(self, agent: Agent, task: Task, data: Dict[str, Any]) -> TaskUpdateEvent:
        """Push an ``auth_event`` for the task, then deliver it to the handlers.

        Pushed with :meth:`Events.push` (a one-element array). The per-call
        callback and every ``@on_auth_event`` handler each run once (a function registered
        both ways runs once); a failing push or handler is logged and the others still run.
        """
        event = TaskUpdateEvent(
            type=TaskUpdateEventType.AUTH_EVENT,
            task_id=task.id,
            organization_id=task.organization_id,
            time=_dt.datetime.now(_dt.timezone.utc),
            data=data,
        )
        try:
            self._events.push(task.id, [event])
        except XpanderError as exc:
            logger.warning("could not push the auth event for task %s: %s", task.id, exc)
        handlers: List[Callable[..., Any]] = []
        if self.auth_events_callback is not None:
            handlers.append(self.auth_events_callback)
        for handler in auth_event_handlers.handlers():
            if handler not in handlers:
                handlers.append(handler)
        for handler in handlers:
            try:
                call_maybe_async(handler, agent, task, event, timeout=_HANDLER_TIMEOUT)
            except Exception as exc:  # a user handler: log and go on
                logger.warning(
                    "auth event handler %s raised %s; continuing",
                    getattr(handler, "__qualname__", handler), type(exc).__name__,
                )
        return event
