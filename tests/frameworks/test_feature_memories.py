"""Memories (issue 15, feature 2) in every framework adapter.

* over every adapter (``each_adapter``): with a task whose user has an id, the build reads the agent's
  memories once (``GET /memories/{agent_id}?user_id=...``, 1.5 s, fail-open); enabled, the ``<memories>``
  block is prepended to the context and the ``manage_memory`` tool writes (``POST /memories/{agent_id}``,
  the official body; a save fire-and-forget with a locally derived id, an update or delete waits for the
  answer; at most 2 writes per task); off in every case the official leaves it off;
* one run-matrix case per framework: a real turn against the scripted model served by the local backend,
  where the block reaches the model, the model calls ``manage_memory`` and the backend records the write.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, List

import pytest
import responses

from xpander_sync import Backend, Configuration
from xpander_sync._cache import PlatformCaches
from xpander_sync._converter import structure
from xpander_sync.frameworks import ADAPTERS
from xpander_sync.frameworks.features import memories as feature
from xpander_sync.local import LocalBackend
from xpander_sync.models import Agent, User
from xpander_sync.resources.memories import memory_id_for
from xpander_sync.testing import ScriptedModel, answer_with_tool_result, call_tool
from xpander_sync.testing import make_agent as agent_json

from ..conftest import BASE
from . import test_run_matrix as matrix
from ._features_kit import call_tool as kit_call_tool
from ._features_kit import prompt_text, tool_names
from .conftest import DB, ORG_HEADERS, agent_payload, make_task, mock_members, mock_platform, require_framework
from .test_contract import DRIVERS, each_adapter

TOOL = "manage_memory"
USER_ROW = {"memory_id": "5d1e2b7c-0a4f-4b8e-9c21-7f3a6e8d9b10", "memory": "Prefers short answers.",
            "writer_agent_name": "CRM Assistant", "updated_at": "2026-11-20T09:30:00Z", "scope": "user"}
AGENT_ROW = {"memory_id": "a7c3f9e1-64b2-4d0a-8e5f-1b2c3d4e5f60", "memory": "Acme needs the company filter.",
             "writer_agent_name": "Helper", "updated_at": "2026-11-18T14:05:00Z", "scope": "agent"}
ENABLED = {"user": [USER_ROW], "agent": [AGENT_ROW], "settings": {"enabled": True}}
BLOCK = (
    f'<memories note="{feature.BLOCK_NOTE}">\n'
    "USER (this user):\n"
    "- [5d1e2b7c] (by CRM Assistant, 2026-11-20) Prefers short answers.\n"
    "AGENT (every user of this agent):\n"
    "- [a7c3f9e1] (by Helper, 2026-11-18) Acme needs the company filter.\n"
    "</memories>"
)


@pytest.fixture
def name(request: pytest.FixtureRequest, openai_env: str) -> str:
    """The adapter under test (as test_contract's fixture); skips when its framework is not installed."""
    require_framework(request.param)
    return request.param


def plain_agent(**changes: Any) -> Agent:
    data = agent_payload("agt-openai")
    data.update(knowledge_bases=[], **changes)
    return structure(data, Agent)


def fresh_task(**changes: Any) -> Any:
    return make_task(id=str(uuid.uuid4()), **changes)  # the write limit is per task id


def mock_build(mocked: Any, name: str, agent_id: str = "agt-openai") -> None:
    mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json=dict(ORG_HEADERS))
    if DRIVERS[name].stores_sessions:
        mocked.get(f"{BASE}/agents/{agent_id}/db", json=DB)


def memory_calls(mocked: Any) -> List[Any]:
    return [c for c in mocked.calls if "/memories/" in c.request.url]


def build_with_memories(mocked: Any, config: Any, name: str, answer: Any = ENABLED, **task: Any) -> Any:
    mock_build(mocked, name)
    mocked.get(f"{BASE}/memories/agt-openai", json=answer)
    the_task = fresh_task(**task)
    return the_task, Backend(config).get_args(agent=plain_agent(), task=the_task, framework=name)


@each_adapter()
def test_enabled_memories_prepend_the_block_and_add_the_tool(mocked, config, name):
    _, args = build_with_memories(mocked, config, name)

    calls = memory_calls(mocked)
    assert [(c.request.method, c.request.url) for c in calls] == [
        ("GET", f"{BASE}/memories/agt-openai?user_id=user-42")]
    assert calls[0].request.body is None and calls[0].request.headers["x-api-key"] == config.api_key.reveal()
    text = prompt_text(name, args)
    assert BLOCK in text
    # prepended: the block comes before the user details and the task's own context
    assert text.index(BLOCK) < text.index("User details:") < text.index("The user is on the enterprise plan.")
    assert tool_names(args).count(TOOL) == 1


@each_adapter()
def test_update_and_delete_wait_for_the_answer_and_save_is_fire_and_forget(mocked, config, name):
    task, args = build_with_memories(mocked, config, name)
    mocked.post(f"{BASE}/memories/agt-openai", json={"applied": True, "memory_id": USER_ROW["memory_id"],
                                                      "previous": "Prefers short answers."})

    # the model names a memory by the 8 characters it sees: the full id is sent
    answer = json.loads(kit_call_tool(name, args, TOOL, {"action": "update", "scope": "user",
                                                         "memory": "Prefers bullet lists.", "memory_id": "5d1e2b7c"}))
    assert answer == {"applied": True, "memory_id": USER_ROW["memory_id"], "previous": "Prefers short answers."}
    post = memory_calls(mocked)[-1].request
    assert post.method == "POST" and post.url == f"{BASE}/memories/agt-openai"
    assert json.loads(post.body) == {
        "action": "update", "scope": "user", "memory": "Prefers bullet lists.", "memory_id": USER_ROW["memory_id"],
        "user_id": "user-42", "writer_agent_id": "agt-openai", "writer_agent_name": "CRM Assistant"}

    started = time.monotonic()
    saved = json.loads(kit_call_tool(name, args, TOOL, {"action": "save", "scope": "agent",
                                                        "memory": "Acme renews in March."}))
    expected_id = memory_id_for("agent", "user-42", "agt-openai", "Acme renews in March.")
    assert saved == {"action": "save", "memory_id": expected_id, "status": "saving"}
    assert time.monotonic() - started < 1.0
    assert feature.wait_for_saves(5.0)
    assert json.loads(memory_calls(mocked)[-1].request.body) == {
        "action": "save", "scope": "agent", "memory": "Acme renews in March.", "memory_id": expected_id,
        "user_id": "user-42", "writer_agent_id": "agt-openai", "writer_agent_name": "CRM Assistant"}

    # a third write in the same task is refused without a request
    before = len(memory_calls(mocked))
    third = json.loads(kit_call_tool(name, args, TOOL, {"action": "delete", "scope": "agent",
                                                        "memory_id": "a7c3f9e1"}))
    assert third["is_error"] is True and "at most 2 memory writes per task" in third["result"]
    assert len(memory_calls(mocked)) == before and task.id


@each_adapter()
def test_a_bad_write_is_an_error_the_model_sees_and_costs_nothing(mocked, config, name):
    _, args = build_with_memories(mocked, config, name)
    answer = json.loads(kit_call_tool(name, args, TOOL, {"action": "update", "scope": "user", "memory": "x"}))
    assert answer["is_error"] is True and "memory_id" in answer["result"]
    assert len(memory_calls(mocked)) == 1  # the read only


@each_adapter()
def test_a_slow_update_answers_an_error_after_its_cap(mocked, config, name, monkeypatch):
    monkeypatch.setattr(feature, "WRITE_TIMEOUT", 0.2)
    _, args = build_with_memories(mocked, config, name)
    mocked.add_callback("POST", f"{BASE}/memories/agt-openai",
                        callback=lambda request: (time.sleep(0.6), (200, {}, '{"applied": true}'))[1])
    started = time.monotonic()
    answer = json.loads(kit_call_tool(name, args, TOOL, {"action": "delete", "scope": "user",
                                                         "memory_id": "5d1e2b7c"}))
    assert time.monotonic() - started < 0.55
    assert answer["is_error"] is True and "no answer within 0.2 s" in answer["result"]
    time.sleep(0.5)  # the dropped call ends before the mock is checked


@each_adapter()
def test_disabled_memories_add_nothing(mocked, config, name):
    _, args = build_with_memories(mocked, config, name, answer={"user": [USER_ROW], "agent": [],
                                                                "settings": {"enabled": False}})
    assert "<memories" not in prompt_text(name, args) and TOOL not in tool_names(args)
    assert len(memory_calls(mocked)) == 1


@each_adapter()
def test_memories_fail_open_when_the_platform_fails_or_is_slow(mocked, config, name, monkeypatch, caplog):
    mock_build(mocked, name)
    mocked.get(f"{BASE}/memories/agt-openai", json={"detail": "boom"}, status=500)
    with caplog.at_level(logging.WARNING, logger="xpander_sync"):
        args = Backend(config).get_args(agent=plain_agent(), task=fresh_task(), framework=name)
    assert "<memories" not in prompt_text(name, args) and TOOL not in tool_names(args)
    assert len(memory_calls(mocked)) == 1  # not retried: the read has 1.5 s
    assert "memories unavailable" in caplog.text
    mocked.remove("GET", f"{BASE}/memories/agt-openai")

    monkeypatch.setattr(feature, "READ_TIMEOUT", 0.2)
    mocked.add_callback("GET", f"{BASE}/memories/agt-openai",
                        callback=lambda request: (time.sleep(0.6), (200, {}, json.dumps(ENABLED)))[1])
    started = time.monotonic()
    args = Backend(config).get_args(agent=plain_agent(), task=fresh_task(), framework=name)
    assert time.monotonic() - started < 0.55
    assert "<memories" not in prompt_text(name, args) and TOOL not in tool_names(args)
    time.sleep(0.5)


@each_adapter()
@pytest.mark.parametrize("case", ["no-task", "no-user", "block-already-there", "memory-ops-schema"])
def test_memories_stay_off_where_the_official_leaves_them_off(mocked, config, name, case):
    mock_build(mocked, name)
    task: Any = None
    if case == "no-user":
        task = fresh_task(input={"text": "hi", "files": [], "user": None})
    elif case == "block-already-there":
        task = fresh_task(additional_context='<memories note="from the caller">\n</memories>')
    elif case == "memory-ops-schema":
        mocked.get(f"{BASE}/memories/agt-openai", json=ENABLED)
        task = fresh_task(output_schema={"type": "object", "properties": {"answer": {"type": "string"},
                                                                          "memory_ops": {"type": "array"}}})
    args = Backend(config).get_args(agent=plain_agent(), task=task, framework=name)
    assert TOOL not in tool_names(args)
    if case == "memory-ops-schema":  # read and shown; the answer carries the writes, so no tool
        assert BLOCK in prompt_text(name, args) and len(memory_calls(mocked)) == 1
    else:
        assert memory_calls(mocked) == []


@each_adapter()
def test_a_team_leader_reads_no_memories_its_members_do(mocked, config, name):
    db = DRIVERS[name].stores_sessions
    mock_platform(mocked, "agt-team", db=db)
    mock_members(mocked, db=db)
    for member in ("agt-anthropic", "agt-sub-b"):
        mocked.get(f"{BASE}/memories/{member}", json={"settings": {"enabled": False}})
    Backend(config).get_args(agent_id="agt-team", task=fresh_task(), framework=name)
    urls = sorted(c.request.url.replace(BASE, "") for c in memory_calls(mocked))
    assert urls == ["/memories/agt-anthropic?user_id=user-42", "/memories/agt-sub-b?user_id=user-42"]


def test_the_block_and_its_lines():
    assert feature.memory_line({"memory_id": "abc", "memory": " two\nlines "}) == "- [abc] (by unknown) two lines"
    assert feature.memories_block([], []).endswith("USER (this user):\n- (none)\nAGENT (every user of this agent):"
                                                   "\n- (none)\n</memories>")
    assert feature.rows_of([{"memory": "x"}, {"no": "text"}, "junk"]) == [{"memory": "x"}]
    assert not feature.has_memory_ops(None) and feature.has_memory_ops({"properties": {"memory_ops": {}}})


def test_a_failed_save_is_logged(mocked, config, caplog):
    mock_build(mocked, "agno")
    mocked.get(f"{BASE}/memories/agt-openai", json=ENABLED)
    mocked.post(f"{BASE}/memories/agt-openai", json={"detail": "nope"}, status=400)
    args = Backend(config).get_args(agent=plain_agent(), task=fresh_task(), framework="agno")
    with caplog.at_level(logging.WARNING, logger="xpander_sync"):
        kit_call_tool("agno", args, TOOL, {"action": "save", "scope": "user", "memory": "x"})
        assert feature.wait_for_saves(5.0)
    assert "saving memory" in caplog.text and "failed" in caplog.text


# -- cached for agent_cache_ttl, dropped by a write from this process ----------------------------------------

OTHER_USER = {"text": "hi", "files": [], "user": {"id": "user-7", "first_name": "Noa"}}


def memory_reads(mocked: Any) -> List[str]:
    return [c.request.url for c in memory_calls(mocked) if c.request.method == "GET"]


def rebuild(config: Any, name: str, **task: Any) -> Any:
    return Backend(config).get_args(agent=plain_agent(), task=fresh_task(**task), framework=name)


@each_adapter()
def test_memories_are_reused_warm_and_a_write_here_is_read_by_the_next_build(mocked, config, name):
    _, args = build_with_memories(mocked, config, name)
    mocked.post(f"{BASE}/memories/agt-openai", json={"applied": True, "memory_id": USER_ROW["memory_id"]})
    assert BLOCK in prompt_text(name, rebuild(config, name))  # warm: the same user's memories, no request
    assert len(memory_reads(mocked)) == 1

    # an update through manage_memory: the next build reads again and sees it
    kit_call_tool(name, args, TOOL, {"action": "update", "scope": "user", "memory": "Prefers bullet lists.",
                                     "memory_id": "5d1e2b7c"})
    updated = dict(ENABLED, user=[dict(USER_ROW, memory="Prefers bullet lists.")])
    mocked.replace(responses.GET, f"{BASE}/memories/agt-openai", json=updated)
    args = rebuild(config, name)
    assert "Prefers bullet lists." in prompt_text(name, args) and len(memory_reads(mocked)) == 2
    rebuild(config, name)
    assert len(memory_reads(mocked)) == 2

    # a fire-and-forget save: dropped when sent and again when done
    kit_call_tool(name, args, TOOL, {"action": "save", "scope": "user", "memory": "Works from Lisbon."})
    assert feature.wait_for_saves(5.0)
    rebuild(config, name)
    assert len(memory_reads(mocked)) == 3


@each_adapter()
def test_memories_cache_per_user_failures_not_cached_and_ttl_zero_reads_every_build(mocked, config, name):
    build_with_memories(mocked, config, name)
    rebuild(config, name, input=OTHER_USER)  # another user: its own read
    assert memory_reads(mocked) == [f"{BASE}/memories/agt-openai?user_id=user-42",
                                    f"{BASE}/memories/agt-openai?user_id=user-7"]

    mocked.replace(responses.GET, f"{BASE}/memories/agt-openai", json={"detail": "boom"}, status=500)
    other = Configuration(api_key=config.api_key, organization_id="org-test", base_url=BASE, agent_cache_ttl=3)
    for _ in range(2):  # a failure is not cached: the next build asks again
        assert "<memories" not in prompt_text(name, rebuild(other, name))
    assert len(memory_reads(mocked)) == 4

    mocked.replace(responses.GET, f"{BASE}/memories/agt-openai", json={"settings": {"enabled": False}})
    for _ in range(2):  # an answer that turns memories off is an answer: cached
        assert "<memories" not in prompt_text(name, rebuild(other, name))
    assert len(memory_reads(mocked)) == 5

    fresh = Configuration(api_key=config.api_key, organization_id="org-test", base_url=BASE, agent_cache_ttl=0)
    mocked.replace(responses.GET, f"{BASE}/memories/agt-openai", json=ENABLED)
    for _ in range(2):  # agent_cache_ttl=0: every build reads
        assert BLOCK in prompt_text(name, rebuild(fresh, name))
    assert len(memory_reads(mocked)) == 7


def test_a_write_drops_the_memories_it_changes():
    caches = PlatformCaches(agent_ttl=60, metadata_ttl=60)
    keys = [("agt-a", "user-1"), ("agt-a", "user-2"), ("agt-b", "user-1")]

    def fill() -> None:
        for key in keys:
            caches.memories.put(key, {"found": None})

    def held() -> List[Any]:
        return [key for key in keys if caches.memories.get(key) is not None]

    fill()
    feature.forget_memories(caches, "agt-a", "user-1", "user")  # this user's view only
    assert held() == [("agt-a", "user-2"), ("agt-b", "user-1")]
    fill()
    feature.forget_memories(caches, "agt-a", "user-1", "agent")  # every user of the agent sees it
    assert held() == [("agt-b", "user-1")]
    fill()
    caches.clear()
    assert held() == []


def test_a_read_under_way_when_a_write_drops_the_key_is_not_stored():
    caches = PlatformCaches(agent_ttl=60, metadata_ttl=60)
    key = ("agt-a", "user-1")

    def load() -> Any:
        feature.forget_memories(caches, "agt-a", "user-1", "user")  # a write lands while the read is out
        return {"found": {"user": [], "agent": []}}

    assert caches.memories.get_or_load(key, load) == {"found": {"user": [], "agent": []}}
    assert caches.memories.get(key) is None  # it may predate the write: the next build reads again


# -- a real turn per framework: the block reaches the model, the model writes a memory ---------------------

RUN_CASES = [pytest.param(n, id=n, marks=pytest.mark.framework(n)) for n in ADAPTERS]


@pytest.mark.parametrize("name", RUN_CASES)
def test_a_real_turn_reads_and_writes_memories(clean_environ, tmp_path, name):
    require_framework(name)
    with LocalBackend(db_path=str(tmp_path / "local.sqlite3"), api_key="xpk-mem") as local:
        local.add_agent(agent_json(
            "agt-mem", "Memory Agent", framework=name, output_format="text",
            llm_credentials={"name": "k", "value": "sk-stored-mem"},
            _local_memories={"enabled": True, "user": [{"memory_id": "m-0001-seed", "user_id": "user-42",
                                                        "memory": "Drinks tea, not coffee."}]},
        ))
        model = local.mount_llm(ScriptedModel())
        backend = Backend(Configuration(api_key="xpk-mem", base_url=local.url, organization_id="local-org"))
        user = User(id="user-42", email="dana@example.com")
        task = backend.invoke_agent("agt-mem", "Remember my city", user_details=user)
        args = backend.get_args(agent_id="agt-mem", task=task)
        model.script(call_tool(TOOL, {"action": "save", "scope": "user", "memory": "Lives in Berlin."}),
                     answer_with_tool_result("final: "))

        matrix.DRIVERS[name].run(args, False)
        assert feature.wait_for_saves(10.0)

        requests = model.requests
        assert model.remaining == 0, [(r.tools, r.reply_text) for r in requests]
        assert requests[0].mentions("<memories note=") and requests[0].mentions("Drinks tea, not coffee.")
        assert TOOL in requests[0].tools
        saved_id = memory_id_for("user", "user-42", "agt-mem", "Lives in Berlin.")
        assert saved_id in (requests[1].last_tool_result or "")
        rows = {m["memory_id"]: m for m in local.memories("agt-mem")}
        assert rows[saved_id]["memory"] == "Lives in Berlin." and rows[saved_id]["user_id"] == "user-42"
        assert rows[saved_id]["writer_agent_id"] == "agt-mem" and rows[saved_id]["scope"] == "user"
        writes = [e for e in local.requests_log if e["method"] == "POST" and e["path"] == "/memories/agt-mem"]
        assert [w["body"]["action"] for w in writes] == ["save"]
