"""Configuration: credentials, where the platform is, timeouts, retries and caches.

A :class:`Configuration` reads the environment when it is *built* (never at import),
and is frozen afterwards, so it can be shared between threads and used as a key.

Environment variables (the same names and rules as the official SDK):

============================  ==========================================================
``XPANDER_API_KEY``           the API key, sent as ``x-api-key``
``XPANDER_ORGANIZATION_ID``   organization id (needed for controller URLs)
``XPANDER_BASE_URL``          API base URL; ``https://`` is added when no scheme is given
``IS_STG``                    exactly ``"true"`` selects the staging host
``XPANDER_AGENT_ID``          default agent for calls that take an agent
============================  ==========================================================
"""

from __future__ import annotations

import math
import os
from typing import Callable, Dict, Mapping, Optional, Tuple, Union
from urllib.parse import urlsplit

import attrs

from ._redact import Secret, redact_url, to_secret, url_repr
from ._retry import RetryPolicy
from .errors import ConfigurationError

ENV_API_KEY = "XPANDER_API_KEY"
ENV_ORGANIZATION_ID = "XPANDER_ORGANIZATION_ID"
ENV_BASE_URL = "XPANDER_BASE_URL"
ENV_IS_STG = "IS_STG"
ENV_AGENT_ID = "XPANDER_AGENT_ID"
ENV_IS_CLOUD = "IS_XPANDER_CLOUD"

DEFAULT_HOST = "inbound.xpander.ai"
STAGING_HOST = "inbound.stg.xpander.ai"


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name)
    return value if value else None


def is_cloud() -> bool:
    """``True`` when running on the xpander cloud (``IS_XPANDER_CLOUD`` is exactly ``"true"``).

    Returns:
        Whether the environment says this process runs on the xpander cloud.
    """
    return os.environ.get(ENV_IS_CLOUD) == "true"


def state_dir() -> str:
    """Where xpander-sync keeps files across runs: ``$XDG_STATE_HOME/xpander-sync``
    (``~/.local/state/xpander-sync`` by default): the CLI's outbox, the worker's journal.

    Returns:
        The folder path (not created here).
    """
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "xpander-sync")


def default_base_url() -> str:
    """``XPANDER_BASE_URL``, else the production (or, with ``IS_STG=true``, staging) host.

    Returns:
        The base URL, normalised by :func:`normalize_base_url`.

    Raises:
        ConfigurationError: ``XPANDER_BASE_URL`` has no host.
    """
    value = _env(ENV_BASE_URL)
    if value is None:
        value = STAGING_HOST if os.environ.get(ENV_IS_STG) == "true" else DEFAULT_HOST
    return normalize_base_url(value)


def normalize_base_url(value: str) -> str:
    """Add ``https://`` when ``value`` has no scheme, and drop trailing slashes.

    The official SDK only adds the scheme to the environment/default value; an explicit
    ``base_url="host"`` then fails on every request. We normalise both (documented).

    Args:
        value: a base URL, with or without a scheme.

    Returns:
        The URL with a scheme and without trailing slashes.

    Raises:
        ConfigurationError: the URL has no host.
    """
    value = value.strip()
    if not value.startswith(("http://", "https://")):
        value = "https://" + value
    value = value.rstrip("/")
    parts = urlsplit(value)
    if not parts.hostname:
        raise ConfigurationError(
            "base_url has no host: pass base_url='https://host' or set XPANDER_BASE_URL"
        )
    return value


def needs_organization_segment(base_url: str) -> bool:
    """Whether REST paths go under ``/{organization_id}`` (the agent-controller rule).

    True when the host name contains ``agent-controller``, the port is 9016, or the first
    path segment is ``agent-controller``.

    Args:
        base_url: a normalised base URL.

    Returns:
        Whether ``/{organization_id}`` goes between the base URL and REST paths.
    """
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    first_segment = parts.path.strip("/").split("/", 1)[0]
    return "agent-controller" in host or port == 9016 or first_segment == "agent-controller"


def _base_url_converter(value: Optional[str]) -> str:
    if value is None:
        return default_base_url()
    if not isinstance(value, str):
        raise ConfigurationError(f"base_url must be a string such as 'https://host', got {type(value).__name__}")
    if not value.strip():
        return default_base_url()
    if any(ord(c) < 33 or ord(c) == 127 for c in value.strip()):
        raise ConfigurationError("base_url must not contain spaces or control characters")
    return normalize_base_url(value)


def _api_key_converter(value: Union[str, Secret, None]) -> Optional[Secret]:
    """The key as a :class:`Secret`, refused (by a message that never shows it) when it cannot be a header."""
    if value is not None and not isinstance(value, (str, Secret)):
        raise ConfigurationError(f"api_key must be a string, got {type(value).__name__}")
    secret = to_secret(value)
    if secret is None:
        return None
    raw = secret.reveal()
    if raw != raw.strip() or any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise ConfigurationError(
            f"api_key has whitespace or control characters (often a trailing newline from a file or a "
            f"secret): strip it before passing it or setting {ENV_API_KEY}"
        )
    try:
        raw.encode("latin-1")
    except UnicodeEncodeError:
        raise ConfigurationError(f"api_key has characters an HTTP header cannot carry: check {ENV_API_KEY}") from None
    return secret


def _optional_text(name: str) -> Callable[[object, attrs.Attribute, object], None]:
    def check(instance: object, attribute: attrs.Attribute, value: object) -> None:
        if value is None:
            return
        if not isinstance(value, str) or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ConfigurationError(f"{name} must be a string without control characters")

    return check


def _proxies_converter(value: Optional[Mapping[str, str]]) -> Optional[Tuple[Tuple[str, str], ...]]:
    if not value:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigurationError("proxies must be a dict of scheme -> proxy URL strings, e.g. {'https': 'http://p:3128'}")
    return tuple(sorted(value.items()))


def _proxies_repr(value: Optional[Tuple[Tuple[str, str], ...]]) -> str:
    return repr(tuple((scheme, redact_url(url)) for scheme, url in value) if value else value)


def _seconds(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not _seconds(value) or value <= 0:
        raise ConfigurationError(f"{attribute.name} must be a positive, finite number of seconds")


def _non_negative(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not _seconds(value) or value < 0:
        raise ConfigurationError(f"{attribute.name} must be a finite number of seconds >= 0 (0 disables)")


def _byte_count(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"{attribute.name} must be a positive integer number of bytes")


def _retry_policy(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, RetryPolicy):
        raise ConfigurationError("retry must be an xpander_sync.RetryPolicy, e.g. RetryPolicy(max_retries=2)")


def _verify(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if isinstance(value, bool):
        return
    if not isinstance(value, str) or not os.path.exists(value):
        raise ConfigurationError("verify must be True, False, or the path of an existing CA bundle file or folder")


def _pool_size(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError("pool_maxsize must be an integer >= 1")


def _path_converter(value: Optional[os.PathLike[str] | str]) -> Optional[str]:
    if value is None or value == "":
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigurationError(f"outbox must be a file path (str or os.PathLike), got {type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str) or "\x00" in path:
        raise ConfigurationError("outbox must be a text file path without NUL characters")
    return path


def _background_needs_outbox(instance: Configuration, attribute: attrs.Attribute, value: bool) -> None:
    if value and not instance.outbox:
        raise ConfigurationError(
            "background_reports needs outbox=PATH: reports that cannot be delivered must be kept somewhere"
        )


@attrs.frozen(kw_only=True)
class Configuration:
    """Settings shared by every client object.

    Args:
        api_key: the xpander API key (default: ``XPANDER_API_KEY``). Kept as a
            :class:`~xpander_sync.Secret`; never shown in ``repr``.
        organization_id: default ``XPANDER_ORGANIZATION_ID``.
        base_url: default ``XPANDER_BASE_URL`` or the xpander host; normalised.
        agent_id: default agent (default ``XPANDER_AGENT_ID``).
        connect_timeout: seconds to establish a connection (default 10).
        read_timeout: seconds of silence allowed between bytes of a response (default 60).
            The official SDK waits up to 20-25 minutes on every call.
        retry: the :class:`RetryPolicy`.
        agent_cache_ttl: seconds a fetched agent is reused by ``get_args`` (0 disables).
        metadata_cache_ttl: seconds org LLM headers and DB strings are reused (0 disables).
        pool_maxsize: connections kept per host; at least the async twins' thread count.
        outbox: a SQLite file where reports that cannot be delivered are kept for
            :meth:`Backend.flush_outbox` (off by default for the library, on for the CLI).
        background_reports: deliver reports from a background thread (needs ``outbox``).
        agent_max_staleness: seconds a previously fetched agent may still be used by
            ``get_args`` when the platform is unreachable or failing (0 disables).
        mcp_auth_timeout: seconds ``get_args`` waits for a user to finish an MCP OAuth login
            (the official SDK waits 600 s).
        mcp_auth_poll_interval: seconds between polls of the MCP token route while waiting.
        verify: TLS verification: ``True``, ``False`` or a CA bundle path.
        call_deadline: seconds one call may take in all: its attempts, the waits between
            them, and reading the answer (default 300). The read timeout bounds the silence
            between two bytes; this bounds a server that trickles them.
        max_response_bytes: the largest answer read, decompressed (default 64 MiB); a larger
            one is a :class:`~xpander_sync.ResponseDecodeError` (a gzip bomb stops here).
        proxies: a requests-style proxies mapping.

    Raises:
        ConfigurationError: any value that could not work, checked here rather than on the
            first request: a timeout, TTL or pool size out of range or not finite, a base URL
            without a host, an API key with whitespace or control characters (the message never
            shows it), a ``retry`` that is not a :class:`RetryPolicy`, a ``verify`` path that
            does not exist, malformed ``proxies``, or ``background_reports`` without ``outbox``.
    """

    api_key: Optional[Secret] = attrs.field(
        factory=lambda: to_secret(_env(ENV_API_KEY)), converter=_api_key_converter
    )
    organization_id: Optional[str] = attrs.field(
        factory=lambda: _env(ENV_ORGANIZATION_ID), validator=_optional_text("organization_id")
    )
    base_url: str = attrs.field(default=None, converter=_base_url_converter, repr=url_repr)
    agent_id: Optional[str] = attrs.field(factory=lambda: _env(ENV_AGENT_ID), validator=_optional_text("agent_id"))
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    read_timeout: float = attrs.field(default=60.0, validator=_positive)
    retry: RetryPolicy = attrs.field(factory=RetryPolicy, validator=_retry_policy)
    agent_cache_ttl: float = attrs.field(default=5.0, validator=_non_negative)
    metadata_cache_ttl: float = attrs.field(default=60.0, validator=_non_negative)
    pool_maxsize: int = attrs.field(default=32, validator=_pool_size)
    outbox: Optional[str] = attrs.field(default=None, converter=_path_converter)
    background_reports: bool = attrs.field(default=False, validator=_background_needs_outbox)
    agent_max_staleness: float = attrs.field(default=3600.0, validator=_non_negative)
    mcp_auth_timeout: float = attrs.field(default=300.0, validator=_positive)
    mcp_auth_poll_interval: float = attrs.field(default=1.0, validator=_positive)
    verify: Union[bool, str] = attrs.field(default=True, validator=_verify)
    call_deadline: float = attrs.field(default=300.0, validator=_positive)
    max_response_bytes: int = attrs.field(default=64 * 1024 * 1024, validator=_byte_count)
    proxies: Optional[Tuple[Tuple[str, str], ...]] = attrs.field(
        default=None, converter=_proxies_converter, repr=_proxies_repr
    )

    @classmethod
    def from_env(cls, **overrides: object) -> Configuration:
        """Build from the environment; keyword arguments win over it.

        Args:
            **overrides: any :class:`Configuration` argument; each replaces the environment's value.

        Returns:
            The new :class:`Configuration`.

        Raises:
            ConfigurationError: a value is out of range (as for the constructor).
        """
        return cls(**overrides)  # type: ignore[arg-type]

    @property
    def timeout(self) -> Tuple[float, float]:
        """``(connect, read)`` as requests expects it."""
        return (self.connect_timeout, self.read_timeout)

    @property
    def proxies_dict(self) -> Optional[Dict[str, str]]:
        """The proxies as a dict, or ``None``."""
        return dict(self.proxies) if self.proxies else None

    @property
    def full_url(self) -> str:
        """The URL REST paths are appended to (with ``/{organization_id}`` where required).

        Raises:
            ConfigurationError: the base URL needs an organization id and none is set.
        """
        if needs_organization_segment(self.base_url):
            if not self.organization_id:
                raise ConfigurationError(
                    "organization_id missing: this base_url needs it; pass organization_id= "
                    f"or set {ENV_ORGANIZATION_ID}"
                )
            return f"{self.base_url}/{self.organization_id}"
        return self.base_url

    @property
    def events_root(self) -> str:
        """The worker/events root: ``{controller}/{organization_id}``.

        The inbound hosts map to their agent-controller twins; a local base URL on port
        8085 maps to ``http://localhost:9016``; any other base URL is used as it is.

        Raises:
            ConfigurationError: no organization id is set.
        """
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        if host == DEFAULT_HOST:
            base = "https://agent-controller.xpander.ai"
        elif host == STAGING_HOST:
            base = "https://agent-controller.stg.xpander.ai"
        elif host in ("localhost", "127.0.0.1", "::1") and parts.port == 8085:
            base = "http://localhost:9016"
        else:
            base = self.base_url
        if not self.organization_id:
            raise ConfigurationError(
                f"organization_id missing: the worker needs it; pass organization_id= or set {ENV_ORGANIZATION_ID}"
            )
        return f"{base}/{self.organization_id}"

    def require_api_key(self) -> str:
        """The API key's value.

        Returns:
            The revealed key, for the ``x-api-key`` header.

        Raises:
            ConfigurationError: no API key was configured.
        """
        if not self.api_key:
            raise ConfigurationError(f"api_key missing: pass Configuration(api_key=...) or set {ENV_API_KEY}")
        return self.api_key.reveal()
