"""Resources: each a thin layer of pure request building and parsing around one transport call."""

from .agents import Agents
from .tasks import Tasks
from .workers import Workers

__all__ = ["Agents", "Tasks", "Workers"]
