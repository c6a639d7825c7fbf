"""The one place that knows what a secret is.

Secrets (the xpander API key, LLM keys, OAuth tokens) are wrapped in :class:`Secret`
as soon as they enter the library, so that ``repr``/``str``/logging of any object that
holds one shows ``***``. Helpers here mask secrets in headers, mappings, URLs and free
text before anything is logged or put into an exception message.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Optional, Union
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

#: Header names whose values are never logged or shown (compared lower-case).
SENSITIVE_HEADERS = frozenset(
    {
        "x-api-key",
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-oidc-token",
        "x-xpander-api-key",
    }
)

#: Mapping keys whose values are masked in logged bodies.
_SENSITIVE_KEY = re.compile(r"(key|secret|token|password|authorization|credential)", re.IGNORECASE)


class Secret:
    """A string that does not show itself.

    ``repr(Secret("sk-..."))`` is ``Secret('***')`` and ``str()`` is ``***``; call
    :meth:`reveal` at the single place where the real value must be sent.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError(f"Secret expects a str, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """Return the real value. Only the transport and framework adapters call this."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("xpander_sync.Secret", self._value))

    def __reduce__(self) -> Any:  # pragma: no cover - pickling keeps the value, on purpose
        return (Secret, (self._value,))


class MaskedStr(str):
    """A real ``str`` (it *is* the value: HTTP clients send it as is) whose ``repr`` is ``'***'``.

    Framework model objects and MCP parameter objects keep the keys they are given, and
    print them through their ``repr`` (dataclasses, pydantic models, dicts and lists all
    show their values with ``repr``), so ``print(f"{args}")`` would print the key. Handing
    them a :class:`MaskedStr` instead of a plain ``str`` masks every such print while
    ``str(key)``, ``f"Bearer {key}"``, ``key.encode()`` and JSON encoding still give the real
    value, which is what an HTTP client puts on the wire. Copies (``copy``, ``deepcopy``,
    pickling) keep the class; derived strings (``key.strip()``, ``"Bearer " + key``) are
    plain ``str`` again: wrap them with :func:`masked` when they are stored.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"'{MASK}'"


def masked(value: Any) -> Any:
    """``value`` as a :class:`MaskedStr` when it is a non-empty ``str`` (a :class:`Secret` is revealed first).

    Anything else (``None``, ``""``, non-strings) is returned unchanged.
    """
    if isinstance(value, Secret):
        value = value.reveal()
    if isinstance(value, str) and value and not isinstance(value, MaskedStr):
        return MaskedStr(value)
    return value


def mask_header_values(headers: Optional[Mapping[str, Any]]) -> dict:
    """A copy of ``headers`` whose string values are :class:`MaskedStr`: sent as they are, shown as ``'***'``.

    Every value, not only :data:`SENSITIVE_HEADERS`: headers an agent's author configures
    (MCP servers, LLM extra headers) carry secrets under any name. Unlike
    :func:`redact_headers` the values still work: this is for headers that are sent.
    """
    if not headers:
        return {}
    return {k: masked(v) for k, v in headers.items()}


def to_secret(value: Union[str, Secret, None]) -> Optional[Secret]:
    """Attrs converter: ``None`` and ``""`` stay ``None``, strings become :class:`Secret`."""
    if value is None or value == "":
        return None
    if isinstance(value, Secret):
        return value if value else None
    return Secret(value)


def reveal(value: Union[str, Secret, None]) -> Optional[str]:
    """The plain value of a :class:`Secret`, a string, or ``None``."""
    if isinstance(value, Secret):
        return value.reveal()
    return value


def redact_headers(headers: Optional[Mapping[str, Any]]) -> dict:
    """A copy of ``headers`` with the values of :data:`SENSITIVE_HEADERS` masked."""
    if not headers:
        return {}
    return {k: (MASK if k.lower() in SENSITIVE_HEADERS else v) for k, v in headers.items()}


def redact_mapping(value: Any, _depth: int = 0) -> Any:
    """Deep copy of a JSON-like value with secret-looking keys masked."""
    if _depth > 20:
        return MASK
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if isinstance(k, str) and _SENSITIVE_KEY.search(k) and v not in (None, "", {}, []):
                out[k] = MASK
            else:
                out[k] = redact_mapping(v, _depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [redact_mapping(v, _depth + 1) for v in value]
    if isinstance(value, Secret):
        return MASK
    return value


_SECRET_CONTAINERS = frozenset({"headers", "env_vars", "llm_extra_headers", "user_tokens"})


def secret_values(value: Any, _depth: int = 0, _all: bool = False) -> Iterable[str]:
    """Every secret string inside a JSON-like value, to scrub from free text.

    The values under secret-looking keys (``api_key``, ``token``, ``client_secret``...), every
    string under a header, env-var or token map, and every :class:`Secret`.

    Args:
        value: a decoded JSON value (a task's or an agent's JSON).

    Returns:
        The secret strings found (possibly repeated).
    """
    if _depth > 20:
        return
    if isinstance(value, Secret):
        yield value.reveal()
    elif isinstance(value, str):
        if _all:
            yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            name = str(key)
            inner = _all or name in _SECRET_CONTAINERS or bool(_SENSITIVE_KEY.search(name))
            yield from secret_values(item, _depth + 1, inner)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from secret_values(item, _depth + 1, _all)


def masked_values(value: Any) -> str:
    """``repr`` for a mapping of secrets (headers, env vars): its keys, every value ``***``.

    An attrs ``repr=`` hook: a model shows which headers an MCP server sends, not their values.
    """
    if isinstance(value, Mapping):
        return repr({k: MASK for k in value})
    return repr(value) if value in (None, "") else repr(MASK)


def masked_repr(value: Any) -> str:
    """``repr`` for one secret value (a token): ``'***'`` when set, ``None``/``''`` as they are."""
    return repr(value) if value in (None, "") else repr(MASK)


def redacted_repr(value: Any) -> str:
    """``repr`` of a JSON value with secret-looking keys masked (see :func:`redact_mapping`)."""
    return repr(redact_mapping(value))


def url_repr(value: Any) -> str:
    """``repr`` of a URL with its userinfo password and query values masked (see :func:`redact_url`)."""
    return repr(redact_url(value)) if isinstance(value, str) else repr(value)


def redact_url(url: str) -> str:
    """Mask userinfo passwords and every query value of ``url``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = parts.query
    if query:
        query = urlencode([(k, MASK) for k, _ in parse_qsl(query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _forms(raw: str) -> Iterable[str]:
    """The ways a secret shows up in text: as is, escaped (``repr``, JSON, URL-quoted), and its
    first half (a message cut short, or a header value split by a client's error)."""
    import json as _json
    from urllib.parse import quote

    yield raw
    yield repr(raw)[1:-1]
    yield _json.dumps(raw)[1:-1]
    yield quote(raw, safe="")
    stripped = raw.strip()
    if stripped and stripped != raw:
        yield stripped
    if len(stripped) >= 16:
        yield stripped[: len(stripped) // 2]


def scrub(text: str, secrets: Iterable[Union[str, Secret, None]]) -> str:
    """Replace every occurrence of any of ``secrets`` in ``text`` with ``***``.

    Used on server messages and client errors before they become part of an exception or a
    log line: a server (or a proxy) that echoes the request back, or an HTTP client that
    quotes a refused header value (escaped, as ``'key\\n'``), must not put a key into our
    errors. Escaped forms and a secret's first half are masked too.
    """
    for s in secrets:
        raw = reveal(s)
        if not raw or len(raw) < 4:
            continue
        for form in sorted(set(_forms(raw)), key=len, reverse=True):
            if len(form) >= 4 and form in text:
                text = text.replace(form, MASK)
    return text
