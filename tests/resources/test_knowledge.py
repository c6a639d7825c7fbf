"""resources.knowledge: the knowledge-base details and search routes, their query and the answer's documents."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl, urlsplit

import pytest

from xpander_sync import InvalidInputError, NotFoundError
from xpander_sync.resources import KnowledgeBases
from xpander_sync.resources.knowledge import documents, search_params

from ..conftest import BASE, SENTINEL_KEY


def test_details_route_and_answer(mocked, config):
    mocked.get(f"{BASE}/knowledge_bases/kb-1/details", json={"id": "kb-1", "name": "Playbook", "total_documents": 3})
    assert KnowledgeBases(config).details("kb-1") == {"id": "kb-1", "name": "Playbook", "total_documents": 3}
    request = mocked.calls[0].request
    assert request.method == "GET" and request.body is None and request.headers["x-api-key"] == SENTINEL_KEY


def test_search_sends_the_official_query_in_order(mocked, config):
    mocked.get(f"{BASE}/knowledge_bases/kb-1", json=[{"content": "a", "score": 0.9}, "junk", {"content": "b"}])
    docs = KnowledgeBases(config).search("kb-1", "refund policy", top_k=3)
    assert docs == [{"content": "a", "score": 0.9}, {"content": "b"}]  # non-objects dropped
    url = urlsplit(mocked.calls[0].request.url)
    assert url.path == "/knowledge_bases/kb-1"
    assert parse_qsl(url.query) == [("search_query", "refund policy"), ("use_bubble", "false"),
                                    ("bubble_size", "1000"), ("top_k", "3")]


def test_search_default_top_k_is_10_and_the_id_is_one_segment(mocked, config):
    mocked.get(f"{BASE}/knowledge_bases/kb%20x", json=[])
    assert KnowledgeBases(config).search("kb x", "q") == []
    assert "top_k=10" in mocked.calls[0].request.url


@pytest.mark.parametrize("kwargs, field", [({"query": " "}, "query"), ({"query": "q", "top_k": 0}, "top_k"),
                                           ({"query": "q", "top_k": True}, "top_k")])
def test_bad_search_input_is_refused_before_any_request(mocked, config, kwargs, field):
    with pytest.raises(InvalidInputError, match=field):
        KnowledgeBases(config).search("kb-1", **kwargs)
    with pytest.raises(InvalidInputError, match="knowledge_base_id"):
        KnowledgeBases(config).details("../x")
    assert not mocked.calls


def test_an_unknown_knowledge_base_raises(mocked, config):
    mocked.get(f"{BASE}/knowledge_bases/nope/details", json={"detail": "not found"}, status=404)
    with pytest.raises(NotFoundError):
        KnowledgeBases(config).details("nope")


def test_async_twins(mocked, config):
    mocked.get(f"{BASE}/knowledge_bases/kb-1", json=[{"content": "a", "score": 1}])
    assert asyncio.run(KnowledgeBases(config).asearch("kb-1", "q")) == [{"content": "a", "score": 1}]


def test_pure_helpers():
    assert search_params("q", 2) == {"search_query": "q", "use_bubble": False, "bubble_size": 1000, "top_k": 2}
    assert documents({"documents": [{"content": "x"}]}) == [{"content": "x"}]
    assert documents("text") == [] and documents(None) == []
