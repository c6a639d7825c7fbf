"""The tasks this process is running, on disk, so a killed worker's tasks do not stay "executing".

A worker stopped by SIGTERM drains and marks what it could not finish. One killed by SIGKILL
(or the OOM killer) cannot: its tasks would stay ``executing`` on the platform forever. So each
worker process keeps a small file, ``{state}/worker/{agent}/{host}-{pid}-{token}.json``, listing
the ids of the tasks it is running (written atomically when one starts or ends), and holds a lock
on a file beside it for as long as it lives. When a worker starts, it looks for files of this
host whose lock is free (their writer died, whatever pid a restarted container now has), marks their tasks that are
still ``executing`` as ``error`` (with a result saying why), and deletes the files. A file that
cannot be written only costs this safety net: the worker runs on, with one warning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from pathlib import Path
from typing import Any, List, Optional, Set, Tuple

from .._process import HOST, is_gone

logger = logging.getLogger(__name__)

_HOST = re.sub(r"[^A-Za-z0-9_.-]", "_", HOST) or "host"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:120] or "_"


class Journal:
    """This process's running tasks for one agent.

    Files: ``{host}-{pid}-{token}.json`` (the task ids, replaced atomically) and a ``.lock``
    beside it, locked (``flock``) for as long as the process lives. The lock, not the process
    id, says whether the writer still runs: a container restarted with the same host name and
    pid 1 again still finds its killed predecessor's file unlocked.

    Args:
        folder: the folder for journal files (``None``: no journal).
        agent_id: the worker's agent.
    """

    def __init__(self, folder: Optional[str], agent_id: str) -> None:
        self._dir = Path(folder) / _safe(agent_id) if folder else None
        stem = f"{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._path = self._dir / f"{stem}.json" if self._dir else None
        self._lock_file: Optional[Any] = None
        self._ids: Set[str] = set()
        self._lock = threading.Lock()
        self._broken = False

    def add(self, task_id: str) -> None:
        """Record that a task started running here.

        Args:
            task_id: the task.
        """
        with self._lock:
            self._ids.add(task_id)
            self._write()

    def remove(self, task_id: str) -> None:
        """Record that a task is no longer running here (its result saved, or marked).

        Args:
            task_id: the task.
        """
        with self._lock:
            if task_id in self._ids:
                self._ids.discard(task_id)
                self._write()

    def _write(self) -> None:
        if self._path is None or self._broken:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            if self._lock_file is None:
                self._lock_file = open(self._path.with_suffix(".lock"), "a")
                _lock_exclusive(self._lock_file)
            temp = self._path.with_suffix(".tmp")
            temp.write_text(json.dumps(sorted(self._ids)), encoding="utf-8")
            os.replace(temp, self._path)
        except OSError as exc:
            self._broken = True
            logger.warning("worker journal %s cannot be written (%s): tasks of a killed worker will not be "
                           "reclaimed", self._path, exc.strerror)

    def orphans(self) -> List[Tuple[Path, List[str]]]:
        """The journals of this host's workers for this agent whose process no longer runs.

        Returns:
            ``(file, task ids)`` pairs.
        """
        if self._dir is None or not self._dir.is_dir():
            return []
        found = []
        for path in sorted(self._dir.glob("*.json")):
            host = path.stem.rpartition("-")[0].rpartition("-")[0]  # {host}-{pid}-{token}
            if host != _HOST or path == self._path or not _writer_is_gone(path.with_suffix(".lock")):
                continue
            try:
                ids = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                ids = []
            found.append((path, [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []))
        return found

    @staticmethod
    def forget(path: Path) -> None:
        """Delete a dead worker's journal once its tasks were reclaimed.

        Args:
            path: a file from :meth:`orphans`.
        """
        for file in (path, path.with_suffix(".lock")):
            try:
                file.unlink(missing_ok=True)
            except OSError as exc:
                logger.warning("could not delete the worker journal %s: %s", file, exc.strerror)


def _lock_exclusive(handle: Any) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: the pid in the name is all there is
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _writer_is_gone(lock_path: Path) -> bool:
    """Whether the process that wrote a journal has ended: its lock can be taken (or never existed)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        pid = lock_path.stem.rsplit("-", 2)[-2]
        return pid.isdigit() and is_gone(int(pid))
    try:
        with open(lock_path, "a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return True
    except BlockingIOError:
        return False
    except OSError:
        return False
