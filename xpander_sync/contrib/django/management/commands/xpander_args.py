"""``manage.py xpander_args``: ``xpander-sync args`` with the project's ``XPANDER`` settings."""

from __future__ import annotations

from ..._command import XpanderCommand


class Command(XpanderCommand):
    """``xpander-sync args``, configured by ``settings.XPANDER`` (same options and exit statuses)."""

    help = "xpander-sync args: resolve an agent's framework arguments and summarise them"
    prefix = ("args",)
