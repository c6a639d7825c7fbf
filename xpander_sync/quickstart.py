"""``xpander-sync quickstart``: the whole product, offline, in one command.

Starts the local backend in-process (bundled sample agents, a temporary SQLite file, a
free loopback port) with a scripted model mounted under its LLM proxy route, creates a
task, resolves framework arguments for each sample agent, constructs the real Agno agent or
team when agno is installed, completes an MCP OAuth login through an auth event, then *runs*
each sample agent (the team, and a Claude agent inside it, included) for one real turn: the
model calls the agent's xpander tool, the platform answers it, the answer goes back to the
model, which answers; the run is reported with ``report_run`` (its real tokens and tools). The
sample agent ``agt-features`` shows the platform features at work in the same turn: its dynamic
prompt, environment context and channel presence in the instructions, a knowledge-base search,
a memory saved for the task's user, and a tool call held for an approval the platform grants.
No account, no key, no network beyond 127.0.0.1: the model is the local backend's scripted one.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import time
from typing import Any, Callable, Dict, List, TextIO

SAMPLE_AGENTS = ("agt-openai", "agt-anthropic", "agt-json", "agt-team", "agt-mcp", "agt-features")
#: The agents run for a turn (agt-mcp is built, not run: its MCP server is a remote URL).
RUN_AGENTS = ("agt-openai", "agt-anthropic", "agt-json", "agt-team", "agt-features")
INSTALL_HINT = 'pip install "xpander-sync[agno]"'
PROMPT = "Find Ada Lovelace in the CRM"
CRM_TOOL = "XpanderCrmSearchContacts"
#: What the local platform answers when an agent calls the CRM search tool.
CRM_ANSWER = {"contacts": [{"id": "c-1", "name": "Ada Lovelace", "company": "Acme"}]}
#: The agent that shows the platform features (knowledge, memories, prompts, an approval rule).
FEATURES_AGENT = "agt-features"
#: The user of the tasks the quickstart runs (memories are kept per user).
USER_ID = "user-42"
#: What the features agent's model searches for, and the memory it saves.
KB_QUERY = "refund policy"
MEMORY = "Dana asked about Ada Lovelace's account."


def _agno_installed() -> bool:
    return importlib.util.find_spec("agno") is not None


def _construct(args: Dict[str, Any]) -> Any:
    """Build the real agno object: a Team when ``members`` is present, else an Agent."""
    if args.get("members"):
        from agno.team import Team

        return Team(**args)
    from agno.agent import Agent

    return Agent(**args)


def _script(model: Any, args: Dict[str, Any]) -> None:
    """Script one turn for the agent (or team) ``args`` build: a tool call, then an answer.

    An agent with the CRM tool calls it and answers with its result; a team's leader delegates
    to its first member, which answers, and the leader answers with the member's reply. A JSON
    agent answers a JSON object its schema accepts.
    """
    from ._scripted_model import answer, answer_with_tool_result, call_first_tool, call_tool

    def final(agent_args: Dict[str, Any], prefix: str) -> Any:
        wrapper = agent_args.get("output_schema")
        if agent_args.get("use_json_mode") and isinstance(wrapper, dict):
            schema = wrapper.get("json_schema", {}).get("schema", {})
            example = {name: "low" if spec.get("type") == "string" else 1
                       for name, spec in (schema.get("properties") or {}).items()}
            return answer(json.dumps(example))
        return answer_with_tool_result(prefix)

    def tool_names(agent_args: Dict[str, Any]) -> List[str]:
        return [str(getattr(t, "name", "")) for t in agent_args.get("tools") or []]

    def summary(summaries: Any) -> None:
        # agno asks the model for a session summary after a run when the agent keeps them
        if summaries:
            model.script(answer(json.dumps({"summary": "Looked up a CRM contact.", "topics": ["crm"]})))

    members = args.get("members") or []
    if not members:
        names = tool_names(args)
        features = args.get("id") == FEATURES_AGENT  # the others keep their one-tool turn
        if features and (args.get("search_knowledge") or "search_knowledge_base" in names):  # agno's, or ours
            model.script(call_tool("search_knowledge_base", {"query": KB_QUERY}))
        if features and "manage_memory" in names:
            model.script(call_tool("manage_memory", {"action": "save", "scope": "user", "memory": MEMORY}))
        if CRM_TOOL in names:
            model.script(call_first_tool(CRM_TOOL, {"query_params": {"q": "Ada"}}))
        model.script(final(args, "Found: "))
        summary(args.get("enable_session_summaries"))
        return
    member = members[0]
    model.script(call_tool("delegate_task_to_member", {"member_id": member.id, "task": PROMPT}))
    member_args = {"use_json_mode": getattr(member, "use_json_mode", False),
                   "output_schema": getattr(member, "output_schema", None)}
    model.script(final(member_args, "Member says: "))
    summary(getattr(member, "enable_session_summaries", False))
    model.script(answer_with_tool_result("The team says: "))
    summary(args.get("enable_session_summaries"))


def _run_agent(built: Any) -> Dict[str, Any]:
    """One turn of an agno agent or team: its run output, final text, tokens and duration."""
    started = time.perf_counter()
    out = built.run(PROMPT)
    status = str(getattr(out.status, "value", out.status))
    if status.lower() != "completed":
        raise RuntimeError(f"the run ended with status {status}: {out.content}")
    metrics = out.metrics
    return {
        "output": out,
        "final": out.content if isinstance(out.content, str) else json.dumps(out.content, default=str),
        "tokens": {"prompt_tokens": int(getattr(metrics, "input_tokens", 0) or 0),
                   "completion_tokens": int(getattr(metrics, "output_tokens", 0) or 0)},
        "duration": round(time.perf_counter() - started, 3),
    }


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
        local.mount_llm()  # the scripted model, under the platform's LLM proxy route
        local.register_tool(CRM_TOOL, lambda payload, headers: CRM_ANSWER)
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

            for agent_id in RUN_AGENTS:
                def run(agent_id: str = agent_id) -> Dict[str, Any]:
                    return _run_step(local, backend, state, agent_id)

                if agent_id in state.get("args", {}):
                    step(f"run {agent_id}", run)
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


def _run_step(local: Any, backend: Any, state: Dict[str, Any], agent_id: str) -> Dict[str, Any]:
    """Run one sample agent for a turn against the scripted model, then report the run."""
    from .models.task import User

    model = local.llm
    # a task (and so a session) of its own, for a user (memories are kept per user)
    task = backend.invoke_agent(agent_id, PROMPT,
                                user_details=User(id=USER_ID, email="dana@example.com", first_name="Dana"))
    args = backend.get_args(agent_id=agent_id, task=task)
    _script(model, args)
    seen_requests, seen_calls = len(model.requests), len(local.tool_calls())
    seen_memories = len(local.memories(agent_id))
    run = _run_agent(_construct(args))
    requests_made = model.requests[seen_requests:]
    calls = local.tool_calls()[seen_calls:]
    detail: Dict[str, Any] = {"model": f"{type(args['model']).__name__} {args['model'].id} (scripted, via the "
                                       "local LLM proxy)"}
    tool_calls = [r.tool_call for r in requests_made if r.tool_call]
    if tool_calls:
        detail["tool_call"] = {"name": tool_calls[0]["name"], "arguments": tool_calls[0]["arguments"]}
    if calls:
        detail["platform_tool_call"] = {"tool": calls[0]["tool_id"], "sent_body": calls[0]["body"],
                                        "x-execution-id": calls[0]["headers"].get("x-execution-id")}
    answered = [r.last_tool_result for r in requests_made if r.last_tool_result]
    if answered:
        detail["tool_answer"] = answered[0]
    detail.update(final=run["final"], tokens=run["tokens"], model_requests=len(requests_made))
    if agent_id == FEATURES_AGENT:
        detail["platform_features"] = _features_seen(local, requests_made, answered, seen_memories, seen_calls,
                                                     agent_id)
    reported = backend.report_run(agent_id=agent_id, run=run["output"], input=PROMPT, duration=run["duration"],
                                  task=task)
    body = local.reports()[-1]["body"]
    detail["reported"] = {"task_id": getattr(reported, "id", None), "tokens": body.get("tokens"),
                          "used_tools": body.get("used_tools")}
    if any(r.exhausted for r in requests_made) or model.remaining:
        raise RuntimeError(f"the run did not follow the script ({model.remaining} turn(s) left): {detail}")
    return detail


def _features_seen(local: Any, requests_made: List[Any], answered: List[str], seen_memories: int,
                   seen_calls: int, agent_id: str) -> Dict[str, Any]:
    """What the features agent's turn shows of the platform features (each checked, not assumed)."""
    from .frameworks.features.memories import wait_for_saves
    from .local import sample_agents_dir

    first = requests_made[0]
    sample = json.loads((sample_agents_dir() / f"{agent_id}.json").read_text(encoding="utf-8"))
    prompts = sample.get("_local_prompts") or {}
    wait_for_saves()  # a memory save is fire-and-forget: let it land before looking
    seen = {
        "dynamic_prompt_in_instructions": first.mentions(prompts.get("dynamic_prompt") or "<none>"),
        "channel_presence_in_instructions": first.mentions("<channel_presence"),
        "environment_context_in_instructions": first.mentions("<environment_context"),
        "memories_in_context": first.mentions("<memories"),
        "knowledge_retrieved": any("Refund policy" in text for text in answered),
        "memory_saved": [m.get("memory") for m in local.memories(agent_id)[seen_memories:]],
        # the CRM call was held for an approval, polled, granted and then run
        "approval_polled": sum(1 for r in local.requests_log if "/tool-approvals/" in r["path"]),
        "tool_called_after_approval": any(c["tool_id"] == CRM_TOOL for c in local.tool_calls()[seen_calls:]),
    }
    missing = [name for name, value in seen.items() if not value]
    if missing:
        raise RuntimeError(f"{agent_id}: platform features not seen in the run: {', '.join(missing)}")
    return seen


def _render(out: TextIO, steps: List[Dict[str, Any]], agno: bool) -> None:
    out.write("xpander-sync quickstart: local backend, sample agents, a scripted LLM, no network\n\n")
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
