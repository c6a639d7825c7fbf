"""The wire formats of the scripted model: reading provider requests, writing provider responses.

Pure functions, standard library only, no I/O: :mod:`xpander_sync._scripted_model` routes a request
here by its path suffix, reads it into a :class:`ParsedRequest`, and renders a :class:`Reply` (one
resolved turn: a tool call or a text answer, with its usage) in the provider's own format, as one
JSON document or as the frames of a server-sent-events stream.

Families (the value of :attr:`ParsedRequest.family`):

* ``openai-chat``: OpenAI Chat Completions (``.../chat/completions``; also Azure OpenAI and every
  OpenAI-compatible provider).
* ``openai-responses``: OpenAI Responses (``.../responses``).
* ``anthropic``: Anthropic Messages (``.../messages``, normally ``.../v1/messages``).
* ``gemini``: Google Gemini (``.../models/{model}:generateContent`` and ``:streamGenerateContent``).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

OPENAI_CHAT = "openai-chat"
OPENAI_RESPONSES = "openai-responses"
ANTHROPIC = "anthropic"
GEMINI = "gemini"
FAMILIES = (OPENAI_CHAT, OPENAI_RESPONSES, ANTHROPIC, GEMINI)

_GEMINI_PATH = re.compile(r"/models/([^/:]+):(generateContent|streamGenerateContent)$")


class BadRequest(ValueError):
    """The request body is not what the provider accepts; answered with a 400 in its error format."""


@dataclass
class ParsedRequest:
    """What the scripted model reads from one request body (any family)."""

    family: str
    model: Optional[str]
    stream: bool
    messages: List[Any]
    tools: List[str]
    tool_schemas: Dict[str, Any]
    tool_results: Dict[str, str]
    include_usage: bool = False


@dataclass(frozen=True)
class Reply:
    """One resolved turn: a tool call (``tool_name`` set) or a text answer."""

    text: str = ""
    tool_name: Optional[str] = None
    arguments: Dict[str, Any] = field(default_factory=dict)
    call_id: str = "call_1"
    prompt_tokens: int = 11
    completion_tokens: int = 7

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, separators=(",", ":"))


def route(path: str) -> Optional[Tuple[str, Optional[str], bool]]:
    """``(family, model named by the path, streaming named by the path)`` for a path, or ``None``."""
    path = path.rstrip("/")
    match = _GEMINI_PATH.search(path)
    if match:
        return GEMINI, match.group(1), match.group(2) == "streamGenerateContent"
    if path.endswith("/chat/completions"):
        return OPENAI_CHAT, None, False
    if path.endswith("/responses"):
        return OPENAI_RESPONSES, None, False
    if path.endswith("/messages"):
        return ANTHROPIC, None, False
    return None


def _text(content: Any) -> str:
    """The text of a message content: a string, or a list of parts with ``text`` (any family)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_text(part) for part in content)
    if isinstance(content, dict):
        for key in ("text", "output", "content"):
            if key in content:
                return _text(content[key])
        return json.dumps(content, sort_keys=True)
    return json.dumps(content)


def _dicts(value: Any, what: str) -> List[Dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise BadRequest(f"{what} must be a list of objects")
    return value


def parse(family: str, body: Any, model: Optional[str] = None, stream: bool = False) -> ParsedRequest:
    """Read a decoded request body of ``family``.

    Raises:
        BadRequest: the body is not a JSON object, lacks what the provider requires, or has a part of
            the wrong shape.
    """
    try:
        return _parse(family, body, model, stream)
    except (AttributeError, TypeError) as exc:  # e.g. a string where an object belongs
        raise BadRequest(f"malformed request body ({type(exc).__name__})") from None


def _parse(family: str, body: Any, model: Optional[str], stream: bool) -> ParsedRequest:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    if family == GEMINI:
        return _parse_gemini(body, model, stream)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: a non-empty string is required")
    stream = body.get("stream") is True
    tools_raw = _dicts(body.get("tools") or [], "tools")
    parsed = ParsedRequest(family, model, stream, [], [], {}, {})
    if family == OPENAI_CHAT:
        parsed.messages = _dicts(body.get("messages"), "messages")
        parsed.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        for tool in tools_raw:
            function = tool.get("function") or {}
            if isinstance(function.get("name"), str):
                parsed.tool_schemas[function["name"]] = function.get("parameters") or {}
        for message in parsed.messages:
            if message.get("role") == "tool":
                parsed.tool_results[str(message.get("tool_call_id"))] = _text(message.get("content"))
    elif family == OPENAI_RESPONSES:
        items = body.get("input")
        parsed.messages = [{"role": "user", "content": items}] if isinstance(items, str) else _dicts(items, "input")
        for tool in tools_raw:
            if tool.get("type") == "function" and isinstance(tool.get("name"), str):
                parsed.tool_schemas[tool["name"]] = tool.get("parameters") or {}
        for item in parsed.messages:
            if item.get("type") == "function_call_output":
                parsed.tool_results[str(item.get("call_id"))] = _text(item.get("output"))
    else:
        parsed.messages = _dicts(body.get("messages"), "messages")
        for tool in tools_raw:
            if isinstance(tool.get("name"), str):
                parsed.tool_schemas[tool["name"]] = tool.get("input_schema") or {}
        for message in parsed.messages:
            content = message.get("content")
            for block in content if isinstance(content, list) else []:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    parsed.tool_results[str(block.get("tool_use_id"))] = _text(block.get("content"))
    parsed.tools = list(parsed.tool_schemas)
    return parsed


def _parse_gemini(body: Dict[str, Any], model: Optional[str], stream: bool) -> ParsedRequest:
    parsed = ParsedRequest(GEMINI, model, stream, _dicts(body.get("contents"), "contents"), [], {}, {})
    for tool in _dicts(body.get("tools") or [], "tools"):
        for declaration in tool.get("functionDeclarations") or tool.get("function_declarations") or []:
            if isinstance(declaration, dict) and isinstance(declaration.get("name"), str):
                schema = declaration.get("parameters") or declaration.get("parametersJsonSchema") or {}
                parsed.tool_schemas[declaration["name"]] = schema
    for content in parsed.messages:
        for part in content.get("parts") or []:
            result = part.get("functionResponse") if isinstance(part, dict) else None
            if isinstance(result, dict):
                key = str(result.get("id") or result.get("name"))
                response = result.get("response")
                parsed.tool_results[key] = _text(response) if isinstance(response, (str, dict)) else _text([response])
    parsed.tools = list(parsed.tool_schemas)
    return parsed


def minimal_arguments(schema: Any) -> Any:
    """The smallest value a JSON schema accepts: required properties only, each at its simplest."""
    if not isinstance(schema, dict):
        return {}
    if "default" in schema:
        return schema["default"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(combinator), list) and schema[combinator]:
            return minimal_arguments(schema[combinator][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    kind = str(kind).lower() if kind else ("object" if "properties" in schema else None)
    simple = {"string": "", "integer": 0, "number": 0, "boolean": False, "array": [], "null": None}
    if kind in simple:
        return simple[kind]
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    required = schema.get("required")
    required = required if isinstance(required, list) else []
    return {name: minimal_arguments(properties.get(name)) for name in required if isinstance(name, str)}


def error_body(family: Optional[str], status: int, message: str) -> Dict[str, Any]:
    """A JSON error in the format of ``family`` (OpenAI's when unknown)."""
    if family == ANTHROPIC:
        kind = {404: "not_found_error", 405: "invalid_request_error"}.get(status, "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    if family == GEMINI:
        kind = {404: "NOT_FOUND"}.get(status, "INVALID_ARGUMENT")
        return {"error": {"code": status, "message": message, "status": kind}}
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


def _halves(text: str) -> List[str]:
    """The text in two pieces (one when short), so that clients must assemble deltas."""
    middle = len(text) // 2
    return [text[:middle], text[middle:]] if middle else [text]


def _sse(data: Any, event: Optional[str] = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"{head}data: {payload}\n\n".encode()


# --- OpenAI Chat Completions ---------------------------------------------------------------------------------


def _chat_usage(reply: Reply) -> Dict[str, int]:
    total = reply.prompt_tokens + reply.completion_tokens
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens, "total_tokens": total}


def _chat_json(parsed: ParsedRequest, reply: Reply, rid: str) -> Dict[str, Any]:
    message: Dict[str, Any] = {"role": "assistant", "content": None if reply.tool_name else reply.text}
    if reply.tool_name:
        function = {"name": reply.tool_name, "arguments": reply.arguments_json}
        message["tool_calls"] = [{"id": reply.call_id, "type": "function", "function": function}]
    choice = {"index": 0, "message": message, "logprobs": None,
              "finish_reason": "tool_calls" if reply.tool_name else "stop"}
    return {"id": f"chatcmpl-{rid}", "object": "chat.completion", "created": int(time.time()),
            "model": parsed.model, "choices": [choice], "usage": _chat_usage(reply)}


def _chat_stream(parsed: ParsedRequest, reply: Reply, rid: str) -> List[bytes]:
    base = {"id": f"chatcmpl-{rid}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": parsed.model}

    def chunk(delta: Dict[str, Any], finish: Optional[str] = None) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]})

    frames = [chunk({"role": "assistant", "content": "" if not reply.tool_name else None})]
    if reply.tool_name:
        start = {"index": 0, "id": reply.call_id, "type": "function",
                 "function": {"name": reply.tool_name, "arguments": ""}}
        frames.append(chunk({"tool_calls": [start]}))
        frames += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                   for piece in _halves(reply.arguments_json)]
    else:
        frames += [chunk({"content": piece}) for piece in _halves(reply.text)]
    frames.append(chunk({}, "tool_calls" if reply.tool_name else "stop"))
    if parsed.include_usage:
        frames.append(_sse({**base, "choices": [], "usage": _chat_usage(reply)}))
    frames.append(_sse("[DONE]"))
    return frames


# --- OpenAI Responses ------------------------------------------------------------------------------------------


def _responses_item(reply: Reply, rid: str, done: bool) -> Dict[str, Any]:
    status = "completed" if done else "in_progress"
    if reply.tool_name:
        return {"type": "function_call", "id": f"fc_{rid}", "call_id": reply.call_id, "name": reply.tool_name,
                "arguments": reply.arguments_json if done else "", "status": status}
    content = [{"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}] if done else []
    return {"type": "message", "id": f"msg_{rid}", "role": "assistant", "status": status, "content": content}


def _responses_json(parsed: ParsedRequest, reply: Reply, rid: str, done: bool = True) -> Dict[str, Any]:
    usage = {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens,
             "total_tokens": reply.prompt_tokens + reply.completion_tokens,
             "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
    return {"id": f"resp_{rid}", "object": "response", "created_at": int(time.time()), "model": parsed.model,
            "status": "completed" if done else "in_progress", "output": [_responses_item(reply, rid, True)] if done
            else [], "usage": usage if done else None, "error": None, "incomplete_details": None,
            "instructions": None, "metadata": {}, "parallel_tool_calls": True, "temperature": 1.0,
            "tool_choice": "auto", "tools": [], "top_p": 1.0, "text": {"format": {"type": "text"}}}


def _responses_stream(parsed: ParsedRequest, reply: Reply, rid: str) -> List[bytes]:
    events: List[Dict[str, Any]] = [
        {"type": "response.created", "response": _responses_json(parsed, reply, rid, done=False)},
        {"type": "response.in_progress", "response": _responses_json(parsed, reply, rid, done=False)},
        {"type": "response.output_item.added", "output_index": 0, "item": _responses_item(reply, rid, False)},
    ]
    item_id = f"fc_{rid}" if reply.tool_name else f"msg_{rid}"
    at = {"item_id": item_id, "output_index": 0}
    if reply.tool_name:
        events += [{"type": "response.function_call_arguments.delta", **at, "delta": piece}
                   for piece in _halves(reply.arguments_json)]
        events.append({"type": "response.function_call_arguments.done", **at, "name": reply.tool_name,
                       "arguments": reply.arguments_json})
    else:
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        events.append({"type": "response.content_part.added", **at, "content_index": 0, "part": part})
        events += [{"type": "response.output_text.delta", **at, "content_index": 0, "delta": piece, "logprobs": []}
                   for piece in _halves(reply.text)]
        events.append({"type": "response.output_text.done", **at, "content_index": 0, "text": reply.text,
                       "logprobs": []})
        events.append({"type": "response.content_part.done", **at, "content_index": 0,
                       "part": {**part, "text": reply.text}})
    events.append({"type": "response.output_item.done", "output_index": 0, "item": _responses_item(reply, rid, True)})
    events.append({"type": "response.completed", "response": _responses_json(parsed, reply, rid)})
    return [_sse({**event, "sequence_number": n}, event["type"]) for n, event in enumerate(events)]


# --- Anthropic Messages ----------------------------------------------------------------------------------------


def _anthropic_block(reply: Reply, started: bool = False) -> Dict[str, Any]:
    if reply.tool_name:
        return {"type": "tool_use", "id": reply.call_id, "name": reply.tool_name,
                "input": {} if started else reply.arguments}
    return {"type": "text", "text": "" if started else reply.text}


def _anthropic_json(parsed: ParsedRequest, reply: Reply, rid: str) -> Dict[str, Any]:
    usage = {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens,
             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    return {"id": f"msg_{rid}", "type": "message", "role": "assistant", "model": parsed.model,
            "content": [_anthropic_block(reply)], "stop_reason": "tool_use" if reply.tool_name else "end_turn",
            "stop_sequence": None, "usage": usage}


def _anthropic_stream(parsed: ParsedRequest, reply: Reply, rid: str) -> List[bytes]:
    start = _anthropic_json(parsed, reply, rid)
    start.update(content=[], stop_reason=None, usage={**start["usage"], "output_tokens": 1})
    events: List[Dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": _anthropic_block(reply, started=True)},
        {"type": "ping"},
    ]
    if reply.tool_name:
        events += [{"type": "content_block_delta", "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": piece}}
                   for piece in _halves(reply.arguments_json)]
    else:
        events += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
                   for piece in _halves(reply.text)]
    events += [
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use" if reply.tool_name else "end_turn",
                                            "stop_sequence": None},
         "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens}},
        {"type": "message_stop"},
    ]
    return [_sse(event, event["type"]) for event in events]


# --- Google Gemini ---------------------------------------------------------------------------------------------


def _gemini_json(parsed: ParsedRequest, reply: Reply, rid: str, parts: Optional[List[Any]] = None,
                 final: bool = True) -> Dict[str, Any]:
    if parts is None:
        call = {"name": reply.tool_name, "args": reply.arguments, "id": reply.call_id}
        parts = [{"functionCall": call}] if reply.tool_name else [{"text": reply.text}]
    candidate: Dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    document: Dict[str, Any] = {"candidates": [candidate], "modelVersion": parsed.model, "responseId": rid}
    if final:
        candidate["finishReason"] = "STOP"
        document["usageMetadata"] = {"promptTokenCount": reply.prompt_tokens,
                                     "candidatesTokenCount": reply.completion_tokens,
                                     "totalTokenCount": reply.prompt_tokens + reply.completion_tokens}
    return document


def _gemini_stream(parsed: ParsedRequest, reply: Reply, rid: str) -> List[bytes]:
    if reply.tool_name:  # Gemini sends a function call whole, in one chunk
        return [_sse(_gemini_json(parsed, reply, rid))]
    pieces = _halves(reply.text)
    frames = [_sse(_gemini_json(parsed, reply, rid, [{"text": p}], final=False)) for p in pieces[:-1]]
    return [*frames, _sse(_gemini_json(parsed, reply, rid, [{"text": pieces[-1]}]))]


_RENDER_JSON = {OPENAI_CHAT: _chat_json, OPENAI_RESPONSES: _responses_json, ANTHROPIC: _anthropic_json,
                GEMINI: _gemini_json}
_RENDER_STREAM = {OPENAI_CHAT: _chat_stream, OPENAI_RESPONSES: _responses_stream, ANTHROPIC: _anthropic_stream,
                  GEMINI: _gemini_stream}


def render(parsed: ParsedRequest, reply: Reply, rid: str) -> Dict[str, Any]:
    """The provider's non-streaming response document for ``reply``."""
    return _RENDER_JSON[parsed.family](parsed, reply, rid)


def render_stream(parsed: ParsedRequest, reply: Reply, rid: str) -> List[bytes]:
    """The provider's server-sent-events frames for ``reply`` (each frame ends with a blank line)."""
    return _RENDER_STREAM[parsed.family](parsed, reply, rid)
