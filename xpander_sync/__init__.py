"""xpander-sync: a plain, blocking client for the xpander.ai Backend module.

>>> from xpander_sync import Backend            # doctest: +SKIP
>>> Backend().report_external_task(agent_id="agt-1", input="hi", result="hello")   # doctest: +SKIP

Every blocking call ``X`` has an async twin ``aX`` that runs it in a worker thread.
Importing this package imports no agent framework.
"""

import logging

from ._redact import Secret
from ._retry import RetryPolicy
from ._version import __version__
from .backend import Backend
from .config import Configuration
from .errors import (
    APIError,
    AuthenticationError,
    AuthenticationRequiredError,
    ConfigurationError,
    ConflictError,
    FrameworkNotInstalledError,
    InvalidInputError,
    MissingAgentError,
    ModuleException,
    NotFoundError,
    OutboxError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ResponseDecodeError,
    ServerError,
    TransportError,
    UnsupportedFrameworkError,
    XpanderError,
)
from .handlers import on_auth_event, on_boot, on_shutdown, on_task
from .models import (
    Agent,
    AgentDeploymentType,
    AgentExecutionInput,
    AgentExecutionStatus,
    AgentsListItem,
    AgnoSettings,
    ExecutionTokens,
    Framework,
    LLMCredentials,
    MCPServerAuthType,
    MCPServerDetails,
    MCPServerTransport,
    MCPServerType,
    OutputFormat,
    Task,
    TaskUpdateEvent,
    TaskUpdateEventType,
    ThinkMode,
    Tokens,
    Tool,
    ToolInvocationResult,
    User,
)
from .reporting import FlushResult, QueuedReport
from .resources import Agents, Reports, Tasks

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "APIError",
    "Agent",
    "AgentDeploymentType",
    "AgentExecutionInput",
    "AgentExecutionStatus",
    "Agents",
    "AgentsListItem",
    "AgnoSettings",
    "AuthenticationError",
    "AuthenticationRequiredError",
    "Backend",
    "Configuration",
    "ConfigurationError",
    "ConflictError",
    "ExecutionTokens",
    "FlushResult",
    "Framework",
    "FrameworkNotInstalledError",
    "InvalidInputError",
    "LLMCredentials",
    "MCPServerAuthType",
    "MCPServerDetails",
    "MCPServerTransport",
    "MCPServerType",
    "MissingAgentError",
    "ModuleException",
    "NotFoundError",
    "OutboxError",
    "OutputFormat",
    "PermissionDeniedError",
    "QueuedReport",
    "RateLimitError",
    "Reports",
    "RequestTimeoutError",
    "ResponseDecodeError",
    "RetryPolicy",
    "Secret",
    "ServerError",
    "Task",
    "TaskUpdateEvent",
    "TaskUpdateEventType",
    "Tasks",
    "ThinkMode",
    "Tokens",
    "Tool",
    "ToolInvocationResult",
    "TransportError",
    "UnsupportedFrameworkError",
    "User",
    "XpanderError",
    "__version__",
    "on_auth_event",
    "on_boot",
    "on_shutdown",
    "on_task",
]
