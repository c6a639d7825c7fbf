"""``Agents``: load and list agents."""

from __future__ import annotations

from typing import Dict, List, Optional, Union

from .._async import async_twin
from ..config import ENV_AGENT_ID
from ..errors import InvalidInputError, MissingAgentError, ResponseDecodeError
from ..models.agent import Agent, AgentsListItem
from ._base import Resource


def version_header(version: Union[int, str, None]) -> Dict[str, str]:
    """``{"x-agent-version": "N"}`` when a version is given (0/None/"" send nothing, as upstream).

    Args:
        version: the agent version, as an int or a numeric string.

    Returns:
        The headers to send (possibly empty).

    Raises:
        InvalidInputError: ``version`` is a bool or neither an int nor a string.
    """
    if version is None or version == "" or version == 0:
        return {}
    if isinstance(version, bool) or not isinstance(version, (int, str)):
        raise InvalidInputError("agent_version must be an int or a numeric string")
    return {"x-agent-version": str(version)}


def check_id(name: str, value: object) -> str:
    """Validate an id that goes into a URL path.

    Args:
        name: the argument's name, used in the message.
        value: the id to check.

    Returns:
        ``value`` unchanged.

    Raises:
        InvalidInputError: ``value`` is not a non-empty string, or contains ``/``, ``?`` or ``#``.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{name} must be a non-empty string")
    if "/" in value or "?" in value or "#" in value:
        raise InvalidInputError(f"{name} must not contain '/', '?' or '#'")
    return value


class Agents(Resource):
    """Agents of the organization.

    Args:
        configuration: settings; default: a :class:`~xpander_sync.Configuration` read from the
            environment. Objects built with equal configurations share one transport (one
            connection pool).
        transport: an explicit transport (tests inject one with a fake ``sleep``).

    Raises:
        InvalidInputError: ``configuration`` is not a :class:`~xpander_sync.Configuration`.
    """

    def get_raw(self, agent_id: str, version: Union[int, str, None] = None) -> dict:
        """The agent's JSON, undecoded (``GET /agents/{agent_id}``).

        Args:
            agent_id: the agent.
            version: a specific version (sent as ``x-agent-version``); default the latest.

        Returns:
            The agent JSON object as a dict.

        Raises:
            InvalidInputError: a bad ``agent_id`` or ``version``.
            NotFoundError: no such agent (or version).
            ResponseDecodeError: the answer is not a JSON object.
            ModuleException: any other platform or transport failure.
        """
        check_id("agent_id", agent_id)
        data = self._transport.request("GET", f"/agents/{agent_id}", headers=version_header(version)).data
        if not isinstance(data, dict):
            raise ResponseDecodeError("Agent", ["expected a JSON object @ $"])
        return data

    def get(self, agent_id: Optional[str] = None, version: Union[int, str, None] = None) -> Agent:
        """Load an agent.

        Args:
            agent_id: the agent; default ``configuration.agent_id`` (``XPANDER_AGENT_ID``).
            version: a specific version (sent as ``x-agent-version``); default the latest.

        Returns:
            The :class:`~xpander_sync.Agent`.

        Raises:
            MissingAgentError: no agent id anywhere.
            InvalidInputError: a bad ``agent_id`` or ``version``.
            NotFoundError: no such agent (or version).
            ModuleException: any other platform or transport failure.
        """
        agent_id = agent_id or self.configuration.agent_id
        if not agent_id:
            raise MissingAgentError(
                f"agent id missing: pass agent_id=, set Configuration(agent_id=...) or set {ENV_AGENT_ID}"
            )
        return self._structure(self.get_raw(agent_id, version), Agent)

    def list(self) -> List[AgentsListItem]:
        """All agents visible to the API key (``GET /agents/list``).

        Returns:
            One :class:`~xpander_sync.models.agent.AgentsListItem` per agent (``load()`` fetches the full agent).

        Raises:
            ResponseDecodeError: the answer is not a JSON array of list items.
            ModuleException: any other platform or transport failure.
        """
        data = self._transport.request("GET", "/agents/list").data
        if not isinstance(data, list):
            raise ResponseDecodeError("AgentsListItem list", ["expected a JSON array @ $"])
        return [self._structure(item, AgentsListItem) for item in data]

    aget = async_twin(get)
    alist = async_twin(list)
    aget_raw = async_twin(get_raw)
