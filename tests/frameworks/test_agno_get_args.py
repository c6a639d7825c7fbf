"""The issue-3 matrix through Backend.get_args: every sample agent, with and without a task, with a
model override and with extra tools; each builds a real agno object, and the exact HTTP calls are asserted."""

from __future__ import annotations

import copy
from typing import List

import pytest

from xpander_sync import Backend
from xpander_sync._converter import structure
from xpander_sync.models import Task

from ..conftest import BASE, load_fixture

pytest.importorskip("agno", reason="the agno extra is part of the test environment (tox -e py)")

pytestmark = pytest.mark.framework("agno")

DB = {"id": "db-1", "name": "db", "connection_uri": {"uri": "postgresql://u:p@db.example:5432/x"}}


def json_payload():
    data = copy.deepcopy(load_fixture("agent_openai"))
    data.update(id="agt-json", output_format="json", output_schema={
        "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"],
        "additionalProperties": False,
    })
    return data


PAYLOADS = {
    "agt-openai": lambda: load_fixture("agent_openai"),
    "agt-anthropic": lambda: load_fixture("agent_anthropic"),
    "agt-json": json_payload,
    "agt-team": lambda: load_fixture("agent_team"),
    "agt-sub-b": lambda: load_fixture("agent_sub_b"),
}
MEMBERS = {"agt-team": ["agt-anthropic", "agt-sub-b"]}


def extra_tool(city: str) -> str:
    """A caller-supplied tool."""
    return f"sunny in {city}"


@pytest.mark.parametrize("agent_id", ["agt-openai", "agt-anthropic", "agt-json", "agt-team"])
@pytest.mark.parametrize("with_task", [False, True], ids=["no-task", "task"])
@pytest.mark.parametrize("variant", ["plain", "override-model", "extra-tools"])
def test_matrix(mocked, config, monkeypatch, agent_id, with_task, variant):
    from agno.agent import Agent as AgnoAgent
    from agno.models.openai import OpenAIChat
    from agno.team import Team

    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-openai")
    agents = [agent_id, *MEMBERS.get(agent_id, [])]
    expected: List[str] = []
    for aid in agents:
        mocked.get(f"{BASE}/agents/{aid}", json=PAYLOADS[aid]())
        mocked.get(f"{BASE}/agents/{aid}/db", json=DB)
        mocked.post(f"{BASE}/tools/{aid}/channel-presence", json={"text": ""})
        expected += [f"GET /agents/{aid}", f"GET /agents/{aid}/db", f"POST /tools/{aid}/channel-presence"]
        if with_task and aid != "agt-team":  # a task with a user: memories asked (a leader never asks)
            mocked.get(f"{BASE}/memories/{aid}", json={"settings": {"enabled": False}})
            expected.append(f"GET /memories/{aid}?user_id=user-42")
    override = None
    if variant == "override-model":
        override = {"model": OpenAIChat(id="gpt-override", api_key="sk-override")}
    else:
        mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json={"X-Org": "1"})
        expected.append("GET /metadata/default_llm_extra_headers")
    tools = [extra_tool] if variant == "extra-tools" else None
    task = structure(load_fixture("task_status"), Task) if with_task else None

    args = Backend(config).get_args(agent_id=agent_id, task=task, override=override, tools=tools)

    built = Team(**args) if "members" in args else AgnoAgent(**args)
    assert isinstance(built, Team) is (agent_id == "agt-team")
    assert not any(k.startswith("_") for k in args)
    calls = [f"{c.request.method} {c.request.url.replace(BASE, '')}" for c in mocked.calls]
    assert calls[0] == f"GET /agents/{agent_id}"  # the agent first; members load concurrently after it
    assert sorted(calls) == sorted(expected)
    if variant == "override-model":
        assert args["model"] is override["model"]
        assert all(m.model is override["model"] for m in getattr(built, "members", []))
    else:
        assert args["model"].id == PAYLOADS[agent_id]()["model_name"]
    if variant == "extra-tools":
        assert args["tools"][-1] is extra_tool
    if with_task:
        assert args["session_id"] == task.id and args["user_id"] == "user-42"
        assert "User details:" in args["additional_context"]
    else:
        assert args.get("session_id") is None
    if agent_id == "agt-json" and not with_task:
        assert args["use_json_mode"] is True and args["output_schema"]["type"] == "json_schema"
    if agent_id == "agt-json" and with_task:  # the task asks for markdown: the task decides
        assert args["markdown"] is True and not args.get("use_json_mode")
