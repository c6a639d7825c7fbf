"""Resources: every platform route, each a thin layer of pure request building around one transport call."""

from .agents import Agents
from .approvals import Approvals
from .events import Events
from .knowledge import KnowledgeBases
from .llm_routes import LLMRoutes
from .mcp import MCPAuth
from .memories import Memories
from .metadata import Metadata
from .prompts import Prompts
from .reports import Reports
from .tasks import Tasks
from .tools import Tools
from .workers import Workers

__all__ = [
    "Agents", "Approvals", "Events", "KnowledgeBases", "LLMRoutes", "MCPAuth", "Memories", "Metadata", "Prompts",
    "Reports", "Tasks", "Tools", "Workers",
]
