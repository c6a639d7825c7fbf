"""A local, xpander-compatible HTTP backend (standard library only).

Serve the REST routes of the xpander.ai Backend module from a folder of agent JSON files and a SQLite file,
for tests, demos and offline development::

    from xpander_sync.local import LocalBackend

    with LocalBackend(api_key="local-key") as backend:
        ...  # point the client at backend.url

See :class:`LocalBackend` for the routes and the helpers tests can inspect.
"""

from __future__ import annotations

from .server import LocalBackend, ToolError, sample_agents_dir

__all__ = ["LocalBackend", "ToolError", "sample_agents_dir"]
