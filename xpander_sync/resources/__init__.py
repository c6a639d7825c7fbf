"""Resources: every platform route, each a thin layer of pure request building around one transport call."""

from .agents import Agents
from .events import Events
from .knowledge import KnowledgeBases
from .mcp import MCPAuth
from .memories import Memories
from .metadata import Metadata
from .prompts import Prompts
from .reports import Reports
from .tasks import Tasks
from .tools import Tools
from .workers import Workers

__all__ = [
    "Agents", "Events", "KnowledgeBases", "MCPAuth", "Memories", "Metadata", "Prompts", "Reports", "Tasks", "Tools",
    "Workers",
]
