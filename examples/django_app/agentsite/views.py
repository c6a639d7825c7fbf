"""``POST /agent/run`` (a sync view) and ``POST /agent/arun`` (the same as an async view).

Each view resolves the agent's arguments, builds the Agno agent, answers, and records the run
on xpander with ``report_external_task``. The answer here is made from the agent's name and
tools, so the example needs no LLM key; the comments show where ``agent.run()`` goes.
"""

import json
import time

from agno.agent import Agent
from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from xpander_sync import Backend, Configuration, ModuleException


def get_backend() -> Backend:
    # Cheap to build per request: Backends with equal configurations share one connection pool.
    return Backend(Configuration(**settings.XPANDER))


def read_input(request) -> str:
    try:
        return str(json.loads(request.body or b"{}").get("input", ""))
    except (ValueError, AttributeError):
        return ""


def answer_without_llm(agent: Agent, prompt: str) -> str:
    tools = ", ".join(getattr(tool, "name", type(tool).__name__) for tool in agent.tools or [])
    return f"{agent.name} would answer {prompt!r} using {tools or 'no tools'}"


@csrf_exempt
@require_POST
def run_agent(request):
    prompt = read_input(request)
    backend = get_backend()
    started = time.monotonic()
    try:
        agent = Agent(**backend.get_args(agent_id=settings.XPANDER_AGENT_ID))
        # With an LLM key:  run = agent.run(prompt); result = run.content
        # (and report tokens from run.metrics, used_tools from run.tools).
        result = answer_without_llm(agent, prompt)
        task = backend.report_external_task(
            agent_id=settings.XPANDER_AGENT_ID,
            input=prompt,
            result=result,
            duration=time.monotonic() - started,
            used_tools=[],
        )
    except ModuleException as exc:  # the platform refused or could not be reached
        return JsonResponse({"error": str(exc)}, status=502)
    return JsonResponse({"task_id": task.id, "agent": agent.name, "result": result})


@csrf_exempt
@require_POST
async def arun_agent(request):
    prompt = read_input(request)
    backend = get_backend()
    started = time.monotonic()
    try:
        # The a* twins run the blocking call in a worker thread: the event loop keeps serving.
        args = await backend.aget_args(agent_id=settings.XPANDER_AGENT_ID)
        agent = Agent(**args)
        # With an LLM key:  run = await agent.arun(prompt); result = run.content
        result = answer_without_llm(agent, prompt)
        task = await backend.areport_external_task(
            agent_id=settings.XPANDER_AGENT_ID,
            input=prompt,
            result=result,
            duration=time.monotonic() - started,
            used_tools=[],
        )
    except ModuleException as exc:
        return JsonResponse({"error": str(exc)}, status=502)
    return JsonResponse({"task_id": task.id, "agent": agent.name, "result": result})
