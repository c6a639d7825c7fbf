"""The agent model, as :meth:`Agents.get <xpander_sync.Agents.get>` returns it.

Attribute names are the wire names. Unknown keys from the platform are ignored.
Secrets (``llm_credentials.value``, MCP ``api_key``/``client_secret``) are
:class:`~xpander_sync.Secret` values, hidden from ``repr``.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import attrs

from .._async import async_twin
from .._redact import Secret, masked_repr, masked_values, to_secret, url_repr
from ._handle import AgentClient, handle_field, require_handle
from .common import MCPServerAuthType, MCPServerTransport, MCPServerType, OutputFormat

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Configuration
    from .task import Task, User


@attrs.define
class LLMCredentials:
    """A custom LLM key stored on the platform. ``value`` is a Secret."""

    name: str
    value: Secret = attrs.field(converter=Secret)
    description: Optional[str] = None


@attrs.define
class AgnoSettings:
    """Agno-specific settings (defaults as in the current official release)."""

    session_storage: bool = True
    learning: bool = False
    user_memories: bool = False
    agentic_memory: bool = False
    agent_memories: bool = False
    agentic_culture: bool = False
    session_summaries: bool = False
    num_history_runs: Optional[int] = 50
    max_tool_calls_from_history: Optional[int] = None
    tool_call_limit: Optional[int] = None
    coordinate_mode: bool = False
    pii_detection_enabled: bool = False
    pii_detection_mask: bool = True
    prompt_injection_detection_enabled: bool = False
    openai_moderation_enabled: bool = False
    openai_moderation_categories: Optional[List[str]] = None
    reasoning_tools_enabled: bool = True


@attrs.define
class AgentInstructions:
    """The agent's role lines, goals and general description."""

    role: List[str] = attrs.field(factory=list)
    goal: List[str] = attrs.field(factory=list)
    general: str = ""
    dynamic_prompt_enabled: bool = False
    dynamic_prompt_code: Optional[str] = None
    dynamic_prompt_position: Optional[str] = "after"

    @property
    def description(self) -> str:
        """The general description."""
        return self.general

    @property
    def goal_str(self) -> str:
        """Goals joined with newlines."""
        return "\n".join(self.goal)

    @property
    def instructions(self) -> str:
        """The instruction text the official SDK builds (role list repr and goals, same whitespace)."""
        blocks = ""
        if self.role:
            blocks += f"\n        <instructions>\n            {self.role!r}\n        </instructions>"
        if self.goal:
            blocks += f"\n        <goals>\n            {self.goal_str}\n        </goals>"
        return f"{blocks}\n        " if blocks else ""


def _coerce_transport(server: MCPServerDetails) -> None:
    if server.type == MCPServerType.LOCAL:
        server.transport = MCPServerTransport.STDIO
    elif server.transport in (None, MCPServerTransport.STDIO):
        server.transport = MCPServerTransport.STREAMABLE_HTTP


@attrs.define
class MCPServerDetails:
    """An MCP server attached to an agent (a graph item of type ``mcp``) or a task.

    A local server always uses stdio; a remote one SSE or streamable HTTP (the official
    model defaults local servers to streamable-http, which agno rejects).
    """

    type: MCPServerType = MCPServerType.REMOTE
    name: Optional[str] = None
    command: Optional[str] = None
    url: Optional[str] = attrs.field(default=None, repr=url_repr)
    transport: Optional[MCPServerTransport] = MCPServerTransport.STREAMABLE_HTTP
    auth_type: MCPServerAuthType = MCPServerAuthType.NONE
    api_key: Optional[Secret] = attrs.field(default=None, converter=to_secret)
    use_secrets_manager: bool = False
    client_id: Optional[str] = None
    client_secret: Optional[Secret] = attrs.field(default=None, converter=to_secret)
    headers: Dict[str, Any] = attrs.field(factory=dict, repr=masked_values)
    env_vars: Dict[str, Any] = attrs.field(factory=dict, repr=masked_values)
    allowed_tools: List[str] = attrs.field(factory=list)
    additional_scopes: List[str] = attrs.field(factory=list)
    share_user_token_across_other_agents: bool = True
    id: Optional[str] = None
    sso_token: Optional[str] = attrs.field(default=None, repr=masked_repr)
    sso_audience: Optional[str] = None

    def __attrs_post_init__(self) -> None:
        _coerce_transport(self)


@attrs.define
class GraphItemSettings:
    """Settings of a graph item: overrides, MCP settings and the like."""

    instructions: Optional[str] = None
    description: Optional[str] = None
    schemas: Optional[Dict[str, Any]] = None
    advanced_filtering_options: Optional[Dict[str, Any]] = None
    hitl_options: Optional[Dict[str, Any]] = None
    a2a_options: Optional[Dict[str, Any]] = None
    coding_agent_settings: Optional[Dict[str, Any]] = None
    mcp_settings: Optional[MCPServerDetails] = None


@attrs.define
class GraphItem:
    """A node of the agent graph: a tool, an MCP server, a sub-agent, ..."""

    item_id: str
    type: str
    id: Optional[str] = None
    name: Optional[str] = None
    sub_type: Optional[str] = None
    targets: List[str] = attrs.field(factory=list)
    settings: Optional[GraphItemSettings] = None
    llm_settings: Optional[List[Dict[str, Any]]] = attrs.field(factory=list)
    is_first: Optional[bool] = False


@attrs.define
class Tool:
    """An xpander tool (an operation the agent can call), with its JSON-schema parameters."""

    id: str
    name: str
    method: str = ""
    path: str = ""
    description: str = ""
    parameters: Dict[str, Any] = attrs.field(factory=dict)
    should_add_to_graph: bool = False
    is_local: bool = False
    is_standalone: bool = False
    is_synced: bool = False
    schema_overrides: Optional[Dict[str, Any]] = None
    connector_id: Optional[str] = None
    operation_id: Optional[str] = None


@attrs.define
class KnowledgeBaseRef:
    """A knowledge base attached to the agent."""

    id: str
    rw: bool = False


def _sanitize(name: str) -> str:
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return out if re.match(r"[A-Za-z_]", out) else "_" + out


@attrs.define
class Agent:
    """An agent as configured on the platform.

    Build one with :meth:`xpander_sync.Agents.get` (or ``Backend``): the agent is then bound
    to the client that loaded it, which :meth:`create_task` uses.
    """

    id: str
    organization_id: str
    name: str
    unique_name: str
    framework: str
    model_provider: str
    model_name: str
    description: Optional[str] = None
    origin_template: Optional[str] = None
    environment_id: Optional[str] = None
    icon: Optional[str] = "🚀"
    connectivity_details: Optional[Dict[str, Any]] = attrs.field(factory=dict)
    deployment_type: Optional[str] = "serverless"
    source_nodes: List[Dict[str, Any]] = attrs.field(factory=list)
    access_scope: Optional[str] = "organizational"
    instructions: AgentInstructions = attrs.field(factory=AgentInstructions)
    graph: List[GraphItem] = attrs.field(factory=list)
    tools: List[Tool] = attrs.field(factory=list)
    status: Optional[str] = "ACTIVE"
    knowledge_bases: List[KnowledgeBaseRef] = attrs.field(factory=list)
    version: int = 1
    created_by: Optional[str] = None
    using_nemo: bool = False
    llm_reasoning_effort: Optional[str] = "medium"
    deep_planning: bool = True
    enforce_deep_planning: bool = True
    llm_api_base: Optional[str] = attrs.field(default=None, repr=url_repr)
    llm_extra_headers: Dict[str, Any] = attrs.field(factory=dict, repr=masked_values)
    webhook_url: Optional[str] = attrs.field(default=None, repr=url_repr)
    created_at: Optional[_dt.datetime] = None
    type: Optional[str] = None
    output_format: OutputFormat = OutputFormat.MARKDOWN
    voice_id: Optional[str] = None
    output_schema: Optional[Dict[str, Any]] = None
    llm_credentials: Optional[LLMCredentials] = None
    expected_output: Optional[str] = ""
    agno_settings: AgnoSettings = attrs.field(factory=AgnoSettings)
    orchestration_nodes: List[Any] = attrs.field(factory=list)
    notification_settings: Optional[Dict[str, Any]] = attrs.field(factory=dict)
    task_level_strategies: Optional[Dict[str, Any]] = None
    use_oidc_pre_auth: bool = False
    pre_auth_audiences: List[str] = attrs.field(factory=list)
    use_oidc_pre_auth_token_for_llm: bool = False
    oidc_pre_auth_token_llm_audience: Optional[str] = None
    oidc_pre_auth_token_mcp_audience: Optional[str] = None
    runtime_environment_id: Optional[str] = None
    is_omni: bool = False
    skills: List[Any] = attrs.field(factory=list)
    runtime_environment: Optional[Dict[str, Any]] = None
    use_agent_gateway: bool = False
    can_self_schedule: bool = True
    max_self_schedules: int = 3
    use_dynamic_tools: bool = False
    workspace_tools_enabled: bool = True
    live_surface_sharing_enabled: bool = True
    is_autonomous: bool = False
    discoverable: bool = True
    with_auto_context_management: bool = True
    developer_access: bool = True
    should_stage_before_publish: bool = False
    _handle: Any = handle_field()  # noqa: RUF009 (it returns an attrs.field)

    # -- derived views ---------------------------------------------------------------

    @property
    def configuration(self) -> Optional[Configuration]:
        """The configuration of the client this was loaded with (``None`` when built by hand; not on the wire)."""
        return getattr(self._handle, "configuration", None)

    @property
    def mcp_servers(self) -> List[MCPServerDetails]:
        """MCP settings of the graph items of type ``mcp`` (items without settings are skipped)."""
        return [
            item.settings.mcp_settings
            for item in self.graph
            if item.type == "mcp" and item.settings is not None and item.settings.mcp_settings is not None
        ]

    @property
    def sub_agents(self) -> List[str]:
        """Ids of the team members (graph items of type ``agent``), in graph order."""
        return [item.item_id for item in self.graph if item.type == "agent"]

    @property
    def is_a_team(self) -> bool:
        """Whether the agent leads a team (its graph has agent items)."""
        return any(item.type == "agent" for item in self.graph)

    @property
    def search_knowledge(self) -> bool:
        """Whether knowledge bases are attached."""
        return bool(self.knowledge_bases)

    @property
    def is_active(self) -> bool:
        """Whether the agent's status is ACTIVE."""
        return (self.status or "").upper() == "ACTIVE"

    @property
    def sanitized_name(self) -> str:
        """The name with every non ``[A-Za-z0-9_]`` character replaced by ``_``."""
        return _sanitize(self.name)

    def graph_item_for(self, server: MCPServerDetails) -> Optional[GraphItem]:
        """The graph item holding an MCP server (matched by id, else by unique URL).

        Args:
            server: one of the agent's (or a task's) MCP servers.

        Returns:
            The ``mcp`` graph item, or ``None`` when none matches (or several share the URL).
        """
        mcp_items = [i for i in self.graph if i.type == "mcp" and i.settings and i.settings.mcp_settings]
        if server.id:
            for item in mcp_items:
                if item.item_id == server.id or item.id == server.id:
                    return item
        matches = [i for i in mcp_items if i.settings.mcp_settings.url == server.url]  # type: ignore[union-attr]
        return matches[0] if len(matches) == 1 else None

    # -- delegates to the client that loaded this agent ------------------------------

    def create_task(
        self,
        prompt: str = "",
        *,
        existing_task_id: Optional[str] = None,
        file_urls: Optional[List[str]] = None,
        user_details: Optional[User] = None,
        agent_version: Optional[str] = None,
        **options: Any,
    ) -> Task:
        """Create a task for this agent (:meth:`Tasks.create <xpander_sync.Tasks.create>`).

        Args:
            prompt: the task's input text.
            existing_task_id: continue an existing task/thread.
            file_urls: URLs of input files.
            user_details: the user the task runs for.
            agent_version: sent as ``x-agent-version`` when given.
            **options: any other create-task body key (``output_format``, ``title``,
                ``instructions_override``, ``mcp_servers``, ...).

        Returns:
            The created :class:`~xpander_sync.Task`.

        Raises:
            InvalidInputError: an unknown option, or the agent was built by hand (not loaded).
            ModuleException: the platform refused or could not be reached.
        """
        client: AgentClient = require_handle(self, "create_task")
        return client.create_task(
            self.id,
            prompt,
            existing_task_id=existing_task_id,
            file_urls=[] if file_urls is None else file_urls,
            user_details=user_details,
            agent_version=agent_version,
            source=options.pop("source", "sdk"),
            **options,
        )

    acreate_task = async_twin(create_task)


@attrs.define
class AgentsListItem:
    """One entry of :meth:`Agents.list <xpander_sync.Agents.list>`."""

    id: str
    name: str
    organization_id: Optional[str] = None
    icon: Optional[str] = None
    instructions: Any = None
    status: Optional[str] = None
    created_at: Optional[_dt.datetime] = None
    description: Optional[str] = None
    access_scope: Optional[str] = "personal"
    created_by: Optional[str] = None
    type: Optional[str] = None
    _handle: Any = handle_field()  # noqa: RUF009 (it returns an attrs.field)

    @property
    def configuration(self) -> Optional[Configuration]:
        """The configuration of the client this was loaded with (``None`` when built by hand; not on the wire)."""
        return getattr(self._handle, "configuration", None)

    def load(self, version: Optional[int] = None) -> Agent:
        """Fetch the full agent.

        Args:
            version: a specific version (sent as ``x-agent-version``); default the latest.

        Returns:
            The :class:`Agent`, loaded through the client that listed this item.

        Raises:
            InvalidInputError: the item was built by hand (not listed by a client).
            NotFoundError: no such agent (or version).
            ModuleException: any other platform or transport failure.
        """
        client: AgentClient = require_handle(self, "load")
        return client.get(self.id, version=version)
