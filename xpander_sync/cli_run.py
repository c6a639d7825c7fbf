"""``xpander-sync run AGENT_ID "prompt"``: run one turn of an agent here, print the answer, report it.

The cron line for "run my xpander agent every night"::

    xpander-sync run agt-1234 "Summarise yesterday's tickets" --json

Steps: load the agent (and the task, with ``--task-id``), build its framework's agent from
``Backend.get_args`` (the agent's own framework, or ``--framework``), run one turn, print the
answer streamed as it arrives, with each tool call shown on stderr (``[tool] NAME``) as it
starts: agno's run events, openai-agents' ``Runner.run_streamed``, LangChain's ``stream``
(messages, updates, values), strands' ``stream_async``, google-adk's SSE events, pydantic-ai's
``event_stream_handler``. Then report the run with
:meth:`Backend.report_run <xpander_sync.Backend.report_run>` (its real tokens and tools;
``--no-report`` skips it). Undeliverable reports wait in the outbox (the same default as
``xpander-sync report``).

Exit status: 0 the run succeeded (and its report was delivered), 1 the run failed (an error
status, or the framework raised: the failure is reported too), 2 usage or framework errors
(unknown or uninstalled framework, missing agent id), 3 the run succeeded but its report was
queued in the outbox. With ``--json`` nothing is streamed: one JSON object is printed at the
end: ``agent_id``, ``framework``, ``task_id``, ``result``, ``is_success``, ``tokens``,
``used_tools``, ``duration`` and ``report`` (``{"id", "delivered", "outbox"}``, or ``null``
with ``--no-report``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Set, TextIO

from .backend import Backend
from .config import Configuration
from .errors import InvalidInputError
from .frameworks import summarize_run
from .models.task import Task
from .reporting import QueuedReport
from .resources.agents import Agents
from .resources.tasks import Tasks

__all__ = ["RUNNERS", "run_command"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_QUEUED = 0, 1, 2, 3


class Shown:
    """What a streaming runner has printed: the answer's text as it arrives, tool calls as they start.

    Args:
        out: where the answer's text goes.
        err: where the ``[tool] NAME`` lines go.
    """

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self._out, self._err = out, err
        self.printed_text = False
        self.line_open = False  # the answer's last piece did not end its line
        self.tools: List[str] = []
        self._seen: Set[str] = set()

    def text(self, piece: Any) -> None:
        """Print a piece of the answer now.

        Args:
            piece: the text that arrived (anything else, e.g. ``None``, is ignored).
        """
        if isinstance(piece, str) and piece:
            self._out.write(piece)
            self._out.flush()
            self.printed_text = True
            self.line_open = not piece.endswith("\n")

    def tool(self, name: Any, call_id: Any = None) -> None:
        """Show a tool call as it starts (once per ``call_id`` when one is given).

        Args:
            name: the tool's name.
            call_id: the call's id, for frameworks that report one call in several events.
        """
        if call_id is not None:
            if str(call_id) in self._seen:
                return
            self._seen.add(str(call_id))
        self.tools.append(str(name))
        if self.line_open:  # text before a tool call ("Let me look that up"): the answer goes on below
            self._out.write("\n")
            self._out.flush()
            self.line_open = False
        self._err.write(f"[tool] {name}\n")
        self._err.flush()


# -- one turn of each framework: ``runner(args, prompt, show=None) -> the framework's run result`` ---
# With ``show`` (a Shown) the turn is streamed: the answer's text as it arrives, each tool call as
# it starts. Every runner returns what ``report_run`` reads, streamed or not.


def _agno(args: Dict[str, Any], prompt: str, show: Optional[Shown] = None) -> Any:
    from agno.agent import Agent
    from agno.team import Team

    built: Any = Team(**args) if "members" in args else Agent(**args)
    if show is None:
        return built.run(prompt)
    # the leader's text as it arrives, every tool call (members' included) as it starts
    content = "TeamRunContent" if "members" in args else "RunContent"
    final = None
    events: Any = built.run(prompt, stream=True, stream_events=True, yield_run_output=True)
    for event in events:
        kind = getattr(event, "event", None)
        if kind is None and hasattr(event, "status") and hasattr(event, "metrics"):
            final = event  # the RunOutput / TeamRunOutput, yielded last
        elif kind == content:
            show.text(getattr(event, "content", None))
        elif kind in ("ToolCallStarted", "TeamToolCallStarted") and getattr(event, "tool", None) is not None:
            show.tool(event.tool.tool_name)
    return final


def _openai_agents(args: Dict[str, Any], prompt: str, show: Optional[Shown] = None) -> Any:
    from agents import Agent, ModelSettings, RunConfig, Runner

    if show is None:
        return Runner.run_sync(Agent(**args), prompt)
    # a Chat Completions stream carries its usage only when asked (openai-agents asks OpenAI's own
    # endpoint only): asked for every agent of the run, members included, so the report is exact
    config = RunConfig(model_settings=ModelSettings(include_usage=True))

    async def run() -> Any:
        streamed = Runner.run_streamed(Agent(**args), prompt, run_config=config)  # complete at the end
        async for event in streamed.stream_events():
            kind = getattr(event, "type", None)
            if kind == "raw_response_event" and getattr(event.data, "type", None) == "response.output_text.delta":
                show.text(event.data.delta)
            elif kind == "run_item_stream_event" and event.name in ("tool_called", "handoff_requested"):
                raw = getattr(event.item, "raw_item", None)
                show.tool(getattr(raw, "name", None) or getattr(raw, "type", "tool"))
        return streamed

    return asyncio.run(run())


def _langchain(args: Dict[str, Any], prompt: str, show: Optional[Shown] = None) -> Any:
    from langchain.agents import create_agent

    graph = create_agent(**args)
    state = {"messages": [{"role": "user", "content": prompt}]}
    if show is None:
        return graph.invoke(state)
    final = None
    # "messages": the model's tokens as they arrive; "updates": each node's output (the model's tool
    # calls, before the tools run); "values": the whole state after each step (the last is invoke's)
    for mode, chunk in graph.stream(state, stream_mode=["messages", "updates", "values"]):
        if mode == "values":
            final = chunk
        elif mode == "messages":
            message, metadata = chunk
            # the leader's own model node only: a team member's graph runs inside a tool
            if metadata.get("langgraph_node") == "model" and "|" not in str(metadata.get("checkpoint_ns", "")) \
                    and type(message).__name__ == "AIMessageChunk":
                show.text(_lc_text(message.content))
        elif mode == "updates" and isinstance(chunk, dict):
            for update in chunk.values():
                for message in (update or {}).get("messages", []) if isinstance(update, dict) else []:
                    for call in getattr(message, "tool_calls", None) or []:
                        show.tool(call.get("name"), call.get("id"))
    return final


def _lc_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b if isinstance(b, str) else str(b.get("text", "")) for b in content
                       if isinstance(b, str) or (isinstance(b, dict) and b.get("type") == "text"))
    return ""


def _strands(args: Dict[str, Any], prompt: str, show: Optional[Shown] = None) -> Any:
    from strands import Agent

    built = Agent(**{"callback_handler": None, **args})  # the default handler prints to stdout
    if show is None:
        return built(prompt)

    async def run() -> Any:
        final = None
        async for event in built.stream_async(prompt):
            if "data" in event:
                show.text(event["data"])
            elif "current_tool_use" in event and (event["current_tool_use"] or {}).get("name"):
                use = event["current_tool_use"]
                show.tool(use["name"], use.get("toolUseId") or use["name"])
            elif "result" in event:
                final = event["result"]  # the AgentResult
        return final

    return asyncio.run(run())


def _google_adk(args: Dict[str, Any], prompt: str, show: Optional[Shown] = None) -> Any:
    from google.adk.agents import LlmAgent
    from google.adk.agents.run_config import RunConfig, StreamingMode
    from google.adk.runners import InMemoryRunner
    from google.genai import types

    runner = InMemoryRunner(agent=LlmAgent(**args), app_name="xpander-sync-run")
    message = types.Content(role="user", parts=[types.Part(text=prompt)])
    config = RunConfig(streaming_mode=StreamingMode.SSE) if show is not None else None

    async def run() -> List[Any]:
        session = await runner.session_service.create_session(app_name="xpander-sync-run", user_id="cli")
        events = []
        async for event in runner.run_async(user_id="cli", session_id=session.id, new_message=message,
                                            **({"run_config": config} if config else {})):
            if getattr(event, "partial", False):  # a streamed piece: shown, not kept (the whole follows)
                if show is not None and event.content and event.content.parts:  # a transfer's member too
                    for part in event.content.parts:
                        show.text(part.text if not getattr(part, "thought", False) else None)
                continue
            if show is not None:
                for call in event.get_function_calls() or []:
                    show.tool(call.name, call.id or f"{event.id}:{call.name}")
            events.append(event)
        return events

    return asyncio.run(run())


def _pydantic_ai(args: Dict[str, Any], prompt: str, show: Optional[Shown] = None) -> Any:
    from pydantic_ai import Agent

    if show is None:
        return Agent(**args).run_sync(prompt)
    shown = show

    async def on_events(ctx: Any, events: Any) -> None:  # the model's parts as they arrive, tool calls
        async for event in events:
            kind = getattr(event, "event_kind", None)
            part: Any = getattr(event, "part", None)
            if kind == "part_start" and getattr(part, "part_kind", None) == "text":
                shown.text(part.content)
            elif kind == "part_delta" and getattr(event.delta, "part_delta_kind", None) == "text":
                shown.text(event.delta.content_delta)
            elif kind == "function_tool_call":
                shown.tool(part.tool_name, part.tool_call_id)

    return Agent(**args).run_sync(prompt, event_stream_handler=on_events)


#: How each built-in framework runs one turn: ``runner(args, prompt, show=None) -> the framework's
#: run result`` (what ``Backend.report_run`` reads); with a :class:`Shown` it streams.
RUNNERS: Dict[str, Callable[..., Any]] = {
    "agno": _agno,
    "open-ai-agents": _openai_agents,
    "langchain": _langchain,
    "strands-agents": _strands,
    "google-adk": _google_adk,
    "pydantic-ai": _pydantic_ai,
}

#: The runners that stream (called with a third argument, a :class:`Shown`): every built-in one.
STREAMING = frozenset(RUNNERS)


def run_command(ns: Any, configuration: Configuration, out: TextIO, err: Optional[TextIO] = None) -> int:
    """Run one turn of ``ns.agent_id`` on ``ns.prompt``, print the answer and report the run.

    Args:
        ns: the parsed ``run`` arguments (``agent_id``, ``prompt``, ``framework``, ``task_id``,
            ``json``, ``no_report``).
        configuration: the client's configuration (its outbox keeps undeliverable reports).
        out: where the answer (or the JSON object) goes.
        err: where the failure line goes; default ``sys.stderr``.

    Returns:
        The exit status (see the module docstring).

    Raises:
        InvalidInputError: an empty prompt, or a framework with no runner here.
        FrameworkNotInstalledError: the framework is not installed.
        UnsupportedFrameworkError: no adapter for the framework.
        ModuleException: the platform refused a request or could not be reached.
    """
    err = err or sys.stderr
    if not isinstance(ns.prompt, str) or not ns.prompt.strip():
        raise InvalidInputError("the prompt is empty")
    backend = Backend(configuration)
    agent = Agents(configuration).get(ns.agent_id)
    framework = ns.framework or agent.framework or "agno"
    runner = RUNNERS.get(framework)
    if runner is None:
        raise InvalidInputError(f"xpander-sync run has no runner for {framework!r}; supported: {', '.join(RUNNERS)}")
    task = Tasks(configuration).get(ns.task_id) if ns.task_id else None
    args = backend.get_args(agent=agent, task=task, framework=framework)
    if framework == "open-ai-agents":
        from agents import set_tracing_disabled

        set_tracing_disabled(True)  # traces would go to OpenAI's servers
    shown = Shown(out, err) if framework in STREAMING and not ns.json else None
    started = time.monotonic()
    try:
        run: Any = runner(args, ns.prompt, shown) if shown is not None else runner(args, ns.prompt)
    except Exception as exc:  # the framework raised: a failed run, reported as such
        run = exc
    if run is None:
        run = RuntimeError("the framework's stream ended without a run result")
    duration = round(time.monotonic() - started, 3)
    summary = summarize_run(run, backend._secrets())
    report = None
    if not ns.no_report:
        report = backend.report_run(agent=agent, run=run, input=ns.prompt, duration=duration, task=task)
    queued: Optional[QueuedReport] = report if isinstance(report, QueuedReport) else None
    reported: Optional[Dict[str, Any]] = None
    if queued is not None:
        reported = {"id": queued.task_id, "delivered": False, "outbox": queued.outbox}
    elif isinstance(report, Task):
        reported = {"id": report.id, "delivered": True, "outbox": None}
    if ns.json:
        document = {
            "agent_id": agent.id, "framework": framework, "task_id": task.id if task else None,
            "result": summary.result, "is_success": summary.is_success,
            "tokens": {"prompt_tokens": summary.tokens.prompt_tokens,
                       "completion_tokens": summary.tokens.completion_tokens,
                       "cache_read_tokens": summary.tokens.cache_read_tokens,
                       "cache_write_tokens": summary.tokens.cache_write_tokens},
            "used_tools": list(summary.used_tools), "duration": duration,
            "report": reported,
        }
        out.write(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    elif shown is not None:
        if shown.printed_text:
            out.write("\n" if shown.line_open else "")
        elif summary.is_success:  # nothing streamed (e.g. a structured output): the result now
            out.write((summary.result or "") + "\n")
    else:
        for name in summary.used_tools:
            err.write(f"[tool] {name}\n")
        if summary.is_success:
            out.write((summary.result or "") + "\n")
    if queued is not None:
        err.write(f"xpander-sync: report queued: not delivered ({queued.reason}); kept in {queued.outbox}; "
                  "run 'xpander-sync outbox flush' later\n")
    if not summary.is_success:
        err.write(f"xpander-sync: the run failed: {summary.result or 'no result'}\n")
        return EXIT_FAILED
    return EXIT_QUEUED if queued is not None else EXIT_OK
