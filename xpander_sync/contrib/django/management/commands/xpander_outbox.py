"""``manage.py xpander_outbox``: ``xpander-sync outbox`` with the project's ``XPANDER`` settings."""

from __future__ import annotations

from ..._command import XpanderCommand


class Command(XpanderCommand):
    """``xpander-sync outbox``, configured by ``settings.XPANDER`` (same options and exit statuses)."""

    help = "xpander-sync outbox: flush or list the reports waiting in the outbox"
    prefix = ("outbox",)
