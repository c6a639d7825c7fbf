"""A Flask app with ``POST /agent/run``: resolve the agent, build it, answer, report the run.

Configuration comes from the environment: XPANDER_API_KEY, XPANDER_ORGANIZATION_ID,
XPANDER_BASE_URL (off the xpander cloud) and XPANDER_AGENT_ID. Run it with::

    flask --app flask_app run

The answer is made from the agent's name and tools, so no LLM key is needed; the comment
shows where ``agent.run()`` goes.
"""

import os
import time

from agno.agent import Agent
from flask import Flask, jsonify, request

from xpander_sync import Backend, ModuleException


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["XPANDER_AGENT_ID"] = os.environ.get("XPANDER_AGENT_ID", "agt-openai")
    # One Backend for the app, shared by the request threads; it reads XPANDER_* here, once.
    backend = Backend()

    @app.post("/agent/run")
    def run_agent():
        agent_id = app.config["XPANDER_AGENT_ID"]
        prompt = str((request.get_json(silent=True) or {}).get("input", ""))
        started = time.monotonic()
        try:
            agent = Agent(**backend.get_args(agent_id=agent_id))
            # With an LLM key:  run = agent.run(prompt); result = run.content
            tools = ", ".join(getattr(tool, "name", type(tool).__name__) for tool in agent.tools or [])
            result = f"{agent.name} would answer {prompt!r} using {tools or 'no tools'}"
            task = backend.report_external_task(
                agent_id=agent_id, input=prompt, result=result, duration=time.monotonic() - started,
            )
        except ModuleException as exc:  # the platform refused or could not be reached
            return jsonify(error=str(exc)), 502
        return jsonify(task_id=task.id, agent=agent.name, result=result)

    return app
