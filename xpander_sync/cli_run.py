"""``xpander-sync run AGENT_ID "prompt"``: run one turn of an agent here, print the answer, report it.

The cron line for "run my xpander agent every night"::

    xpander-sync run agt-1234 "Summarise yesterday's tickets" --json

Steps: load the agent (and the task, with ``--task-id``), build its framework's agent from
``Backend.get_args`` (the agent's own framework, or ``--framework``), run one turn, print the
answer (agno: streamed as it arrives, each tool call shown on stderr as it starts), and report
the run with :meth:`Backend.report_run <xpander_sync.Backend.report_run>`
(its real tokens and tools; ``--no-report`` skips it). Undeliverable reports wait in the
outbox (the same default as ``xpander-sync report``).

Exit status: 0 the run succeeded (and its report was delivered), 1 the run failed (an error
status, or the framework raised: the failure is reported too), 2 usage or framework errors
(unknown or uninstalled framework, missing agent id), 3 the run succeeded but its report was
queued in the outbox. With ``--json`` one JSON object is printed: ``agent_id``, ``framework``,
``task_id``, ``result``, ``is_success``, ``tokens``, ``used_tools``, ``duration`` and ``report``
(``{"id", "delivered", "outbox"}``, or ``null`` with ``--no-report``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any, Callable, Dict, List, Optional, TextIO

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


def _agno(args: Dict[str, Any], prompt: str, show: Optional[Shown] = None) -> Any:
    from agno.agent import Agent
    from agno.team import Team

    built: Any = Team(**args) if "members" in args else Agent(**args)
    if show is None:
        return built.run(prompt)
    # streamed: the leader's text as it arrives, every tool call (members' included) as it starts
    content = "TeamRunContent" if "members" in args else "RunContent"
    final = None
    events: Any = built.run(prompt, stream=True, stream_events=True, yield_run_output=True)
    for event in events:
        kind = getattr(event, "event", None)
        if kind is None and hasattr(event, "status") and hasattr(event, "metrics"):
            final = event  # the RunOutput / TeamRunOutput, yielded last
        elif kind == content and isinstance(getattr(event, "content", None), str):
            show.text(event.content)
        elif kind in ("ToolCallStarted", "TeamToolCallStarted") and getattr(event, "tool", None) is not None:
            show.tool(str(event.tool.tool_name))
    return final


class Shown:
    """What a streaming runner has printed: the answer's text as it arrives, tool calls as they start.

    Args:
        out: where the answer's text goes.
        err: where the ``[tool] NAME`` lines go.
    """

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self._out, self._err = out, err
        self.printed_text = False
        self.tools: List[str] = []

    def text(self, piece: str) -> None:
        """Print a piece of the answer now.

        Args:
            piece: the text that arrived.
        """
        if piece:
            self._out.write(piece)
            self._out.flush()
            self.printed_text = True

    def tool(self, name: str) -> None:
        """Show a tool call as it starts.

        Args:
            name: the tool's name.
        """
        self.tools.append(name)
        self._err.write(f"[tool] {name}\n")
        self._err.flush()


#: The runners that stream (called with a third argument, a :class:`Shown`).
STREAMING = frozenset({"agno"})


def _openai_agents(args: Dict[str, Any], prompt: str) -> Any:
    from agents import Agent, Runner

    return Runner.run_sync(Agent(**args), prompt)


def _langchain(args: Dict[str, Any], prompt: str) -> Any:
    from langchain.agents import create_agent

    return create_agent(**args).invoke({"messages": [{"role": "user", "content": prompt}]})


def _strands(args: Dict[str, Any], prompt: str) -> Any:
    from strands import Agent

    return Agent(**{"callback_handler": None, **args})(prompt)  # the default handler prints to stdout


def _google_adk(args: Dict[str, Any], prompt: str) -> Any:
    from google.adk.agents import LlmAgent
    from google.adk.runners import InMemoryRunner
    from google.genai import types

    runner = InMemoryRunner(agent=LlmAgent(**args), app_name="xpander-sync-run")
    message = types.Content(role="user", parts=[types.Part(text=prompt)])

    async def run() -> List[Any]:
        session = await runner.session_service.create_session(app_name="xpander-sync-run", user_id="cli")
        return [e async for e in runner.run_async(user_id="cli", session_id=session.id, new_message=message)]

    return asyncio.run(run())


def _pydantic_ai(args: Dict[str, Any], prompt: str) -> Any:
    from pydantic_ai import Agent

    return Agent(**args).run_sync(prompt)


#: How each built-in framework runs one turn: ``runner(args, prompt) -> the framework's run result``.
RUNNERS: Dict[str, Callable[..., Any]] = {
    "agno": _agno,
    "open-ai-agents": _openai_agents,
    "langchain": _langchain,
    "strands-agents": _strands,
    "google-adk": _google_adk,
    "pydantic-ai": _pydantic_ai,
}


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
            out.write("\n")
        elif summary.is_success:
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
