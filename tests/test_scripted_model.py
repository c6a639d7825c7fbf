"""The scripted model (issue 14, point 1) against the real provider SDKs, over loopback only."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xpander_sync.testing import (
    ScriptedModel,
    Usage,
    answer,
    answer_with_tool_result,
    call_first_tool,
    call_tool,
)

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]},
                   "days": {"type": "integer"}},
    "required": ["city", "unit"],
}
CHAT_TOOLS = [
    {"type": "function", "function": {"name": "lookup_user", "parameters": {"type": "object", "properties": {}}}},
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}},
]
RESPONSES_TOOLS = [{"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA}]


@pytest.fixture
def model():
    with ScriptedModel() as scripted:
        yield scripted


def _post(url: str, body: bytes, headers: Optional[Dict[str, str]] = None) -> Tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _openai(model: ScriptedModel) -> Any:
    return openai.OpenAI(base_url=model.url + "/v1", api_key="sk-test", max_retries=0)


def _anthropic(model: ScriptedModel) -> Any:
    return anthropic.Anthropic(base_url=model.url, api_key="sk-ant-test", max_retries=0)


# --- OpenAI Chat Completions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_openai_chat_tool_call_then_answer(model, stream):
    model.script(call_tool("get_weather", {"city": "Paris", "unit": "C"}), answer("Sunny in Paris",
                                                                                 usage=Usage(100, 20)))
    client = _openai(model)
    messages: List[Dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with client.chat.completions.stream(model="gpt-4.1", messages=messages, tools=CHAT_TOOLS,
                                            stream_options={"include_usage": True}) as events:
            first = events.get_final_completion()
    else:
        first = client.chat.completions.create(model="gpt-4.1", messages=messages, tools=CHAT_TOOLS)
    (call,) = first.choices[0].message.tool_calls
    assert (call.id, call.function.name) == ("call_1", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "C"}
    assert first.choices[0].finish_reason == "tool_calls"
    assert (first.usage.prompt_tokens, first.usage.completion_tokens, first.usage.total_tokens) == (11, 7, 18)

    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude={"parsed_arguments"})]},
        {"role": "tool", "tool_call_id": call.id, "content": "22 C and sunny"},
    ]
    if stream:
        chunks = list(client.chat.completions.create(model="gpt-4.1", messages=messages, tools=CHAT_TOOLS,
                                                     stream=True, stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        usage = chunks[-1].usage
    else:
        second = client.chat.completions.create(model="gpt-4.1", messages=messages, tools=CHAT_TOOLS)
        text, usage = second.choices[0].message.content, second.usage
    assert text == "Sunny in Paris"
    assert (usage.prompt_tokens, usage.completion_tokens) == (100, 20)

    first_seen, second_seen = model.requests
    assert first_seen.family == "openai-chat" and first_seen.path == "/v1/chat/completions"
    assert first_seen.api_key == "sk-test" and first_seen.header("Authorization") == "Bearer sk-test"
    assert first_seen.model == "gpt-4.1" and first_seen.stream is stream
    assert first_seen.tools == ["lookup_user", "get_weather"]
    assert first_seen.tool_call == {"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}
    assert first_seen.tool_results == {}
    assert second_seen.tool_results == {"call_1": "22 C and sunny"}
    assert second_seen.last_tool_result == "22 C and sunny" and second_seen.mentions("22 C and sunny")
    assert second_seen.reply_text == "Sunny in Paris"
    assert model.total_usage == Usage(111, 27) and model.remaining == 0 and model.exhausted == 0


# --- OpenAI Responses ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_openai_responses_tool_call_then_answer(model, stream):
    model.script(call_tool("get_weather", {"city": "Oslo", "unit": "C"}), answer_with_tool_result("Oslo: "))
    client = _openai(model)

    def create(items: List[Any]) -> Any:
        if not stream:
            return client.responses.create(model="gpt-5", input=items, tools=RESPONSES_TOOLS)
        with client.responses.stream(model="gpt-5", input=items, tools=RESPONSES_TOOLS) as events:
            kinds = [event.type for event in events]
            assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
            return events.get_final_response()

    items: List[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    first = create(items)
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert (call.call_id, call.name, json.loads(call.arguments)) == ("call_1", "get_weather",
                                                                     {"city": "Oslo", "unit": "C"})
    assert (first.usage.input_tokens, first.usage.output_tokens, first.usage.total_tokens) == (11, 7, 18)

    items += [{"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
              {"type": "function_call_output", "call_id": call.call_id, "output": "-3 C"}]
    second = create(items)
    assert second.output_text == "Oslo: -3 C"
    assert second.usage.total_tokens == 18

    first_seen, second_seen = model.requests
    assert first_seen.family == "openai-responses" and first_seen.path == "/v1/responses"
    assert (first_seen.api_key, first_seen.model, first_seen.tools) == ("sk-test", "gpt-5", ["get_weather"])
    assert second_seen.tool_results == {"call_1": "-3 C"}


def test_openai_responses_string_input(model):
    model.script(answer("hello"))
    response = _openai(model).responses.create(model="gpt-5", input="hi", instructions="Be brief.")
    assert response.output_text == "hello"
    assert model.requests[0].messages == [{"role": "user", "content": "hi"}]
    assert model.requests[0].mentions("Be brief.")


# --- Anthropic Messages ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_anthropic_tool_use_then_answer(model, stream):
    model.script(call_tool("get_weather", {"city": "Rome", "unit": "C"}, call_id="toolu_01"),
                 answer("Warm in Rome", usage=Usage(50, 5)))
    client = _anthropic(model)

    def create(messages: List[Any]) -> Any:
        kwargs = {"model": "claude-scripted", "max_tokens": 1024, "messages": messages, "tools": ANTHROPIC_TOOLS}
        if not stream:
            return client.messages.create(**kwargs)
        with client.messages.stream(**kwargs) as events:
            return events.get_final_message()

    messages: List[Any] = [{"role": "user", "content": "Weather in Rome?"}]
    first = create(messages)
    (block,) = first.content
    assert (block.type, block.id, block.name, block.input) == ("tool_use", "toolu_01", "get_weather",
                                                               {"city": "Rome", "unit": "C"})
    assert first.stop_reason == "tool_use"
    assert (first.usage.input_tokens, first.usage.output_tokens) == (11, 7)

    messages += [
        {"role": "assistant", "content": [block.model_dump(include={"type", "id", "name", "input"})]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01",
                                      "content": [{"type": "text", "text": "25 C"}]}]},
    ]
    second = create(messages)
    assert [b.text for b in second.content] == ["Warm in Rome"]
    assert second.stop_reason == "end_turn"
    assert (second.usage.input_tokens, second.usage.output_tokens) == (50, 5)

    first_seen, second_seen = model.requests
    assert first_seen.family == "anthropic" and first_seen.path == "/v1/messages"
    assert first_seen.api_key == "sk-ant-test"  # anthropic 2.x sends it as a Bearer token, older SDKs as x-api-key
    assert "sk-ant-test" in (first_seen.header("x-api-key") or first_seen.header("authorization") or "")
    assert first_seen.header("anthropic-version") is not None
    assert (first_seen.model, first_seen.stream, first_seen.tools) == ("claude-scripted", stream, ["get_weather"])
    assert second_seen.tool_results == {"toolu_01": "25 C"}


def test_anthropic_under_a_proxy_prefix(model):
    model.script(answer("proxied"))
    client = anthropic.Anthropic(base_url=model.url + "/proxy/anthropic", api_key="tok", max_retries=0)
    reply = client.messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                                   extra_headers={"x-xpander-execution-id": "task-1"})
    assert reply.content[0].text == "proxied"
    seen = model.requests[0]
    assert seen.path == "/proxy/anthropic/v1/messages" and seen.header("x-xpander-execution-id") == "task-1"


# --- Google Gemini ---------------------------------------------------------------------------------------------


def test_gemini_over_raw_http(model):
    model.script(call_first_tool("weather"), answer("Cloudy"))
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": WEATHER_SCHEMA}]}]}
    status, raw = _post(model.url + "/v1beta/models/gemini-2.5-flash:generateContent?key=gk-1",
                        json.dumps(body).encode())
    document = json.loads(raw)
    assert status == 200
    assert document["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "", "unit": "C"}, "id": "call_1"}}]
    assert document["usageMetadata"]["totalTokenCount"] == 18
    body["contents"].append({"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                                            "response": {"output": "9 C"}}}]})
    status, raw = _post(model.url + "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                        json.dumps(body).encode(), {"x-goog-api-key": "gk-2"})
    frames = [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]
    assert "".join(f["candidates"][0]["content"]["parts"][0]["text"] for f in frames) == "Cloudy"
    first, second = model.requests
    assert (first.family, first.model, first.api_key, first.stream) == ("gemini", "gemini-2.5-flash", "gk-1", False)
    assert (second.api_key, second.stream, second.tool_results) == ("gk-2", True, {"get_weather": "9 C"})


def test_gemini_sdk(model):
    genai = pytest.importorskip("google.genai")
    model.script(call_tool("get_weather", {"city": "Bergen"}), answer("Rainy all day"))
    client = genai.Client(api_key="gk-sdk", http_options=genai.types.HttpOptions(base_url=model.url))
    first = client.models.generate_content(model="gemini-2.5-flash", contents="Weather?")
    assert [(c.name, c.args) for c in first.function_calls] == [("get_weather", {"city": "Bergen"})]
    assert first.usage_metadata.total_token_count == 18
    text = "".join(c.text for c in client.models.generate_content_stream(model="gemini-2.5-flash", contents="go"))
    assert text == "Rainy all day"
    assert [r.api_key for r in model.requests] == ["gk-sdk", "gk-sdk"]


# --- async clients (the run matrix's async runs) --------------------------------------------------------------


def test_async_sdks_stream_through_the_same_script(model):
    model.script(call_tool("get_weather", {"city": "Lima"}), answer("Mild"))

    async def run() -> Tuple[Any, str]:
        openai_client = openai.AsyncOpenAI(base_url=model.url + "/v1", api_key="sk-async", max_retries=0)
        async with openai_client.responses.stream(model="gpt-5", input="go", tools=RESPONSES_TOOLS) as events:
            first = await events.get_final_response()
        anthropic_client = anthropic.AsyncAnthropic(base_url=model.url, api_key="sk-ant-async", max_retries=0)
        async with anthropic_client.messages.stream(model="claude-scripted", max_tokens=64,
                                                    messages=[{"role": "user", "content": "go"}]) as stream:
            text = "".join([piece async for piece in stream.text_stream])
        await openai_client.close()
        await anthropic_client.close()
        return first, text

    first, text = asyncio.run(run())
    assert first.output[0].name == "get_weather" and json.loads(first.output[0].arguments) == {"city": "Lima"}
    assert text == "Mild"
    assert [r.api_key for r in model.requests] == ["sk-async", "sk-ant-async"]


# --- a real framework (the run matrix builds on this) ---------------------------------------------------------


@pytest.mark.parametrize("family", ["openai-chat", "openai-responses", "anthropic"])
@pytest.mark.parametrize("stream", [False, True], ids=["run", "stream"])
def test_an_agno_agent_runs_a_full_turn(model, family, stream):
    pytest.importorskip("agno")
    from agno.agent import Agent
    from agno.models.anthropic import Claude
    from agno.models.openai import OpenAIChat, OpenAIResponses

    def get_weather(city: str) -> str:
        """The weather of a city.

        Args:
            city: the city.
        """
        return f"WEATHER-{city}"

    llm = {
        "openai-chat": lambda: OpenAIChat(id="gpt-4.1", base_url=model.url + "/v1", api_key="sk-agno"),
        "openai-responses": lambda: OpenAIResponses(id="gpt-5", base_url=model.url + "/v1", api_key="sk-agno"),
        "anthropic": lambda: Claude(id="claude-scripted", api_key="sk-agno", max_tokens=1024,
                                    client_params={"base_url": model.url}),
    }[family]()
    model.script(call_first_tool("weather", {"city": "Paris"}), answer_with_tool_result("Got: "))
    agent = Agent(model=llm, tools=[get_weather], telemetry=False)
    if stream:
        events = list(agent.run("Weather in Paris?", stream=True))
        text = "".join(str(e.content or "") for e in events if type(e).__name__ == "RunContentEvent")
    else:
        output = agent.run("Weather in Paris?")
        text = output.content
        assert (output.metrics.input_tokens, output.metrics.output_tokens) == (22, 14)
    assert text == "Got: WEATHER-Paris"
    first, second = model.requests
    assert {first.family, second.family} == {family} and first.stream is second.stream is stream
    assert first.tools == ["get_weather"] and second.tool_results == {"call_1": "WEATHER-Paris"}
    assert first.api_key == "sk-agno" and model.exhausted == 0


# --- script semantics ------------------------------------------------------------------------------------------


def test_call_first_tool_matches_substring_regex_and_pattern(model):
    model.script(call_first_tool("weather"), call_first_tool(r"^lookup_"), call_first_tool(re.compile("WEATHER", re.I),
                 {"city": "X"}), call_first_tool(), call_first_tool("missing"))
    client = _openai(model)
    names = []
    for _ in range(5):
        reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                               tools=CHAT_TOOLS).choices[0].message
        names.append((reply.tool_calls[0].function.name, json.loads(reply.tool_calls[0].function.arguments))
                     if reply.tool_calls else reply.content)
    assert names[:4] == [("get_weather", {"city": "", "unit": "C"}), ("lookup_user", {}),
                         ("get_weather", {"city": "X"}), ("lookup_user", {})]
    assert "no offered tool matches 'missing'" in names[4]


def test_answer_with_tool_result_takes_the_last_result(model):
    model.script(answer_with_tool_result(), answer_with_tool_result("Result: "))
    client = _openai(model)
    messages = [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "a", "content": "first"},
                {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "second"}]}]
    assert client.chat.completions.create(model="m", messages=messages).choices[0].message.content == "second"
    reply = client.chat.completions.create(model="m", messages=messages[:1]).choices[0].message.content
    assert reply == "Result: (no tool result)"


def test_exhausted_script_answers_a_fixed_text_and_records_it():
    with ScriptedModel([answer("one")], exhausted_text="nothing left", usage=Usage(3, 4)) as model:
        client = _openai(model)
        texts = [client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
                 .choices[0].message.content for _ in range(3)]
    assert texts == ["one", "nothing left", "nothing left"]
    assert [r.exhausted for r in model.requests] == [False, True, True]
    assert model.exhausted == 2 and model.total_usage == Usage(9, 12)


def test_script_accepts_only_turns_and_reset_forgets(model):
    with pytest.raises(TypeError, match="Turn objects"):
        model.script("answer")  # type: ignore[arg-type]
    model.script(answer("a"), answer("b"))
    model.reset(answer("c"))
    assert model.remaining == 1 and model.requests == []


def test_concurrent_requests_each_take_exactly_one_turn(model):
    model.script(*[answer(f"turn-{n}") for n in range(10)])
    client = _openai(model)
    texts: List[str] = []
    lock = threading.Lock()

    def run() -> None:
        text = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}]) \
            .choices[0].message.content
        with lock:
            texts.append(text)

    threads = [threading.Thread(target=run) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(texts) == sorted(f"turn-{n}" for n in range(10))
    assert model.remaining == 0 and model.exhausted == 0 and len(model.requests) == 10


# --- robustness ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "body", "shape"), [
    ("/v1/chat/completions", b"{not json", "openai"),
    ("/v1/chat/completions", b'{"model": "m"}', "openai"),
    ("/v1/responses", b"[1, 2]", "openai"),
    ("/v1/messages", b"", "anthropic"),
    ("/v1/messages", b'{"model": "c", "messages": "hi"}', "anthropic"),
    ("/v1beta/models/g:generateContent", b'{"contents": 3}', "gemini"),
])
def test_a_bad_body_gets_a_400_in_the_provider_format(model, path, body, shape):
    model.script(answer("kept"))
    status, document = _post(model.url + path, body)
    assert status == 400
    if shape == "anthropic":
        assert document["type"] == "error" and document["error"]["type"] == "invalid_request_error"
    elif shape == "gemini":
        assert document["error"]["status"] == "INVALID_ARGUMENT"
    else:
        assert document["error"]["type"] == "invalid_request_error"
    assert model.remaining == 1 and model.requests[0].status == 400 and model.requests[0].turn is None


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)
_KEYS = st.sampled_from(["model", "messages", "input", "tools", "contents", "stream", "stream_options", "function",
                         "parts", "content", "role", "type", "name", "tool_call_id", "functionDeclarations"])
_BODIES = st.dictionaries(_KEYS, _JSON | st.lists(st.dictionaries(_KEYS, _JSON, max_size=4), max_size=3), max_size=5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_BODIES, path=st.sampled_from(["/v1/chat/completions", "/v1/responses", "/v1/messages",
                                           "/v1beta/models/g:streamGenerateContent"]))
def test_any_json_body_gets_an_answer_or_a_400(body, path):
    model = ScriptedModel([call_first_tool()])
    response = model.handle("POST", path, {}, json.dumps(body).encode())
    assert response.status in (200, 400), response.body
    if not response.streaming:
        json.loads(response.body)


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": [], "required": "city"},
    {"type": ["null", "integer"]},
    {"anyOf": [{"type": "boolean"}]},
    {"properties": {"a": {"type": "object", "properties": {"b": {"default": 3}}, "required": ["b"]}},
     "required": ["a", 7]},
    "not a schema",
])
def test_call_first_tool_survives_odd_schemas(schema):
    model = ScriptedModel([call_first_tool()])
    tool = {"type": "function", "function": {"name": "t", "parameters": schema}}
    body = {"model": "m", "messages": [], "tools": [tool]}
    response = model.handle("POST", "/v1/chat/completions", {}, json.dumps(body).encode())
    assert response.status == 200
    assert model.requests[0].tool_call["name"] == "t"


def test_the_sdks_raise_their_own_bad_request_errors(model):
    with pytest.raises(openai.BadRequestError):
        _openai(model).chat.completions.create(model="m", messages="not a list")  # type: ignore[arg-type]
    with pytest.raises(anthropic.BadRequestError):
        _anthropic(model).messages.create(model="", max_tokens=1, messages=[])


def test_unknown_path_is_404_and_get_is_405(model):
    assert _post(model.url + "/v1/embeddings", b"{}")[0] == 404
    request = urllib.request.Request(model.url + "/v1/chat/completions")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 405
    assert [r.status for r in model.requests] == [404, 405]


def test_handle_works_without_the_server():
    model = ScriptedModel([call_tool("t", {"a": 1})])
    body = json.dumps({"model": "m", "messages": [], "stream": True}).encode()
    response = model.handle("POST", "/any/prefix/v1/chat/completions", {"Authorization": "Bearer k"}, body)
    assert response.streaming and response.headers["Content-Type"] == "text/event-stream"
    assert response.chunks[-1] == b"data: [DONE]\n\n"
    assert model.requests[0].api_key == "k"
    with pytest.raises(RuntimeError, match="not started"):
        model.url  # noqa: B018


def test_stop_closes_the_server_and_keeps_the_record():
    model = ScriptedModel([answer("x")]).start()
    url = model.url
    assert _post(url + "/v1/chat/completions", b'{"model":"m","messages":[]}')[0] == 200
    model.stop()
    model.stop()  # idempotent
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/v1/chat/completions", b"{}", timeout=2)
    assert len(model.requests) == 1


def test_the_debug_line_masks_a_query_key(model, caplog):
    caplog.set_level(logging.DEBUG, logger="xpander_sync._scripted_model")
    _post(model.url + "/v1beta/models/g:generateContent?key=gk-SECRET", b'{"contents": []}')
    assert "generateContent" in caplog.text and "gk-SECRET" not in caplog.text


# --- the pytest plugin and the import boundary -------------------------------------------------------------------


def test_the_plugin_fixture(scripted_model):
    scripted_model.script(call_first_tool("weather"), answer("done"))
    client = _anthropic(scripted_model)
    first = client.messages.create(model="claude-x", max_tokens=10, tools=ANTHROPIC_TOOLS,
                                   messages=[{"role": "user", "content": "go"}])
    assert first.content[0].name == "get_weather"
    assert scripted_model.requests[0].tools == ["get_weather"]


def test_the_package_does_not_import_the_scripted_model():
    code = ("import sys, xpander_sync\n"
            "assert not any(m.startswith('xpander_sync._scripted') for m in sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
