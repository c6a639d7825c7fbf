"""resources.memories: the memories read and write routes, the write body and the locally derived save id."""

from __future__ import annotations

import json
import uuid

import pytest

from xpander_sync import InvalidInputError
from xpander_sync.resources import Memories
from xpander_sync.resources.memories import MEMORY_NAMESPACE, memory_id_for, normalize_memory, write_body

from ..conftest import BASE

WRITER = {"user_id": "user-42", "writer_agent_id": "agt-1", "writer_agent_name": "Helper"}


def test_get_route_and_query(mocked, config):
    answer = {"user": [], "agent": [], "settings": {"enabled": True}}
    mocked.get(f"{BASE}/memories/agt-1?user_id=user-42", json=answer)
    assert Memories(config).get("agt-1", "user-42") == answer
    assert mocked.calls[0].request.url == f"{BASE}/memories/agt-1?user_id=user-42"


def test_get_without_retry_is_one_attempt_on_a_5xx(mocked, config):
    mocked.get(f"{BASE}/memories/agt-1", json={"detail": "down"}, status=503)
    with pytest.raises(Exception, match="down"):
        Memories(config).get("agt-1", "u", retry=False)
    assert len(mocked.calls) == 1


def test_write_posts_the_body_as_given(mocked, config):
    mocked.post(f"{BASE}/memories/agt-1", json={"applied": True, "memory_id": "m-1", "previous": "old"})
    body = write_body("update", "user", memory="new", memory_id="m-1", **WRITER)
    assert Memories(config).write("agt-1", body) == {"applied": True, "memory_id": "m-1", "previous": "old"}
    assert json.loads(mocked.calls[0].request.body) == {
        "action": "update", "scope": "user", "memory": "new", "memory_id": "m-1",
        "user_id": "user-42", "writer_agent_id": "agt-1", "writer_agent_name": "Helper",
    }


@pytest.mark.parametrize("action, scope, memory, memory_id, field", [
    ("forget", "user", "x", None, "action"),
    ("save", "team", "x", None, "scope"),
    ("save", "user", " ", None, "memory"),
    ("update", "user", "x", None, "memory_id"),
    ("delete", "agent", None, "", "memory_id"),
])
def test_write_body_refuses_bad_writes(action, scope, memory, memory_id, field):
    with pytest.raises(InvalidInputError, match=field):
        write_body(action, scope, memory=memory, memory_id=memory_id, **WRITER)


def test_delete_body_has_every_key():
    assert write_body("delete", "agent", memory=None, memory_id="m-2", **WRITER) == {
        "action": "delete", "scope": "agent", "memory": None, "memory_id": "m-2", **WRITER}


def test_save_id_is_uuid5_over_scope_user_agent_and_normalised_text():
    one = memory_id_for("user", "user-42", "agt-1", "Prefers  short answers ")
    assert one == memory_id_for("user", "user-42", "agt-1", "prefers short ANSWERS")
    assert one == str(uuid.uuid5(MEMORY_NAMESPACE, "user|user-42|agt-1|prefers short answers"))
    assert uuid.UUID(one).version == 5
    assert one != memory_id_for("user", "user-7", "agt-1", "prefers short answers")  # another user
    assert one != memory_id_for("agent", "user-42", "agt-1", "prefers short answers")  # another scope
    # an agent memory belongs to no user: the same fact from two users is one memory
    assert memory_id_for("agent", "u-1", "agt-1", "x") == memory_id_for("agent", "u-2", "agt-1", "x")
    assert normalize_memory("  A\tB  ") == "a b"


def test_bad_ids_are_refused(mocked, config):
    with pytest.raises(InvalidInputError, match="user_id"):
        Memories(config).get("agt-1", "")
    with pytest.raises(InvalidInputError, match="agent_id"):
        Memories(config).write("a/b", {})
    assert not mocked.calls
