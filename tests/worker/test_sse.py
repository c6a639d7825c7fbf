"""The ``text/event-stream`` parser (:mod:`xpander_sync.worker.sse`)."""

from __future__ import annotations

from typing import List

import pytest

from xpander_sync.worker import ServerSentEvent, SSEParser, sse

STREAM = (
    b"\xef\xbb\xbf: hello\r\n\r\n"
    b"event: worker-registration\r\ndata: {\"id\": \"wrk-1\"}\r\n\r\n"
    b"id: 7\nevent: agent-execution\ndata: {\"a\":\ndata:  1}\n\n"
    b"data: plain\r\r"
    b"event: only-a-name\n\n"
    b"event: caf\xc3\xa9\ndata\n\n"
)
EXPECTED = [
    ServerSentEvent("worker-registration", '{"id": "wrk-1"}'),
    ServerSentEvent("agent-execution", '{"a":\n 1}', "7"),
    ServerSentEvent("message", "plain", "7"),
    ServerSentEvent("café", "", "7"),
]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(STREAM)])
def test_sse_parser_is_independent_of_chunking(size: int) -> None:
    parser = SSEParser()
    events = []
    for start in range(0, len(STREAM), size):
        events += parser.feed(STREAM[start:start + size])
    assert events == EXPECTED
    assert parser.comments == 1
    assert events[1].json() == {"a": 1}


def test_sse_parser_crlf_split_between_chunks() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: x\r") == []
    assert parser.feed(b"\n\r") == [ServerSentEvent("message", "x")]  # CR LF, then a lone CR: one blank line
    assert parser.feed(b"\ndata: y\n\n") == [ServerSentEvent("message", "y")]


def test_sse_parser_a_lone_lf_after_a_split_crlf_is_a_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: x\r") == []
    assert parser.feed(b"\n") == []  # the LF of the CRLF
    assert parser.feed(b"\n") == [ServerSentEvent("message", "x")]  # a blank line of its own


def test_sse_parser_splits_a_utf8_character_across_chunks() -> None:
    parser = SSEParser()
    data = "data: café ☕\n\n".encode()
    events = [event for i in range(len(data)) for event in parser.feed(data[i:i + 1])]
    assert events == [ServerSentEvent("message", "café ☕")]


def test_sse_parser_scans_each_character_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long line arriving in small chunks is not re-scanned chunk after chunk (linear, not quadratic)."""
    scanned: List[int] = []
    real = sse._LINE_BREAK

    class Counting:
        def split(self, text: str) -> List[str]:
            scanned.append(len(text))
            return real.split(text)

    monkeypatch.setattr(sse, "_LINE_BREAK", Counting())
    parser = SSEParser()
    payload = "x" * 200_000
    stream = f"event: big\ndata: {payload}\n\n".encode()
    events = [event for i in range(0, len(stream), 100) for event in parser.feed(stream[i:i + 100])]
    assert events == [ServerSentEvent("big", payload)]
    assert sum(scanned) == len(stream)
