"""LocalBackend itself: binding, start/stop/serve_forever, and data kept across restarts on one file."""

from __future__ import annotations

import sqlite3
import threading
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
