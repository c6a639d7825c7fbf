"""``POST /agent/run`` (a sync view) and ``POST /agent/arun`` (the same as an async view).

Each view resolves the agent's arguments, builds the Agno agent, runs one turn, and reports the run
to xpander with ``track``: the duration, the answer, the tokens and tools the run used, and
``is_success=False`` (then re-raised) when the run raises. The backend is the project's one
``backend()``, configured by ``settings.XPANDER``.
"""

import json

from agno.agent import Agent
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from xpander_sync import ModuleException
from xpander_sync.contrib.django import backend


def read_input(request) -> str:
    try:
        return str(json.loads(request.body or b"{}").get("input", ""))
    except (ValueError, AttributeError):
        return ""


def answer(agent_name: str, run, tracked) -> JsonResponse:
    report = tracked.report  # the reported Task (or a QueuedReport when the outbox kept it)
    return JsonResponse({"task_id": getattr(report, "id", None) or report.task_id, "agent": agent_name,
                         "result": run.content, "tokens": run.metrics.total_tokens if run.metrics else None})


@csrf_exempt
@require_POST
def run_agent(request):
    prompt = read_input(request)
    xpander = backend()
    agent_id = xpander.configuration.agent_id
    try:
        agent = Agent(**xpander.get_args(agent_id=agent_id))
        with xpander.track(agent_id=agent_id, input=prompt) as tracked:
            run = agent.run(prompt)
            tracked.set_run(run)  # reported on exit: text, tokens, tools, success, duration
    except ModuleException as exc:  # the platform refused or could not be reached
        return JsonResponse({"error": str(exc)}, status=502)
    return answer(agent.name, run, tracked)


@csrf_exempt
@require_POST
async def arun_agent(request):
    prompt = read_input(request)
    xpander = backend()
    agent_id = xpander.configuration.agent_id
    try:
        # The a* twins run the blocking call in a worker thread: the event loop keeps serving.
        agent = Agent(**await xpander.aget_args(agent_id=agent_id))
        async with xpander.track(agent_id=agent_id, input=prompt) as tracked:
            run = await agent.arun(prompt)
            tracked.set_run(run)
    except ModuleException as exc:
        return JsonResponse({"error": str(exc)}, status=502)
    return answer(agent.name, run, tracked)
