"""System checks of the ``XPANDER`` setting (``manage.py check``), each with an id and a hint.

========================  ==========================================================================
``xpander_sync.E001``     no API key (``XPANDER["api_key"]`` nor ``XPANDER_API_KEY``)
``xpander_sync.E002``     the base URL is not an http(s) URL with a host
``xpander_sync.E003``     the outbox's folder cannot be written, nor created (nearest existing folder)
``xpander_sync.E004``     ``XPANDER`` is not a dict, names an unknown field or holds a bad value
``xpander_sync.W001``     no organization id (the worker and the cloud URLs need one)
========================  ==========================================================================
"""

from __future__ import annotations

import os
from typing import Any, List
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks

from ...config import Configuration
from ...errors import ConfigurationError
from .._config import configuration_from

_DOC = "see docs/guides/django.md"


def _raw(name: str) -> Any:
    values = getattr(settings, "XPANDER", None) or {}
    if not isinstance(values, dict):
        return None
    return next((v for k, v in values.items() if str(k).lower() == name), None)


@checks.register("xpander_sync")
def check_xpander_settings(app_configs: Any = None, **kwargs: Any) -> List[checks.CheckMessage]:
    """Check ``settings.XPANDER`` (and the environment it falls back on).

    Args:
        app_configs: the apps to check (Django's argument; the setting is project-wide).
        **kwargs: Django's other arguments.

    Returns:
        The errors and warnings found (empty when the configuration is usable).
    """
    found: List[checks.CheckMessage] = []
    base_url = _raw("base_url")
    if base_url is not None:
        parts = urlsplit(str(base_url) if "://" in str(base_url) else f"https://{base_url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            found.append(checks.Error(
                f"XPANDER['base_url'] is not an http(s) URL with a host: {str(base_url)[:100]!r}",
                hint="Use e.g. 'https://inbound.xpander.ai', or 'http://127.0.0.1:8085' for a local backend; "
                     "leave it out for the xpander cloud.",
                id="xpander_sync.E002",
            ))
            return found
    try:
        configuration: Configuration = configuration_from(getattr(settings, "XPANDER", None) or {},
                                                          source="settings.XPANDER")
    except ConfigurationError as exc:
        found.append(checks.Error(
            str(exc), id="xpander_sync.E004",
            hint="XPANDER takes the keyword arguments of xpander_sync.Configuration (" + _DOC + ").",
        ))
        return found
    if not configuration.api_key:
        found.append(checks.Error(
            "no xpander API key: XPANDER['api_key'] is not set and neither is XPANDER_API_KEY",
            hint="Set XPANDER = {'api_key': os.environ['XPANDER_API_KEY'], ...} in settings, or export "
                 "XPANDER_API_KEY (the key of your xpander organization).",
            id="xpander_sync.E001",
        ))
    if not configuration.organization_id:
        found.append(checks.Warning(
            "no xpander organization id: the worker (manage.py xpander_worker) cannot connect without one",
            hint="Set XPANDER['organization_id'] or export XPANDER_ORGANIZATION_ID.",
            id="xpander_sync.W001",
        ))
    if configuration.outbox:
        folder = os.path.dirname(os.path.abspath(configuration.outbox))
        existing = _nearest_existing(folder)
        if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
            where = "" if existing == folder else f" (it does not exist yet and {existing!r} is the nearest that does)"
            found.append(checks.Error(
                f"the outbox folder {folder!r} cannot be written or created by this process{where}",
                hint="Make the folder (or the nearest existing one above it) writable by the user the project "
                     "runs as, or point XPANDER['outbox'] at a writable path (undeliverable reports wait there).",
                id="xpander_sync.E003",
            ))
    return found


def _nearest_existing(folder: str) -> str:
    """``folder``, else its nearest existing parent (the outbox creates the missing folders below it)."""
    while not os.path.exists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder
