"""The project's ``@on_task`` handler: ``python manage.py xpander_worker agentsite.tasks:handle``.

Each platform task runs one turn of the task's agent (built with the task, so its tools report
under it) and saves the answer; the worker reports the task's tokens as its metrics.
"""

from agno.agent import Agent

from xpander_sync import Task, Tokens, on_task
from xpander_sync.contrib.django import backend


@on_task
def handle(task: Task) -> Task:
    args = backend().get_args(agent_id=task.agent_id, task=task)
    run = Agent(**args).run(task.input.text)
    task.result = run.content
    if run.metrics:
        task.tokens = Tokens(prompt_tokens=run.metrics.input_tokens, completion_tokens=run.metrics.output_tokens)
    return task
