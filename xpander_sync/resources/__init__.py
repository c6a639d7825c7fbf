"""Resources: every platform route, each a thin layer of pure request building around one transport call."""

from .agents import Agents
from .reports import Reports
from .tasks import Tasks
from .workers import Workers

__all__ = ["Agents", "Reports", "Tasks", "Workers"]
