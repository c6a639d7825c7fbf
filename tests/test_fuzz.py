"""Property tests of the converter: any JSON decodes or raises ResponseDecodeError; valid payloads round-trip.

Two kinds of input:

* arbitrary JSON (a recursive strategy), both on its own and grafted into the sample
  payloads of ``tests/fixtures`` at a random place, so that every field's hook sees
  values of every JSON type;
* valid Agent/Task/Tokens/TaskUpdateEvent payloads: the sample fixtures with their
  fields varied within their types.

Examples are kept modest (``max_examples=200``, no deadline) so the suite stays fast.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
import string
import sys
from typing import Any, Iterator, List, Tuple
from urllib.parse import unquote, urlsplit

import pytest
import responses
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from xpander_sync import (
    Agent,
    Agents,
    Backend,
    Configuration,
    ConfigurationError,
    InvalidInputError,
    MissingAgentError,
    NotFoundError,
    Reports,
    ResponseDecodeError,
    RetryPolicy,
    ServerError,
    Task,
    Tasks,
    TaskUpdateEvent,
    Tokens,
    XpanderError,
)
from xpander_sync._converter import structure, unstructure
from xpander_sync.models.common import AgentExecutionStatus, MCPServerAuthType, OutputFormat, TaskUpdateEventType

from .conftest import load_fixture

FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
MODELS = (Agent, Task, Tokens, TaskUpdateEvent)
AGENT_FIXTURES = ["agent_openai", "agent_anthropic", "agent_team", "agent_sub_b", "agent_mcp"]
SAMPLES = {
    Agent: [load_fixture(name) for name in AGENT_FIXTURES],
    Task: [load_fixture("task_status"), load_fixture("create_task_response"), load_fixture("report_response")],
    Tokens: [load_fixture("task_status")["tokens"]],
    TaskUpdateEvent: [
        {"type": "auth_event", "task_id": "t-1", "organization_id": "org-1", "time": "2026-03-21T09:15:02Z",
         "data": load_fixture("mcp_login_required")},
    ],
}

# -- arbitrary JSON --------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10 ** 400), max_value=10 ** 400)  # json.loads makes ints of any size
    | st.floats(allow_nan=True, allow_infinity=True)  # json.loads accepts NaN and Infinity
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=16), children, max_size=6),
    max_leaves=25,
)


def strings_in(value: Any) -> Iterator[str]:
    """Every string *value* inside a JSON value (keys are field names and may be echoed as paths)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)


def paths(value: Any, prefix: Tuple[Any, ...] = ()) -> List[Tuple[Any, ...]]:
    """Every place inside a JSON value (the root excluded)."""
    out: List[Tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        out.append((*prefix, key))
        out.extend(paths(item, (*prefix, key)))
    return out


def graft(document: Any, path: Tuple[Any, ...], value: Any) -> Any:
    document = copy.deepcopy(document)
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return document


@st.composite
def mutated_samples(draw: Any, model: type) -> Any:
    """A sample payload of ``model`` with 1-3 places replaced by arbitrary JSON, or removed."""
    document = copy.deepcopy(draw(st.sampled_from(SAMPLES[model])))
    for _ in range(draw(st.integers(1, 3))):
        places = paths(document)
        if not places:
            break
        place = draw(st.sampled_from(places))
        parent = document
        for key in place[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[place[-1]]
        else:
            parent[place[-1]] = draw(json_values)
    return document


def masked(value: Any) -> Any:
    """The same JSON with every string value replaced by ``#`` of the same length."""
    if isinstance(value, str):
        return "#" * len(value)
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    return value


def error_text(data: Any, model: type) -> str:
    try:
        structure(data, model)
    except ResponseDecodeError as exc:
        return str(exc) + "\n" + "\n".join(exc.errors)
    return ""


def check_decode(data: Any, model: type) -> None:
    snapshot = json.dumps(data, default=str, sort_keys=True)
    try:
        result = structure(data, model)
    except ResponseDecodeError as exc:
        assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)
        message = str(exc) + "\n" + "\n".join(exc.errors)
        # A value counts as echoed when it shows in the message but not in the message for the
        # same document with its strings masked (so words of the message templates, which
        # hypothesis likes to generate, are not mistaken for echoes).
        suspects = [s for s in strings_in(data) if len(s) > 8 and s in message]
        if suspects:
            baseline = error_text(masked(data), model)
            leaked = [s for s in suspects if s not in baseline]
            assert not leaked, f"input values in the error message: {leaked!r}\n{message}"
    else:
        assert isinstance(result, model)
    assert json.dumps(data, default=str, sort_keys=True) == snapshot  # the input is never modified


def test_the_echo_check_would_catch_an_echo(monkeypatch):
    """The leak check above is not vacuous: a decoder that echoes its input fails it."""

    def echoing(data, model):
        raise ResponseDecodeError(model.__name__, [f"bad value {data['name']!r} @ $.name"])

    monkeypatch.setattr(sys.modules[__name__], "structure", echoing)
    with pytest.raises(AssertionError, match="input values in the error message"):
        check_decode({"name": "sk-echoed-value"}, Agent)


@FUZZ
@given(data=json_values)
def test_arbitrary_json_decodes_or_raises_response_decode_error(data):
    for model in MODELS:
        check_decode(data, model)


@FUZZ
@given(data=st.data())
def test_sample_payloads_with_arbitrary_json_grafted_in(data):
    model = data.draw(st.sampled_from(MODELS))
    check_decode(data.draw(mutated_samples(model)), model)


@FUZZ
@given(secret=st.text(alphabet=string.ascii_letters + string.digits, min_size=6, max_size=30).map("sk-{}".format))
def test_error_messages_never_echo_a_value(secret):
    """A long string put where a number, a date, an object or a model is expected is named by path only."""
    payload = dict(load_fixture("task_status"), duration=secret, input={"text": 5, "files": [secret]},
                   created_at=secret, deep_planning=secret, tokens={"prompt_tokens": secret})
    with pytest.raises(ResponseDecodeError) as info:
        structure(payload, Task)
    assert secret not in str(info.value) and all(secret not in e for e in info.value.errors)
    assert "$.duration" in str(info.value) or any("$.duration" in e for e in info.value.errors)


# -- valid payloads round-trip -----------------------------------------------------------------------

texts = st.text(max_size=30)
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
json_finite = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=10,
)
json_objects = st.dictionaries(texts, json_finite, max_size=3)
timezones = st.sampled_from(
    [dt.timezone.utc, dt.timezone(dt.timedelta(hours=2)), dt.timezone(dt.timedelta(hours=-5, minutes=-30))]
)


@st.composite
def iso_datetimes(draw: Any) -> str:
    moment = draw(
        st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=timezones)
    )
    text = moment.isoformat()
    if moment.utcoffset() == dt.timedelta(0) and draw(st.booleans()):
        text = text.replace("+00:00", "Z")
    return text


def open_enum(enum_cls: Any) -> Any:
    return st.sampled_from(enum_cls.known()) | st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=12)


tokens_payloads = st.fixed_dictionaries(
    {},
    optional={
        "completion_tokens": st.none() | st.integers(0, 10 ** 9),
        "prompt_tokens": st.none() | st.integers(0, 10 ** 9),
        "cache_read_tokens": st.none() | st.integers(0, 10 ** 9),
        "cache_write_tokens": st.none() | st.integers(0, 10 ** 9),
        "total_tokens": st.integers(0, 10 ** 9),  # sent by the platform, derived by us
    },
)
mcp_servers = st.fixed_dictionaries(
    {"type": st.sampled_from(["remote", "local"])},
    optional={
        "name": st.none() | texts, "url": st.none() | texts, "command": st.none() | texts,
        "transport": st.none() | st.sampled_from(["sse", "streamable-http", "stdio"]),
        "auth_type": open_enum(MCPServerAuthType),
        "api_key": st.none() | texts, "client_secret": st.none() | texts,
        "headers": json_objects, "env_vars": json_objects, "allowed_tools": st.lists(texts, max_size=3),
        "share_user_token_across_other_agents": st.booleans(),
    },
)
users = st.none() | st.fixed_dictionaries(
    {}, optional={"id": st.none() | ids, "email": st.none() | texts, "first_name": st.none() | texts,
                  "additional_attributes": st.none() | json_objects, "timezone": st.none() | texts},
)


@st.composite
def task_payloads(draw: Any) -> Any:
    task = copy.deepcopy(draw(st.sampled_from(SAMPLES[Task])))
    task.update(
        id=draw(ids),
        status=draw(open_enum(AgentExecutionStatus)),
        created_at=draw(iso_datetimes()),
        finished_at=draw(st.none() | iso_datetimes()),
        result=draw(st.none() | texts),
        agent_version=draw(st.none() | texts | st.integers(0, 1000)),
        used_tools=draw(st.lists(texts, max_size=4)),
        sub_executions=draw(st.lists(ids, max_size=3)),
        duration=draw(st.floats(0, 1e6) | st.integers(0, 10 ** 6)),
        tokens=draw(st.none() | tokens_payloads),
        payload_extension=draw(st.none() | json_objects),
        output_format=draw(st.none() | open_enum(OutputFormat)),
        mcp_servers=draw(st.lists(mcp_servers, max_size=2)),
        user_tokens=draw(st.none() | json_objects),
        tool_call_limit=draw(st.none() | st.integers(0, 100)),
    )
    task["input"] = {
        "text": draw(texts),
        "files": draw(st.none() | st.lists(texts, max_size=3)),
        "user": draw(users),
        "attachments": draw(st.lists(json_objects, max_size=2)),
        # the wire sends principal only when non-empty (reference: "appear only when non-empty")
        "principal": draw(st.none() | json_objects.filter(bool)),
    }
    return task


@st.composite
def agent_payloads(draw: Any) -> Any:
    agent = copy.deepcopy(draw(st.sampled_from(SAMPLES[Agent])))
    agent.update(
        id=draw(ids), name=draw(texts), description=draw(st.none() | texts), version=draw(st.integers(0, 10 ** 6)),
        status=draw(st.none() | texts), output_format=draw(open_enum(OutputFormat)),
        created_at=draw(st.none() | iso_datetimes()), llm_extra_headers=draw(json_objects),
        llm_credentials=draw(st.none() | st.fixed_dictionaries(
            {"name": texts, "value": texts}, optional={"description": st.none() | texts})),
        pre_auth_audiences=draw(st.lists(texts, max_size=2)),
        output_schema=draw(st.none() | json_objects),
    )
    agent["instructions"] = {"role": draw(st.lists(texts, max_size=3)), "goal": draw(st.lists(texts, max_size=3)),
                             "general": draw(texts)}
    agent["agno_settings"] = draw(st.fixed_dictionaries({}, optional={
        "session_storage": st.booleans(), "num_history_runs": st.none() | st.integers(0, 100),
        "tool_call_limit": st.none() | st.integers(0, 100),
        "openai_moderation_categories": st.none() | st.lists(texts, max_size=2),
    }))
    tools = draw(st.lists(st.fixed_dictionaries(
        {"id": ids, "name": texts},
        optional={"description": texts, "function_description": texts, "parameters": json_objects,
                  "method": st.sampled_from(["GET", "POST"]), "is_local": st.booleans()},
    ), max_size=3))
    agent["tools"] = tools
    agent["graph"] = agent["graph"] + [
        {"item_id": draw(ids), "type": "mcp", "settings": {"mcp_settings": draw(mcp_servers)}}
        for _ in range(draw(st.integers(0, 2)))
    ]
    return agent


event_payloads = st.fixed_dictionaries(
    {"type": open_enum(TaskUpdateEventType), "task_id": ids, "organization_id": ids},
    optional={"time": iso_datetimes(), "data": json_finite, "identity": st.none() | json_objects},
)


@pytest.mark.parametrize(
    "model, payloads",
    [(Agent, agent_payloads()), (Task, task_payloads()), (Tokens, tokens_payloads), (TaskUpdateEvent, event_payloads)],
    ids=["Agent", "Task", "Tokens", "TaskUpdateEvent"],
)
@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_valid_payloads_round_trip(model, payloads, data):
    payload = data.draw(payloads)
    once = structure(payload, model)
    wire = unstructure(once)
    assert json.loads(json.dumps(wire, allow_nan=False)) == wire  # plain JSON
    assert structure(wire, model) == once


# -- found while fuzzing ----------------------------------------------------------------------------


NON_ARRAYS = [
    (Task, "task_status", ("used_tools",), "kb_search"),
    (Task, "task_status", ("sub_executions",), {"a": 1}),
    (Task, "task_status", ("input", "files"), "https://files.example/x.txt"),
    (Agent, "agent_openai", ("instructions", "role"), "You work for the sales team."),
    (Agent, "agent_openai", ("pre_auth_audiences",), "api://crm"),
]


def test_a_non_array_where_an_array_is_expected_is_a_decode_error():
    """Strict like the primitives: a string is not a list of its characters, an object not a list of its keys.

    Today ``{"used_tools": "kb_search"}`` decodes to ``['k', 'b', '_', ...]`` (cattrs iterates
    any iterable into a list).
    """
    accepted = []
    for model, fixture, path, value in NON_ARRAYS:
        try:
            decoded = structure(graft(load_fixture(fixture), path, value), model)
        except ResponseDecodeError as exc:
            assert any(path[-1] in e for e in exc.errors), exc.errors
        else:
            accepted.append(f"{model.__name__} {'.'.join(path)}={value!r} -> {_at(decoded, path)!r}")
    assert not accepted, "decoded without an error:\n" + "\n".join(accepted)


def _at(obj: Any, path: Tuple[Any, ...]) -> Any:
    for key in path:
        obj = getattr(obj, key)
    return obj


# -- issue 16: ids confined to their route, keys that cannot be headers, JSON deeper than the stack ------

WIRE = settings(max_examples=75, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
BASE_URL = "https://api.test.xpander"
WIRE_CONFIG = Configuration(api_key="xpk-fuzz", base_url=BASE_URL, retry=RetryPolicy(max_retries=0))
ID_PIECES = [".", "..", "/", "%2F", "%2f", "%2e", "%", "?", "#", " ", "\t", "\n", "\r", "\x00", "\x7f", "\ud800",
             "\udfff", "é", "~", "+", ";", "@", "agt-1", "\\", "&", "=", "\u2028", "😀"]
weird_ids = (
    st.lists(st.sampled_from(ID_PIECES) | st.text(max_size=3), min_size=1, max_size=6).map("".join)
    | st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates included
)

# call -> (method, where the id sits among the path's segments once split on "/")
ID_CALLS = {
    "Tasks.get": (lambda cfg, i: Tasks(cfg).get(i), "GET", 2),
    "Tasks.stop": (lambda cfg, i: Tasks(cfg).stop(i), "DELETE", 2),
    "Tasks.update": (lambda cfg, i: Tasks(cfg).update(i, result="x"), "PATCH", 2),
    "Agents.get": (lambda cfg, i: Agents(cfg).get(i), "GET", 2),
    "Reports.send": (lambda cfg, i: Reports(cfg).send(i, {"id": "r-1"}), "POST", 2),
    "report_external_task": (lambda cfg, i: Backend(cfg).report_external_task(agent_id=i), "POST", 2),
    "invoke_agent": (lambda cfg, i: Backend(cfg).invoke_agent(i, "hi"), "POST", 2),
    "invoke_agent(task ref)": (
        lambda cfg, i: Backend(cfg).invoke_agent("agt-1", json.dumps({"xpander_task_id": i})), "GET", 2),
}
SEGMENTS = {"Tasks.get": 4, "Tasks.update": 4, "Reports.send": 4, "report_external_task": 4,
            "invoke_agent(task ref)": 4}


def _answer(request: Any) -> Tuple[int, dict, str]:
    path = urlsplit(request.url).path
    if path.startswith("/agents/"):
        body = load_fixture("agent_openai")
    elif path.endswith("/report_task"):
        body = load_fixture("report_response")
    elif request.method == "POST":
        body = load_fixture("create_task_response")
    else:
        body = load_fixture("task_status")
    return 200, {"Content-Type": "application/json"}, json.dumps(body)


@pytest.mark.parametrize("name", list(ID_CALLS))
@WIRE
@given(task_or_agent_id=weird_ids)
def test_an_id_is_refused_before_sending_or_sent_as_one_segment(name, task_or_agent_id):
    call, method, position = ID_CALLS[name]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for verb in ("GET", "POST", "PATCH", "DELETE"):
            mock.add_callback(verb, re.compile(re.escape(BASE_URL) + r"/.*"), callback=_answer)
        try:
            call(WIRE_CONFIG, task_or_agent_id)
        except (InvalidInputError, MissingAgentError):  # MissingAgentError: an empty agent id
            assert len(mock.calls) == 0  # refused before anything was sent
            return
        except XpanderError:
            pass  # the answer did not fit (the mock's sample payloads): the path is what matters here
        assert len(mock.calls) == 1, [c.request.url for c in mock.calls]
        request = mock.calls[0].request
        assert request.method == method
        path = urlsplit(request.url).path
        segments = path.split("/")
        assert len(segments) == SEGMENTS.get(name, 3), path  # the id added no segment
        segment = segments[position]
        assert "/" not in segment and unquote(segment) == task_or_agent_id, (path, task_or_agent_id)
        assert task_or_agent_id not in (".", "..")


EDGE_WHITESPACE = [" ", "\t", "\n", "\r\n", "\r", "\x0b", "\x0c", "\xa0", "\x85", "\u2028", "\u3000"]
CONTROL = [chr(c) for c in range(32)] + ["\x7f"]


@st.composite
def unusable_keys(draw: Any) -> Tuple[str, str]:
    """``(key, core)``: a plausible key (``core``) with whitespace at an edge or a control character anywhere."""
    core = "xpk-" + draw(st.text(alphabet=string.ascii_letters + string.digits, min_size=12, max_size=30))
    where = draw(st.sampled_from(["start", "end", "both", "inside"]))
    edge = st.sampled_from(EDGE_WHITESPACE + CONTROL)
    if where == "inside":
        at = draw(st.integers(1, len(core) - 1))
        return core[:at] + draw(st.sampled_from(CONTROL)) + core[at:], core
    start = draw(edge) if where in ("start", "both") else ""
    end = draw(edge) if where in ("end", "both") else ""
    return start + core + end, core


def _key_refusal(key: str, from_env: bool) -> ConfigurationError:
    saved = os.environ.get("XPANDER_API_KEY")
    try:
        if from_env:
            os.environ["XPANDER_API_KEY"] = key
        with pytest.raises(ConfigurationError) as info:
            Configuration() if from_env else Configuration(api_key=key)
    finally:
        if saved is None:
            os.environ.pop("XPANDER_API_KEY", None)
        else:
            os.environ["XPANDER_API_KEY"] = saved
    return info.value


@settings(FUZZ, max_examples=100)
@given(drawn=unusable_keys(), from_env=st.booleans())
def test_a_key_with_whitespace_or_control_characters_is_refused_unseen(drawn, from_env):
    key, core = drawn
    if from_env:
        key = key.replace("\x00", "")  # the environment cannot hold NUL
        if key == key.strip() and not any(ord(c) < 32 or ord(c) == 127 for c in key):
            return  # only the NUL made it unusable
    error = _key_refusal(key, from_env)
    assert error.__context__ is None or error.__suppress_context__
    shown = "\n".join([str(error), repr(error), *map(str, error.args)])
    assert key not in shown and core not in shown
    # Nothing of the key shapes the message: the same key with other characters reads the same.
    twin = _key_refusal(key.replace(core, "xpk-" + "Z" * (len(core) - 4)), from_env)
    assert (str(error), repr(error)) == (str(twin), repr(twin))


NESTINGS = {
    "arrays": lambda d: "[" * d + "]" * d,
    "unclosed": lambda d: "[" * d,
    "objects": lambda d: '{"a":' * d + "1" + "}" * d,
    "inside a task": lambda d: json.dumps(dict(load_fixture("task_status"), payload_extension={"deep": 0})).replace(
        '{"deep": 0}', '{"deep": ' + "[" * d + "]" * d + "}"),
}


@WIRE
@example(depth=100_000, shape="arrays", status=200)
@example(depth=100_000, shape="unclosed", status=500)
@example(depth=100_000, shape="inside a task", status=200)
@given(depth=st.integers(1, 100_000), shape=st.sampled_from(sorted(NESTINGS)), status=st.sampled_from([200, 404, 500]))
def test_json_nested_to_any_depth_is_a_typed_error_never_a_recursion_error(depth, shape, status):
    body = NESTINGS[shape](depth)
    with responses.RequestsMock() as mock:
        mock.get(f"{BASE_URL}/agent-execution/t-1/status", body=body, status=status,
                 content_type="application/json")
        try:
            task = Tasks(WIRE_CONFIG).get("t-1")
        except RecursionError as exc:  # pragma: no cover - the failure this test looks for
            raise AssertionError(f"RecursionError escaped ({shape}, depth {depth}, HTTP {status})") from exc
        except XpanderError as exc:
            expected = {200: ResponseDecodeError, 404: NotFoundError, 500: ServerError}[status]
            assert type(exc) is expected, (shape, depth, status, repr(exc)[:200])
            assert len(str(exc)) < 1200
        else:
            assert status == 200 and shape == "inside a task" and isinstance(task, Task)
