"""Resources: each a thin layer of pure request building and parsing around one transport call."""

from .agents import Agents
from .events import Events
from .mcp import MCPAuth
from .metadata import Metadata
from .tasks import Tasks
from .tools import Tools

__all__ = ["Agents", "Events", "MCPAuth", "Metadata", "Tasks", "Tools"]
