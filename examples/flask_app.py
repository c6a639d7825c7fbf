"""A Flask app with ``POST /agent/run``: resolve the agent, build it, run one turn, report the run.

``XpanderSync(app)`` reads the ``XPANDER_*`` keys of ``app.config`` (``XPANDER_READ_TIMEOUT`` below;
what the app does not set comes from the environment: XPANDER_API_KEY, XPANDER_ORGANIZATION_ID,
XPANDER_BASE_URL off the xpander cloud, XPANDER_AGENT_ID) and puts the app's one Backend at
``app.extensions["xpander"]``.
Run it with::

    flask --app flask_app run
    flask --app flask_app xpander args agt-123        # and: xpander worker ..., xpander outbox flush
"""

from agno.agent import Agent
from flask import Flask, current_app, jsonify, request

from xpander_sync import ModuleException
from xpander_sync.contrib.flask import XpanderSync

xpander = XpanderSync()


def create_app(**config) -> Flask:
    app = Flask(__name__)
    app.config["XPANDER_READ_TIMEOUT"] = 20  # a request should not wait the default minute for the platform
    app.config.update(config)  # e.g. XPANDER_API_KEY=..., XPANDER_OUTBOX=... from the factory's caller
    xpander.init_app(app)

    @app.post("/agent/run")
    def run_agent():
        backend = current_app.extensions["xpander"]
        agent_id = backend.configuration.agent_id
        prompt = str((request.get_json(silent=True) or {}).get("input", ""))
        try:
            agent = Agent(**backend.get_args(agent_id=agent_id))
            with backend.track(agent_id=agent_id, input=prompt) as tracked:
                run = agent.run(prompt)
                tracked.set_run(run)  # reported on exit: text, tokens, tools, success, duration
        except ModuleException as exc:  # the platform refused or could not be reached
            return jsonify(error=str(exc)), 502
        task_id = getattr(tracked.report, "id", None) or tracked.report.task_id
        return jsonify(task_id=task_id, agent=agent.name, result=run.content)

    return app
