"""A durable outbox for external-task reports.

A report that cannot be delivered (network failure, 5xx or 429 after the allowed retries)
is written to a SQLite file and delivered later by :meth:`Outbox.flush` (or
``xpander-sync outbox flush``), in the order it was made, with its original task id, so
the platform stores it once. An entry is deleted only after a 2xx answer.

Several processes (two cron jobs) may use one outbox at once: each flush *claims* the
rows it sends in a short ``BEGIN IMMEDIATE`` transaction, with a lease, so a row is sent
by one process at a time. A flush renews its lease while it works, and the claim of a
flusher that died on this host is taken over at once (its process id is gone); one on
another host expires with its lease.

A row the platform refuses (a 4xx: it will never be accepted as it is) or whose body is
not JSON is *parked* with its reason: kept for inspection (``pending()``, ``xpander-sync
outbox list``), skipped by every flush until :meth:`Outbox.unpark`. The API key is never
stored: rows hold the agent id, the base URL and the body; the key comes from the
configuration at flush time. The outbox never talks HTTP itself: :meth:`Outbox.flush` is
given a ``send(agent_id, body)`` callable (``resources.Reports.send``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, TypeVar, Union

import attrs

from .._process import HOST, is_gone
from ..errors import InvalidInputError, ModuleException, OutboxError, ResponseDecodeError

if TYPE_CHECKING:  # sqlite3 is imported on first use (it is not needed unless an outbox is used)
    import sqlite3

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL UNIQUE,
    agent_id TEXT NOT NULL,
    base_url TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    claimed_by TEXT,
    claimed_until REAL,
    parked INTEGER NOT NULL DEFAULT 0
)
"""


#: The tables an outbox file may hold (one per kind of row).
_TABLES = frozenset({"reports", "events"})

#: How long a write waits out another connection's lock before giving up (seconds, in total).
LOCK_PATIENCE = 30.0
_init_lock = threading.Lock()
T = TypeVar("T")


def _patiently(path: str, action: Callable[[], T]) -> T:
    """Run a SQLite action, waiting out "database is locked".

    SQLite's busy timeout does not cover every case (switching a new file to WAL, or a
    read that must become a write), so those are retried here with a short backoff.

    Raises:
        OutboxError: the file stayed locked for ``LOCK_PATIENCE`` seconds, or cannot be used.
    """
    import sqlite3

    deadline = time.monotonic() + LOCK_PATIENCE
    delay = 0.01
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            locked = "locked" in str(exc) or "busy" in str(exc)
            if not locked or time.monotonic() >= deadline:
                raise OutboxError(f"the outbox {path} cannot be used: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"the outbox {path} cannot be used: {exc}") from None
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


#: ``send(agent_id, body)``: delivers one report body, raising a ModuleException on failure.
Send = Callable[[str, Dict[str, Any]], Any]


@attrs.frozen
class QueuedReport:
    """What ``report_external_task`` returns when the report was put in the outbox, not delivered.

    Attributes:
        task_id: the report's task id (it will be delivered with this id).
        agent_id: the agent it belongs to.
        reason: why it is queued (the delivery error, or ``"background"``).
        outbox: the outbox file.
    """

    task_id: str
    agent_id: str
    reason: str
    outbox: str
    delivered: bool = False


@attrs.frozen
class FlushResult:
    """What a flush did.

    Attributes:
        delivered: the task ids delivered, in order.
        failed: ``(task id, error)`` pairs of this flush's failures (parked ones included).
        remaining: reports for this flush's platform still waiting for delivery (parked ones
            not counted).
        parked: this platform's reports parked in the outbox (refused, or unreadable).
    """

    delivered: List[str]
    failed: List[Any]
    remaining: int
    parked: int = 0


class Outbox:
    """A SQLite outbox file.

    Args:
        path: the SQLite file (created with its folder if missing).
        lease: seconds a flusher may hold claimed rows before another process may take them
            (longer than one send may take: the transport's ``call_deadline`` is 300 s).
        table: the table of the file this outbox uses: ``"reports"`` (external-task reports,
            what ``xpander-sync outbox`` shows) or ``"events"`` (tool-call activity events,
            :mod:`xpander_sync.reporting.activity`); the same rules apply to both.
        synchronous: SQLite's ``synchronous`` setting: ``"FULL"`` (a stored row survives a power
            cut) or ``"NORMAL"`` (it survives the process being killed; ten times faster to write,
            for rows written on a caller's path).
        park_refused: park a row the platform refuses (kept for inspection); ``False`` deletes
            it with a warning instead (for rows nobody inspects).

    Raises:
        InvalidInputError: an unknown ``table`` or ``synchronous`` value.
    """

    def __init__(self, path: Union[str, os.PathLike[str]], *, lease: float = 600.0, table: str = "reports",
                 synchronous: str = "FULL", park_refused: bool = True) -> None:
        if table not in _TABLES:
            raise InvalidInputError(f"table must be one of {sorted(_TABLES)}, got {table!r}")
        if synchronous not in ("FULL", "NORMAL"):
            raise InvalidInputError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        self.path = str(path)
        self.lease = lease
        self._table = table
        self._synchronous = synchronous
        self.park_refused = park_refused
        self._local = threading.local()
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxError(f"the outbox folder for {self.path} cannot be created: {exc.strerror}") from None

        def create() -> None:
            with self._connect() as conn:
                conn.execute(_SCHEMA.format(table=self._table))
                columns = {row[1] for row in conn.execute(f"PRAGMA table_info({self._table})")}
                if "parked" not in columns:  # a file made by an older release
                    conn.execute(f"ALTER TABLE {self._table} ADD COLUMN parked INTEGER NOT NULL DEFAULT 0")

        with _init_lock:  # threads of one process create the file one at a time
            _patiently(self.path, create)

    def __repr__(self) -> str:
        return f"Outbox({self.path!r})" if self._table == "reports" else f"Outbox({self.path!r}, table={self._table!r})"

    def _connect(self) -> sqlite3.Connection:
        import sqlite3

        conn: Optional[sqlite3.Connection] = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")  # FULL: a queued report survives a power cut
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            self._local.pid = os.getpid()
        return _Tx(conn)  # type: ignore[return-value]

    def put(self, agent_id: str, base_url: str, body: Dict[str, Any]) -> None:
        """Store one report (idempotent on its task id).

        Args:
            agent_id: the agent the report belongs to.
            base_url: the platform it is for (:meth:`flush` only sends it to this base URL).
            body: the report body (its ``id`` is the task id); never the API key.

        Raises:
            OutboxError: the file cannot be written (after waiting out locks held by others).
        """
        row = (body["id"], agent_id, base_url, json.dumps(body, separators=(",", ":")), time.time())

        def insert() -> None:
            with self._connect() as conn:
                conn.execute(
                    f"INSERT OR IGNORE INTO {self._table} (task_id, agent_id, base_url, body, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    row,
                )

        _patiently(self.path, insert)

    def pending(self) -> List[Dict[str, Any]]:
        """The queued reports, oldest first.

        Returns:
            One dict per report: ``task_id, agent_id, base_url, body`` (decoded; ``None`` when
            the stored text is not JSON), ``attempts``, ``last_error`` and ``parked``.
        """
        def select() -> List[Any]:
            with self._connect() as conn:
                return conn.execute(
                    "SELECT task_id, agent_id, base_url, body, attempts, last_error, parked "
                    f"FROM {self._table} ORDER BY seq"
                ).fetchall()

        return [
            {"task_id": r[0], "agent_id": r[1], "base_url": r[2], "body": _decode(r[3]), "attempts": r[4],
             "last_error": r[5], "parked": bool(r[6])}
            for r in _patiently(self.path, select)
        ]

    def unpark(self) -> int:
        """Put every parked report back in line for delivery (after fixing what the platform refused).

        Returns:
            How many reports were unparked.
        """
        def update() -> int:
            with self._connect() as conn:
                return int(conn.execute(f"UPDATE {self._table} SET parked = 0 WHERE parked = 1").rowcount)

        return _patiently(self.path, update)

    def clear(self) -> int:
        """Delete every row of this outbox's table (queued, claimed and parked alike).

        Returns:
            How many rows were deleted.
        """
        def delete() -> int:
            with self._connect() as conn:
                return int(conn.execute(f"DELETE FROM {self._table}").rowcount)

        return _patiently(self.path, delete)

    def _count(self, parked: bool, base_url: Optional[str] = None) -> int:
        sql = f"SELECT COUNT(*) FROM {self._table} WHERE parked = ?" + (" AND base_url = ?" if base_url else "")
        values = (int(parked), base_url) if base_url else (int(parked),)

        def count() -> int:
            with self._connect() as conn:
                return int(conn.execute(sql, values).fetchone()[0])

        return _patiently(self.path, count)

    def __len__(self) -> int:
        return self._count(parked=False) + self._count(parked=True)

    def _claim(self, owner: str, base_url: str, limit: int) -> List[Any]:
        return _patiently(self.path, lambda: self._claim_once(owner, base_url, limit))

    def _claim_once(self, owner: str, base_url: str, limit: int) -> List[Any]:
        now = time.time()
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            holders = [r[0] for r in conn.execute(
                f"SELECT DISTINCT claimed_by FROM {self._table} WHERE claimed_until >= ?", (now,)).fetchall()]
            dead = [h for h in holders if _owner_is_dead(h)]
            conn.executemany(f"UPDATE {self._table} SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = ?",
                             [(h,) for h in dead])
            rows = conn.execute(
                f"SELECT seq, task_id, agent_id, body FROM {self._table} WHERE base_url = ? AND parked = 0 "
                "AND (claimed_until IS NULL OR claimed_until < ?) ORDER BY seq LIMIT ?",
                (base_url, now, limit),
            ).fetchall()
            # Keep order across processes: only claim a prefix nobody else holds.
            first_held = conn.execute(
                f"SELECT MIN(seq) FROM {self._table} WHERE base_url = ? AND parked = 0 AND claimed_until >= ?",
                (base_url, now),
            ).fetchone()[0]
            if first_held is not None:
                rows = [r for r in rows if r[0] < first_held]
            conn.executemany(
                f"UPDATE {self._table} SET claimed_by = ?, claimed_until = ? WHERE seq = ?",
                [(owner, now + self.lease, r[0]) for r in rows],
            )
            conn.execute("COMMIT")
        return rows

    def _renew(self, owner: str) -> None:
        def renew() -> None:
            with self._connect() as conn:
                conn.execute(f"UPDATE {self._table} SET claimed_until = ? WHERE claimed_by = ?",
                             (time.time() + self.lease, owner))

        _patiently(self.path, renew)

    def flush(self, send: Send, base_url: str, *, limit: int = 1000) -> FlushResult:
        """Deliver the queued reports meant for ``base_url``, in order, through ``send``.

        Stops at the first report that still cannot be delivered (``retryable``), so later
        ones do not overtake it; a report the platform refuses (or that cannot be read) is
        parked with its reason and skipped, so one bad row never blocks the rest.

        Args:
            send: ``send(agent_id, body)`` (``resources.Reports.send`` of the configured platform).
            base_url: the platform ``send`` talks to: only reports meant for it are sent.
            limit: at most this many reports in one flush.

        Returns:
            A :class:`FlushResult`.

        Raises:
            OutboxError: the outbox file cannot be used.
        """
        owner = _new_owner()
        delivered: List[str] = []
        failed: List[Any] = []
        rows = self._claim(owner, base_url, limit)
        renew_at = time.monotonic() + self.lease / 3
        stop = False
        for seq, task_id, agent_id, text in rows:
            if stop:
                self._release(seq, owner, None)
                continue
            if time.monotonic() >= renew_at:  # a long flush keeps its claim
                self._renew(owner)
                renew_at = time.monotonic() + self.lease / 3
            body = _decode(text)
            if not isinstance(body, dict):
                self._release(seq, owner, "the stored body is not a JSON object", park=True)
                failed.append((task_id, "the stored body is not a JSON object"))
                continue
            try:
                send(agent_id, body)
            except ResponseDecodeError as exc:
                if exc.status_code is None or not 200 <= exc.status_code < 300:
                    raise  # pragma: no cover - a decode error always comes with the answer's status
                # Answered 2xx: the platform took it; only its answer could not be read.
                logger.warning("outbox %s: report %s delivered (its answer could not be read: %s)",
                               self.path, task_id, exc.description)
            except ModuleException as exc:
                failed.append((task_id, str(exc)))
                if exc.retryable:  # it may pass: stop here, so no later report overtakes this one
                    self._release(seq, owner, str(exc))
                    stop = True
                    continue
                if not self.park_refused:
                    self._delete(seq, owner)
                    logger.warning("outbox %s: %s %s refused by the platform (%s); dropped",
                                   self.path, self._table, task_id, exc)
                    continue
                self._release(seq, owner, str(exc), park=True)
                logger.warning("outbox %s: report %s refused by the platform (%s); parked: `xpander-sync outbox "
                               "list` shows it, Outbox.unpark() puts it back in line", self.path, task_id, exc)
                continue
            self._delete(seq, owner)
            delivered.append(task_id)
        if delivered:
            logger.info("outbox %s: delivered %d report(s)", self.path, len(delivered))
        return FlushResult(delivered=delivered, failed=failed, remaining=self._count(parked=False, base_url=base_url),
                           parked=self._count(parked=True, base_url=base_url))

    def _delete(self, seq: int, owner: str) -> None:
        def delete() -> None:
            with self._connect() as conn:
                conn.execute(f"DELETE FROM {self._table} WHERE seq = ? AND claimed_by = ?", (seq, owner))

        _patiently(self.path, delete)

    def _release(self, seq: int, owner: str, error: Optional[str], *, park: bool = False) -> None:
        def release() -> None:
            with self._connect() as conn:
                if error is None:
                    conn.execute(
                        f"UPDATE {self._table} SET claimed_by = NULL, claimed_until = NULL "
                        "WHERE seq = ? AND claimed_by = ?",
                        (seq, owner),
                    )
                else:
                    conn.execute(
                        f"UPDATE {self._table} SET claimed_by = NULL, claimed_until = NULL, attempts = attempts + 1, "
                        "last_error = ?, parked = ? WHERE seq = ? AND claimed_by = ?",
                        (error[:500], int(park), seq, owner),
                    )

        _patiently(self.path, release)


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _new_owner() -> str:
    """A flusher's claim mark: host, process id and a random part (``host:pid:hex``)."""
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex}"


def _owner_is_dead(owner: Optional[str]) -> bool:
    """Whether a claim was made by a process of this host that no longer runs."""
    parts = (owner or "").split(":")
    if len(parts) < 3 or ":".join(parts[:-2]) != HOST:
        return False  # another host (or an old-style mark): wait for the lease
    try:
        return is_gone(int(parts[-2]))
    except ValueError:
        return False


class _Tx:
    """``with`` wrapper around a connection in autocommit mode (explicit BEGIN where needed)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is not None and self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
