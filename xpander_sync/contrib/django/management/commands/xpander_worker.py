"""``manage.py xpander_worker``: ``xpander-sync worker`` with the project's ``XPANDER`` settings."""

from __future__ import annotations

from ..._command import XpanderCommand


class Command(XpanderCommand):
    """``xpander-sync worker``, configured by ``settings.XPANDER`` (same options and exit statuses)."""

    help = "xpander-sync worker: run an @on_task handler as a worker (MODULE:FUNCTION, options as the CLI)"
    prefix = ("worker",)
