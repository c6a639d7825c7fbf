"""SQLite persistence for the local backend.

The store keeps everything the local backend has to remember between requests and between restarts: tasks (the
full Task JSON by id), external-task reports, pushed task events, tool calls, execution metrics and the MCP
OAuth state (pending logins and issued tokens), and the agents' memories.

Concurrency model:

* The database runs in WAL mode, so readers never block the single writer and several *processes* can share
  one file (each process running its own :class:`~xpander_sync.local.LocalBackend`).
* Every operation opens its own short-lived connection (``busy_timeout`` set), so no connection object is ever
  shared between threads. One extra "anchor" connection stays open for the life of the store; it keeps the WAL
  file around instead of checkpointing and deleting it after every operation.
* Read-modify-write operations run inside ``BEGIN IMMEDIATE``: the write lock is taken up front, so two
  writers wait for each other (bounded by ``busy_timeout``) instead of failing with ``SQLITE_BUSY`` when a
  deferred transaction tries to upgrade from a stale snapshot.

JSON documents are stored as text. Nothing in this module knows about HTTP.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import weakref
from typing import Any, Callable, Collection, Iterator, Optional

from ..errors import StoreClosedError

__all__ = ["BUSY_TIMEOUT_S", "Store", "StoreClosedError"]

logger = logging.getLogger(__name__)

#: How long (seconds) a connection waits for another writer before giving up.
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    agent_id   TEXT NOT NULL,
    data       TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reports (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    agent_id    TEXT NOT NULL,
    body        TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     TEXT NOT NULL,
    body        TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_task ON events (task_id);
CREATE TABLE IF NOT EXISTS tool_calls (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id    TEXT NOT NULL,
    tool_id     TEXT NOT NULL,
    data        TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id    TEXT NOT NULL,
    body        TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS mcp_tokens (
    user_id    TEXT NOT NULL,
    server_url TEXT NOT NULL,
    token      TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (user_id, server_url)
);
CREATE TABLE IF NOT EXISTS memories (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id  TEXT NOT NULL,
    memory_id TEXT NOT NULL,
    data      TEXT NOT NULL,
    UNIQUE (agent_id, memory_id)
);
CREATE TABLE IF NOT EXISTS mcp_logins (
    state        TEXT PRIMARY KEY,
    agent_id     TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    server_url   TEXT NOT NULL,
    server_name  TEXT,
    execution_id TEXT,
    created_at   REAL NOT NULL,
    completed_at REAL
);
"""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Store:
    """A small SQLite store shared by the request threads of one or more local backends.

    Args:
        path: The database file. ``None`` or ``":memory:"`` create a private file in a fresh temporary
            directory, removed again by :meth:`close` (an in-memory database could not be shared between the
            per-operation connections). Any other value is a file path; it is created when missing and its
            contents survive :meth:`close`, so a new store on the same path sees the same data.

    Every method but :meth:`close` and :attr:`closed` raises :class:`StoreClosedError` once the store is
    closed.

    Raises:
        sqlite3.Error: The file cannot be opened or initialised.
    """

    def __init__(self, path: Optional[str] = None) -> None:
        self._cleanup: Optional[weakref.finalize] = None
        if path is None or path == ":memory:":
            tmpdir = tempfile.mkdtemp(prefix="xpander-local-")
            # Removed by close(), or at garbage collection / interpreter exit when close() is never called.
            self._cleanup = weakref.finalize(self, shutil.rmtree, tmpdir, ignore_errors=True)
            path = os.path.join(tmpdir, "local.db")
        self.path: str = os.fspath(path)
        self._closed = False
        self._close_lock = threading.Lock()
        self._anchor = self._open()
        self._init_schema()

    # -- connections -------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit; transactions are explicit (BEGIN IMMEDIATE) where needed.
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL mode, and much faster
        return conn

    def _init_schema(self) -> None:
        # Several processes may initialise the same fresh file at once. Switching to WAL needs an exclusive
        # lock; the busy handler normally covers that, the short retry loop covers the rest.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                mode = self._anchor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    logger.warning("SQLite file %s refused WAL mode (got %s)", self.path, mode)
                self._anchor.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise StoreClosedError("the local store is closed")
        conn = self._open()
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """Yield a connection inside ``BEGIN IMMEDIATE``; commit on success, roll back on error."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close the store; remove the private temporary file if the store created one. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._anchor.close()
            if self._cleanup is not None:
                self._cleanup()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    # -- tasks -------------------------------------------------------------------------------------

    def get_task(self, task_id: str) -> Optional[dict[str, Any]]:
        """Return the stored Task JSON, or ``None``.

        Args:
            task_id: The task id.

        Returns:
            The Task JSON dict, or ``None`` when no task has that id.

        Raises:
            StoreClosedError: The store is closed.
        """
        with self._connection() as conn:
            row = conn.execute("SELECT data FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def upsert_task(
        self, task_id: str, build: Callable[[Optional[dict[str, Any]]], Optional[dict[str, Any]]]
    ) -> Optional[dict[str, Any]]:
        """Atomically create or replace a task.

        Args:
            task_id: The task id.
            build: Called (under the write lock) with the stored task or ``None``; returns the task to store,
                or ``None`` to leave the store unchanged. It may raise to abort the transaction.

        Returns:
            Whatever ``build`` returned.

        Raises:
            StoreClosedError: The store is closed.
        """
        with self._write() as conn:
            row = conn.execute("SELECT data FROM tasks WHERE id = ?", (task_id,)).fetchone()
            task = build(None if row is None else json.loads(row[0]))
            if task is not None:
                self._save_task(conn, task)
        return task

    @staticmethod
    def _save_task(conn: sqlite3.Connection, task: dict[str, Any]) -> None:
        conn.execute(
            "INSERT INTO tasks (id, agent_id, data, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
            (task["id"], str(task.get("agent_id")), _dumps(task), time.time()),
        )

    def pending_tasks(self, agent_id: str, exclude: Collection[str] = ()) -> list[dict[str, Any]]:
        """Return the agent's tasks whose status is ``pending``, oldest first, minus the ``exclude`` ids.

        Used by the worker stream, which polls it; the status is read with SQLite's JSON functions so only
        matching rows are decoded.

        Args:
            agent_id: The agent whose tasks to return.
            exclude: Task ids to leave out (those claimed by another worker stream).

        Returns:
            A list of Task JSON dicts.

        Raises:
            StoreClosedError: The store is closed.
        """
        query = "SELECT id, data FROM tasks WHERE agent_id = ? AND json_extract(data, '$.status') = 'pending'"
        with self._connection() as conn:
            try:
                rows = conn.execute(query + " ORDER BY seq", (agent_id,)).fetchall()
                tasks = [json.loads(data) for task_id, data in rows if task_id not in exclude]
            except sqlite3.OperationalError:  # an SQLite built without JSON support: filter here
                everything = conn.execute("SELECT data FROM tasks WHERE agent_id = ? ORDER BY seq", (agent_id,))
                tasks = [json.loads(r[0]) for r in everything]
                tasks = [t for t in tasks if t.get("status") == "pending" and t["id"] not in exclude]
        return tasks

    def list_tasks(self) -> list[dict[str, Any]]:
        """Return every stored task, oldest first.

        Returns:
            A list of Task JSON dicts.

        Raises:
            StoreClosedError: The store is closed.
        """
        with self._connection() as conn:
            rows = conn.execute("SELECT data FROM tasks ORDER BY seq").fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- reports -----------------------------------------------------------------------------------

    def add_report(
        self,
        report_id: str,
        agent_id: str,
        body: dict[str, Any],
        build_task: Callable[[Optional[dict[str, Any]]], dict[str, Any]],
    ) -> tuple[dict[str, Any], bool]:
        """Store an external-task report and its task, once per report id.

        Args:
            report_id: The report (and task) id.
            agent_id: The agent from the route.
            body: The report body as received.
            build_task: Called with the existing task (or ``None``) when the report is new; returns the task.

        Returns:
            ``(task, created)``: the stored task, and whether this call stored the report. A repeated report
            id stores nothing and returns the task stored the first time.

        Raises:
            StoreClosedError: The store is closed.
        """
        with self._write() as conn:
            seen = conn.execute("SELECT 1 FROM reports WHERE id = ?", (report_id,)).fetchone()
            row = conn.execute("SELECT data FROM tasks WHERE id = ?", (report_id,)).fetchone()
            existing = None if row is None else json.loads(row[0])
            if seen is not None and existing is not None:
                return existing, False
            conn.execute(
                "INSERT OR IGNORE INTO reports (id, agent_id, body, received_at) VALUES (?, ?, ?, ?)",
                (report_id, agent_id, _dumps(body), time.time()),
            )
            task = build_task(existing)
            self._save_task(conn, task)
        return task, True

    def list_reports(self) -> list[dict[str, Any]]:
        """Return every report as ``{"id", "agent_id", "body", "received_at"}``, oldest first.

        Returns:
            A list of report dicts.

        Raises:
            StoreClosedError: The store is closed.
        """
        with self._connection() as conn:
            rows = conn.execute("SELECT id, agent_id, body, received_at FROM reports ORDER BY seq").fetchall()
        return [{"id": r[0], "agent_id": r[1], "body": json.loads(r[2]), "received_at": r[3]} for r in rows]

    # -- events, tool calls, metrics ---------------------------------------------------------------

    def add_events(self, task_id: str, events: list[Any]) -> None:
        """Append pushed task events (one row each, in order).

        Args:
            task_id: The task the events belong to.
            events: The events as received (any JSON values).

        Raises:
            StoreClosedError: The store is closed.
        """
        now = time.time()
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO events (task_id, body, received_at) VALUES (?, ?, ?)",
                [(task_id, _dumps(e), now) for e in events],
            )

    def list_events(self, task_id: Optional[str] = None) -> list[dict[str, Any]]:
        """Return events as ``{"task_id", "event", "received_at"}``, oldest first, optionally for one task.

        Args:
            task_id: Only the events of this task; ``None`` for every task.

        Returns:
            A list of event dicts.

        Raises:
            StoreClosedError: The store is closed.
        """
        query = "SELECT task_id, body, received_at FROM events"
        args: tuple[Any, ...] = ()
        if task_id is not None:
            query += " WHERE task_id = ?"
            args = (task_id,)
        with self._connection() as conn:
            rows = conn.execute(query + " ORDER BY seq", args).fetchall()
        return [{"task_id": r[0], "event": json.loads(r[1]), "received_at": r[2]} for r in rows]

    def add_tool_call(self, record: dict[str, Any]) -> None:
        """Append a tool-call record (must hold ``agent_id`` and ``tool_id``).

        Args:
            record: The tool call as a JSON-able dict.

        Raises:
            KeyError: ``record`` has no ``agent_id`` or ``tool_id``.
            StoreClosedError: The store is closed.
        """
        with self._write() as conn:
            conn.execute(
                "INSERT INTO tool_calls (agent_id, tool_id, data, received_at) VALUES (?, ?, ?, ?)",
                (record["agent_id"], record["tool_id"], _dumps(record), time.time()),
            )

    def list_tool_calls(self) -> list[dict[str, Any]]:
        """Return every tool-call record, oldest first.

        Returns:
            A list of tool-call dicts.

        Raises:
            StoreClosedError: The store is closed.
        """
        with self._connection() as conn:
            rows = conn.execute("SELECT data FROM tool_calls ORDER BY seq").fetchall()
        return [json.loads(r[0]) for r in rows]

    def add_metric(self, agent_id: str, body: Any) -> None:
        """Append an execution-metrics report.

        Args:
            agent_id: The agent from the route.
            body: The metrics body as received (any JSON value).

        Raises:
            StoreClosedError: The store is closed.
        """
        with self._write() as conn:
            conn.execute(
                "INSERT INTO metrics (agent_id, body, received_at) VALUES (?, ?, ?)",
                (agent_id, _dumps(body), time.time()),
            )

    def list_metrics(self) -> list[dict[str, Any]]:
        """Return metrics reports as ``{"agent_id", "body", "received_at"}``, oldest first.

        Returns:
            A list of metrics dicts.

        Raises:
            StoreClosedError: The store is closed.
        """
        with self._connection() as conn:
            rows = conn.execute("SELECT agent_id, body, received_at FROM metrics ORDER BY seq").fetchall()
        return [{"agent_id": r[0], "body": json.loads(r[1]), "received_at": r[2]} for r in rows]

    # -- MCP OAuth ---------------------------------------------------------------------------------

    def get_mcp_token(self, user_id: str, server_url: str) -> Optional[str]:
        """Return the token issued to ``user_id`` for ``server_url``, or ``None``.

        Args:
            user_id: The user id.
            server_url: The MCP server URL.

        Returns:
            The access token, or ``None`` when none was issued.

        Raises:
            StoreClosedError: The store is closed.
        """
        with self._connection() as conn:
            row = conn.execute(
                "SELECT token FROM mcp_tokens WHERE user_id = ? AND server_url = ?", (user_id, server_url)
            ).fetchone()
        return None if row is None else row[0]

    def delete_mcp_token(self, user_id: str, server_url: str) -> None:
        """Forget the token of ``user_id`` for ``server_url`` (no error when there is none).

        Args:
            user_id: The user id.
            server_url: The MCP server URL.

        Raises:
            StoreClosedError: The store is closed.
        """
        with self._write() as conn:
            conn.execute("DELETE FROM mcp_tokens WHERE user_id = ? AND server_url = ?", (user_id, server_url))

    def pending_mcp_login(self, user_id: str, server_url: str) -> Optional[dict[str, Any]]:
        """Return the newest uncompleted login of ``user_id`` for ``server_url``, or ``None``.

        Args:
            user_id: The user id.
            server_url: The MCP server URL.

        Returns:
            The login as a dict of the ``mcp_logins`` columns, or ``None``.

        Raises:
            StoreClosedError: The store is closed.
        """
        with self._connection() as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute(
                "SELECT * FROM mcp_logins WHERE user_id = ? AND server_url = ? AND completed_at IS NULL "
                "ORDER BY created_at DESC LIMIT 1",
                (user_id, server_url),
            ).fetchone()
        return None if row is None else dict(row)

    def get_mcp_login(self, state: str) -> Optional[dict[str, Any]]:
        """Return the login started under ``state``, or ``None``.

        Args:
            state: The ``state`` value of the login URL.

        Returns:
            The login as a dict of the ``mcp_logins`` columns (completed or not), or ``None``.

        Raises:
            StoreClosedError: The store is closed.
        """
        with self._connection() as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute("SELECT * FROM mcp_logins WHERE state = ?", (state,)).fetchone()
        return None if row is None else dict(row)

    def add_mcp_login(self, login: dict[str, Any]) -> None:
        """Record a pending login (keys: the ``mcp_logins`` columns except ``completed_at``).

        Args:
            login: ``state``, ``agent_id``, ``user_id``, ``server_url``, ``server_name``, ``execution_id``
                and ``created_at``.

        Raises:
            StoreClosedError: The store is closed.
        """
        with self._write() as conn:
            conn.execute(
                "INSERT INTO mcp_logins (state, agent_id, user_id, server_url, server_name, execution_id, "
                "created_at) VALUES (:state, :agent_id, :user_id, :server_url, :server_name, :execution_id, "
                ":created_at)",
                login,
            )

    def set_mcp_token(self, user_id: str, server_url: str, token: str) -> None:
        """Store ``token`` for ``user_id`` and ``server_url``, completing that pair's pending logins.

        Args:
            user_id: The user id.
            server_url: The MCP server URL.
            token: The access token (replaces an earlier one).

        Raises:
            StoreClosedError: The store is closed.
        """
        now = time.time()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO mcp_tokens (user_id, server_url, token, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(user_id, server_url) DO UPDATE SET token = excluded.token, "
                "created_at = excluded.created_at",
                (user_id, server_url, token, now),
            )
            conn.execute(
                "UPDATE mcp_logins SET completed_at = ? "
                "WHERE user_id = ? AND server_url = ? AND completed_at IS NULL",
                (now, user_id, server_url),
            )

    # -- memories ----------------------------------------------------------------------------------

    def list_memories(self, agent_id: Optional[str] = None) -> list[dict[str, Any]]:
        """Return the stored memories (of one agent, or of every agent), oldest first.

        Args:
            agent_id: Only this agent's memories; ``None`` for every agent's.

        Returns:
            The memory rows (``memory_id``, ``memory``, ``scope``, ``user_id``, ``writer_agent_id``, ...).

        Raises:
            StoreClosedError: The store is closed.
        """
        query = "SELECT data FROM memories"
        args: tuple[str, ...] = ()
        if agent_id is not None:
            query, args = query + " WHERE agent_id = ?", (agent_id,)
        with self._connection() as conn:
            rows = conn.execute(query + " ORDER BY seq", args).fetchall()
        return [json.loads(r[0]) for r in rows]

    def put_memory(self, agent_id: str, row: dict[str, Any], *, only_new: bool = False) -> Optional[dict[str, Any]]:
        """Insert or replace one memory (keyed by the agent and ``row["memory_id"]``).

        Args:
            agent_id: The agent that remembers.
            row: The memory row; needs ``memory_id``.
            only_new: Keep an existing row with that id unchanged (seeding).

        Returns:
            The row it replaced (or kept), or ``None``.

        Raises:
            KeyError: ``row`` has no ``memory_id``.
            StoreClosedError: The store is closed.
        """
        with self._write() as conn:
            found = conn.execute(
                "SELECT data FROM memories WHERE agent_id = ? AND memory_id = ?", (agent_id, row["memory_id"])
            ).fetchone()
            if found is not None and only_new:
                return dict(json.loads(found[0]))
            if found is None:
                conn.execute("INSERT INTO memories (agent_id, memory_id, data) VALUES (?, ?, ?)",
                             (agent_id, row["memory_id"], _dumps(row)))
            else:
                conn.execute("UPDATE memories SET data = ? WHERE agent_id = ? AND memory_id = ?",
                             (_dumps(row), agent_id, row["memory_id"]))
        return dict(json.loads(found[0])) if found is not None else None

    def delete_memory(self, agent_id: str, memory_id: str) -> Optional[dict[str, Any]]:
        """Delete one memory.

        Args:
            agent_id: The agent that remembers.
            memory_id: The memory.

        Returns:
            The deleted row, or ``None`` when there was none.

        Raises:
            StoreClosedError: The store is closed.
        """
        with self._write() as conn:
            found = conn.execute(
                "SELECT data FROM memories WHERE agent_id = ? AND memory_id = ?", (agent_id, memory_id)
            ).fetchone()
            conn.execute("DELETE FROM memories WHERE agent_id = ? AND memory_id = ?", (agent_id, memory_id))
        return dict(json.loads(found[0])) if found is not None else None
