"""The SQLite store: under concurrency (many threads of one backend, several processes sharing one file) and
once closed."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from xpander_sync.errors import StoreClosedError, XpanderError
from xpander_sync.local import LocalBackend
from xpander_sync.local.store import Store
from xpander_sync.local.store import StoreClosedError as LocalStoreClosedError

from .conftest import API_KEY, REPO_ROOT, report_body

# -- concurrency --------------------------------------------------------------------------------------


def test_concurrent_reports_from_threads(backend: LocalBackend) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with requests.Session() as s:
                s.headers["x-api-key"] = API_KEY
                for i in range(25):
                    r = s.post(
                        backend.url + "/agent-execution/agt-openai/report_task",
                        json=report_body(id=f"thread-{n}-{i}"),
                        timeout=30,
                    )
                    assert r.status_code == 200, r.text
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len({r["id"] for r in backend.reports()}) == 200
    assert len(backend.tasks()) == 200


_PROCESS_SCRIPT = r"""
import sys
import requests
from xpander_sync.local import LocalBackend

db, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with LocalBackend(db_path=db) as backend, requests.Session() as session:
    for i in range(count):
        body = {"id": f"proc-{worker}-{i}", "input": f"question {i}", "llm_response": None,
                "tokens": {"completion_tokens": 1, "prompt_tokens": 2, "total_tokens": 3},
                "is_success": True, "result": "ok", "duration": 0.1, "used_tools": []}
        resp = session.post(backend.url + "/agent-execution/agt-openai/report_task", json=body, timeout=30)
        resp.raise_for_status()
"""


def test_concurrent_reports_from_processes(tmp_path: Path) -> None:
    """Four processes, each with its own LocalBackend on one SQLite file, report 25 tasks each."""
    db = tmp_path / "shared.db"
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS_SCRIPT, str(db), str(n), "25"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode(errors="replace")
    reader = LocalBackend(db_path=db)
    try:
        reports = reader.reports()
        assert len(reports) == 100
        assert {r["id"] for r in reports} == {f"proc-{w}-{i}" for w in range(4) for i in range(25)}
        assert len(reader.tasks()) == 100
    finally:
        reader.stop()


# -- closing ---------------------------------------------------------------------------------------------------


def test_a_closed_store_raises_the_library_error(tmp_path: Path) -> None:
    store = Store(os.fspath(tmp_path / "s.db"))
    store.close()
    assert store.closed
    with pytest.raises(StoreClosedError) as info:
        store.list_tasks()
    assert isinstance(info.value, XpanderError) and isinstance(info.value, RuntimeError)
    assert info.value.retryable is False
    assert LocalStoreClosedError is StoreClosedError  # still importable where it used to live
