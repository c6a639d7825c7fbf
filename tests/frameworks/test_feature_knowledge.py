"""Knowledge bases (issue 15, feature 1) in every framework adapter.

* over every adapter (``each_adapter``): the build asks nothing; agno gets ``knowledge_retriever`` +
  ``search_knowledge=True``, every other framework a ``search_knowledge_base`` tool; a search sends the
  official routes and query (details cached 60 s per knowledge base), answers the best documents by
  score, and fails open (``[]``, logged);
* one run-matrix case per framework: a real turn against the scripted model served by the local backend,
  where the model calls the search tool (agno's own ``search_knowledge_base``) and the document's text
  reaches the next model request.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, List
from urllib.parse import parse_qsl, urlsplit

import pytest

from xpander_sync import Backend, Configuration
from xpander_sync._converter import structure
from xpander_sync.frameworks import ADAPTERS
from xpander_sync.local import LocalBackend
from xpander_sync.models import Agent
from xpander_sync.testing import ScriptedModel, answer_with_tool_result, call_tool
from xpander_sync.testing import make_agent as agent_json

from ..conftest import BASE
from . import test_run_matrix as matrix
from ._features_kit import call_tool as kit_call_tool
from ._features_kit import tool_names
from .conftest import DB, ORG_HEADERS, agent_payload, require_framework
from .test_contract import DRIVERS, each_adapter

KB_TOOL = "search_knowledge_base"
DOCS = {
    "kb-1": [{"content": "Refunds within 30 days.", "score": 0.2}, {"content": "Discount 12%.", "score": 0.9}],
    "kb-2": [{"content": "Support 8-18 CET.", "score": 0.5}],
}


@pytest.fixture
def name(request: pytest.FixtureRequest, openai_env: str) -> str:
    """The adapter under test (as test_contract's fixture); skips when its framework is not installed."""
    require_framework(request.param)
    return request.param


def kb_agent(*kb_ids: str) -> Agent:
    data = agent_payload("agt-openai")
    data["knowledge_bases"] = [{"id": k, "rw": False} for k in kb_ids]
    return structure(data, Agent)


def mock_build(mocked: Any, name: str, agent_id: str = "agt-openai") -> None:
    mocked.get(f"{BASE}/metadata/default_llm_extra_headers", json=dict(ORG_HEADERS))
    if DRIVERS[name].stores_sessions:
        mocked.get(f"{BASE}/agents/{agent_id}/db", json=DB)


def mock_kb(mocked: Any, status: int = 200) -> None:
    for kb_id, docs in DOCS.items():
        mocked.get(f"{BASE}/knowledge_bases/{kb_id}/details", json={"id": kb_id, "name": kb_id}, status=status)
        mocked.get(f"{BASE}/knowledge_bases/{kb_id}", json=docs)


def search(name: str, args: Dict[str, Any], query: str) -> Any:
    """Search as the framework does: agno through its retriever slot, the others through the tool."""
    if name == "agno":
        return args["knowledge_retriever"](agent=None, query=query, num_documents=None, user_id=None)
    text = kit_call_tool(name, args, KB_TOOL, {"query": query})
    return json.loads(text) if text.startswith(("[", "{")) else text


def kb_calls(mocked: Any) -> List[str]:
    return [f"{c.request.method} {c.request.url.replace(BASE, '')}" for c in mocked.calls
            if "/knowledge_bases/" in c.request.url]


@each_adapter()
def test_knowledge_bases_search_every_base_and_answer_the_best_documents(mocked, config, name):
    mock_build(mocked, name)
    args = Backend(config).get_args(agent=kb_agent("kb-1", "kb-2"), framework=name)
    assert kb_calls(mocked) == []  # the build asks nothing: search happens when the model searches
    if name == "agno":
        assert args["search_knowledge"] is True and callable(args["knowledge_retriever"])
        assert KB_TOOL not in tool_names(args)  # agno adds its own search_knowledge_base tool at run time
    else:
        assert tool_names(args)[-1] == KB_TOOL and "knowledge_retriever" not in args
    mock_kb(mocked)

    found = search(name, args, "refund policy")

    assert found == [DOCS["kb-1"][1], DOCS["kb-2"][0], DOCS["kb-1"][0]]  # merged, best score first
    calls = kb_calls(mocked)
    assert sorted(calls[:2]) == ["GET /knowledge_bases/kb-1/details", "GET /knowledge_bases/kb-2/details"]
    searches = [c for c in mocked.calls if "/details" not in c.request.url and "/knowledge_bases/" in c.request.url]
    assert sorted(urlsplit(c.request.url).path for c in searches) == ["/knowledge_bases/kb-1", "/knowledge_bases/kb-2"]
    for call in searches:
        assert parse_qsl(urlsplit(call.request.url).query) == [
            ("search_query", "refund policy"), ("use_bubble", "false"), ("bubble_size", "1000"), ("top_k", "10")]
        assert call.request.headers["x-api-key"] == config.api_key.reveal() and call.request.body is None
    # the details are cached (60 s, per knowledge base): a second search only searches
    search(name, args, "discount")
    assert [c for c in kb_calls(mocked)[4:] if c.endswith("/details")] == []
    assert len(kb_calls(mocked)) == 6


@each_adapter()
def test_a_failing_knowledge_base_answers_no_documents(mocked, config, name, caplog):
    mock_build(mocked, name)
    args = Backend(config).get_args(agent=kb_agent("kb-1"), framework=name)
    mocked.get(f"{BASE}/knowledge_bases/kb-1/details", json={"detail": "boom"}, status=500)
    with caplog.at_level(logging.WARNING, logger="xpander_sync"):
        found = search(name, args, "refund")
    assert found == ([] if name == "agno" else "No documents found")
    assert "knowledge-base search failed" in caplog.text and config.api_key.reveal() not in caplog.text


@each_adapter()
def test_an_agent_without_knowledge_bases_gets_nothing_and_asks_nothing(mocked, config, name):
    mock_build(mocked, name)
    args = Backend(config).get_args(agent=kb_agent(), framework=name)
    assert KB_TOOL not in tool_names(args) and "knowledge_retriever" not in args and "search_knowledge" not in args
    assert kb_calls(mocked) == []


@each_adapter([n for n in ADAPTERS if n != "agno"])  # agno's own search tool owns its arguments
def test_the_search_tool_refuses_a_blank_query_without_a_request(mocked, config, name):
    mock_build(mocked, name)
    args = Backend(config).get_args(agent=kb_agent("kb-1"), framework=name)
    answer = json.loads(kit_call_tool(name, args, KB_TOOL, {"query": " "}))
    assert answer["is_error"] is True and "query" in answer["result"]
    assert kb_calls(mocked) == []


# -- a real turn per framework: the model searches, the document reaches the next request -------------------

KB_DOC = "Refund policy: Acme refunds sensor orders within 30 days of delivery."
RUN_CASES = [pytest.param(n, id=n, marks=pytest.mark.framework(n)) for n in ADAPTERS]


@pytest.mark.parametrize("name", RUN_CASES)
def test_a_real_turn_retrieves_a_document(clean_environ, tmp_path, name):
    require_framework(name)
    with LocalBackend(db_path=str(tmp_path / "local.sqlite3"), api_key="xpk-kb") as local:
        local.add_agent(agent_json(
            "agt-kb", "KB Agent", framework=name, output_format="text",
            llm_credentials={"name": "k", "value": "sk-stored-kb"},
            knowledge_bases=[{"id": "kb-run", "rw": False}],
            _local_knowledge={"kb-run": {"name": "Playbook", "documents": [KB_DOC, "Discounts start at 100 units."]}},
        ))
        model = local.mount_llm(ScriptedModel())
        backend = Backend(Configuration(api_key="xpk-kb", base_url=local.url, organization_id="local-org"))
        args = backend.get_args(agent_id="agt-kb")
        model.script(call_tool(KB_TOOL, {"query": "refund policy"}), answer_with_tool_result("final: "))

        final = matrix.DRIVERS[name].run(args, False)

        requests = model.requests
        assert model.remaining == 0, [(r.tools, r.reply_text) for r in requests]
        assert KB_TOOL in requests[0].tools
        index = next(i for i, r in enumerate(requests) if r.tool_call and r.tool_call["name"] == KB_TOOL)
        assert KB_DOC in (requests[index + 1].last_tool_result or "")
        assert KB_DOC in final
        seen = [(e["method"], e["path"], e["query"]) for e in local.requests_log if "/knowledge_bases/" in e["path"]]
        assert seen[0][:2] == ("GET", "/knowledge_bases/kb-run/details")
        assert seen[1][:2] == ("GET", "/knowledge_bases/kb-run")
        assert seen[1][2]["search_query"] == "refund policy" and seen[1][2]["use_bubble"] == "false"


@pytest.mark.framework("agno")
def test_the_sample_agent_knows_its_playbook_and_remembers_its_user(clean_environ, tmp_path):
    """agt-features, as the local backend ships it: a knowledge base and memories, end to end (agno)."""
    require_framework("agno")
    from xpander_sync.models import User

    with LocalBackend(db_path=str(tmp_path / "local.sqlite3"), api_key="xpk-sample") as local:
        backend = Backend(Configuration(api_key="xpk-sample", base_url=local.url, organization_id="local-org"))
        task = backend.invoke_agent("agt-features", "What is the refund window?",
                                    user_details=User(id="user-42", email="dana@example.com"))
        args = backend.get_args(agent_id="agt-features", task=task, framework="agno")
        assert "Prefers answers as short bullet lists." in args["additional_context"]
        assert "The CRM search needs the company filter" in args["additional_context"]
        assert "manage_memory" in tool_names(args) and args["search_knowledge"] is True
        docs = args["knowledge_retriever"](query="refund policy", num_documents=1)
        assert [d["content"][:14] for d in docs] == ["Refund policy:"]
