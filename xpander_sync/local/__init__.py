"""A local, xpander-compatible HTTP backend (standard library only).

Serve the REST routes of the xpander.ai Backend module from a folder of agent JSON files and a SQLite file,
for tests, demos and offline development::

    from xpander_sync.local import LocalBackend

    with LocalBackend(api_key="local-key") as backend:
        ...  # point the client at backend.url

See :class:`LocalBackend` for the routes and the helpers tests can inspect, and
:mod:`xpander_sync.local.server` for how the package is laid out. :class:`~xpander_sync.errors.ToolError` is
re-exported here for tool handlers.
"""

from __future__ import annotations

from ..errors import ToolError
from .server import LocalBackend, sample_agents_dir

__all__ = ["LocalBackend", "ToolError", "sample_agents_dir"]
