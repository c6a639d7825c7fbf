"""A pytest plugin for testing code that uses xpander-sync, against a real local backend.

Installed with the package (entry point ``pytest11``), so in your own suite::

    def test_my_cron_job(xpander_backend):
        run_my_job(configuration=xpander_backend.configuration)
        (report,) = xpander_backend.reports()
        assert report["body"]["is_success"] is True

Fixtures:

* ``xpander_backend``: a started :class:`~xpander_sync.local.LocalBackend` (bundled sample
  agents, a temporary SQLite file, a random API key) wrapped in :class:`XpanderTestBackend`.
* ``xpander_config``: the :class:`~xpander_sync.Configuration` pointing at it.
* ``scripted_model``: a started :class:`ScriptedModel`, a loopback LLM that answers in the providers'
  own wire formats (OpenAI Chat Completions and Responses, Anthropic Messages, Gemini) from a script,
  and records every request::

      def test_my_agent_calls_its_tool(scripted_model):
          scripted_model.script(call_first_tool("search"), answer_with_tool_result("Found: "))
          client = openai.OpenAI(base_url=scripted_model.url + "/v1", api_key="sk-test")
          ...
          assert scripted_model.requests[-1].tool_results

* ``xpander_backend.script_llm([...])``: the same scripted model, mounted on the backend under the
  platform's LLM proxy route, with the backend's agents pointed at it: ``get_args`` then builds
  agents whose model *is* the script, so a test runs a whole turn (tool call included) offline
  and returns the recorder (see ``docs/testing.md``).

Helpers: :func:`make_agent` builds a valid agent payload for ``add_agent``; :func:`call_tool`,
:func:`answer`, :func:`call_first_tool` and :func:`answer_with_tool_result` build script turns.
"""

from __future__ import annotations

import copy
import secrets
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional

import pytest

from ._scripted_model import (
    ScriptedModel,
    ScriptedRequest,
    ScriptedResponse,
    Turn,
    Usage,
    answer,
    answer_with_tool_result,
    call_first_tool,
    call_tool,
)
from .config import Configuration

__all__ = [
    "ScriptedModel", "ScriptedRequest", "ScriptedResponse", "Turn", "Usage", "XpanderTestBackend", "answer",
    "answer_with_tool_result", "call_first_tool", "call_tool", "make_agent", "scripted_model", "xpander_backend",
    "xpander_config",
]

_BASE_AGENT: Dict[str, Any] = {
    "organization_id": "local-org",
    "unique_name": "test-agent",
    "framework": "agno",
    "model_provider": "openai",
    "model_name": "gpt-4.1",
    "description": "",
    "instructions": {"role": [], "goal": [], "general": ""},
    "graph": [],
    "tools": [],
    "version": 1,
    "output_format": "markdown",
    "agno_settings": {"session_storage": False},
    "created_at": "2026-01-01T00:00:00Z",
}


def make_agent(agent_id: str = "agt-test", name: str = "Test Agent", **fields: Any) -> Dict[str, Any]:
    """A minimal valid agent payload; keyword arguments set or replace top-level fields.

    Example: ``make_agent("agt-x", tools=[{"id": "Echo", "name": "Echo", "parameters": {...}}])``.

    Args:
        agent_id: the agent's ``id`` (also its ``unique_name``).
        name: the agent's ``name``.
        **fields: top-level agent fields to set or replace (applied last).

    Returns:
        A new agent JSON dict (an agno agent on ``openai``/``gpt-4.1``, version 1, no tools).
    """
    agent = copy.deepcopy(_BASE_AGENT)
    agent.update(id=agent_id, name=name, unique_name=agent_id)
    agent.update(fields)
    return agent


class XpanderTestBackend:
    """A running local backend plus the configuration that reaches it.

    Args:
        local: a started :class:`~xpander_sync.local.LocalBackend`.
        configuration: a Configuration with its URL and API key.

    Attributes:
        local: the underlying :class:`~xpander_sync.local.LocalBackend`.
        configuration: a Configuration with its URL and API key.
    """

    def __init__(self, local: Any, configuration: Configuration):
        self.local = local
        self.configuration = configuration

    @property
    def url(self) -> str:
        """The backend's base URL."""
        return str(self.local.url)

    def add_agent(self, agent: Dict[str, Any]) -> Dict[str, Any]:
        """Serve another agent (see :func:`make_agent`); returns it.

        Args:
            agent: the agent JSON; needs a string ``id``.

        Returns:
            ``agent`` unchanged.

        Raises:
            ValueError: ``agent`` has no string ``id``, or its ``version`` is not an integer.
        """
        self.local.add_agent(agent)
        return agent

    def register_tool(self, tool_id: str, fn: Any) -> None:
        """Answer tool calls of ``tool_id`` with ``fn(payload, headers)``.

        Args:
            tool_id: the id of the xpander tool (the agent operation) to answer.
            fn: the handler; its return value is sent as JSON (raise
                :class:`~xpander_sync.local.ToolError` for an error status).

        Raises:
            TypeError: ``fn`` is not callable.
        """
        self.local.register_tool(tool_id, fn)

    def script_llm(self, turns: Iterable[Turn] = (), *, exhausted_text: Optional[str] = None,
                   usage: Optional[Usage] = None) -> ScriptedModel:
        """Script the agents' LLM: a scripted model answers under the backend's LLM proxy route.

        The first call mounts a :class:`ScriptedModel` on the backend
        (:meth:`~xpander_sync.local.LocalBackend.mount_llm`): from then on every agent it serves
        without an ``llm_api_base`` of its own is pointed at the proxy, so the model ``get_args``
        builds (any framework, any of OpenAI Chat Completions, OpenAI Responses, Anthropic Messages,
        Gemini) talks to the script: no key from the environment, no network. Later calls append
        ``turns`` to the same model's script.

        Example::

            model = xpander_backend.script_llm([call_first_tool("Search"), answer_with_tool_result("Found: ")])
            Agent(**Backend(xpander_backend.configuration).get_args(agent_id="agt-openai")).run("find Ada")
            assert model.requests[1].tool_results

        Args:
            turns: the turns to script (:func:`call_tool`, :func:`answer`, :func:`call_first_tool`,
                :func:`answer_with_tool_result`).
            exhausted_text: the answer once the script is exhausted (first call only).
            usage: the token numbers of turns that set none (first call only).

        Returns:
            The :class:`ScriptedModel`: its ``requests`` record every model request (key, headers,
            messages, tool results), ``remaining`` and ``exhausted`` say how the script was used.
        """
        model = self.local.llm
        if model is None:
            options: Dict[str, Any] = {}
            if exhausted_text is not None:
                options["exhausted_text"] = exhausted_text
            if usage is not None:
                options["usage"] = usage
            mounted: ScriptedModel = self.local.mount_llm(ScriptedModel(turns, **options))
            return mounted
        scripted: ScriptedModel = model.script(*turns)
        return scripted

    def reports(self) -> List[Dict[str, Any]]:
        """Reports received (``report_external_task``), oldest first.

        Returns:
            ``{"id", "agent_id", "body", "received_at"}`` dicts.
        """
        return list(self.local.reports())

    def tasks(self) -> List[Dict[str, Any]]:
        """Stored tasks (Task JSON).

        Returns:
            The Task JSON dicts, oldest first.
        """
        return list(self.local.tasks())

    def tool_calls(self) -> List[Dict[str, Any]]:
        """Tool calls received, with headers (secrets masked) and bodies.

        Returns:
            ``{"agent_id", "tool_id", "method", "headers", "body", "received_at"}`` dicts, oldest first.
        """
        return list(self.local.tool_calls())

    def events(self, task_id: Optional[str] = None) -> List[Dict[str, Any]]:
        """Pushed task events (auth events among them).

        Args:
            task_id: only the events of this task; ``None`` for every task.

        Returns:
            ``{"task_id", "event", "received_at"}`` dicts, oldest first.
        """
        return list(self.local.events(task_id))

    def complete_login(self, state: Optional[str] = None, **kwargs: Any) -> str:
        """Finish a pending MCP OAuth login as the user would.

        Args:
            state: the ``state`` of the login URL from the ``login_required`` auth event.
            **kwargs: ``user_id``, ``server_url`` (instead of ``state``) and ``token``, as for
                :meth:`~xpander_sync.local.LocalBackend.complete_login`.

        Returns:
            The issued access token.

        Raises:
            ValueError: neither ``state`` nor both ``user_id`` and ``server_url`` were given.
            KeyError: ``state`` is unknown.
        """
        return str(self.local.complete_login(state, **kwargs))

    @property
    def requests(self) -> List[Dict[str, Any]]:
        """Every request received (method, path, query, masked headers, body)."""
        return list(self.local.requests_log)


@pytest.fixture
def xpander_backend(tmp_path: Path) -> Iterator[XpanderTestBackend]:
    """A started local backend with the bundled sample agents (stopped after the test).

    Its SQLite file is in the test's ``tmp_path``, its API key is random, and its
    configuration does not cache agents (``agent_cache_ttl=0``).

    Args:
        tmp_path: pytest's per-test temporary folder (holds the SQLite file).

    Yields:
        The :class:`XpanderTestBackend`.
    """
    from .local import LocalBackend

    api_key = "xpk-test-" + secrets.token_hex(8)
    local = LocalBackend(db_path=str(tmp_path / "xpander-local.sqlite3"), api_key=api_key)
    local.start()
    try:
        configuration = Configuration(
            api_key=api_key, base_url=local.url, organization_id="local-org", agent_cache_ttl=0
        )
        yield XpanderTestBackend(local, configuration)
    finally:
        local.stop()


@pytest.fixture
def xpander_config(xpander_backend: XpanderTestBackend) -> Configuration:
    """The configuration of :func:`xpander_backend`.

    Args:
        xpander_backend: the fixture above.

    Returns:
        Its :class:`~xpander_sync.Configuration`.
    """
    return xpander_backend.configuration


@pytest.fixture
def scripted_model() -> Iterator[ScriptedModel]:
    """A started scripted LLM on loopback, with an empty script (stopped after the test).

    Script it with ``scripted_model.script(call_tool(...), answer(...))`` and point a provider SDK or
    a framework at ``scripted_model.url`` (plus the provider's prefix, e.g. ``/v1`` for OpenAI). Once
    the script is exhausted it answers a fixed text; ``scripted_model.exhausted`` counts those requests.

    Yields:
        The :class:`ScriptedModel`; its ``requests`` list records every request.
    """
    with ScriptedModel() as model:
        yield model
