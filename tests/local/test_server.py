"""LocalBackend itself: binding, start/stop/serve_forever, and data kept across restarts on one file."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from xpander_sync.local import LocalBackend

from .conftest import API_KEY, MCP_SERVER, create_body, report_body

# -- lifecycle and binding -------------------------------------------------------------------------------


def test_binds_loopback_on_an_ephemeral_port() -> None:
    backend = LocalBackend()
    with pytest.raises(RuntimeError):
        _ = backend.url
    with backend:
        host, port = backend._httpd.server_address[:2]  # type: ignore[union-attr]
        assert host == "127.0.0.1" and port > 0
        assert backend.url == f"http://127.0.0.1:{port}"
        assert backend.start() is backend  # idempotent
        assert requests.get(backend.url + "/agents/list", timeout=5).status_code == 200
    backend.stop()  # idempotent
    with pytest.raises(RuntimeError):
        backend.start()


def test_stop_closes_keep_alive_connections(session: requests.Session) -> None:
    backend = LocalBackend(api_key=API_KEY).start()
    assert session.get(backend.url + "/agents/list", timeout=5).status_code == 200
    backend.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(backend.url + "/agents/list", timeout=5)


def test_serve_forever_blocks_until_stop() -> None:
    backend = LocalBackend()
    thread = threading.Thread(target=backend.serve_forever)
    thread.start()
    try:
        for _ in range(200):
            if backend._httpd is not None:
                break
            threading.Event().wait(0.01)
        assert requests.get(backend.url + "/agents/list", timeout=5).status_code == 200
    finally:
        backend.stop()
        thread.join(5)
    assert not thread.is_alive()


# -- persistence and concurrency ----------------------------------------------------------------------------


def test_data_survives_restart(tmp_path: Path) -> None:
    db = tmp_path / "local.db"
    with LocalBackend(db_path=db, api_key=API_KEY) as first, requests.Session() as s:
        s.headers["x-api-key"] = API_KEY
        task = s.post(first.url + "/agent-execution/agt-openai", json=create_body()).json()
        s.post(first.url + "/agent-execution/agt-openai/report_task", json=report_body())
        s.post(first.url + f"/agent-execution/{task['id']}/events/push", json=[{"type": "task_updated"}])
        first.complete_login(user_id="user-42", server_url=MCP_SERVER["url"], token="tok-persisted")
    assert db.exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    with LocalBackend(db_path=db, api_key=API_KEY) as second, requests.Session() as s:
        s.headers["x-api-key"] = API_KEY
        assert second.url  # a new port is fine
        assert s.get(f"{second.url}/agent-execution/{task['id']}/status").json() == task
        assert [r["id"] for r in second.reports()] == ["ext-2026-0001"]
        assert len(second.tasks()) == 2 and len(second.events(task["id"])) == 1
        again = s.post(second.url + "/agent-execution/agt-openai/report_task", json=report_body()).json()
        assert again["id"] == "ext-2026-0001" and len(second.reports()) == 1
        token = s.post(second.url + "/mcp_auth/agt-mcp/user-42/get_token", json=MCP_SERVER).json()
        assert token == {"type": "token_ready", "data": {"access_token": "tok-persisted"}}


@pytest.mark.parametrize("db_path", [None, ":memory:"])
def test_private_temporary_database_is_removed(db_path: Any) -> None:
    backend = LocalBackend(db_path=db_path)
    path = Path(backend._store.path)
    assert path.exists()
    backend.stop()  # never started: stop still releases the store
    assert not path.exists()


# -- issue 16, finding 13: the local backend guards the credentials it holds ----------------------------


def test_beyond_loopback_the_api_key_is_required(caplog: pytest.LogCaptureFixture) -> None:
    from xpander_sync import ConfigurationError

    with pytest.raises(ConfigurationError, match="api_key"):
        LocalBackend(host="0.0.0.0")
    with caplog.at_level("WARNING", logger="xpander_sync"), LocalBackend(host="0.0.0.0", api_key=API_KEY) as open_:
        assert "reachable from other hosts" in caplog.text
        assert requests.get(open_.url + "/agents/list", timeout=5).status_code == 401
        assert requests.get(open_.url + "/agents/list", headers={"x-api-key": API_KEY, "Host": "box.lan"},
                            timeout=5).status_code == 200  # beyond loopback the key guards, not the Host


def test_a_foreign_host_header_is_refused_on_loopback(backend: LocalBackend) -> None:
    port = backend.url.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert requests.get(backend.url + "/agents/list", headers={"Host": host, "x-api-key": API_KEY},
                            timeout=5).status_code == 200
    rebound = requests.get(backend.url + "/agents/list", headers={"Host": f"attacker.example:{port}",
                                                                  "x-api-key": API_KEY}, timeout=5)
    assert rebound.status_code == 421  # DNS rebinding: a page whose name now resolves to 127.0.0.1


def test_a_cross_origin_text_plain_post_creates_nothing(backend: LocalBackend) -> None:
    before = len(backend.tasks())
    simple = requests.post(backend.url + "/agent-execution/agt-openai", data=json.dumps(create_body()),
                           headers={"Content-Type": "text/plain", "x-api-key": API_KEY}, timeout=5)
    assert simple.status_code == 415 and len(backend.tasks()) == before


def test_a_deeply_nested_body_is_answered_not_dropped(backend: LocalBackend) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    answer = requests.post(backend.url + "/agent-execution/agt-openai", data=deep,
                           headers={"Content-Type": "application/json", "x-api-key": API_KEY}, timeout=10)
    assert answer.status_code == 400 and "JSON" in answer.json()["detail"]


def test_open_connections_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from xpander_sync.local._http import Server

    monkeypatch.setattr(Server, "max_connections", 4)
    with LocalBackend() as bounded:
        host, port = bounded._httpd.server_address[:2]  # type: ignore[union-attr]
        idle = [socket.create_connection((host, port), timeout=5) for _ in range(4)]
        try:
            deadline = time.monotonic() + 5
            while len(bounded._httpd._conns) < 4 and time.monotonic() < deadline:  # type: ignore[union-attr]
                threading.Event().wait(0.02)
            extra = socket.create_connection((host, port), timeout=5)
            assert extra.recv(1) == b""  # closed at once: no thread for it
            extra.close()
            assert len(bounded._httpd._conns) == 4  # type: ignore[union-attr]
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + 5
        while bounded._httpd._conns and time.monotonic() < deadline:  # type: ignore[union-attr]
            threading.Event().wait(0.02)
        assert requests.get(bounded.url + "/agents/list", timeout=5).status_code == 200
