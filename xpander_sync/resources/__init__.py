"""Resources: every platform route, each a thin layer of pure request building around one transport call."""

from .agents import Agents
from .approvals import Approvals
from .events import Events
from .llm_routes import LLMRoutes
from .mcp import MCPAuth
from .metadata import Metadata
from .reports import Reports
from .tasks import Tasks
from .tools import Tools
from .workers import Workers

__all__ = ["Agents", "Approvals", "Events", "LLMRoutes", "MCPAuth", "Metadata", "Reports", "Tasks", "Tools", "Workers"]
