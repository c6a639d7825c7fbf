"""The Django app config of ``xpander_sync.contrib.django`` (registers the system checks)."""

from __future__ import annotations

from django.apps import AppConfig


class XpanderSyncConfig(AppConfig):
    """``INSTALLED_APPS = [..., "xpander_sync.contrib.django"]``: checks and management commands."""

    name = "xpander_sync.contrib.django"
    label = "xpander_sync"
    verbose_name = "xpander-sync"

    def ready(self) -> None:
        """Register the system checks (``manage.py check``)."""
        from . import checks  # noqa: F401  (registers on import)
