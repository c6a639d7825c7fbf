"""The adapter registry: which framework adapter builds an agent's constructor arguments.

A built-in adapter is a subclass of :class:`~xpander_sync.frameworks._adapter.Adapter`
in its own module, listed on one line of :data:`ADAPTERS`; everything per framework (the
summary's constructor names, the CLI's framework list, the docs table, the tests) reads
that table. A *builder* is any callable
``builder(agent, task, override, tools, auth_events_callback, context) -> dict``: an
adapter's is its :meth:`~xpander_sync.frameworks._adapter.Adapter.build`, and third
parties may register a plain function. :func:`get_args_for` (what
``Backend.get_args`` calls; blocking) picks the builder and returns its dict;
:func:`aget_args_for` is its async twin, also importable under the official SDK's name
:func:`dispatch_get_args` (``args = await dispatch_get_args(agent=agent, task=task)``).

**Which adapter.** An explicit ``framework=`` argument wins; otherwise the agent's
``framework`` field; an absent or empty field means ``agno``. Built in: ``agno``,
``open-ai-agents``, ``langchain``, ``strands-agents``, ``google-adk`` and ``pydantic-ai``
(a name of our own). A framework the platform knows but that has no adapter here
(``open-claw``), or an unknown name, raises
:class:`~xpander_sync.errors.UnsupportedFrameworkError` listing the supported ones.
The official SDK instead overwrites ``agent.framework`` with ``agno`` for every agent
(mutating the caller's object) and builds agno arguments for an agent configured for,
say, LangChain: a silent surprise. Here the caller opts in: pass ``framework="agno"`` to
build agno arguments for any agent. The caller's :class:`~xpander_sync.Agent` is never
modified.

**Lazy loading.** Built-in adapters are registered as ``"module:Class"`` strings and
imported on first use; no adapter module imports its framework at import time, so
``import xpander_sync.frameworks`` imports no framework.
Third-party adapters (an :class:`Adapter` subclass or a builder function) can be
registered with :func:`register_framework`, or through the
``xpander_sync.frameworks`` entry-point group (name = framework, value = builder); the
group is scanned once, only when a name is not registered yet or when the supported list
is asked for. An entry point never replaces a built-in or explicitly registered adapter.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Type, Union

from .._async import caller_loop
from ..config import Configuration
from ..errors import InvalidInputError, UnsupportedFrameworkError
from ..models.common import Framework
from ._adapter import Adapter
from ._runs import SUPPORTED_TYPES, RunSummary, exception_summary

if TYPE_CHECKING:  # pragma: no cover
    from ..models.agent import Agent
    from ..models.task import Task
    from ._context import BuildContext

logger = logging.getLogger(__name__)

#: ``builder(agent, task, override, tools, auth_events_callback, context) -> dict``
Builder = Callable[..., Dict[str, Any]]

#: The entry-point group third-party adapters register under.
ENTRY_POINT_GROUP = "xpander_sync.frameworks"
#: The framework used when the agent names none.
DEFAULT_FRAMEWORK = "agno"

#: The built-in adapters, one line per framework: name -> ``"module:Adapter subclass"``.
ADAPTERS: Dict[str, str] = {
    "agno": "xpander_sync.frameworks.agno:AgnoAdapter",
    "open-ai-agents": "xpander_sync.frameworks.openai_agents:OpenAIAgentsAdapter",
    "langchain": "xpander_sync.frameworks.langchain:LangChainAdapter",
    "strands-agents": "xpander_sync.frameworks.strands:StrandsAdapter",
    "google-adk": "xpander_sync.frameworks.google_adk:GoogleADKAdapter",
    "pydantic-ai": "xpander_sync.frameworks.pydantic_ai:PydanticAIAdapter",
}
_BUILTIN = ADAPTERS

#: What the registry holds: a ``"module:attr"`` path, an Adapter subclass, or a builder.
Entry = Union[str, Builder, Type[Adapter]]

_lock = threading.Lock()
_registry: Dict[str, Entry] = dict(_BUILTIN)
_entry_points: Dict[str, Any] = {}
_entry_points_scanned = False

__all__ = [
    "ADAPTERS",
    "DEFAULT_FRAMEWORK",
    "ENTRY_POINT_GROUP",
    "Adapter",
    "aget_args_for",
    "builtin_adapters",
    "dispatch_get_args",
    "get_adapter",
    "get_args_for",
    "get_builder",
    "register_framework",
    "require_framework",
    "summarize_run",
    "supported_frameworks",
    "unregister_framework",
]


def _normalize(name: Any) -> str:
    return str(getattr(name, "value", name) or "").strip().lower()


def register_framework(name: str, builder: Entry) -> Entry:
    """Register (or replace) the adapter for a framework.

    Args:
        name: the framework name as the platform writes it (``"langchain"``); compared
            case-insensitively.
        builder: an :class:`Adapter` subclass, a builder function, or a
            ``"package.module:attr"`` string naming either, imported on first use.

    Returns:
        ``builder`` unchanged.

    Raises:
        InvalidInputError: an empty name, or a builder that is neither callable nor a
            ``"module:function"`` string.
    """
    key = _normalize(name)
    if not key:
        raise InvalidInputError("framework name must be a non-empty string")
    if isinstance(builder, str):
        module, _, attr = builder.partition(":")
        if not module or not attr:
            raise InvalidInputError("builder must be a callable or a 'package.module:function' string")
    elif not callable(builder):
        raise InvalidInputError("builder must be a callable or a 'package.module:function' string")
    with _lock:
        _registry[key] = builder
    logger.debug("framework adapter registered for %r", key)
    return builder


def unregister_framework(name: str) -> None:
    """Remove an adapter (a built-in one goes back to its default). Meant for tests.

    Args:
        name: the framework name (case-insensitive); an unknown name is ignored.
    """
    key = _normalize(name)
    with _lock:
        if key in _BUILTIN:
            _registry[key] = _BUILTIN[key]
        else:
            _registry.pop(key, None)


def supported_frameworks() -> List[str]:
    """The framework names with an adapter (built-in, registered or from entry points), sorted.

    Returns:
        The lower-case framework names, sorted.
    """
    _scan_entry_points()
    with _lock:
        return sorted(set(_registry) | set(_entry_points))


def get_builder(name: str) -> Builder:
    """The builder for a framework, importing it on first use.

    Args:
        name: the framework name (case-insensitive).

    Returns:
        The builder function (an adapter's :meth:`Adapter.build`).

    Raises:
        UnsupportedFrameworkError: no adapter for ``name`` (the message lists the supported
            ones), or its entry point or ``"module:attr"`` target is not callable.
    """
    entry = _entry_for(name)
    return entry.build if _is_adapter(entry) else entry  # type: ignore[union-attr,return-value]


def get_adapter(name: str) -> Type[Adapter]:
    """The :class:`Adapter` subclass registered for a framework, importing it on first use.

    Args:
        name: the framework name (case-insensitive).

    Returns:
        The adapter class.

    Raises:
        UnsupportedFrameworkError: no adapter for ``name``, or it was registered as a plain
            builder function (which has no class attributes).
    """
    entry = _entry_for(name)
    if not _is_adapter(entry):
        raise UnsupportedFrameworkError(f"the {_normalize(name)!r} adapter is a builder function, not an Adapter")
    return entry  # type: ignore[return-value]


def require_framework(name: str) -> None:
    """Check that a framework has an adapter (registered, built in, or an entry point).

    Args:
        name: the framework name (case-insensitive).

    Raises:
        UnsupportedFrameworkError: no adapter for ``name`` (the message lists the supported ones).
    """
    _entry_for(name)


def builtin_adapters() -> List[Type[Adapter]]:
    """The built-in adapter classes, in :data:`ADAPTERS` order (imports their modules, no framework).

    Returns:
        One :class:`Adapter` subclass per line of :data:`ADAPTERS`.
    """
    return [_import_path(path) for path in ADAPTERS.values()]  # type: ignore[misc]


def summarize_run(run: Any, secrets: Any = ()) -> RunSummary:
    """The :class:`RunSummary` of a framework's run result (or of a raised exception).

    Each built-in adapter class is asked (:meth:`Adapter.summarize_run`); a result is
    recognised by its class's module, so no framework is imported here.

    Args:
        run: the framework's run result, or an exception the run raised.
        secrets: values to scrub from an exception's text.

    Returns:
        The run's summary (its report fields: :meth:`RunSummary.fields`).

    Raises:
        InvalidInputError: ``run`` is no supported framework's run result (the message names
            the supported types).
    """
    if isinstance(run, BaseException):
        return exception_summary(run, secrets)
    for adapter in builtin_adapters():
        summary = adapter.summarize_run(run)
        if summary is not None:
            return summary
    raise InvalidInputError(
        f"run is a {type(run).__module__}.{type(run).__name__}, not a run result of a supported framework; "
        f"supported: {SUPPORTED_TYPES}"
    )


def _entry_for(name: str) -> Union[Builder, Type[Adapter]]:
    key = _normalize(name)
    with _lock:
        entry = _registry.get(key)
    if entry is None:
        _scan_entry_points()
        with _lock:
            entry = _registry.get(key)
            point = _entry_points.get(key) if entry is None else None
        if point is not None:
            entry = point.load()
            if not callable(entry):
                raise UnsupportedFrameworkError(
                    f"the {ENTRY_POINT_GROUP!r} entry point {key!r} is not a callable builder"
                )
            with _lock:
                entry = _registry.setdefault(key, entry)
    if entry is None:
        raise UnsupportedFrameworkError(_unsupported_message(key))
    if isinstance(entry, str):
        builder = _import_path(entry)
        with _lock:
            # Replace the string by the function unless someone re-registered meanwhile.
            if _registry.get(key) == entry:
                _registry[key] = builder
        return builder
    return entry


def get_args_for(
    agent: Agent,
    task: Optional[Task] = None,
    override: Optional[Dict[str, Any]] = None,
    tools: Optional[List[Any]] = None,
    auth_events_callback: Optional[Callable[..., Any]] = None,
    *,
    context: Optional[BuildContext] = None,
    framework: Optional[str] = None,
    configuration: Optional[Configuration] = None,
) -> Dict[str, Any]:
    """Build the constructor arguments of an already loaded ``agent`` for its framework (blocking).

    The blocking form of :func:`dispatch_get_args` / :func:`aget_args_for`.

    Args:
        agent: the loaded agent (not modified).
        task: the task being run, or ``None``.
        override: the ``override`` vocabulary of docs/get_args.md (model, generation
            parameters, constructor keys).
        tools: extra tools appended to the built ones.
        auth_events_callback: the caller's MCP auth-event callback, ``callback(agent, task, event)``.
        context: the platform access of this call; default: the client ``agent`` was
            loaded with, else a :class:`~xpander_sync.Configuration` read from the
            environment (``XPANDER_API_KEY``, ``XPANDER_BASE_URL``, ...).
        framework: build for this framework instead of ``agent.framework``.
        configuration: the platform settings to use when no ``context`` is given (wins
            over the agent's client).

    Returns:
        The builder's dict.

    Raises:
        UnsupportedFrameworkError: no adapter for the framework.
        FrameworkNotInstalledError: the framework (or a provider package) is missing.
        InvalidInputError: ``agent`` is not an :class:`~xpander_sync.Agent`, or a bad ``override``.
        TypeError: the adapter returned something other than a dict.
    """
    from ..models.agent import Agent as AgentModel

    if not isinstance(agent, AgentModel):
        raise InvalidInputError("agent must be an xpander_sync.Agent (load it with Agents().get or Backend)")
    if context is None:
        context = _context_for(agent, auth_events_callback, configuration)
    name = _normalize(framework) if framework is not None and _normalize(framework) else None
    if name is None:
        name = _normalize(agent.framework) or DEFAULT_FRAMEWORK
    elif name != _normalize(agent.framework):
        logger.debug("building agent %s for %r (configured: %r)", agent.id, name, _normalize(agent.framework))
    builder = get_builder(name)
    args = builder(agent, task, override, tools, auth_events_callback, context)
    if not isinstance(args, dict):
        raise TypeError(f"the {name!r} adapter returned {type(args).__name__}, not a dict")
    return args


async def aget_args_for(
    agent: Agent,
    task: Optional[Task] = None,
    override: Optional[Dict[str, Any]] = None,
    tools: Optional[List[Any]] = None,
    auth_events_callback: Optional[Callable[..., Any]] = None,
    *,
    context: Optional[BuildContext] = None,
    framework: Optional[str] = None,
    configuration: Optional[Configuration] = None,
) -> Dict[str, Any]:
    """Async twin of :func:`get_args_for`: runs it in a worker thread (``asyncio.to_thread``).

    Also importable as :func:`dispatch_get_args`, the official SDK's name:
    ``args = await dispatch_get_args(agent=agent, task=task)``. Coroutine auth callbacks
    run on the caller's loop, and agno session storage is built with its async database
    class, as for ``Backend.aget_args``.

    Args:
        agent: the loaded agent (not modified).
        task: the task being run, or ``None``.
        override: the ``override`` vocabulary of docs/get_args.md.
        tools: extra tools appended to the built ones.
        auth_events_callback: the caller's MCP auth-event callback (sync or async).
        context: the platform access of this call (default: as :func:`get_args_for`).
        framework: build for this framework instead of ``agent.framework``.
        configuration: the platform settings to use when no ``context`` is given.

    Returns:
        The builder's dict.
    """
    import asyncio

    token = caller_loop.set(asyncio.get_running_loop())
    try:
        if context is None:
            context = _context_for(agent, auth_events_callback, configuration)
        return await asyncio.to_thread(
            get_args_for, agent, task, override, tools, auth_events_callback,
            context=context, framework=framework,
        )
    finally:
        caller_loop.reset(token)


#: The official SDK's name for :func:`aget_args_for` (awaited: ``await dispatch_get_args(agent=..., task=...)``).
dispatch_get_args = aget_args_for


def _context_for(agent: Any, auth_events_callback: Any, configuration: Optional[Configuration]) -> BuildContext:
    """The platform access for an agent: ``configuration``, else the agent's own client, else the environment."""
    from ..transport import shared_transport
    from ._context import BuildContext

    transport = None
    if configuration is None:
        transport = getattr(getattr(agent, "_handle", None), "_transport", None)
    if transport is None:
        transport = shared_transport(configuration if configuration is not None else Configuration())
    return BuildContext(transport, auth_events_callback=auth_events_callback, is_async=caller_loop.get() is not None)


# -- internals -------------------------------------------------------------------------------


def _is_adapter(entry: Any) -> bool:
    return isinstance(entry, type) and issubclass(entry, Adapter)


def _import_path(path: str) -> Union[Builder, Type[Adapter]]:
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    builder = getattr(module, attr)
    if not callable(builder):
        raise UnsupportedFrameworkError(f"{path} is not a callable builder")
    return builder


def _scan_entry_points() -> None:
    global _entry_points_scanned
    if _entry_points_scanned:
        return
    found: Dict[str, Any] = {}
    try:
        from importlib import metadata

        eps: Any = metadata.entry_points()
        if hasattr(eps, "select"):  # Python >= 3.10
            group = eps.select(group=ENTRY_POINT_GROUP)
        else:  # Python 3.9: a dict of group -> entry points
            group = eps.get(ENTRY_POINT_GROUP, ())
        for point in group:
            key = _normalize(point.name)
            if key:
                found.setdefault(key, point)
    except Exception as exc:  # broken metadata must not break get_args
        logger.warning("could not read the %s entry points: %s", ENTRY_POINT_GROUP, type(exc).__name__)
    with _lock:
        for key, point in found.items():
            if key not in _registry:
                _entry_points.setdefault(key, point)
        _entry_points_scanned = True


def _unsupported_message(name: str) -> str:
    supported = ", ".join(supported_frameworks())
    if name in Framework.known():
        return (
            f"framework {name!r} has no adapter in xpander-sync yet; supported: {supported}. "
            f"Pass framework='agno' to build agno arguments for this agent anyway."
        )
    return f"unknown framework {name!r}; supported: {supported}"
