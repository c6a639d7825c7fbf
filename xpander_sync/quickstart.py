"""``xpander-sync quickstart``: the whole product, offline, in one command.

Starts the local backend in-process (bundled sample agents, a temporary SQLite file, a
free loopback port), creates a task, resolves framework arguments for each sample agent,
constructs the real Agno agent or team when agno is installed, calls one xpander tool
through the returned function, completes an MCP OAuth login through an auth event, reports
an external task, and prints a summary. No LLM call, no network beyond 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import time
from typing import Any, Callable, Dict, List, TextIO

SAMPLE_AGENTS = ("agt-openai", "agt-anthropic", "agt-json", "agt-team", "agt-mcp")
INSTALL_HINT = 'pip install "xpander-sync[agno]"'


def _agno_installed() -> bool:
    return importlib.util.find_spec("agno") is not None


def _construct(args: Dict[str, Any]) -> Any:
    """Build the real agno object: a Team when ``members`` is present, else an Agent."""
    if args.get("members"):
        from agno.team import Team

        return Team(**args)
    from agno.agent import Agent

    return Agent(**args)


def _call_tool_like_agno(tool: Any, arguments: Dict[str, Any]) -> Any:
    """Run a returned tool the way agno runs one chosen by the model (no LLM involved)."""
    from agno.tools.function import FunctionCall

    return FunctionCall(function=tool, arguments=arguments).execute()


def run_quickstart(out: TextIO, *, as_json: bool = False) -> int:
    """Run the demo and print its summary; returns the exit status (0 when every step worked).

    A failing step is recorded in the summary (with its error) and the next steps still run.

    Args:
        out: where the summary is written.
        as_json: write the summary as JSON (``{"ok", "agno_installed", "steps"}``) instead of text.

    Returns:
        0 when every step worked, else 1.
    """
    import requests

    from .backend import Backend
    from .config import Configuration
    from .errors import XpanderError
    from .local import LocalBackend
    from .models.task import User
    from .reporting import QueuedReport
    from .resources.agents import Agents
    from .summary import summarize_args

    api_key = "xpk-quickstart-" + secrets.token_hex(8)
    steps: List[Dict[str, Any]] = []
    failures = 0

    def step(name: str, action: Callable[[], Dict[str, Any]]) -> None:
        nonlocal failures
        started = time.perf_counter()
        try:
            detail = action()
            ok = True
        except XpanderError as exc:
            detail, ok = {"error": str(exc)}, False
        except Exception as exc:  # any other failure is reported, not hidden
            detail, ok = {"error": f"{type(exc).__name__}: {exc}"}, False
        failures += 0 if ok else 1
        steps.append({"step": name, "ok": ok, "ms": round((time.perf_counter() - started) * 1000, 1), **detail})

    with LocalBackend(api_key=api_key) as local:
        config = Configuration(api_key=api_key, base_url=local.url, organization_id="local-org",
                               mcp_auth_poll_interval=0.1)
        backend = Backend(config)
        agno = _agno_installed()
        state: Dict[str, Any] = {}

        step("list agents", lambda: {"agents": [a.id for a in Agents(config).list()]})

        def create_task() -> Dict[str, Any]:
            task = backend.invoke_agent(
                "agt-openai", "Find Ada Lovelace in the CRM",
                user_details=User(id="user-42", email="dana@example.com", first_name="Dana"),
            )
            state["task"] = task
            return {"task_id": task.id, "status": task.status.value}

        step("create a task (invoke_agent)", create_task)

        if not agno:
            steps.append({"step": "resolve arguments", "ok": True,
                          "skipped": f"agno is not installed: {INSTALL_HINT} to build real agents"})
        else:
            def login(agent: Any, task: Any, event: Any) -> None:
                # The auth event carries the login URL; "click" it as the user would.
                data = event.data.get("data") or {}
                if event.data.get("type") == "login_required" and data.get("url"):
                    requests.get(data["url"], timeout=5)
                state.setdefault("auth_events", []).append(event.data.get("type"))

            for agent_id in SAMPLE_AGENTS:
                def resolve(agent_id: str = agent_id) -> Dict[str, Any]:
                    args = backend.get_args(agent_id=agent_id, task=state.get("task"), auth_events_callback=login)
                    built = _construct(args)
                    state.setdefault("args", {})[agent_id] = args
                    summary = summarize_args(args)
                    summary["constructed"] = f"{type(built).__module__}.{type(built).__name__}"
                    return summary

                step(f"get_args + construct {agent_id}", resolve)

            def call_tool() -> Dict[str, Any]:
                args = state["args"]["agt-openai"]
                tool = next(t for t in args["tools"] if getattr(t, "name", "") == "XpanderCrmSearchContacts")
                result = _call_tool_like_agno(tool, {"query_params": {"q": "ada"}})
                last = local.tool_calls()[-1]
                return {"tool": tool.name, "status": str(getattr(result, "status", "")),
                        "sent_body": last["body"], "x-execution-id": last["headers"].get("x-execution-id")}

            if "agt-openai" in state.get("args", {}):
                step("call an xpander tool through the returned function", call_tool)
            if state.get("auth_events"):
                steps.append({"step": "MCP OAuth auth events", "ok": True, "events": state["auth_events"]})

        def report() -> Dict[str, Any]:
            task = backend.report_external_task(
                agent_id="agt-openai", input="What is our refund window?",
                result="Refunds are processed within 5 business days.",
                tokens={"prompt_tokens": 120, "completion_tokens": 14}, duration=1.8, used_tools=["kb_search"],
            )
            if isinstance(task, QueuedReport):  # cannot happen without an outbox; kept for the type checker
                return {"task_id": task.task_id, "status": "queued"}
            return {"task_id": task.id, "status": task.status.value, "stored_reports": len(local.reports())}

        step("report an external task", report)

    if as_json:
        out.write(json.dumps({"ok": failures == 0, "agno_installed": agno, "steps": steps}, indent=2,
                             default=str) + "\n")
    else:
        _render(out, steps, agno)
    return 0 if failures == 0 else 1


def _render(out: TextIO, steps: List[Dict[str, Any]], agno: bool) -> None:
    out.write("xpander-sync quickstart: local backend, sample agents, no LLM, no network\n\n")
    for item in steps:
        mark = "ok " if item["ok"] else "FAIL"
        out.write(f"[{mark}] {item['step']} ({item['ms']} ms)\n" if "ms" in item else f"[{mark}] {item['step']}\n")
        for key, value in item.items():
            if key in ("step", "ok", "ms", "keys"):
                continue
            if isinstance(value, (dict, list)):
                value = json.dumps(value, default=str)
            out.write(f"       {key}: {value}\n")
    if not agno:
        out.write(f"\nTo build real Agno agents and teams: {INSTALL_HINT}\n")
    out.write("\nNext: export XPANDER_API_KEY=... and call Backend().get_args(agent_id=...) for a real agent.\n")
