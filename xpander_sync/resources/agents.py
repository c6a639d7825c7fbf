"""``Agents``: load and list agents."""

from __future__ import annotations

from typing import Any, List, Optional, Union

from .._async import async_twin
from ..config import ENV_AGENT_ID
from ..errors import MissingAgentError, ResponseDecodeError
from ..models.agent import Agent, AgentsListItem
from ..models.task import Task
from ._base import Resource, route, version_header
from .tasks import Tasks


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
        path = route("/agents/{agent_id}", agent_id=agent_id)
        data = self._transport.request("GET", path, headers=version_header(version)).data
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

    def create_task(self, agent_id: str, prompt: str = "", **options: Any) -> Task:
        """Create a task for an agent: :meth:`Tasks.create` on this resource's transport.

        What :meth:`Agent.create_task <xpander_sync.Agent.create_task>` delegates to.

        Args:
            agent_id: the agent to run.
            prompt: the input text.
            **options: the keyword arguments of :meth:`Tasks.create`.

        Returns:
            The created :class:`~xpander_sync.Task`.

        Raises:
            InvalidInputError: an unknown option or a bad value.
            ModuleException: the platform refused or could not be reached.
        """
        return Tasks(self.configuration, transport=self._transport).create(agent_id, prompt, **options)

    def db(self, agent_id: str) -> Any:
        """The agent's storage settings, undecoded (``GET /agents/{agent_id}/db``).

        Args:
            agent_id: the agent.

        Returns:
            The decoded JSON answer (a dict with ``connection_uri.uri`` when storage is set up).

        Raises:
            InvalidInputError: a bad ``agent_id``.
            ModuleException: the platform refused or could not be reached.
        """
        return self._transport.request("GET", route("/agents/{agent_id}/db", agent_id=agent_id)).data

    aget = async_twin(get)
    alist = async_twin(list)
    aget_raw = async_twin(get_raw)
    acreate_task = async_twin(create_task)
    adb = async_twin(db)
