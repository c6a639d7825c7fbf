"""Shared pieces of the framework-adapter tests (real framework objects, no LLM, no network).

* Each test for one framework carries ``@pytest.mark.framework("<adapter name>")`` (a
  module's ``pytestmark``, or the contract test's parameters) and skips through
  ``pytest.importorskip`` when the framework is not installed.
* ``--framework NAME`` (``pytest tests/frameworks --framework langchain``, what each
  framework's tox env runs) keeps only that framework's tests, and fails instead of
  skipping when the framework is missing: an env must not pass by skipping its share.
* ``no_network`` (autouse): any socket connection or name lookup outside the loopback
  fails the test, even when the library swallowed the error (``responses`` intercepts
  the platform calls before a socket is opened).
* ``openai_env``: ``OPENAI_API_KEY`` set, for the tests that build OpenAI models.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import socket
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from xpander_sync._converter import structure
from xpander_sync.frameworks import ADAPTERS, get_adapter
from xpander_sync.models import Agent, MCPServerDetails, Task
from xpander_sync.models.tools import ToolInvocationResult

from ..conftest import BASE, load_fixture

# litellm fetches a model price list from GitHub when imported, unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

FIXTURE_OF = {
    "agt-openai": "agent_openai",
    "agt-anthropic": "agent_anthropic",
    "agt-sub-b": "agent_sub_b",
    "agt-team": "agent_team",
    "agt-mcp": "agent_mcp",
}
SAMPLE_AGENTS = Path(__file__).resolve().parents[2] / "xpander_sync" / "local" / "sample_agents"
ORG = "5b0f0c36-2f1e-4c63-9a3e-0d5e7c1a9f10"
TASK_ID = "3f7c2a9e-8d41-4c1b-9e0a-6b5d2f1e7a44"
VERIFIED_BODY = {
    "query_params": {"q": "ada", "limit": 10, "company": "Acme"},
    "path_params": {},
    "body_params": {},
}
#: The acceptance agents: OpenAI with tools, Anthropic with a custom key, JSON output, a team.
ACCEPTANCE_AGENTS = ("agt-openai", "agt-anthropic", "agt-json", "agt-team")
ORG_HEADERS = {"X-Org-Trace": "fake-org-trace"}


def require_framework(name: str) -> Any:
    """``pytest.importorskip`` of the adapter's framework module (the reason names the extra)."""
    adapter = get_adapter(name)
    return pytest.importorskip(adapter.requires, reason=adapter.missing_message())


# -- selecting one framework ------------------------------------------------------------------


def pytest_addoption(parser: Any) -> None:
    parser.addoption(
        "--framework", action="store", default=None, choices=sorted(ADAPTERS),
        help="run only this framework's adapter tests (and fail if the framework is not installed)",
    )


def pytest_configure(config: Any) -> None:
    name = config.getoption("--framework", default=None)
    if name:
        try:
            importlib.import_module(get_adapter(name).requires)
        except ImportError:
            raise pytest.UsageError(f"--framework {name}: {get_adapter(name).missing_message()}") from None


def pytest_collection_modifyitems(config: Any, items: List[Any]) -> None:
    name = config.getoption("--framework", default=None)
    if not name:
        return
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("framework")
        (keep if marker is not None and marker.args and marker.args[0] == name else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# -- no network -------------------------------------------------------------------------------


def _is_loopback(host: Any) -> bool:
    text = str(host or "")
    return text in ("localhost", "::1", "") or text.startswith("127.")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[List[str]]:
    """Refuse (and record) every connection and name lookup outside the loopback."""
    attempts: List[str] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(address: Any) -> None:
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            attempts.append(f"connect {address[0]}:{address[1]}")
            raise ConnectionRefusedError(f"test guard: no network ({address[0]})")

    def connect(self: socket.socket, address: Any) -> Any:
        check(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(host):
            attempts.append(f"getaddrinfo {host}")
            raise socket.gaierror(f"test guard: no network ({host})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    assert not attempts, f"network attempted: {attempts}"


@pytest.fixture
def openai_env(clean_environ: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """``OPENAI_API_KEY`` set (after the environment was cleaned): OpenAI models need a key to build."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-openai")
    return "sk-env-openai"


# -- sample agents and a recording context ----------------------------------------------------


def agent_payload(agent_id: str) -> Dict[str, Any]:
    """The platform JSON of a sample agent (tests/fixtures, or the local server's agt-json)."""
    if agent_id in FIXTURE_OF:
        return load_fixture(FIXTURE_OF[agent_id])
    with open(SAMPLE_AGENTS / f"{agent_id}.json", encoding="utf-8") as fh:
        return json.load(fh)


def make_agent(agent_id: str = "agt-openai", **changes: Any) -> Agent:
    data = agent_payload(agent_id)
    data.update(changes)
    return structure(data, Agent)


def make_task(**changes: Any) -> Task:
    data = load_fixture("task_status")
    data.update(changes)
    return structure(data, Task)


class FakeContext:
    """Records what an adapter asks of the platform."""

    def __init__(self, *, members: Optional[Dict[str, Agent]] = None, db_uri: Optional[str] = None) -> None:
        self.db_uri = db_uri
        self.calls: List[Any] = []
        self.tool_result: Optional[ToolInvocationResult] = None
        self.members = members or {}
        self.mcp_servers_seen: List[MCPServerDetails] = []

    def org_llm_headers(self) -> Dict[str, str]:
        self.calls.append("org_llm_headers")
        return dict(ORG_HEADERS)

    def db_connection_uri(self, agent: Agent) -> str:
        if self.db_uri is None:  # pragma: no cover - must not be asked
            raise AssertionError("session storage is agno-only")
        self.calls.append(("db", agent.id))
        return self.db_uri

    def load_agents(self, ids: List[str]) -> List[Agent]:
        self.calls.append(("load_agents", list(ids)))
        return [copy.deepcopy(self.members[i]) if i in self.members else make_agent(i) for i in ids]

    def invoke_tool(self, agent: Agent, task: Optional[Task], tool_id: str, payload: Dict[str, Any], **kw: Any) -> Any:
        self.calls.append(("invoke_tool", agent.id, task.id if task else None, tool_id, payload))
        if self.tool_result is not None:
            return self.tool_result
        return ToolInvocationResult(tool_id=tool_id, payload=payload, result={"contacts": [{"id": "c-1"}]},
                                    is_success=True, task_id=task.id if task else None)

    def mcp_headers(self, agent: Agent, task: Optional[Task], server: MCPServerDetails) -> Dict[str, str]:
        self.calls.append(("mcp_headers", agent.id, server.url))
        self.mcp_servers_seen.append(server)
        server.api_key = "oauth-token"  # type: ignore[assignment]  # a careless context: the adapter passed a copy
        return {"X-Static": "1", "Authorization": "Bearer oauth-token"}


MCP_TASK_SERVERS = [
    {"type": "local", "command": "npx -y @mcp/everything --label 'a b'", "env_vars": {"TOKEN": "t", "N": 1},
     "allowed_tools": ["echo"]},
    {"type": "remote", "url": "https://sse.example/sse", "transport": "sse"},
]


# -- the platform over responses --------------------------------------------------------------


DB = {"id": "db-1", "name": "db", "connection_uri": {"uri": "postgresql://u:p@db.example:5432/x"}}


def mock_platform(mocked: Any, *agent_ids: str, headers: bool = True, db: bool = False) -> None:
    """GET /agents/{id} for each agent (and its DB settings with ``db``), and the organization's LLM headers."""
    for agent_id in agent_ids:
        mocked.get(f"{BASE}/agents/{agent_id}", json=agent_payload(agent_id))
        if db:
            mocked.get(f"{BASE}/agents/{agent_id}/db", json=DB)
    if headers:
        mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json=dict(ORG_HEADERS, **{"X-Empty-Dropped": ""}))


def mock_members(mocked: Any, *, db: bool = False) -> None:
    mock_platform(mocked, "agt-anthropic", "agt-sub-b", headers=False, db=db)


def mock_operation(mocked: Any, tool_id: str = "XpanderCrmSearchContacts", agent_id: str = "agt-openai") -> None:
    mocked.post(f"{BASE}/agents/{agent_id}/operations/{tool_id}", json={"contacts": [{"id": "c-1", "name": "Ada"}]})


def assert_operation_posted(mocked: Any, body: Optional[Dict[str, Any]] = None) -> None:
    """The last call is the verified tool call: route, agent version, the task's execution id, body."""
    call = mocked.calls[-1]
    assert call.request.method == "POST"
    assert call.request.url == f"{BASE}/agents/agt-openai/operations/XpanderCrmSearchContacts"
    assert call.request.headers["x-agent-version"] == "3"
    assert call.request.headers["x-execution-id"] == TASK_ID
    assert json.loads(call.request.body) == (VERIFIED_BODY if body is None else body)


def calls_of(mocked: Any) -> List[str]:
    return [f"{c.request.method} {c.request.url.replace(BASE, '')}" for c in mocked.calls]
