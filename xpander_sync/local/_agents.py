"""The agents the local backend serves: loaded from a folder of JSON files, kept in memory, by id and version.

Agents come from ``*.json`` files (one agent object per file, keyed by its ``id``; older versions may sit in
``{id}@{version}.json`` files, the highest ``version`` is the latest). The agent JSON is served as given, except
keys starting with ``_local``, which configure the local backend and are stripped from responses
(``_payloads.public_agent``).
"""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any, Optional

from . import _payloads as payloads
from ._routing import HTTPError


def sample_agents_dir() -> Path:
    """Return the folder of bundled sample agents (``agt-openai``, ``agt-anthropic``, ``agt-team``, …).

    Returns:
        The absolute path of the ``sample_agents`` folder shipped with the package.
    """
    return Path(__file__).resolve().parent / "sample_agents"


class AgentCatalog:
    """Every version of every agent, thread-safe.

    Args:
        organization_id: The organization of agents whose JSON has none.
    """

    def __init__(self, organization_id: str) -> None:
        self.organization_id = organization_id
        self._lock = threading.Lock()
        self._agents: dict[str, dict[int, dict[str, Any]]] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._agents)

    def load_dir(self, folder: Path) -> None:
        """Add every ``*.json`` agent file of ``folder`` (sorted by name).

        Args:
            folder: The folder to read.

        Raises:
            FileNotFoundError: ``folder`` is not a folder.
            ValueError: A file is not a JSON object with a string ``id`` and an integer ``version``.
        """
        if not folder.is_dir():
            raise FileNotFoundError(f"agents_dir is not a folder: {folder}")
        for file in sorted(folder.glob("*.json")):
            try:
                agent = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"{file.name}: not a readable JSON file ({exc.__class__.__name__})") from None
            try:
                self.add(agent)
            except ValueError as exc:
                raise ValueError(f"{file.name}: {exc}") from None

    def add(self, agent: dict[str, Any]) -> None:
        """Add (or replace) one version of an agent (a deep copy).

        Args:
            agent: The agent JSON; needs a string ``id``; ``version`` (integer) defaults to 1.

        Raises:
            ValueError: ``agent`` is not an object with a string ``id``, or ``version`` is not an integer.
        """
        if not isinstance(agent, dict) or not isinstance(agent.get("id"), str) or not agent["id"]:
            raise ValueError("an agent must be a JSON object with a non-empty string 'id'")
        version = payloads.agent_version(agent)
        with self._lock:
            self._agents.setdefault(agent["id"], {})[version] = copy.deepcopy(agent)

    def get(self, agent_id: str, version_header: Optional[str] = None) -> dict[str, Any]:
        """Return an agent: the version an ``x-agent-version`` header names, or the latest.

        Args:
            agent_id: The agent id.
            version_header: The ``x-agent-version`` value; ``None`` or blank for the latest.

        Returns:
            The stored agent JSON (not a copy; do not modify it).

        Raises:
            HTTPError: 404 for an unknown agent or version, 400 for a version that is not an integer.
        """
        with self._lock:
            versions = self._agents.get(agent_id)
            if not versions:
                raise HTTPError(404, "Agent not found")
            if version_header is None or version_header.strip() == "":
                return versions[max(versions)]
            try:
                version = int(version_header.strip())
            except ValueError:
                raise HTTPError(400, "x-agent-version must be an integer") from None
            if version not in versions:
                raise HTTPError(404, "Agent version not found")
            return versions[version]

    def latest(self) -> list[dict[str, Any]]:
        """Return the latest version of every agent, sorted by id.

        Returns:
            The stored agent JSON dicts (not copies).
        """
        with self._lock:
            return [versions[max(versions)] for _, versions in sorted(self._agents.items())]

    def org(self, agent: dict[str, Any]) -> str:
        """Return the organization of an agent (its own, or the default).

        Args:
            agent: The agent JSON.

        Returns:
            The organization id.
        """
        return str(agent.get("organization_id") or self.organization_id)
