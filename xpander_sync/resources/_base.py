"""What every resource shares: a configuration, the transport for it, and the path rules."""

from __future__ import annotations

from typing import Any, Dict, Optional, Type, TypeVar, Union
from urllib.parse import quote

from .._converter import structure
from .._redact import url_repr
from ..config import Configuration
from ..errors import InvalidInputError
from ..transport import Transport, shared_transport

T = TypeVar("T")


def version_header(version: Union[int, str, None]) -> Dict[str, str]:
    """``{"x-agent-version": "N"}`` when a version is given (0/None/"" send nothing, as upstream).

    Args:
        version: the agent version, as an int or a numeric string.

    Returns:
        The headers to send (possibly empty).

    Raises:
        InvalidInputError: ``version`` is a bool, a negative int, or a string that is not all
            digits (a header value must never carry CR/LF).
    """
    if version is None or version == "" or version == 0:
        return {}
    if isinstance(version, bool) or not isinstance(version, (int, str)):
        raise InvalidInputError("agent_version must be an int or a numeric string")
    if isinstance(version, str) and not (version.isascii() and version.isdigit()):
        raise InvalidInputError("agent_version must be an int or a string of digits, such as '3'")
    if isinstance(version, int) and version < 0:
        raise InvalidInputError("agent_version must be >= 0")
    return {"x-agent-version": str(version)}


def check_id(name: str, value: object) -> str:
    """Validate an id that goes into a URL path.

    Args:
        name: the argument's name, used in the message.
        value: the id to check.

    Returns:
        ``value`` unchanged.

    Raises:
        InvalidInputError: ``value`` is not a non-empty string; is ``.`` or ``..``; or holds
            ``/``, ``?``, ``#``, a control character or a lone surrogate (the message names
            ``name``, never the value).
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{name} must be a non-empty string")
    if value in (".", ".."):
        raise InvalidInputError(f"{name} must not be '.' or '..'")
    if "/" in value or "?" in value or "#" in value:
        raise InvalidInputError(f"{name} must not contain '/', '?' or '#'")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidInputError(f"{name} must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(f"{name} must be valid text (it holds a lone surrogate)") from None
    return value


def route(template: str, **ids: object) -> str:
    """The one way a resource builds a path: each ``{name}`` is an id, checked and percent-encoded.

    Every id is one path segment (``quote(id, safe="")``), so no id can leave its route:
    ``%2F`` goes out as ``%252F``, and ``.``/``..`` are refused rather than collapsed.

    Args:
        template: the route, e.g. ``"/agent-execution/{task_id}/status"``.
        **ids: the value of each ``{name}`` in the template.

    Returns:
        The path to send.

    Raises:
        InvalidInputError: an id fails :func:`check_id` (the message names it).
    """
    return template.format(**{name: quote(check_id(name, value), safe="") for name, value in ids.items()})


class Resource:
    """Base of every resource and of :class:`~xpander_sync.Backend`.

    Args:
        configuration: settings; default: a :class:`Configuration` read from the environment.
            Objects built with equal configurations share one transport (one connection pool).
        transport: an explicit transport (tests inject one with a fake ``sleep``).

    Raises:
        InvalidInputError: ``configuration`` is not a :class:`Configuration`.
    """

    def __init__(self, configuration: Optional[Configuration] = None, *, transport: Optional[Transport] = None):
        if configuration is not None and not isinstance(configuration, Configuration):
            raise InvalidInputError(
                f"configuration must be an xpander_sync.Configuration, got {type(configuration).__name__}"
            )
        if transport is not None:
            configuration = configuration or transport.configuration
        self.configuration: Configuration = configuration or Configuration()
        self._transport = transport or shared_transport(self.configuration)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={url_repr(self.configuration.base_url)})"

    def __reduce__(self) -> Any:
        # A pickled model keeps the platform it came from, not the sockets: unpickled, its
        # resource shares the process's transport for the same configuration.
        return (type(self), (self.configuration,))

    def bind(self, model: T) -> T:
        """Attach this resource to a model, for the model's I/O conveniences (``task.save()``...).

        Every model a resource returns is already bound; bind one built from JSON elsewhere
        (or by hand) to give it a client.

        Args:
            model: an ``Agent``, ``AgentsListItem`` or ``Task``.

        Returns:
            ``model``, now bound.
        """
        if hasattr(model, "_handle"):
            model._handle = self._handle_for(model)
        return model

    def _handle_for(self, model: Any) -> Any:
        """The object a model of this resource delegates to (``self``; Backend picks a resource)."""
        return self

    def _structure(self, data: Any, cls: Type[T]) -> T:
        return self.bind(structure(data, cls))
