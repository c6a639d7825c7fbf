"""A scripted LLM on loopback: answers as a provider would, from a script, and records every request.

Standard library only (plus :mod:`xpander_sync._redact` for log lines). Public through
:mod:`xpander_sync.testing`::

    from xpander_sync.testing import ScriptedModel, answer, call_tool

    with ScriptedModel([call_tool("Echo", {"text": "hi"}), answer("done")]) as model:
        client = openai.OpenAI(base_url=model.url + "/v1", api_key="sk-test")
        ...  # the first request gets the tool call, the second the answer
        assert model.requests[1].tool_results == {"call_1": "hi"}

**Formats served** (routed by the path *suffix*, so any prefix works: ``/v1/chat/completions``,
``/anthropic/v1/messages``, or a platform proxy route such as ``/{proxy}/{provider}/v1/messages``):

* OpenAI Chat Completions, ``POST .../chat/completions``: JSON, and SSE with ``"stream": true`` (tool call
  deltas, a final ``finish_reason`` chunk, a usage chunk when ``stream_options.include_usage``, ``[DONE]``).
  Azure OpenAI and every OpenAI-compatible provider (nebius, open_router, fireworks, nim, ...) use it too.
* OpenAI Responses, ``POST .../responses``: JSON, and the SSE event stream (``response.created`` ...
  ``response.completed``), ``function_call`` output items.
* Anthropic Messages, ``POST .../messages``: JSON, and the SSE event stream (``message_start`` ...
  ``message_stop``) with ``text_delta``/``input_json_delta``.
* Google Gemini, ``POST .../models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``:
  ``functionCall`` parts and ``usageMetadata``.

**Not served**: Amazon Bedrock (Converse, SigV4/event-stream framing), the OpenAI Assistants/Realtime
APIs, embeddings, ``GET .../models`` listings. An unknown path gets a 404; a bad body a 400 in the
provider's error format; the server never crashes on input.

**Script semantics**: each model request takes the next turn (one lock per model, so concurrent
requests each get exactly one). When the script is exhausted the model answers ``exhausted_text``
and marks the record ``exhausted=True``; it never fails the caller. Requests answered with an error
(400/404/405) take no turn.

Design notes: :meth:`ScriptedModel.handle` is the whole behaviour and does no socket I/O, so another
HTTP server (the local backend) can mount the model under its own prefix: pass it the method, the
request target, the headers and the raw body, then send the returned :class:`ScriptedResponse`
(:meth:`ScriptedResponse.send` writes it through any ``http.server`` handler). The recorder keeps
headers and keys unmasked (tests assert on them); the debug log line masks the query string.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Pattern, Set, Union
from urllib.parse import parse_qsl, urlencode, urlsplit

from . import _scripted_formats as formats
from ._redact import redact_url

logger = logging.getLogger(__name__)

#: Text answered once the script is exhausted (see :class:`ScriptedModel`).
EXHAUSTED_TEXT = "(the scripted model has no turn left)"
_MAX_BODY = 32 * 1024 * 1024


@dataclass(frozen=True)
class Usage:
    """Token numbers reported with a response (every family maps them to its own field names).

    Args:
        prompt_tokens: input tokens (OpenAI ``prompt_tokens``/``input_tokens``, Anthropic ``input_tokens``,
            Gemini ``promptTokenCount``).
        completion_tokens: output tokens.
    """

    prompt_tokens: int = 11
    completion_tokens: int = 7

    @property
    def total_tokens(self) -> int:
        """prompt + completion."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Turn:
    """One step of a script; build it with :func:`call_tool`, :func:`answer`, :func:`call_first_tool`
    or :func:`answer_with_tool_result`.

    Args:
        kind: ``"call_tool"``, ``"answer"``, ``"call_first_tool"`` or ``"answer_with_tool_result"``.
        name: the tool to call (``call_tool``).
        arguments: the tool call's arguments; ``None`` for ``call_first_tool`` derives them from the schema.
        text: the answer (``answer``), or the prefix of the tool result (``answer_with_tool_result``).
        matching: the regex or substring a tool name must match (``call_first_tool``).
        call_id: the tool call id to send; ``None`` numbers them ``call_1``, ``call_2``, ... per model.
        usage: the token numbers of this response; ``None`` uses the model's default.
    """

    kind: str
    name: Optional[str] = None
    arguments: Optional[Dict[str, Any]] = None
    text: str = ""
    matching: Union[str, Pattern[str], None] = None
    call_id: Optional[str] = None
    usage: Optional[Usage] = None


def call_tool(name: str, arguments: Optional[Mapping[str, Any]] = None, *, call_id: Optional[str] = None,
              usage: Optional[Usage] = None) -> Turn:
    """A turn that calls tool ``name`` with ``arguments`` (whether or not the request offered it).

    Args:
        name: the tool name, as the framework offered it.
        arguments: the arguments object (``{}`` when ``None``).
        call_id: the tool call id to send; ``None`` for ``call_<n>``.
        usage: this response's token numbers; ``None`` for the model's default.

    Returns:
        The :class:`Turn`.
    """
    return Turn("call_tool", name=name, arguments=dict(arguments or {}), call_id=call_id, usage=usage)


def answer(text: str, *, usage: Optional[Usage] = None) -> Turn:
    """A turn that answers with the final ``text`` (no tool call).

    Args:
        text: the answer.
        usage: this response's token numbers; ``None`` for the model's default.

    Returns:
        The :class:`Turn`.
    """
    return Turn("answer", text=text, usage=usage)


def call_first_tool(matching: Union[str, Pattern[str]] = "", arguments: Optional[Mapping[str, Any]] = None, *,
                    call_id: Optional[str] = None, usage: Optional[Usage] = None) -> Turn:
    """A turn that calls the first tool offered in the request whose name matches.

    A compiled pattern is searched (``re.search``); a string matches when it is a substring of the
    name or, failing that, when it is a regular expression found in it. When no offered tool matches
    the model answers a text saying so (the record keeps the turn), so the caller's run still ends.

    Args:
        matching: a substring or regular expression; ``""`` matches the first tool offered.
        arguments: the arguments; ``None`` derives the minimal object the tool's JSON schema accepts
            (each required property at its default, first enum value, ``""``, ``0``, ``False``, ``[]``...).
        call_id: the tool call id to send; ``None`` for ``call_<n>``.
        usage: this response's token numbers; ``None`` for the model's default.

    Returns:
        The :class:`Turn`.
    """
    return Turn("call_first_tool", matching=matching, arguments=None if arguments is None else dict(arguments),
                call_id=call_id, usage=usage)


def answer_with_tool_result(prefix: str = "", *, usage: Optional[Usage] = None) -> Turn:
    """A turn that answers with the text of the last tool result found in the request's messages.

    Args:
        prefix: text put before the tool result (for example ``"The tool said: "``).
        usage: this response's token numbers; ``None`` for the model's default.

    Returns:
        The :class:`Turn` (with no tool result in the request, it answers ``prefix`` plus ``"(no tool result)"``).
    """
    return Turn("answer_with_tool_result", text=prefix, usage=usage)


@dataclass
class ScriptedRequest:
    """One request the model received, as recorded.

    Attributes:
        family: ``"openai-chat"``, ``"openai-responses"``, ``"anthropic"``, ``"gemini"``, or ``None`` (unknown path).
        method: the HTTP method.
        path: the path, without the query string.
        query: the query parameters.
        headers: every header, names lower-cased, values as received (keys included).
        api_key: the key from ``Authorization: Bearer``, ``x-api-key``, ``api-key``, ``x-goog-api-key`` or ``?key=``.
        body: the decoded JSON body (``None`` when it was not JSON).
        model: the model id (the body's ``model``; for Gemini, the path's).
        stream: whether a streaming response was asked for.
        messages: the conversation as sent (Chat/Anthropic ``messages``, Responses ``input``, Gemini ``contents``).
        tools: the names of the tools offered, in order.
        tool_results: tool call id (``tool_call_id``/``call_id``/``tool_use_id``; Gemini: id or name) -> result text.
        status: the HTTP status answered.
        turn: the script turn that answered it (``None`` on errors and once exhausted).
        exhausted: the script had no turn left, so :data:`EXHAUSTED_TEXT` (or the configured text) was answered.
        reply_text: the text answered (``""`` for a tool call).
        tool_call: ``{"id", "name", "arguments"}`` of the tool call answered, else ``None``.
        usage: the token numbers answered (``None`` on errors).
    """

    family: Optional[str]
    method: str
    path: str
    query: Dict[str, str]
    headers: Dict[str, str]
    api_key: Optional[str]
    body: Any
    model: Optional[str] = None
    stream: bool = False
    messages: List[Any] = field(default_factory=list)
    tools: List[str] = field(default_factory=list)
    tool_results: Dict[str, str] = field(default_factory=dict)
    status: int = 200
    turn: Optional[Turn] = None
    exhausted: bool = False
    reply_text: str = ""
    tool_call: Optional[Dict[str, Any]] = None
    usage: Optional[Usage] = None

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """A header's value, by case-insensitive name.

        Args:
            name: the header name.
            default: returned when the header was not sent.

        Returns:
            The value, or ``default``.
        """
        return self.headers.get(name.lower(), default)

    def mentions(self, text: str) -> bool:
        """Whether ``text`` appears anywhere in the messages sent (tool results and system prompts included).

        Args:
            text: the text to look for.

        Returns:
            ``True`` when found in the JSON of :attr:`messages` (or, for system prompts, of :attr:`body`).
        """
        return text in json.dumps(self.messages, ensure_ascii=False) or text in json.dumps(self.body,
                                                                                         ensure_ascii=False)

    @property
    def last_tool_result(self) -> Optional[str]:
        """The text of the last tool result in the messages, or ``None``."""
        return list(self.tool_results.values())[-1] if self.tool_results else None


@dataclass
class ScriptedResponse:
    """What :meth:`ScriptedModel.handle` answers; the HTTP server (or a host mounting the model) sends it.

    Attributes:
        status: the HTTP status.
        headers: the response headers (``Content-Type``; no length or transfer encoding).
        chunks: the body; a streaming response has one chunk per SSE frame (send and flush each).
        streaming: whether it is a ``text/event-stream``.
    """

    status: int
    headers: Dict[str, str]
    chunks: List[bytes]
    streaming: bool = False

    @property
    def body(self) -> bytes:
        """The whole body as bytes."""
        return b"".join(self.chunks)

    def send(self, handler: BaseHTTPRequestHandler) -> None:
        """Write the response through an ``http.server`` handler (HTTP/1.1).

        A JSON response gets a ``Content-Length``; a stream goes out chunked, one flushed chunk per
        SSE frame, so a client sees each event as it is written. A host server mounting the model
        (the local backend) can call this from its own handler.

        Args:
            handler: the request handler answering the request (its ``close_connection`` is honoured).
        """
        handler.send_response(self.status)
        for name, value in self.headers.items():
            handler.send_header(name, value)
        if self.streaming:
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            for chunk in self.chunks:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                handler.wfile.flush()
            handler.wfile.write(b"0\r\n\r\n")
            return
        data = self.body
        handler.send_header("Content-Length", str(len(data)))
        if handler.close_connection:
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(data)


def _api_key(headers: Mapping[str, str], query: Mapping[str, str]) -> Optional[str]:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    for name in ("x-api-key", "api-key", "x-goog-api-key"):
        if headers.get(name):
            return headers[name]
    return query.get("key")


def _matches(matching: Union[str, Pattern[str], None], name: str) -> bool:
    if matching is None or matching == "":
        return True
    if isinstance(matching, str):
        if matching in name:
            return True
        try:
            return re.search(matching, name) is not None
        except re.error:
            return False
    return matching.search(name) is not None


class ScriptedModel:
    """A scripted LLM provider served on ``127.0.0.1`` (see the module docstring for the formats).

    Args:
        turns: the script, consumed one turn per model request (more can be added with :meth:`script`).
        exhausted_text: the answer once the script is exhausted.
        usage: the token numbers of turns that set none.
        host: the interface to listen on (loopback by default).

    Example::

        with ScriptedModel([call_first_tool("search"), answer_with_tool_result()]) as model:
            run_agent(base_url=model.url + "/v1")
            assert model.requests[-1].tool_results
    """

    def __init__(self, turns: Iterable[Turn] = (), *, exhausted_text: str = EXHAUSTED_TEXT,
                 usage: Usage = Usage(), host: str = "127.0.0.1") -> None:
        self.exhausted_text = exhausted_text
        self.usage = usage
        self._host = host
        self._lock = threading.Lock()
        self._turns: List[Turn] = []
        self._requests: List[ScriptedRequest] = []
        self._calls = 0
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self.script(*turns)

    # --- the script ---------------------------------------------------------------------------------------------

    def script(self, *turns: Turn) -> ScriptedModel:
        """Append turns to the script.

        Args:
            *turns: the turns, in order.

        Returns:
            The model itself (so ``model.script(...)`` can be chained or returned).

        Raises:
            TypeError: an item is not a :class:`Turn`.
        """
        for turn in turns:
            if not isinstance(turn, Turn):
                raise TypeError(f"a script holds Turn objects (call_tool(), answer(), ...), not {type(turn).__name__}")
        with self._lock:
            self._turns.extend(turns)
        return self

    def reset(self, *turns: Turn) -> ScriptedModel:
        """Forget the remaining script and the recorded requests, then script ``turns``.

        Args:
            *turns: the new script.

        Returns:
            The model itself.
        """
        with self._lock:
            self._turns.clear()
            self._requests.clear()
            self._calls = 0
        return self.script(*turns)

    @property
    def remaining(self) -> int:
        """How many turns have not been used yet."""
        with self._lock:
            return len(self._turns)

    @property
    def requests(self) -> List[ScriptedRequest]:
        """Every request received, oldest first (a copy of the list)."""
        with self._lock:
            return list(self._requests)

    @property
    def exhausted(self) -> int:
        """How many requests were answered after the script ran out."""
        with self._lock:
            return sum(1 for r in self._requests if r.exhausted)

    @property
    def total_usage(self) -> Usage:
        """The token numbers of every answered request, summed."""
        with self._lock:
            used = [r.usage for r in self._requests if r.usage is not None]
        return Usage(sum(u.prompt_tokens for u in used), sum(u.completion_tokens for u in used))

    # --- the behaviour (no socket I/O) ----------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> ScriptedResponse:
        """Answer one HTTP request as the provider its path names (records it; takes a turn when it succeeds).

        Args:
            method: the HTTP method.
            target: the request target, a path with an optional query string (any prefix).
            headers: the request headers (any case).
            body: the raw request body.

        Returns:
            The :class:`ScriptedResponse` to send (a 500 in OpenAI's error format if the model itself failed).
        """
        try:
            return self._handle(method, target, headers, body)
        except Exception:  # a bug here must not cost the caller a hung or reset connection
            logger.warning("scripted model: failed to answer %s %s", method, redact_url(target), exc_info=True)
            data = json.dumps(formats.error_body(None, 500, "the scripted model failed")).encode("utf-8")
            return ScriptedResponse(500, {"Content-Type": "application/json"}, [data])

    def _handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> ScriptedResponse:
        split = urlsplit(target)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        routed = formats.route(split.path)
        family = routed[0] if routed else None
        try:
            decoded: Any = json.loads(body.decode("utf-8")) if body.strip() else None
        except (UnicodeDecodeError, ValueError):
            decoded = None
        record = ScriptedRequest(family, method.upper(), split.path, query, lowered, _api_key(lowered, query), decoded)
        if routed is None:
            return self._fail(record, 404, f"no provider API is served at {split.path}")
        if record.method != "POST":
            return self._fail(record, 405, f"{record.method} is not allowed here; POST a request")
        try:
            parsed = formats.parse(routed[0], decoded, routed[1], routed[2])
        except formats.BadRequest as exc:
            return self._fail(record, 400, str(exc) if body.strip() else "the request body is empty")
        record.model, record.stream, record.messages = parsed.model, parsed.stream, parsed.messages
        record.tools, record.tool_results = parsed.tools, parsed.tool_results
        with self._lock:
            turn = self._turns.pop(0) if self._turns else None
            self._calls += 1
            number = self._calls
            reply = self._resolve(turn, parsed, number)
            record.turn, record.exhausted, record.reply_text = turn, turn is None, reply.text
            record.usage = Usage(reply.prompt_tokens, reply.completion_tokens)
            if reply.tool_name:
                record.tool_call = {"id": reply.call_id, "name": reply.tool_name, "arguments": reply.arguments}
            self._requests.append(record)
        self._log(record)
        rid = f"scripted{number}"
        if parsed.stream:
            frames = formats.render_stream(parsed, reply, rid)
            return ScriptedResponse(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}, frames,
                                    streaming=True)
        data = json.dumps(formats.render(parsed, reply, rid), ensure_ascii=False).encode("utf-8")
        return ScriptedResponse(200, {"Content-Type": "application/json"}, [data])

    def _resolve(self, turn: Optional[Turn], parsed: formats.ParsedRequest, number: int) -> formats.Reply:
        """The reply a turn gives to this request (called under the lock)."""
        usage = (turn.usage if turn is not None else None) or self.usage
        return dataclasses.replace(self._reply(turn, parsed, number), prompt_tokens=usage.prompt_tokens,
                                   completion_tokens=usage.completion_tokens)

    def _reply(self, turn: Optional[Turn], parsed: formats.ParsedRequest, number: int) -> formats.Reply:
        call_id = (turn.call_id if turn is not None else None) or f"call_{number}"
        if turn is None:
            return formats.Reply(text=self.exhausted_text)
        if turn.kind == "call_tool":
            return formats.Reply(tool_name=turn.name, arguments=dict(turn.arguments or {}), call_id=call_id)
        if turn.kind == "call_first_tool":
            name = next((n for n in parsed.tools if _matches(turn.matching, n)), None)
            if name is None:
                text = f"(no offered tool matches {turn.matching!r}; offered: {', '.join(parsed.tools) or 'none'})"
                return formats.Reply(text=text)
            arguments = turn.arguments
            if arguments is None:
                derived = formats.minimal_arguments(parsed.tool_schemas.get(name))
                arguments = derived if isinstance(derived, dict) else {}
            return formats.Reply(tool_name=name, arguments=dict(arguments), call_id=call_id)
        if turn.kind == "answer_with_tool_result":
            results = list(parsed.tool_results.values())
            return formats.Reply(text=turn.text + (results[-1] if results else "(no tool result)"))
        return formats.Reply(text=turn.text)

    def _fail(self, record: ScriptedRequest, status: int, message: str) -> ScriptedResponse:
        record.status = status
        with self._lock:
            self._requests.append(record)
        self._log(record)
        data = json.dumps(formats.error_body(record.family, status, message)).encode("utf-8")
        return ScriptedResponse(status, {"Content-Type": "application/json"}, [data])

    @staticmethod
    def _log(record: ScriptedRequest) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            query = "?" + urlencode(record.query) if record.query else ""
            what = record.tool_call["name"] if record.tool_call else ("exhausted" if record.exhausted else "text")
            logger.debug("scripted model: %s %s -> %d (%s, %s)", record.method, redact_url(record.path + query),
                         record.status, record.family, what if record.status == 200 else "error")

    # --- the server --------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL (``http://127.0.0.1:{port}``); append the provider's path prefix (``/v1``...).

        Raises:
            RuntimeError: the model is not started.
        """
        if self._server is None:
            raise RuntimeError("the scripted model is not started: call start() or use it as a context manager")
        return f"http://{self._host}:{self._server.server_port}"

    def start(self) -> ScriptedModel:
        """Listen on an ephemeral port and serve in a daemon thread (no-op when already started).

        Returns:
            The model itself.
        """
        if self._server is None:
            server = _Server((self._host, 0), _Handler)
            server.model = self
            self._server = server
            self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="xpander-scripted-model", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (idempotent); the recorded requests stay."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedModel:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    model: ScriptedModel

    def __init__(self, address: Any, handler: Callable[..., Any]) -> None:
        super().__init__(address, handler)
        self._connections: Set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (or stop() closing its connection) is not an error worth a traceback on stderr.
        logger.debug("scripted model: connection from %s ended with an error", client_address, exc_info=True)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "xpander-scripted-model"
    disable_nagle_algorithm = True
    timeout = 30
    server: _Server

    def do_POST(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True  # the rest of the body may still be in the socket
            body = b"\x00"  # not JSON: answered with the provider's 400
        response = self.server.model.handle(self.command, self.path, dict(self.headers.items()), body)
        response.send(self)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: List[bytes] = []
            while True:
                size = int(self.rfile.readline(65537).split(b";", 1)[0].strip() or b"x", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                if size < 0 or sum(map(len, chunks)) + size > _MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= _MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # ScriptedModel.handle logs one line per request
