"""The ``text/event-stream`` parser: bytes in, :class:`ServerSentEvent` values out.

Pure and incremental (no I/O): the stream reader feeds it whatever bytes arrived, split
anywhere, and gets the events those bytes completed. It follows the WHATWG rules, minus
``retry`` handling (the worker has its own backoff).

Linear in the bytes fed: each chunk is scanned for line ends once, and the unfinished
line is kept as a list of pieces joined once when its end arrives, so a long line that
arrives in many small chunks is not re-scanned or re-copied chunk after chunk.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
from typing import Any, Dict, List, Optional, Tuple

import attrs

__all__ = ["SSEParser", "ServerSentEvent"]

logger = logging.getLogger("xpander_sync.worker")

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@attrs.frozen
class ServerSentEvent:
    """One dispatched server-sent event.

    Attributes:
        event: the ``event:`` name (``"message"`` when the frame had none).
        data: the ``data:`` lines joined with ``\\n``.
        id: the last ``id:`` seen on the stream, if any.
    """

    event: str
    data: str
    id: Optional[str] = None

    def json(self) -> Any:
        """``data`` decoded as JSON.

        Returns:
            The decoded value.

        Raises:
            ValueError: ``data`` is not JSON.
        """
        return json.loads(self.data)

    def task(self) -> Optional[Tuple[Dict[str, Any], str]]:
        """The task JSON and id an ``agent-execution`` frame carries, or ``None`` (logged) when it has none.

        Returns:
            ``(task JSON, task id)``; ``None`` when the data is not JSON or names no task id.
        """
        try:
            data = self.json()
        except (ValueError, RecursionError):
            logger.error("agent-execution event without JSON data; skipped")
            return None
        task_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            logger.error("agent-execution event without a task id; skipped")
            return None
        return data, task_id


class SSEParser:
    """An incremental ``text/event-stream`` parser.

    Feed it bytes as they arrive, in chunks of any size; it returns the events completed by
    each chunk. Lines end with CRLF, LF or CR (a CRLF split between two chunks counts
    once); ``:`` lines are comments (keep-alives); a blank line dispatches the event.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending: List[str] = []  # pieces of the line not ended yet
        self._after_cr = False
        self._first = True
        self._event = ""
        self._data: List[str] = []
        self._last_id: Optional[str] = None
        #: comment lines seen so far (the platform's keep-alives)
        self.comments = 0

    def feed(self, chunk: bytes) -> List[ServerSentEvent]:
        """Parse ``chunk`` and return the events it completed (possibly none).

        Args:
            chunk: the next bytes of the stream, split anywhere (even inside a UTF-8 character).

        Returns:
            The events dispatched by this chunk, in order.
        """
        text = self._decoder.decode(chunk)
        if self._first and text:
            self._first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        if not text:  # e.g. only the first byte of a UTF-8 character
            return []
        if self._after_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF whose CR ended the previous chunk
        self._after_cr = text.endswith("\r")
        if not text:
            return []
        pieces = _LINE_BREAK.split(text)  # scans only the new text
        if len(pieces) == 1:  # no line end yet: keep the piece, copy nothing
            self._pending.append(text)
            return []
        if self._pending:
            self._pending.append(pieces[0])
            pieces[0] = "".join(self._pending)
        tail = pieces.pop()
        self._pending = [tail] if tail else []
        events = []
        for line in pieces:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> Optional[ServerSentEvent]:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = ServerSentEvent(self._event or "message", "\n".join(self._data), self._last_id)
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            self.comments += 1
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._last_id = value
        return None
