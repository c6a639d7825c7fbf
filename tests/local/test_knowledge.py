"""The local backend's knowledge-base and memories routes, served from the sample agent agt-features."""

from __future__ import annotations

from pathlib import Path

import requests

from xpander_sync.local import LocalBackend
from xpander_sync.local._knowledge import score, words

from .conftest import API_KEY, ORG, assert_json_error

KB = "kb-features"
SEED_USER_MEMORY = "5d1e2b7c-0a4f-4b8e-9c21-7f3a6e8d9b10"
SEED_AGENT_MEMORY = "a7c3f9e1-64b2-4d0a-8e5f-1b2c3d4e5f60"


def test_details_of_a_sample_knowledge_base(backend: LocalBackend, session: requests.Session) -> None:
    resp = session.get(f"{backend.url}/knowledge_bases/{KB}/details")
    assert resp.status_code == 200
    assert resp.json() == {"id": KB, "name": "Sales playbook",
                           "description": "How the sales team works with Acme's accounts",
                           "type": "managed", "organization_id": ORG, "total_documents": 3}
    assert_json_error(session.get(f"{backend.url}/knowledge_bases/kb-nope/details"), 404)


def test_search_ranks_by_the_share_of_query_words(backend: LocalBackend, session: requests.Session) -> None:
    params = {"search_query": "refund policy sensor orders", "use_bubble": "false", "bubble_size": 1000,
              "top_k": 2}
    docs = session.get(f"{backend.url}/knowledge_bases/{KB}", params=params).json()
    assert [set(d) for d in docs] == [{"content", "score"}, {"content", "score"}]
    assert docs[0]["content"].startswith("Refund policy") and docs[0]["score"] == 1.0
    assert docs[0]["score"] >= docs[1]["score"] > 0
    only = session.get(f"{backend.url}/knowledge_bases/{KB}", params={"search_query": "support hours"}).json()
    assert [d["content"][:13] for d in only] == ["Support hours"]  # no shared word: not answered
    assert session.get(f"{backend.url}/knowledge_bases/{KB}", params={"search_query": "zebra"}).json() == []
    assert_json_error(session.get(f"{backend.url}/knowledge_bases/{KB}"), 422)
    assert_json_error(session.get(f"{backend.url}/knowledge_bases/{KB}", params={"search_query": "x",
                                                                                "top_k": "0"}), 422)


def test_routes_need_the_api_key(backend: LocalBackend) -> None:
    assert requests.get(f"{backend.url}/knowledge_bases/{KB}/details", timeout=5).status_code == 401
    assert requests.get(f"{backend.url}/memories/agt-features?user_id=u", timeout=5).status_code == 401


def test_memories_start_from_the_sample_and_are_per_user(backend: LocalBackend, session: requests.Session) -> None:
    mine = session.get(f"{backend.url}/memories/agt-features", params={"user_id": "user-42"}).json()
    assert mine["settings"] == {"enabled": True}
    assert [m["memory_id"] for m in mine["user"]] == [SEED_USER_MEMORY]
    assert mine["user"][0]["memory"] == "Prefers answers as short bullet lists."
    assert mine["user"][0]["updated_at"] == "2026-11-20T09:30:00Z"
    assert [m["memory_id"] for m in mine["agent"]] == [SEED_AGENT_MEMORY]
    other = session.get(f"{backend.url}/memories/agt-features", params={"user_id": "user-7"}).json()
    assert other["user"] == [] and [m["memory_id"] for m in other["agent"]] == [SEED_AGENT_MEMORY]


def test_memories_are_off_for_an_agent_without_them(backend: LocalBackend, session: requests.Session) -> None:
    off = session.get(f"{backend.url}/memories/agt-openai", params={"user_id": "user-42"}).json()
    assert off == {"user": [], "agent": [], "settings": {"enabled": False}}
    body = {"action": "save", "scope": "agent", "memory": "x", "memory_id": "m-1", "user_id": "u",
            "writer_agent_id": "agt-openai", "writer_agent_name": "CRM"}
    assert session.post(f"{backend.url}/memories/agt-openai", json=body).json() == {"applied": False,
                                                                                     "memory_id": "m-1"}
    assert backend.memories("agt-openai") == []
    assert_json_error(session.get(f"{backend.url}/memories/agt-nope", params={"user_id": "u"}), 404)


def test_save_update_delete(backend: LocalBackend, session: requests.Session) -> None:
    url = f"{backend.url}/memories/agt-features"
    writer = {"user_id": "user-42", "writer_agent_id": "agt-features", "writer_agent_name": "Features Assistant"}
    saved = session.post(url, json={"action": "save", "scope": "user", "memory": "Works at Acme.",
                                    "memory_id": "m-new", **writer}).json()
    assert saved == {"applied": True, "memory_id": "m-new"}
    updated = session.post(url, json={"action": "update", "scope": "user", "memory": "Works at Acme Europe.",
                                      "memory_id": "m-new", **writer}).json()
    assert updated == {"applied": True, "memory_id": "m-new", "previous": "Works at Acme."}
    rows = {m["memory_id"]: m for m in backend.memories("agt-features")}
    assert rows["m-new"]["memory"] == "Works at Acme Europe." and rows["m-new"]["user_id"] == "user-42"
    assert rows["m-new"]["writer_agent_name"] == "Features Assistant"
    deleted = session.post(url, json={"action": "delete", "scope": "agent", "memory": None,
                                      "memory_id": SEED_AGENT_MEMORY, **writer}).json()
    assert deleted["applied"] is True and deleted["previous"].startswith("The CRM search")
    again = session.post(url, json={"action": "delete", "scope": "agent", "memory": None,
                                    "memory_id": SEED_AGENT_MEMORY, **writer}).json()
    assert again == {"applied": False, "memory_id": SEED_AGENT_MEMORY}
    missing = session.post(url, json={"action": "update", "scope": "user", "memory": "x", "memory_id": "m-zz",
                                      **writer}).json()
    assert missing == {"applied": False, "memory_id": "m-zz"}
    now = session.get(url, params={"user_id": "user-42"}).json()
    assert {m["memory_id"] for m in now["user"]} == {SEED_USER_MEMORY, "m-new"} and now["agent"] == []


def test_bad_writes_are_client_errors(backend: LocalBackend, session: requests.Session) -> None:
    url = f"{backend.url}/memories/agt-features"
    assert_json_error(session.post(url, json={"action": "forget", "scope": "user", "user_id": "u"}), 422)
    assert_json_error(session.post(url, json={"action": "save", "scope": "team", "user_id": "u"}), 422)
    assert_json_error(session.post(url, json={"action": "save", "scope": "user", "memory": "x"}), 422)  # no user
    assert_json_error(session.post(url, json={"action": "save", "scope": "agent", "memory": " "}), 422)
    assert_json_error(session.post(url, json=["not", "an", "object"]), 422)


def test_written_memories_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "local.sqlite3"
    body = {"action": "save", "scope": "agent", "memory": "Kept.", "memory_id": "m-kept", "user_id": "u",
            "writer_agent_id": "agt-features", "writer_agent_name": "F"}
    with LocalBackend(db_path=db, api_key=API_KEY) as first:
        requests.post(f"{first.url}/memories/agt-features", json=body, headers={"x-api-key": API_KEY}, timeout=5)
    with LocalBackend(db_path=db, api_key=API_KEY) as second:
        agent = requests.get(f"{second.url}/memories/agt-features", params={"user_id": "u"},
                             headers={"x-api-key": API_KEY}, timeout=5).json()["agent"]
        assert "m-kept" in [m["memory_id"] for m in agent]


def test_scoring_helpers() -> None:
    assert words("The CRM, the crm! a") == {"the", "crm"}
    assert score("refund policy", "Refund policy: 30 days") == 1.0
    assert score("refund zebra", "Refund policy") == 0.5
    assert score("!", "anything") == 0.0
