"""Task handlers of the Celery tests: each run is counted in Redis (``INCR runs:<task id>``).

* ``handle``: sleeps ``XPANDER_TEST_SLEEP`` seconds (default 0) and answers ``done: <input>``.
* an input starting with ``slow`` waits 60 s on its first run, after writing its process id to
  ``slow-pid`` (the test kills that process); its second run answers at once.
"""

import os
import time

import redis

from xpander_sync import Task

_client = None


def counter() -> "redis.Redis":
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["XPANDER_TEST_BROKER"])
    return _client


def handle(task: Task) -> Task:
    runs = counter().incr(f"runs:{task.id}")
    text = task.input.text or ""
    if text.startswith("slow") and runs == 1:
        counter().set("slow-pid", os.getpid())
        time.sleep(60)
    time.sleep(float(os.environ.get("XPANDER_TEST_SLEEP", "0")))
    task.result = f"done: {text}"
    return task
