"""attrs models of the platform's JSON (no I/O here beyond thin methods that delegate to resources)."""

from .agent import (
    Agent,
    AgentInstructions,
    AgentsListItem,
    AgnoSettings,
    GraphItem,
    GraphItemSettings,
    KnowledgeBaseRef,
    LLMCredentials,
    MCPServerDetails,
    Tool,
)
from .common import (
    AgentDeploymentType,
    AgentExecutionStatus,
    Framework,
    MCPServerAuthType,
    MCPServerTransport,
    MCPServerType,
    OutputFormat,
    TaskUpdateEventType,
    ThinkMode,
)
from .events import TaskUpdateEvent
from .task import AgentExecutionInput, DeepPlanning, DeepPlanningItem, Task, User
from .tokens import ExecutionTokens, Tokens
from .tools import ToolInvocationResult

__all__ = [
    "Agent",
    "AgentDeploymentType",
    "AgentExecutionInput",
    "AgentExecutionStatus",
    "AgentInstructions",
    "AgentsListItem",
    "AgnoSettings",
    "DeepPlanning",
    "DeepPlanningItem",
    "ExecutionTokens",
    "Framework",
    "GraphItem",
    "GraphItemSettings",
    "KnowledgeBaseRef",
    "LLMCredentials",
    "MCPServerAuthType",
    "MCPServerDetails",
    "MCPServerTransport",
    "MCPServerType",
    "OutputFormat",
    "Task",
    "TaskUpdateEvent",
    "TaskUpdateEventType",
    "ThinkMode",
    "Tokens",
    "Tool",
    "ToolInvocationResult",
    "User",
]
