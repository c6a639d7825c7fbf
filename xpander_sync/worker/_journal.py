"""The tasks this process is running, on disk, so a killed worker's tasks do not stay "executing".

A worker stopped by SIGTERM drains and marks what it could not finish. One killed by SIGKILL
(or the OOM killer) cannot: its tasks would stay ``executing`` on the platform forever. So each
worker process keeps a small file, ``{state}/worker/{agent}/{host}-{pid}.json``, listing the ids
of the tasks it is running (written atomically when one starts or ends). When a worker starts,
it looks for files of processes of this host that no longer run, marks their tasks that are
still ``executing`` as ``error`` (with a result saying why), and deletes the files. A file that
cannot be written only costs this safety net: the worker runs on, with one warning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import List, Optional, Set, Tuple

from .._process import HOST, is_gone

logger = logging.getLogger(__name__)

_HOST = re.sub(r"[^A-Za-z0-9_.-]", "_", HOST) or "host"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:120] or "_"


class Journal:
    """This process's running tasks for one agent.

    Args:
        folder: the folder for journal files (``None``: no journal).
        agent_id: the worker's agent.
    """

    def __init__(self, folder: Optional[str], agent_id: str) -> None:
        self._dir = Path(folder) / _safe(agent_id) if folder else None
        self._path = self._dir / f"{_HOST}-{os.getpid()}.json" if self._dir else None
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
        """Record that a task is no longer running here (finished, saved or given up).

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
            if not self._ids:
                self._path.unlink(missing_ok=True)
                return
            temp = self._path.with_suffix(".tmp")
            temp.write_text(json.dumps(sorted(self._ids)), encoding="utf-8")
            os.replace(temp, self._path)
        except OSError as exc:
            self._broken = True
            logger.warning("worker journal %s cannot be written (%s): tasks of a killed worker will not be "
                           "reclaimed", self._path, exc.strerror)

    def orphans(self) -> List[Tuple[Path, List[str]]]:
        """The journals of this host's workers for this agent that no longer run.

        Returns:
            ``(file, task ids)`` pairs.
        """
        if self._dir is None or not self._dir.is_dir():
            return []
        found = []
        for path in sorted(self._dir.glob(f"{_HOST}-*.json")):
            try:
                pid = int(path.stem.rsplit("-", 1)[1])
            except (IndexError, ValueError):
                continue
            if not is_gone(pid):
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
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("could not delete the worker journal %s: %s", path, exc.strerror)
