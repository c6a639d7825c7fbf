"""The worker journal (:mod:`xpander_sync.worker._journal`): whose tasks a new worker may reclaim."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from xpander_sync.worker import _journal
from xpander_sync.worker._journal import Journal

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the journal's lock is POSIX flock")


def _dead_file(folder: Path, stem: str, ids: list) -> Path:
    """A journal left by a writer that is gone: its lock file exists and nobody holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.lock").write_text("")
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(ids))
    return path


def test_a_killed_predecessor_with_this_very_pid_is_found(tmp_path):
    """A restarted container: same host name, pid 1 again; the old file must still be reclaimed."""
    journal = Journal(str(tmp_path), "agt-1")
    left = _dead_file(tmp_path / "agt-1", f"{_journal._HOST}-{os.getpid()}-oldtoken", ["t-left"])
    journal.add("t-new")  # this process's own file: locked, not an orphan
    assert journal.orphans() == [(left, ["t-left"])]
    assert json.loads(left.read_text()) == ["t-left"]  # not overwritten by the new worker


def test_a_live_writer_is_not_an_orphan_even_in_this_process(tmp_path):
    first, second = Journal(str(tmp_path), "agt-1"), Journal(str(tmp_path), "agt-1")
    first.add("t-1")
    assert second.orphans() == []


def test_another_hosts_journal_is_never_taken(tmp_path, monkeypatch):
    monkeypatch.setattr(_journal, "_HOST", "web")
    _dead_file(tmp_path / "agt-1", "web-2-4242-tok", ["someone-elses"])  # host "web-2", not "web"
    mine = _dead_file(tmp_path / "agt-1", "web-4242-tok", ["mine"])
    assert Journal(str(tmp_path), "agt-1").orphans() == [(mine, ["mine"])]


def test_forget_removes_the_journal_and_its_lock(tmp_path):
    left = _dead_file(tmp_path / "agt-1", f"{_journal._HOST}-1-tok", ["t"])
    Journal.forget(left)
    assert list((tmp_path / "agt-1").iterdir()) == []
