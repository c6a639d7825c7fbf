"""The run matrix: a full turn of every adapter, against the local backend's scripted model.

Every registered adapter x every provider family it builds (OpenAI Chat Completions, OpenAI
Responses where the adapter uses it, Anthropic Messages) x a sync and an async run x a single
agent and a team x with and without a task. The framework object is built from ``get_args``
and *run*: the model is the local backend's LLM proxy (``LocalBackend.mount_llm``), scripted to
call the xpander tool and then answer with the tool's result. Each case checks that:

* the framework called the xpander tool: exactly one operations POST, with this call's task id
  (``x-execution-id``, none without a task) and the tool owner's agent version;
* the tool's answer (from the platform's tool handler) reached the model in the next request;
* the final answer came back to the caller;
* every model request carried the key the precedence rules choose (the agent's stored key: the
  proxy is a custom endpoint, so the environment key set here must never arrive) and the merged
  headers (the organization's default LLM headers and the agent's own).

``pytest tests/frameworks --framework NAME`` runs one adapter's share (each tox env does).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import pytest

from xpander_sync import Backend, Configuration
from xpander_sync.frameworks import ADAPTERS
from xpander_sync.local import LocalBackend
from xpander_sync.testing import (
    ScriptedModel,
    Turn,
    answer_with_tool_result,
    call_first_tool,
    make_agent,
)

from .conftest import require_framework

PROMPT = "Look up the answer"
TOOL_ID = "MatrixLookup"
TOOL_ANSWER = "ANSWER-4242"
ORG_HEADERS = {"X-Org-Trace": "org-trace-1"}
AGENT_HEADERS = {"x-team": "matrix"}
ENV_KEYS = {"OPENAI_API_KEY": "sk-env-openai", "AGENTS_OPENAI_API_KEY": "sk-env-agents",
            "ANTHROPIC_API_KEY": "sk-env-anthropic"}
LEAD_KEY, MEMBER_KEY, SOLO_KEY = "sk-stored-lead", "sk-stored-member", "sk-stored-solo"
SOLO_VERSION, MEMBER_VERSION, LEAD_VERSION = 7, 4, 2

TOOL = {
    "id": TOOL_ID,
    "name": "Matrix lookup",
    "method": "GET",
    "path": "/lookup",
    "function_description": "Look up the answer to the user's question.",
    "parameters": {
        "type": "object",
        "properties": {
            "query_params": {
                "type": "object",
                "properties": {"q": {"type": "string", "description": "What to look up"}},
                "required": ["q"],
            },
            "path_params": {"type": "object", "properties": {}, "required": []},
            "body_params": {"type": "object", "properties": {}, "required": []},
        },
        "required": ["query_params", "path_params", "body_params"],
    },
}


class Family(NamedTuple):
    provider: str
    model: str
    wire: str  # the ScriptedRequest.family the adapter must speak


FAMILIES = {
    "openai-chat": Family("openai", "gpt-4.1", "openai-chat"),
    "openai-responses": Family("openai", "gpt-5.6", "openai-responses"),
    "anthropic": Family("anthropic", "claude-sonnet-4-6", "anthropic"),
}


# -- how each framework runs an agent (sync and async) and delegates to a team member -------------


def _text(value: Any) -> str:
    """The text of a final answer (a string, or content blocks)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_text(v.get("text", "") if isinstance(v, dict) else v) for v in value)
    return str(value)


def _agno(args: Dict[str, Any], use_async: bool) -> str:
    from agno.agent import Agent
    from agno.team import Team

    built = Team(**args) if "members" in args else Agent(**args)
    out = asyncio.run(built.arun(PROMPT)) if use_async else built.run(PROMPT)
    assert str(out.status).endswith("completed"), out.content
    return _text(out.content)


def _agno_delegate(args: Dict[str, Any]) -> Turn:
    member = args["members"][0]
    return call_first_tool("delegate", {"member_id": member.id, "task": PROMPT})


def _openai_agents(args: Dict[str, Any], use_async: bool) -> str:
    from agents import Agent, Runner, set_tracing_disabled

    set_tracing_disabled(True)  # traces go to OpenAI's servers

    built = Agent(**args)
    out = asyncio.run(Runner.run(built, PROMPT)) if use_async else Runner.run_sync(built, PROMPT)
    return _text(out.final_output)


def _langchain(args: Dict[str, Any], use_async: bool) -> str:
    from langchain.agents import create_agent

    graph = create_agent(**args)
    state = {"messages": [{"role": "user", "content": PROMPT}]}
    out = asyncio.run(graph.ainvoke(state)) if use_async else graph.invoke(state)
    return _text(out["messages"][-1].content)


def _strands(args: Dict[str, Any], use_async: bool) -> str:
    from strands import Agent

    built = Agent(**args)
    out = asyncio.run(built.invoke_async(PROMPT)) if use_async else built(PROMPT)
    return str(out)


def _google_adk(args: Dict[str, Any], use_async: bool) -> str:
    from google.adk.agents import LlmAgent
    from google.adk.runners import InMemoryRunner
    from google.genai import types

    runner = InMemoryRunner(agent=LlmAgent(**args), app_name="matrix")
    message = types.Content(role="user", parts=[types.Part(text=PROMPT)])

    async def run() -> List[Any]:
        session = await runner.session_service.create_session(app_name="matrix", user_id="u-1")
        if use_async:
            return [e async for e in runner.run_async(user_id="u-1", session_id=session.id, new_message=message)]
        return await asyncio.to_thread(
            lambda: list(runner.run(user_id="u-1", session_id=session.id, new_message=message))
        )

    events = asyncio.run(run())
    finals = [e for e in events if e.is_final_response() and e.content and e.content.parts]
    assert finals, events
    return "".join(p.text or "" for p in finals[-1].content.parts)


def _google_adk_delegate(args: Dict[str, Any]) -> Turn:
    return call_first_tool("transfer_to_agent", {"agent_name": args["sub_agents"][0].name})


def _pydantic_ai(args: Dict[str, Any], use_async: bool) -> str:
    from pydantic_ai import Agent

    built = Agent(**args)
    out = asyncio.run(built.run(PROMPT)) if use_async else built.run_sync(PROMPT)
    return _text(out.output)


class Driver(NamedTuple):
    run: Callable[[Dict[str, Any], bool], str]
    families: Tuple[str, ...]
    # the leader's delegation turn; None: a member-as-tool taking {"request": ...} (or its own schema)
    delegate: Optional[Callable[[Dict[str, Any]], Turn]] = None
    # whether the member's answer ends the run (a handoff), or goes back to the leader (a tool)
    handoff: bool = False


ALL = ("openai-chat", "openai-responses", "anthropic")
DRIVERS: Dict[str, Driver] = {
    "agno": Driver(_agno, ALL, _agno_delegate),
    "open-ai-agents": Driver(_openai_agents, ALL, lambda args: call_first_tool("transfer_to"), handoff=True),
    "langchain": Driver(_langchain, ALL),
    "strands-agents": Driver(_strands, ALL),
    # google-adk reaches OpenAI through litellm's Chat Completions only
    "google-adk": Driver(_google_adk, ("openai-chat", "anthropic"), _google_adk_delegate, handoff=True),
    "pydantic-ai": Driver(_pydantic_ai, ALL),
}


def test_every_registered_adapter_has_a_driver() -> None:
    assert set(DRIVERS) == set(ADAPTERS)


CASES = [
    pytest.param(name, family, id=f"{name}-{family}", marks=pytest.mark.framework(name))
    for name in DRIVERS
    for family in DRIVERS[name].families
]


# -- the platform ---------------------------------------------------------------------------------


@pytest.fixture
def platform(clean_environ: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    """A local backend with the scripted model mounted and the xpander tool answered by a handler."""
    for name, value in ENV_KEYS.items():
        monkeypatch.setenv(name, value)  # present, and never sent: the proxy is a custom endpoint
    with LocalBackend(db_path=str(tmp_path / "local.sqlite3"), api_key="xpk-matrix",
                      default_llm_headers=dict(ORG_HEADERS)) as local:
        local.register_tool(TOOL_ID, lambda payload, headers: {"answer": TOOL_ANSWER, "q": payload})
        yield local


def _agents(local: LocalBackend, framework: str, family: Family) -> None:
    common = dict(framework=framework, model_provider=family.provider, model_name=family.model,
                  llm_extra_headers=dict(AGENT_HEADERS), output_format="text")
    local.add_agent(make_agent("agt-mx-solo", "Matrix Solo", version=SOLO_VERSION, tools=[TOOL],
                               llm_credentials={"name": "k", "value": SOLO_KEY}, **common))
    local.add_agent(make_agent("agt-mx-member", "Matrix Member", version=MEMBER_VERSION, tools=[TOOL],
                               description="Looks answers up.",
                               llm_credentials={"name": "k", "value": MEMBER_KEY}, **common))
    graph = [{"id": "gi-m", "item_id": "agt-mx-member", "name": "Matrix Member", "type": "agent", "targets": []}]
    local.add_agent(make_agent("agt-mx-lead", "Matrix Lead", version=LEAD_VERSION, graph=graph,
                               llm_credentials={"name": "k", "value": LEAD_KEY}, **common))


@pytest.mark.parametrize("with_task", [True, False], ids=["task", "no-task"])
@pytest.mark.parametrize("shape", ["solo", "team"])
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("name,family_name", CASES)
def test_a_full_turn(platform: LocalBackend, name: str, family_name: str, use_async: bool, shape: str,
                     with_task: bool) -> None:
    require_framework(name)
    driver, family = DRIVERS[name], FAMILIES[family_name]
    _agents(platform, name, family)
    model = platform.mount_llm(ScriptedModel())
    backend = Backend(Configuration(api_key="xpk-matrix", base_url=platform.url, organization_id="local-org",
                                    agent_cache_ttl=0))
    agent_id = "agt-mx-solo" if shape == "solo" else "agt-mx-lead"
    task = backend.invoke_agent(agent_id, PROMPT) if with_task else None
    if use_async:
        args = asyncio.run(backend.aget_args(agent_id=agent_id, task=task))
    else:
        args = backend.get_args(agent_id=agent_id, task=task)

    tool_turns = [call_first_tool(TOOL_ID, {"query_params": {"q": "the answer"}}), answer_with_tool_result("final: ")]
    if shape == "solo":
        model.script(*tool_turns)
    else:
        delegate = driver.delegate(args) if driver.delegate else call_first_tool("ask_", {"request": PROMPT})
        model.script(delegate, *tool_turns)
        if not driver.handoff:
            model.script(answer_with_tool_result("final: "))

    final = driver.run(args, use_async)

    requests = model.requests
    assert all(r.status == 200 for r in requests), [(r.path, r.status) for r in requests]
    assert model.remaining == 0 and model.exhausted == 0, [(r.tools, r.reply_text) for r in requests]
    # the framework called the xpander tool, and the platform saw exactly that one call
    calls = [c for c in platform.tool_calls() if c["tool_id"] == TOOL_ID]
    assert len(calls) == 1, calls
    owner = "agt-mx-solo" if shape == "solo" else "agt-mx-member"
    assert calls[0]["agent_id"] == owner
    assert calls[0]["headers"].get("x-agent-version") == str(SOLO_VERSION if shape == "solo" else MEMBER_VERSION)
    assert calls[0]["headers"].get("x-execution-id") == (task.id if task is not None else None)
    assert calls[0]["body"]["query_params"]["q"] == "the answer"
    # the tool's answer reached the model in the request after the tool call
    index = next(i for i, r in enumerate(requests) if r.tool_call and r.tool_call["name"] == TOOL_ID)
    result = requests[index + 1].last_tool_result
    assert result is not None and TOOL_ANSWER in result
    # the final answer came back
    assert "final: " in final and TOOL_ANSWER in final
    # the wire, the key the precedence rules choose, and the merged headers
    expected_keys = {SOLO_KEY} if shape == "solo" else {LEAD_KEY, MEMBER_KEY}
    for request in requests:
        assert request.family == family.wire, request.path
        assert request.api_key in expected_keys, request.api_key
        assert request.header("x-org-trace") == ORG_HEADERS["X-Org-Trace"], request.headers
        assert request.header("x-team") == AGENT_HEADERS["x-team"], request.headers
    assert requests[index].api_key == (SOLO_KEY if shape == "solo" else MEMBER_KEY)
    if shape == "team":
        assert requests[0].api_key == LEAD_KEY


def test_an_output_cap_always_comes_with_an_explicit_request_timeout() -> None:
    from xpander_sync.frameworks._llm import MAX_OUTPUT_TOKENS, ModelSpec

    claude = ModelSpec(provider="anthropic", model_id="claude-sonnet-4-6")
    assert claude.max_tokens == MAX_OUTPUT_TOKENS and claude.request_timeout == 900.0
    assert ModelSpec(provider="open_router", model_id="x").request_timeout == 900.0
    assert ModelSpec(provider="openai", model_id="gpt-4.1").request_timeout is None  # no cap: the SDK default
