"""Every exception xpander-sync raises.

::

    XpanderError                                  base; never raised bare
    ├── ConfigurationError(XpanderError, ValueError)   a setting is missing or wrong
    │   └── MissingAgentError                       no agent given and XPANDER_AGENT_ID unset
    ├── InvalidInputError(XpanderError, ValueError)     bad caller input; names the field
    ├── FrameworkNotInstalledError(XpanderError, ImportError)
    ├── UnsupportedFrameworkError(XpanderError, ValueError)
    ├── AuthenticationRequiredError(XpanderError)      an MCP server needs a login that did not complete
    ├── OutboxError(XpanderError)                     the report outbox file cannot be written or read
    ├── BootHookError(XpanderError, RuntimeError)     an ``@on_boot`` hook raised; the worker did not start
    ├── StoreClosedError(XpanderError, RuntimeError)  the local backend's store was used after close()
    ├── ToolError(XpanderError)                       raised by a local backend tool handler: answer with a status
    └── ModuleException(XpanderError)                 the official SDK's name; .status_code, .description
        ├── TransportError                          no HTTP response (DNS, refused, reset); status_code None
        │   └── RequestTimeoutError                 connect or read timeout
        ├── APIError                                non-2xx; .status_code .method .route .request_id
        │   ├── AuthenticationError                 401
        │   ├── PermissionDeniedError               403
        │   ├── NotFoundError                       404
        │   ├── ConflictError                       409
        │   ├── RateLimitError                      429 (.retry_after)
        │   └── ServerError                         5xx
        └── ResponseDecodeError                     2xx, but not JSON or not the expected model

Every error has ``retryable``: ``True`` when the same call may succeed later unchanged (no
answer, a timeout, 5xx, 429, 408, 425), ``False`` for a refusal or a mistake. It is the one answer
to "try again later?" used by the transport, the report outbox, the worker and the agent build.

``str(ModuleException)`` is ``"[status] description"`` as in the official SDK; a transport
error shows ``[None]`` (there was no HTTP status; the official client said 500).
No message ever contains a secret: server messages are scrubbed of the configured
keys, and cattrs' inner errors (which carry input values) are not chained.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Type


class XpanderError(Exception):
    """Base class of every error raised by xpander-sync.

    :attr:`retryable` says whether the same call may succeed later unchanged (an outage, an
    overload) or not (a refusal or a mistake, the default).
    """

    @property
    def retryable(self) -> bool:
        """Whether the same call may succeed later, unchanged (stripe-python's ``should_retry``)."""
        return False


class ConfigurationError(XpanderError, ValueError):
    """A required setting is missing or invalid; the message names the argument and env var."""


class MissingAgentError(ConfigurationError):
    """No agent was given: pass ``agent=``, ``agent_id=``, or set ``XPANDER_AGENT_ID``."""


class InvalidInputError(XpanderError, ValueError):
    """A caller-supplied value is invalid; the message names the field but not the value."""


class FrameworkNotInstalledError(XpanderError, ImportError):
    """The agent framework needed for this call is not installed (the message names the extra)."""


class UnsupportedFrameworkError(XpanderError, ValueError):
    """The agent's framework has no registered adapter (the message lists the supported ones)."""


class AuthenticationRequiredError(XpanderError):
    """An MCP server needs the user to log in, and the login did not complete in time.

    Args:
        message: what happened (never containing a token).
        server: the MCP server that asked for the login, when known.
        login_url: the URL the user should open to log in, when known.
    """

    def __init__(self, message: str, *, server: Optional[str] = None, login_url: Optional[str] = None):
        super().__init__(message)
        self.server = server
        self.login_url = login_url


class OutboxError(XpanderError):
    """The report outbox (a SQLite file) could not be written or read; the message names the file."""


class BootHookError(XpanderError, RuntimeError):
    """An ``@on_boot`` hook raised, so the worker did not start.

    Args:
        message: what failed (scrubbed of secrets).
        hook: the name of the hook that failed.

    Attributes:
        hook: the name of the hook that failed.
    """

    def __init__(self, message: str, *, hook: str = "") -> None:
        super().__init__(message)
        self.hook = hook


class StoreClosedError(XpanderError, RuntimeError):
    """A closed local-backend :class:`~xpander_sync.local.store.Store` was used (its file may be gone)."""


class ToolError(XpanderError):
    """Raise from a local-backend tool handler to answer with a specific HTTP status.

    Args:
        status_code: the HTTP status of the response (e.g. 422).
        detail: the JSON ``detail`` of the error body.

    Attributes:
        status_code: the HTTP status of the response.
        detail: the JSON ``detail`` of the error body.
    """

    def __init__(self, status_code: int, detail: str = "tool failed") -> None:
        super().__init__(detail)
        self.status_code = int(status_code)
        self.detail = detail


class ModuleException(XpanderError):
    """An error talking to the platform. Name and ``str`` format kept from the official SDK.

    Args:
        status_code: the HTTP status, or ``None`` when no response was received.
        description: a human-readable explanation (never containing a secret).

    Attributes:
        status_code: the HTTP status, or ``None`` when no response was received.
        description: a human-readable explanation (never containing a secret).
    """

    def __init__(self, status_code: Optional[int], description: str):
        super().__init__(status_code, description)
        self.status_code = status_code
        self.description = description

    def __str__(self) -> str:
        return f"[{self.status_code}] {self.description}"


class TransportError(ModuleException):
    """The request got no HTTP response: DNS failure, refused or reset connection, TLS error.

    ``status_code`` is ``None``.

    Args:
        description: what failed (scrubbed of secrets).
        method: the HTTP method.
        route: the request path (without host or query).
    """

    def __init__(self, description: str, *, method: str = "", route: str = ""):
        super().__init__(None, description)
        self.method = method
        self.route = route

    @property
    def retryable(self) -> bool:
        """Always ``True``: nothing was answered, so the platform may answer later."""
        return True


class RequestTimeoutError(TransportError):
    """The connect or read timeout expired."""


class APIError(ModuleException):
    """The platform answered with a non-2xx status.

    Args:
        status_code: the HTTP status.
        message: the server's error message (scrubbed, at most 500 characters).
        method: the HTTP method; when given, ``description`` ends with ``(METHOD route)``.
        route: the request path (without host or query).
        request_id: the server's request id header, when it sent one.

    Attributes:
        method: the HTTP method.
        route: the request path (without host or query).
        request_id: the server's request id header, when it sent one.
        message: the server's error message (scrubbed, at most 500 characters).
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        method: str = "",
        route: str = "",
        request_id: Optional[str] = None,
    ):
        where = f" ({method} {route})" if method else ""
        super().__init__(status_code, f"{message}{where}")
        self.message = message
        self.method = method
        self.route = route
        self.request_id = request_id

    @property
    def retryable(self) -> bool:
        """``True`` for 408, 425, 429 and 5xx (the platform may accept it later); else ``False``."""
        status = self.status_code or 0
        return status in _RETRY_LATER_STATUSES or status >= 500


class AuthenticationError(APIError):
    """401: the API key is missing or invalid (check XPANDER_API_KEY)."""


class PermissionDeniedError(APIError):
    """403: the API key may not access this resource (the platform's answer to a bad key)."""


class NotFoundError(APIError):
    """404: the agent, task or route does not exist."""


class ConflictError(APIError):
    """409: the request conflicts with the resource's current state."""


class RateLimitError(APIError):
    """429: too many requests. ``retry_after`` is the server's wait hint in seconds, if any.

    Args:
        *args: passed to :class:`APIError` (``status_code``, ``message``).
        retry_after: the server's ``Retry-After`` in seconds, or ``None``.
        **kwargs: passed to :class:`APIError` (``method``, ``route``, ``request_id``).
    """

    def __init__(self, *args: Any, retry_after: Optional[float] = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the platform failed."""


class ResponseDecodeError(ModuleException):
    """A 2xx answer that is not JSON, or whose JSON does not fit the expected model.

    Args:
        model: the name of the model being decoded (e.g. ``"Task"``).
        errors: JSON-path style messages; the first five are shown in the description.
        status_code: the HTTP status of the answer, when there was one.

    Attributes:
        model: the name of the model being decoded (e.g. ``"Task"``).
        errors: JSON-path style messages, e.g. ``"invalid value for type, expected str @ $.id"``.
    """

    def __init__(self, model: str, errors: Sequence[str], *, status_code: Optional[int] = None):
        shown = "; ".join(errors[:5]) + (f"; ... ({len(errors) - 5} more)" if len(errors) > 5 else "")
        super().__init__(status_code, f"could not decode {model}: {shown}")
        self.model = model
        self.errors = list(errors)


_RETRY_LATER_STATUSES = frozenset({408, 425, 429})

_STATUS_ERRORS: Dict[int, Type[APIError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitError,
}


def error_class_for_status(status: int) -> Type[APIError]:
    """The :class:`APIError` subclass for an HTTP status (hvac's ``from_status``).

    Args:
        status: an HTTP status code.

    Returns:
        The class for 401, 403, 404, 409 and 429, :class:`ServerError` for 5xx, else
        :class:`APIError` itself.
    """
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status]
    if status >= 500:
        return ServerError
    return APIError
