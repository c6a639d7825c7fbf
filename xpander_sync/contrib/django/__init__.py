"""xpander-sync in a Django project: add ``"xpander_sync.contrib.django"`` to ``INSTALLED_APPS``.

* **Settings**: ``XPANDER = {...}`` holds :class:`~xpander_sync.Configuration` fields (``api_key``,
  ``organization_id``, ``base_url``, ``agent_id``, ``read_timeout``, ``outbox``,
  ``background_reports``, ``retry``...); a field left out (or ``None``) falls back to the
  environment (``XPANDER_API_KEY``...) or the default.
* :func:`backend`: the one process-wide :class:`~xpander_sync.Backend`, built on first use
  (thread-safe), rebuilt when ``XPANDER`` changes (``override_settings`` in tests).
* **System checks** (``manage.py check``): ``xpander_sync.E001`` no API key, ``E002`` a bad base
  URL, ``E003`` an outbox folder that cannot be written, ``E004`` an invalid ``XPANDER`` setting,
  ``W001`` no organization id (the worker needs one). Each has a hint.
* **Commands**: ``manage.py xpander_worker MODULE:FUNCTION [--concurrency N] [--agent-id ID]
  [--dispatch celery --celery-app MODULE:APP]``, ``manage.py xpander_outbox flush|list``,
  ``manage.py xpander_args AGENT_ID``: the ``xpander-sync`` commands, with the project's settings;
  same options, same output, same exit statuses.
* Async views use the ``a*`` twins of the same backend (``await backend().aget_args(...)``).
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from .._config import configuration_from, require

require("django", "django", "xpander_sync.contrib.django")

from django.conf import settings  # noqa: E402
from django.core.signals import setting_changed  # noqa: E402

from ...backend import Backend  # noqa: E402
from ...config import Configuration  # noqa: E402

__all__ = ["SETTING", "backend", "configuration", "reset"]

#: The Django setting read.
SETTING = "XPANDER"

_lock = threading.Lock()
_backend: Optional[Backend] = None


def configuration() -> Configuration:
    """The :class:`~xpander_sync.Configuration` of ``settings.XPANDER`` (the environment as fallback).

    Returns:
        A new configuration (without ``XPANDER``: the environment's).

    Raises:
        ConfigurationError: ``XPANDER`` is not a dict, names an unknown field, or holds a value
            the configuration rejects (the message names it).
    """
    return configuration_from(getattr(settings, SETTING, None) or {}, source=f"settings.{SETTING}")


def backend() -> Backend:
    """The project's :class:`~xpander_sync.Backend`, built once per process on first use.

    Thread-safe; rebuilt after ``XPANDER`` changes (Django's ``setting_changed`` signal, sent by
    ``override_settings``), or after :func:`reset`.

    Returns:
        The shared backend.

    Raises:
        ConfigurationError: ``XPANDER`` is invalid (see :func:`configuration`).
    """
    global _backend
    current = _backend
    if current is not None:
        return current
    with _lock:
        if _backend is None:
            _backend = Backend(configuration())
        return _backend


def reset() -> None:
    """Forget the shared backend: the next :func:`backend` call builds it from the settings again."""
    global _backend
    with _lock:
        _backend = None


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING:
        reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="xpander_sync.contrib.django.reset")
