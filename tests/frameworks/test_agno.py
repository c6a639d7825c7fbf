"""The agno adapter: real agno objects built from the sample agents (no LLM, no network).

Two kinds of tests: through a recording fake context (every platform call the adapter
asks for is listed), and through ``Backend(config).get_args`` with ``responses`` (the
exact HTTP calls per scenario).
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
import types
from typing import Any, Dict, List, Optional

import pytest

pytest.importorskip("agno")

from agno.agent import Agent as AgnoAgent
from agno.db.postgres import AsyncPostgresDb, PostgresDb
from agno.guardrails import OpenAIModerationGuardrail, PIIDetectionGuardrail, PromptInjectionGuardrail
from agno.models.anthropic import Claude
from agno.models.openai import OpenAIChat, OpenAIResponses
from agno.models.openai.like import OpenAILike
from agno.team import Team as AgnoTeam
from agno.tools.function import Function, FunctionCall
from agno.tools.mcp import MCPTools

from xpander_sync import (
    Backend,
    FrameworkNotInstalledError,
    InvalidInputError,
    ResponseDecodeError,
)
from xpander_sync._converter import structure, unstructure
from xpander_sync.frameworks import get_args_for
from xpander_sync.frameworks.agno import build_agno_args, render_tool_result, sqlalchemy_url
from xpander_sync.models import Agent, MCPServerDetails, Task
from xpander_sync.models.tools import ToolInvocationResult

from ..conftest import BASE, body_of, load_fixture

pytestmark = [pytest.mark.agno, pytest.mark.framework("agno")]

FIXTURE_OF = {
    "agt-openai": "agent_openai",
    "agt-anthropic": "agent_anthropic",
    "agt-sub-b": "agent_sub_b",
    "agt-team": "agent_team",
    "agt-mcp": "agent_mcp",
}
ORG = "5b0f0c36-2f1e-4c63-9a3e-0d5e7c1a9f10"
TASK_ID = "3f7c2a9e-8d41-4c1b-9e0a-6b5d2f1e7a44"
DB_URI = "postgresql://xp_user:pw-postgresql@db.example:5432/agents"
VERIFIED_BODY = {
    "query_params": {"q": "ada", "limit": 10, "company": "Acme"},
    "path_params": {},
    "body_params": {},
}


class FakeContext:
    """Records what the adapter asks of the platform."""

    def __init__(self, *, is_async: bool = False, org_headers: Optional[Dict[str, str]] = None) -> None:
        self.is_async = is_async
        self.org_headers = {"X-Org-Trace": "fake-org-trace"} if org_headers is None else org_headers
        self.calls: List[Any] = []
        self.tool_result: Optional[ToolInvocationResult] = None
        self.mcp_servers_seen: List[MCPServerDetails] = []

    def org_llm_headers(self) -> Dict[str, str]:
        self.calls.append("org_llm_headers")
        return dict(self.org_headers)

    def db_connection_uri(self, agent: Agent) -> str:
        self.calls.append(("db", agent.id))
        return DB_URI

    def load_agents(self, ids: List[str]) -> List[Agent]:
        self.calls.append(("load_agents", list(ids)))
        return [make_agent(i) for i in ids]

    def invoke_tool(self, agent: Agent, task: Optional[Task], tool_id: str, payload: Dict[str, Any], **kw: Any) -> Any:
        self.calls.append(("invoke_tool", agent.id, task.id if task else None, tool_id, payload))
        if self.tool_result is not None:
            return self.tool_result
        return ToolInvocationResult(
            tool_id=tool_id,
            payload=payload,
            result={"contacts": [{"id": "c-1"}]},
            is_success=True,
            task_id=task.id if task else None,
        )

    def mcp_headers(self, agent: Agent, task: Optional[Task], server: MCPServerDetails) -> Dict[str, str]:
        self.calls.append(("mcp_headers", agent.id, server.url))
        self.mcp_servers_seen.append(server)
        # A careless context that writes the token into the object it was given:
        # the adapter must have handed it a copy.
        server.api_key = "oauth-token"  # type: ignore[assignment]
        server.headers["Authorization"] = "Bearer oauth-token"
        return {"X-Static": "1", "Authorization": "Bearer oauth-token"}


def make_agent(agent_id: str = "agt-openai", **changes: Any) -> Agent:
    data = load_fixture(FIXTURE_OF[agent_id])
    data.update(changes)
    return structure(data, Agent)


def make_task(**changes: Any) -> Task:
    data = load_fixture("task_status")
    data.update(changes)
    return structure(data, Task)


def json_agent() -> Agent:
    """agent_openai configured for JSON output with a schema."""
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "found": {"type": "boolean"}},
        "required": ["name", "found"],
        "additionalProperties": False,
    }
    return make_agent(output_format="json", output_schema=schema)


def build(
    agent: Agent, task: Optional[Task] = None, context: Optional[FakeContext] = None, **kw: Any
) -> Dict:
    return build_agno_args(agent, task, kw.get("override"), kw.get("tools"), None, context or FakeContext())


def no_private_keys(args: Dict[str, Any]) -> bool:
    return not any(k.startswith("_") for k in args)


# -- the OpenAI agent with two xpander tools ------------------------------------------------------


def test_openai_agent_without_task(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-openai")
    context = FakeContext()
    agent = make_agent()
    before = unstructure(agent)
    args = build(agent, None, context)

    assert set(args) == {
        "id",
        "name",
        "description",
        "instructions",
        "model",
        "markdown",
        "add_history_to_context",
        "num_history_runs",
        "db",
        "tools",
        "add_datetime_to_context",
        "datetime_format",
        "timezone_identifier",
        "store_events",
        "telemetry",
        "knowledge_retriever",  # agt-openai has knowledge base kb-1 (features/knowledge.py)
        "search_knowledge",
    }
    assert args["id"] == "agt-openai" and args["name"] == "CRM Assistant"
    assert args["description"] == "Looks up CRM contacts and writes notes"
    assert (
        "['You work for the sales team.'" in args["instructions"]
        and "Keep CRM records accurate" in args["instructions"]
    )
    assert args["markdown"] is True and args["num_history_runs"] == 10
    assert (args["store_events"], args["telemetry"], args["add_datetime_to_context"]) == (True, False, True)

    model = args["model"]
    assert type(model) is OpenAIChat
    assert (model.id, model.api_key, model.temperature, model.user) == ("gpt-4.1", "sk-env-openai", 0.0, ORG)
    assert model.extra_headers == {"X-Org-Trace": "fake-org-trace"}
    assert model.base_url is None and model.reasoning_effort is None

    db = args["db"]
    assert type(db) is PostgresDb and db.db_schema == "ag_agt_openai"
    assert db.db_url == "postgresql+psycopg://xp_user:pw-postgresql@db.example:5432/agents"

    functions = args["tools"]
    assert [f.name for f in functions] == ["XpanderCrmSearchContacts", "XpanderCrmCreateNote"]
    assert all(isinstance(f, Function) and f.skip_entrypoint_processing for f in functions)
    assert functions[1].description == "Attach a free-text note to a CRM contact."
    assert "company" not in json.dumps(functions[0].parameters)

    assert context.calls == ["org_llm_headers", ("db", "agt-openai")]
    assert unstructure(agent) == before
    built = AgnoAgent(**args)
    assert built.id == "agt-openai" and built.session_id is None
    assert [f.parameters for f in built.tools] == [f.parameters for f in functions]


def test_openai_agent_with_task():
    task = make_task()
    args = build(make_agent(), task)
    assert args["session_id"] == TASK_ID and args["user_id"] == "user-42"
    assert args["expected_output"] == "A one-paragraph confirmation."
    assert args["additional_context"] == (
        'User details: {"id":"user-42","first_name":"Dana","last_name":"Levi","email":"dana@example.com",'
        '"additional_attributes":{"plan":"enterprise"},"timezone":"Europe/Berlin"}\n'
        "The user is on the enterprise plan."
    )
    assert args["markdown"] is True  # task format equals the agent's
    assert "tool_call_limit" not in args  # no invented default
    AgnoAgent(**args)


def test_conversation_id_wins_for_the_session_and_overrides_from_the_task_apply():
    task = make_task(
        conversation_id="conv-9", instructions_override="Only answer in French.", tool_call_limit=7
    )
    args = build(make_agent(), task)
    assert args["session_id"] == "conv-9"
    assert args["instructions"] == "Only answer in French."
    assert args["tool_call_limit"] == 7


# -- calling an xpander tool the way agno does --------------------------------------------------


def test_tool_call_sync_and_async_calls_invoke_tool_once_with_this_calls_ids():
    context = FakeContext()
    task = make_task()
    search = build(make_agent(), task, context)["tools"][0]
    context.calls.clear()

    outcome = FunctionCall(function=search, arguments={"query_params": {"q": "ada"}}).execute()
    assert outcome.status == "success"
    assert json.loads(outcome.result) == {"contacts": [{"id": "c-1"}]}
    assert context.calls == [
        ("invoke_tool", "agt-openai", TASK_ID, "XpanderCrmSearchContacts", VERIFIED_BODY)
    ]

    context.calls.clear()
    outcome = asyncio.run(FunctionCall(function=search, arguments={"query_params": {"q": "ada"}}).aexecute())
    assert outcome.status == "success"
    assert context.calls == [
        ("invoke_tool", "agt-openai", TASK_ID, "XpanderCrmSearchContacts", VERIFIED_BODY)
    ]


def test_tools_of_two_builds_keep_their_own_agent_and_task():
    context = FakeContext()
    first = build(make_agent(), make_task(id="task-1"), context)["tools"][1]
    second = build(make_agent(version=9), make_task(id="task-2"), context)["tools"][1]
    context.calls.clear()
    note = {"path_params": {"contact_id": "c-1"}, "body_params": {"text": "demo"}}
    FunctionCall(function=first, arguments=note).execute()
    FunctionCall(function=second, arguments=note).execute()
    assert [c[2] for c in context.calls] == ["task-1", "task-2"]
    assert context.calls[0][4] == {
        "path_params": {"contact_id": "c-1"},
        "body_params": {"text": "demo"},
        "query_params": {},
    }


def test_tool_without_task_and_payload_extension():
    context = FakeContext()
    search = build(make_agent(), None, context)["tools"][0]
    FunctionCall(function=search, arguments={"query_params": {"q": "x"}}).execute()
    assert context.calls[-1][2] is None

    extended = build(make_agent(), make_task(payload_extension={"headers": {"x-tenant": "t1"}}), context)[
        "tools"
    ][0]
    FunctionCall(function=extended, arguments={"query_params": {"q": "x"}}).execute()
    assert context.calls[-1][4]["headers"] == {"x-tenant": "t1"}


def test_tool_errors_reach_the_model_as_json():
    context = FakeContext()
    context.tool_result = ToolInvocationResult(
        tool_id="t", payload={}, status_code=404, result="no such contact", is_error=True
    )
    search = build(make_agent(), make_task(), context)["tools"][0]
    outcome = FunctionCall(function=search, arguments={"query_params": {"q": "x"}}).execute()
    assert json.loads(outcome.result) == {"is_error": True, "status_code": 404, "result": "no such contact"}
    assert (
        render_tool_result(ToolInvocationResult(tool_id="t", payload={}, result="plain", is_success=True))
        == "plain"
    )


# -- Anthropic: custom key precedence, JSON output, guardrails -----------------------------------


@pytest.mark.parametrize(
    "cloud, env_key, expected",
    [
        (False, None, "sk-ant-CUSTOM"),
        (False, "sk-ant-ENV", "sk-ant-ENV"),
        (True, "sk-ant-ENV", "sk-ant-CUSTOM"),
        (True, None, "sk-ant-CUSTOM"),
    ],
)
def test_anthropic_agent_key_precedence(monkeypatch, cloud, env_key, expected):
    if cloud:
        monkeypatch.setenv("IS_XPANDER_CLOUD", "true")
    if env_key:
        monkeypatch.setenv("ANTHROPIC_API_KEY", env_key)
    args = build(make_agent("agt-anthropic"))
    model = args["model"]
    assert type(model) is Claude and model.api_key == expected
    AgnoAgent(**args)


def test_anthropic_agent_model_output_and_guardrails():
    args = build(make_agent("agt-anthropic"), make_task(output_format=None))
    model = args["model"]
    assert model.id == "claude-sonnet-4-5-20250929" and model.temperature == 0.0
    assert model.cache_system_prompt is True and model.max_tokens == 32000
    # extra headers as default headers; the SDK's User-Agent is not replaced by the org id
    assert model.default_headers == {"X-Org-Trace": "fake-org-trace", "x-team": "legal"}
    assert args["use_json_mode"] is True
    assert args["output_schema"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "StructuredOutput",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"risk": {"type": "string"}, "score": {"type": "number"}},
                "required": ["risk"],
            },
        },
    }
    assert "markdown" not in args  # a task without a format changes nothing
    assert args["tool_call_limit"] == 20
    assert args["enable_session_summaries"] is True and args["num_history_runs"] == 5
    assert [type(h) for h in args["pre_hooks"]] == [PIIDetectionGuardrail] and args["pre_hooks"][
        0
    ].mask_pii is True
    assert args["expected_output"] == "A one-paragraph confirmation."
    AgnoAgent(**args)


def test_moderation_guardrail_gets_the_openai_key_only_for_openai(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-openai")
    settings = {
        "session_storage": False,
        "openai_moderation_enabled": True,
        "prompt_injection_detection_enabled": True,
        "openai_moderation_categories": ["violence"],
    }
    args = build(make_agent(agno_settings=settings))
    injection, moderation = args["pre_hooks"]
    assert isinstance(injection, PromptInjectionGuardrail) and isinstance(
        moderation, OpenAIModerationGuardrail
    )
    assert moderation.api_key == "sk-env-openai" and moderation.raise_for_categories == ["violence"]

    # agno's guardrail falls back to OPENAI_API_KEY itself; without it, nothing is sent.
    monkeypatch.delenv("OPENAI_API_KEY")
    proxied = build(
        make_agent(
            agno_settings=settings,
            llm_api_base="https://proxy.example/v1",
            llm_credentials={"name": "k", "value": "sk-proxy"},
        )
    )
    assert proxied["model"].api_key == "sk-proxy" and proxied["pre_hooks"][1].api_key is None
    claude = build(make_agent("agt-anthropic", agno_settings=settings))
    assert claude["pre_hooks"][1].api_key is None


# -- output formats ---------------------------------------------------------------------------------


def test_json_agent_builds_with_the_response_format_wrapper():
    agent = json_agent()
    args = build(agent, make_task(output_format=None))
    assert args["use_json_mode"] is True and "markdown" not in args
    assert args["output_schema"]["json_schema"]["schema"] == agent.output_schema
    assert args["output_schema"]["json_schema"]["schema"] is not agent.output_schema
    built = AgnoAgent(**args)
    assert built.output_schema == args["output_schema"]


def test_task_output_format_rules():
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    as_json = build(make_agent(), make_task(output_format="json", output_schema=schema))
    assert as_json["use_json_mode"] is True and as_json["markdown"] is False
    assert as_json["output_schema"]["json_schema"]["schema"] == schema

    json_without_schema = build(make_agent(), make_task(output_format="json", output_schema=None))
    assert json_without_schema["use_json_mode"] is True and "output_schema" not in json_without_schema

    task_schema_on_json_agent = build(json_agent(), make_task(output_format="json", output_schema=schema))
    assert task_schema_on_json_agent["output_schema"]["json_schema"]["schema"] == schema

    as_text = build(json_agent(), make_task(output_format="text"))
    assert as_text["markdown"] is False and "use_json_mode" not in as_text and "output_schema" not in as_text

    markdown_agent_plain_task = build(make_agent(), make_task(output_format=None))
    assert markdown_agent_plain_task["markdown"] is True  # upstream bug #8: turned off

    voice = build(make_agent(output_format="voice"), make_task(output_format="json", output_schema=schema))
    assert voice["use_json_mode"] is False and voice["markdown"] is False and "output_schema" not in voice


# -- team ------------------------------------------------------------------------------------------


def test_team_with_members_keeping_their_own_models(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-openai")
    context = FakeContext()
    extra = Function(
        name="caller_tool",
        description="d",
        parameters={"type": "object", "properties": {}},
        entrypoint=lambda: "ok",
        skip_entrypoint_processing=True,
    )
    args = build(
        make_agent("agt-team"), make_task(instructions_override="Leader only."), context, tools=[extra]
    )

    assert no_private_keys(args)
    assert (
        args["add_member_tools_to_context"]
        and args["share_member_interactions"]
        and args["show_members_responses"]
    )
    assert (
        args["instructions"].startswith("Leader only.")
        and "<expected_output>\n            A short report" in args["instructions"]
    )
    assert args["tools"] == [extra]
    reviewer, researcher = args["members"]
    assert isinstance(reviewer, AgnoAgent) and isinstance(researcher, AgnoAgent)
    assert (reviewer.id, researcher.id) == ("agt-anthropic", "agt-sub-b")
    assert type(reviewer.model) is Claude and reviewer.model.api_key == "sk-ant-CUSTOM"
    assert type(researcher.model) is OpenAIChat and researcher.model.id == "gpt-4.1-mini"
    assert "Leader only." not in (reviewer.instructions or "")  # the override is the leader's
    assert reviewer.tool_call_limit == 20 and not reviewer.tools  # members get no caller tools
    assert reviewer.db.db_schema == "ag_agt_anthropic" and researcher.db.db_schema == "ag_agt_sub_b"
    assert context.calls == [
        "org_llm_headers",
        ("db", "agt-team"),
        ("load_agents", ["agt-anthropic", "agt-sub-b"]),
        ("db", "agt-anthropic"),
        ("db", "agt-sub-b"),
    ]
    team = AgnoTeam(**args)
    assert [m.id for m in team.members] == ["agt-anthropic", "agt-sub-b"]


def test_team_without_task_and_nested_team_and_cycles():
    args = build(make_agent("agt-team"))
    AgnoTeam(**args)

    class Nested(FakeContext):
        def load_agents(self, ids):
            self.calls.append(("load_agents", list(ids)))
            return [
                make_agent("agt-team", id="agt-inner") if i == "agt-inner" else make_agent(i) for i in ids
            ]

    outer = make_agent("agt-team", graph=[{"item_id": "agt-inner", "type": "agent", "targets": []}])
    nested = build(outer, None, Nested())
    assert isinstance(nested["members"][0], AgnoTeam)
    AgnoTeam(**nested)

    with pytest.raises(InvalidInputError, match="contains itself"):
        build(
            make_agent(
                "agt-team", id="agt-inner", graph=[{"item_id": "agt-inner", "type": "agent", "targets": []}]
            ),
            None,
            Nested(),
        )


def test_a_team_leader_with_every_option_constructs():
    settings = {
        "session_storage": True,
        "learning": True,
        "session_summaries": True,
        "max_tool_calls_from_history": 3,
        "tool_call_limit": 9,
        "pii_detection_enabled": True,
        "prompt_injection_detection_enabled": True,
    }
    leader = make_agent(
        "agt-team", agno_settings=settings, output_format="json", output_schema={"type": "object"}
    )
    args = build(leader, make_task(output_format=None))
    assert args["learning"] is True and args["max_tool_calls_from_history"] == 3
    assert args["tool_call_limit"] == 9 and args["use_json_mode"] is True
    AgnoTeam(**args)
    AgnoAgent(**build(make_agent(agno_settings=settings), make_task()))


# -- override and extra tools ---------------------------------------------------------------------


def test_override_model_skips_model_construction_and_org_headers():
    context = FakeContext()
    mine = OpenAIChat(id="x", api_key="k")
    args = build(make_agent("agt-team"), make_task(), context, override={"model": mine, "markdown": False})
    assert args["model"] is mine and args["markdown"] is False
    assert all(member.model is mine for member in args["members"])
    assert "org_llm_headers" not in context.calls
    AgnoTeam(**args)

    solo = build(make_agent(), None, FakeContext(), override={"model": mine, "instructions": ["a", "b"]})
    assert solo["instructions"] == ["a", "b"]  # replaced, never extended character by character
    AgnoAgent(**solo)


def test_extra_tools_are_appended_last():
    def lookup(city: str) -> str:
        return city

    args = build(make_agent(), make_task(), tools=[lookup])
    assert [getattr(t, "name", None) for t in args["tools"][:2]] == [
        "XpanderCrmSearchContacts",
        "XpanderCrmCreateNote",
    ]
    assert args["tools"][2] is lookup
    AgnoAgent(**args)


# -- MCP ------------------------------------------------------------------------------------------


def test_remote_mcp_server_gets_context_headers_and_is_not_mutated():
    context = FakeContext()
    agent = make_agent("agt-mcp")
    task = make_task(
        mcp_servers=[
            {
                "type": "local",
                "command": "npx -y @mcp/everything --label 'a b'",
                "env_vars": {"TOKEN": "t", "N": 1},
                "allowed_tools": ["echo"],
            },
            {"type": "remote", "url": "https://sse.example/sse", "transport": "sse"},
            {"type": "local", "command": "   "},
        ]
    )
    args = build(agent, task, context)
    remote, local, sse = args["tools"]
    assert isinstance(remote, MCPTools) and remote.transport == "streamable-http"
    assert remote.server_params.url == "https://mcp.notion.example/mcp"
    assert remote.server_params.headers == {"X-Static": "1", "Authorization": "Bearer oauth-token"}
    assert remote.include_tools == ["search", "fetch"]
    assert (remote.timeout_seconds, remote.tool_name_prefix) == (120, "mcp_tool")

    assert local.transport == "stdio"
    assert local.server_params.command == "npx"
    assert local.server_params.args == ["-y", "@mcp/everything", "--label", "a b"]
    assert local.server_params.env == {"TOKEN": "t", "N": "1"} and local.include_tools == ["echo"]
    assert sse.transport == "sse" and sse.server_params.url == "https://sse.example/sse"

    # The token never lands on the agent's or the task's own server objects (upstream bug #10).
    stored = agent.mcp_servers[0]
    assert stored.api_key is None and stored.headers == {}
    assert all(s.api_key is None and s.headers == {} for s in task.mcp_servers)
    assert all(seen is not stored for seen in context.mcp_servers_seen)
    assert [c for c in context.calls if c[0] == "mcp_headers"] == [
        ("mcp_headers", "agt-mcp", "https://mcp.notion.example/mcp"),
        ("mcp_headers", "agt-mcp", "https://sse.example/sse"),
    ]
    AgnoAgent(**args)


# -- session storage ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri, is_async, expected",
    [
        ("postgres://u:p@h:5432/db", False, "postgresql+psycopg://u:p@h:5432/db"),
        ("postgresql://u:p@h/db", True, "postgresql+psycopg_async://u:p@h/db"),
        (
            "PostgreSQL+asyncpg://u:postgresql@h/postgresql",
            False,
            "postgresql+psycopg://u:postgresql@h/postgresql",
        ),
        (" postgresql://u:pw@h/db ", False, "postgresql+psycopg://u:pw@h/db"),
        ("sqlite:///x.db", False, "sqlite:///x.db"),
    ],
)
def test_sqlalchemy_url_rewrites_the_scheme_only(uri, is_async, expected):
    assert sqlalchemy_url(uri, is_async=is_async) == expected


def test_async_context_builds_an_async_db():
    db = build(make_agent(), make_task(), FakeContext(is_async=True))["db"]
    assert type(db) is AsyncPostgresDb and db.db_schema == "ag_agt_openai"
    assert db.db_url.startswith("postgresql+psycopg_async://")


def test_no_session_storage_means_no_db_call():
    context = FakeContext()
    args = build(make_agent(agno_settings={"session_storage": False}), make_task(), context)
    assert not {"db", "session_id", "user_id", "add_history_to_context"} & set(args)
    assert context.calls == ["org_llm_headers"]


def test_an_unusable_db_uri_never_shows_its_password():
    class BadUri(FakeContext):
        def db_connection_uri(self, agent):
            return "postgresql://u:SENTINEL-PW@h:notaport/db"

    with pytest.raises(ResponseDecodeError) as info:
        build(make_agent(), None, BadUri())
    assert "SENTINEL-PW" not in str(info.value) and info.value.__cause__ is None


# -- providers --------------------------------------------------------------------------------------


def test_reasoning_models(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-openai")
    high = build(make_agent(model_name="gpt-5", llm_reasoning_effort="high"))["model"]
    assert type(high) is OpenAIResponses and high.reasoning_effort == "high" and high.temperature is None
    assert high.extra_headers == {"X-Org-Trace": "fake-org-trace"}  # not dropped for a reasoning effort
    low = build(make_agent(model_name="gpt-5-mini", llm_reasoning_effort="low"))["model"]
    assert type(low) is OpenAIChat and low.reasoning_effort == "low" and low.temperature is None
    assert type(build(make_agent(model_name="gpt-6"))["model"]) is OpenAIResponses
    task_choice = build(make_agent(), make_task(llm_model_name="GPT-5.6-Preview"))["model"]
    assert type(task_choice) is OpenAIResponses and task_choice.id == "GPT-5.6-Preview"


def test_openai_compatible_providers(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-openai")
    nebius = build(make_agent(model_provider="nebius", model_name="Qwen/Qwen3-235B-A22B"))["model"]
    assert nebius.id == "Qwen/Qwen3-235B-A22B" and nebius.api_key == "EMPTY" and nebius.user == ORG
    assert nebius.extra_body == {"prompt_cache_key": nebius.extra_body["prompt_cache_key"]}

    proxy = build(make_agent(llm_api_base="https://llm-proxy.example/v1"))["model"]
    assert (
        proxy.base_url == "https://llm-proxy.example/v1" and proxy.api_key == "EMPTY"
    )  # no env key to a proxy

    compatible = build(
        make_agent(model_provider="my_vllm", model_name="Llama", llm_api_base="http://127.0.0.1:8000/v1")
    )
    assert (
        type(compatible["model"]) is OpenAILike and compatible["model"].base_url == "http://127.0.0.1:8000/v1"
    )
    AgnoAgent(**compatible)

    helicone = build(make_agent(model_provider="helicone"))["model"]
    assert helicone.base_url == "https://ai-gateway.helicone.ai/v1"
    router = build(make_agent(model_provider="open_router", model_name="Anthropic/Claude-Sonnet"))["model"]
    assert router.max_tokens == 32000 and router.id == "Anthropic/Claude-Sonnet"
    nim = build(make_agent(model_provider="nim", model_name="meta/llama-3.3-70b-instruct"))["model"]
    assert nim.temperature == 0.0


def test_unknown_provider_and_missing_endpoint_are_clear_errors():
    with pytest.raises(
        InvalidInputError, match=r"model provider 'huggingface' is not supported .*supported: .*openai"
    ):
        build(make_agent(model_provider="huggingFace"))
    with pytest.raises(InvalidInputError, match="needs the agent's llm_api_base"):
        build(make_agent(model_provider="openai_compatible"))
    with pytest.raises(InvalidInputError, match="azure_ai_foundary needs an endpoint and a key"):
        build(make_agent(model_provider="azure_ai_foundary"))


@pytest.mark.parametrize(
    "provider, module, package",
    [
        ("google_ai_studio", "agno.models.google.gemini", "google-genai"),
        ("amazon_bedrock", "agno.models.aws.bedrock", "boto3"),
        ("azure_ai_foundary", "agno.models.azure.ai_foundry", "azure-ai-inference"),
    ],
)
def test_missing_provider_package_names_it(monkeypatch, provider, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    agent = make_agent(
        model_provider=provider,
        llm_api_base="https://x.example" if "azure" in provider else None,
        llm_credentials={"name": "k", "value": "v"} if "azure" in provider else None,
    )
    with pytest.raises(FrameworkNotInstalledError, match=package):
        build(agent)


def fake_model_module(monkeypatch, module: str, name: str) -> List[Dict[str, Any]]:
    seen: List[Dict[str, Any]] = []

    class FakeModel:
        def __init__(self, **kwargs: Any) -> None:
            seen.append(kwargs)

    fake = types.ModuleType(module)
    setattr(fake, name, FakeModel)
    monkeypatch.setitem(sys.modules, module, fake)
    return seen


def test_gemini_receives_base_url_and_headers(monkeypatch):
    monkeypatch.setenv("GOOGLE_API_KEY", "g-key")
    seen = fake_model_module(monkeypatch, "agno.models.google.gemini", "Gemini")
    build(
        make_agent(
            model_provider="google_ai_studio",
            model_name="gemini-2.5-pro",
            llm_api_base="https://generativelanguage.googleapis.com",
            llm_extra_headers={"X-A": "1"},
        )
    )
    assert seen == [
        {
            "id": "gemini-2.5-pro",
            "retries": 3,
            "exponential_backoff": True,
            "api_key": "g-key",
            "client_params": {
                "http_options": {
                    "base_url": "https://generativelanguage.googleapis.com",
                    "headers": {"X-Org-Trace": "fake-org-trace", "X-A": "1"},
                }
            },
        }
    ]


def test_bedrock_uses_the_environment_credentials_only(monkeypatch):
    seen = fake_model_module(monkeypatch, "agno.models.aws.bedrock", "AwsBedrock")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    build(make_agent(model_provider="amazon_bedrock", model_name="anthropic.claude-opus-4-7-v1"))
    assert seen[0]["aws_region"] == "eu-west-1" and "temperature" not in seen[0] and "api_key" not in seen[0]
    build(make_agent(model_provider="amazon_bedrock", model_name="amazon.nova-pro-v1:0"))
    assert seen[1]["temperature"] == 0.0
    with pytest.raises(InvalidInputError, match="stored or OIDC credential"):
        build(
            make_agent(model_provider="amazon_bedrock", llm_credentials={"name": "k", "value": "bedrock-key"})
        )


def test_missing_agno_is_a_framework_not_installed_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "agno", None)
    with pytest.raises(
        FrameworkNotInstalledError, match=r'agno is not installed: pip install "xpander-sync\[agno\]"'
    ):
        build_agno_args(make_agent(), None, None, None, None, FakeContext())


def test_every_built_dict_has_only_public_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    for agent_id in FIXTURE_OF:
        args = get_args_for(make_agent(agent_id), make_task(), context=FakeContext())
        assert no_private_keys(args), agent_id
        (AgnoTeam if "members" in args else AgnoAgent)(**args)


# -- through Backend.get_args (the real context) ---------------------------------------------------


def calls_of(mocked) -> List[str]:
    return [f"{c.request.method} {c.request.url.replace(BASE, '')}" for c in mocked.calls]


def mock_agent(mocked, agent_id: str) -> None:
    mocked.get(f"{BASE}/agents/{agent_id}", json=load_fixture(FIXTURE_OF[agent_id]))


def mock_platform(mocked, *agent_ids: str, headers: bool = True, memories: bool = False) -> None:
    for agent_id in agent_ids:
        mock_agent(mocked, agent_id)
        mocked.get(
            f"{BASE}/agents/{agent_id}/db",
            json={"id": "db-1", "name": "db", "connection_uri": {"uri": DB_URI}},
        )
        if memories:  # a task with a user asks for each non-leader's memories (off here)
            mocked.get(f"{BASE}/memories/{agent_id}", json={"settings": {"enabled": False}})
        mocked.post(f"{BASE}/tools/{agent_id}/channel-presence", json={"text": ""})
    if headers:
        mocked.get(
            f"{BASE}/metadata/default_llm_extra_headers",
            json={"X-Org-Trace": "fake-org-trace", "X-Empty-Dropped": ""},
        )


def test_get_args_openai_calls_and_tool_call_on_the_wire(mocked, config, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-openai")
    mock_platform(mocked, "agt-openai", memories=True)
    task = make_task()
    args = Backend(config).get_args(agent_id="agt-openai", task=task)
    assert calls_of(mocked) == [
        "GET /agents/agt-openai",
        "POST /tools/agt-openai/channel-presence",
        "GET /metadata/default_llm_extra_headers",
        "GET /agents/agt-openai/db",
        "GET /memories/agt-openai?user_id=user-42",
    ]
    assert args["model"].extra_headers == {"X-Org-Trace": "fake-org-trace"}
    AgnoAgent(**args)

    mocked.post(
        f"{BASE}/agents/agt-openai/operations/XpanderCrmSearchContacts",
        json={"contacts": [{"id": "c-1", "name": "Ada"}]},
    )
    outcome = FunctionCall(function=args["tools"][0], arguments={"query_params": {"q": "ada"}}).execute()
    assert json.loads(outcome.result) == {"contacts": [{"id": "c-1", "name": "Ada"}]}
    call = mocked.calls[-1]
    assert call.request.headers["x-agent-version"] == "3"
    assert call.request.headers["x-execution-id"] == TASK_ID
    assert body_of(call) == VERIFIED_BODY
    assert len(mocked.calls) == 6  # five build requests, then the tool call


def test_get_args_with_override_model_fetches_no_org_headers(mocked, config):
    mock_platform(mocked, "agt-openai", headers=False)
    mine = OpenAIChat(id="x", api_key="k")
    args = Backend(config).get_args(agent_id="agt-openai", override={"model": mine})
    assert calls_of(mocked) == [
        "GET /agents/agt-openai", "POST /tools/agt-openai/channel-presence", "GET /agents/agt-openai/db",
    ]
    assert args["model"] is mine
    AgnoAgent(**args)


def test_get_args_team_calls(mocked, config):
    mock_platform(mocked, "agt-anthropic", "agt-sub-b", memories=True)
    mock_platform(mocked, "agt-team", headers=False)
    args = Backend(config).get_args(agent_id="agt-team", task=make_task())
    calls = calls_of(mocked)
    assert calls[:4] == [
        "GET /agents/agt-team",
        "POST /tools/agt-team/channel-presence",
        "GET /metadata/default_llm_extra_headers",
        "GET /agents/agt-team/db",
    ]
    assert sorted(calls[4:6]) == [
        "GET /agents/agt-anthropic",
        "GET /agents/agt-sub-b",
    ]  # fetched concurrently
    assert calls[6:] == [  # the leader reads no memories; each member does
        "POST /tools/agt-anthropic/channel-presence", "GET /agents/agt-anthropic/db",
        "GET /memories/agt-anthropic?user_id=user-42",
        "POST /tools/agt-sub-b/channel-presence", "GET /agents/agt-sub-b/db", "GET /memories/agt-sub-b?user_id=user-42",
    ]
    AgnoTeam(**args)


def test_aget_args_builds_an_async_db(mocked, config):
    mock_platform(mocked, "agt-openai", memories=True)
    args = asyncio.run(Backend(config).aget_args(agent_id="agt-openai", task=make_task()))
    assert type(args["db"]) is AsyncPostgresDb
    AgnoAgent(**args)


def test_get_args_with_a_given_agent_does_not_modify_it(mocked, config):
    mocked.get(f"{BASE}/agents/agt-openai/db", json={"connection_uri": {"uri": DB_URI}})
    mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json={})
    mocked.post(f"{BASE}/tools/agt-openai/channel-presence", json={"text": ""})
    agent = make_agent(framework="langchain")
    before = copy.deepcopy(unstructure(agent))
    args = Backend(config).get_args(agent=agent, framework="agno")
    assert unstructure(agent) == before
    assert calls_of(mocked) == [
        "POST /tools/agt-openai/channel-presence", "GET /metadata/default_llm_extra_headers",
        "GET /agents/agt-openai/db",
    ]
    AgnoAgent(**args)


def test_an_unreachable_session_store_is_left_out_with_one_warning(caplog):
    """Issue 14: with no Postgres listening, agno would log a refused connection on every run."""
    import socket

    from xpander_sync.frameworks import agno as agno_adapter

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    open_port = listener.getsockname()[1]
    try:
        class Down(FakeContext):
            def db_connection_uri(self, agent):
                return f"postgresql://u:pw@127.0.0.1:{closed}/agents"

        class Up(FakeContext):
            def db_connection_uri(self, agent):
                return f"postgresql://u:pw@127.0.0.1:{open_port}/agents"

        with caplog.at_level("WARNING", logger="xpander_sync"):
            built = [build(make_agent("agt-openai"), context=Down()) for _ in range(3)]
        assert all("db" not in args and "add_history_to_context" not in args for args in built)
        assert caplog.text.count("session store at 127.0.0.1") == 1 and "pw" not in caplog.text
        AgnoAgent(**built[0])  # still a working agent
        assert type(build(make_agent("agt-openai"), context=Up())["db"]) is PostgresDb
    finally:
        listener.close()
        agno_adapter._probes.clear()
