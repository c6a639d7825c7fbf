"""Building a :class:`~xpander_sync.Configuration` from a framework's settings (a mapping of its fields)."""

from __future__ import annotations

import importlib
from typing import Any, Dict, Mapping, Tuple

import attrs

from .._retry import RetryPolicy
from ..config import Configuration
from ..errors import ConfigurationError, FrameworkNotInstalledError

#: Every :class:`Configuration` field, in its order.
FIELDS: Tuple[str, ...] = tuple(field.name for field in attrs.fields(Configuration))


def require(module: str, extra: str, what: str) -> Any:
    """Import a framework for a contrib module, or say which extra installs it.

    Args:
        module: the framework's import name (``django``).
        extra: the xpander-sync extra that installs it.
        what: the contrib module asking (for the message).

    Returns:
        The imported module.

    Raises:
        FrameworkNotInstalledError: the framework is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise FrameworkNotInstalledError(
            f"{what} needs {module}, which is not installed ({exc}): pip install 'xpander-sync[{extra}]'"
        ) from None


def configuration_from(values: Mapping[str, Any], *, source: str) -> Configuration:
    """A :class:`Configuration` from ``{field: value}``; a ``None`` value (or a missing field) keeps
    the default, so the environment stays the fallback for the key, organization, URL and agent.

    Args:
        values: :class:`Configuration` keyword arguments (field names, any case); ``retry`` may be
            a :class:`~xpander_sync.RetryPolicy` or a dict of its arguments.
        source: names the setting in error messages (``settings.XPANDER``).

    Returns:
        The configuration.

    Raises:
        ConfigurationError: an unknown field (the message lists the known ones), or a value the
            :class:`Configuration` rejects (the message names the field, never a secret).
    """
    if not isinstance(values, Mapping):
        raise ConfigurationError(f"{source} must be a dict of Configuration fields, got {type(values).__name__}")
    kwargs: Dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).lower()
        if name not in FIELDS:
            raise ConfigurationError(f"{source}: unknown setting {key!r}; known: {', '.join(FIELDS)}")
        if value is None:
            continue
        if name == "retry" and isinstance(value, Mapping):
            try:
                value = RetryPolicy(**value)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"{source}: retry: {exc}") from None
        kwargs[name] = value
    try:
        return Configuration(**kwargs)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{source}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{source}: {exc}") from None
