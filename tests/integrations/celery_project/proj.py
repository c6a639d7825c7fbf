"""The Celery app of the Celery tests and the scale benchmark (``celery -A proj:app worker``).

The broker URL comes from ``XPANDER_TEST_BROKER``; the workers' xpander configuration from the
environment (``XPANDER_*``). Importing ``xpander_sync.contrib.celery`` registers its tasks.
"""

import os

from celery import Celery

import xpander_sync.contrib.celery  # noqa: F401  (registers xpander_sync.run_platform_task)

app = Celery("proj", broker=os.environ.get("XPANDER_TEST_BROKER", "redis://127.0.0.1:1/0"))
app.conf.update(
    worker_prefetch_multiplier=1,  # a worker process holds one task at a time: the others stay queued
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)
