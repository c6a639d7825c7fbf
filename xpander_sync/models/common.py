"""Enumerations shared by the models.

All are *open* string enums: a value the platform adds later structures into a
pseudo-member instead of failing (``OutputFormat("pdf").value == "pdf"``), so a new
server release does not break old clients.
"""

from __future__ import annotations

import enum
from typing import Any


class OpenStrEnum(str, enum.Enum):
    """A ``str`` enum that accepts unknown values as pseudo-members."""

    @classmethod
    def _missing_(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return None
        member = str.__new__(cls, value)
        member._name_ = value.upper().replace("-", "_")
        member._value_ = value
        return member

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def known(cls) -> list[str]:
        """The values this version of the library knows.

        Returns:
            The members' values, in definition order (pseudo-members are not included).
        """
        return [m.value for m in cls]


class OutputFormat(OpenStrEnum):
    """How an agent or a task formats its result."""

    TEXT = "text"
    MARKDOWN = "markdown"
    JSON = "json"
    VOICE = "voice"


class AgentExecutionStatus(OpenStrEnum):
    """The status of a task (an agent execution)."""

    PENDING = "pending"
    EXECUTING = "executing"
    PAUSED = "paused"
    ERROR = "error"
    FAILED = "failed"
    COMPLETED = "completed"
    STOPPED = "stopped"


class ThinkMode(OpenStrEnum):
    """How hard the agent should think."""

    DEFAULT = "default"
    HARDER = "harder"


class AgentDeploymentType(OpenStrEnum):
    """Where an agent runs."""

    SERVERLESS = "serverless"
    CONTAINER = "container"


class Framework(OpenStrEnum):
    """The agent framework configured on the platform."""

    AGNO = "agno"
    GOOGLE_ADK = "google-adk"
    LANGCHAIN = "langchain"
    OPEN_AI_AGENTS = "open-ai-agents"
    STRANDS_AGENTS = "strands-agents"
    OPEN_CLAW = "open-claw"


class MCPServerType(OpenStrEnum):
    """Whether an MCP server runs locally (a command) or remotely (a URL)."""

    LOCAL = "local"
    REMOTE = "remote"


class MCPServerTransport(OpenStrEnum):
    """How to talk to an MCP server."""

    STDIO = "stdio"
    SSE = "sse"
    STREAMABLE_HTTP = "streamable-http"


class MCPServerAuthType(OpenStrEnum):
    """How an MCP server authenticates."""

    API_KEY = "api_key"
    OAUTH2 = "oauth2"
    CUSTOM_HEADERS = "custom_headers"
    NONE = "none"
    SSO_USER = "sso_user"


class TaskUpdateEventType(OpenStrEnum):
    """Kinds of task events."""

    TASK_CREATED = "task_created"
    TASK_UPDATED = "task_updated"
    TASK_FINISHED = "task_finished"
    CHUNK = "chunk"
    AUTH_EVENT = "auth_event"
    TOOL_CALL_REQUEST = "tool_call_request"
    TOOL_CALL_RESULT = "tool_call_result"
    SUB_AGENT_TRIGGER = "sub_agent_trigger"
    THINK = "think"
    ANALYZE = "analyze"
    PLAN_UPDATED = "plan_updated"
    TASK_COMPACTIZATION = "task_compactization"
