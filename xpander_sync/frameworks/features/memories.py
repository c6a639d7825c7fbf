"""Memories: what an agent remembers about a user and across users, in every framework.

On for an agent when the build has a task whose user has an id, the agent does not lead a
team (a leader neither reads nor writes memories; its members do), and the task's
``additional_context`` holds no ``<memories note=`` block already. Then
:meth:`~xpander_sync.resources.Memories.get` is asked (1.5 s at most; any failure or a slow
answer: the build goes on without memories, logged, and nothing is cached). Its answer is
kept per ``(agent id, user id)`` in the transport's caches for ``agent_cache_ttl`` (like the
agent payload; ``0``: every build asks), so a warm build asks nothing; a write made here
through ``manage_memory`` drops the keys it changes (that user's for a ``user`` memory, every
user's of the agent for an ``agent`` memory), when it is sent and again when it is done, so
the next build reads the platform again. An answer whose ``settings.enabled`` is not true
turns the feature off for that agent (cached too). Otherwise:

* the ``<memories note=...>`` block (a ``USER`` and an ``AGENT`` section, one line
  ``- [id8] (by writer, yyyy-mm-dd) text`` per memory) is **prepended** to the agent's
  additional context (:func:`memories_block`);
* the ``manage_memory`` tool is added, unless the task's output schema has a ``memory_ops``
  property (the answer carries the writes then). It saves, updates or deletes one memory in
  the ``user`` or ``agent`` scope (:func:`~xpander_sync.resources.memories.write_body`), at
  most :data:`MAX_WRITES` writes per task. A save is fire-and-forget: its id is derived
  locally (:func:`~xpander_sync.resources.memories.memory_id_for`) and answered at once,
  the POST runs on a daemon thread, capped at 10 s, a failure logged (and the process waits
  for pending saves, within their cap, at exit). An update or a delete waits up to 3 s for
  the platform's ``{applied, memory_id?, previous?}`` and answers it.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Set, TypeVar

from ...errors import RequestTimeoutError, ResponseDecodeError, XpanderError
from ...models.agent import Agent
from ...resources import Memories
from ...resources.memories import ACTIONS, SCOPES, memory_id_for, write_body
from .._toolspec import FunctionToolSpec, ToolSpec
from ._base import Feature, join_blocks

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: What marks a memories block already in the task's context (no second fetch then).
BLOCK_MARKER = "<memories note="
#: The note of the block.
BLOCK_NOTE = (
    "Facts remembered from earlier tasks, about this user (USER) and from every user of this agent (AGENT). "
    "Use them when relevant; they may be out of date. The id in brackets names a memory."
)
#: The name of the memory tool.
MEMORY_TOOL = "manage_memory"
#: Most memory writes one task may make.
MAX_WRITES = 2
#: Seconds the build waits for the memories.
READ_TIMEOUT = 1.5
#: Seconds a fire-and-forget save may take.
SAVE_TIMEOUT = 10.0
#: Seconds an update or a delete waits for the answer.
WRITE_TIMEOUT = 3.0

MEMORY_SCHEMA: Dict[str, Any] = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "enum": list(ACTIONS),
                   "description": "save a new memory, update one (memory_id and the new text) or delete one"},
        "scope": {"type": "string", "enum": list(SCOPES),
                  "description": "user: about this user only; agent: useful for every user of this agent"},
        "memory": {"type": "string", "description": "The fact to remember, one short sentence (save, update)."},
        "memory_id": {"type": "string", "description": "The id in brackets of the memory to change (update, delete)."},
    },
    "required": ["action", "scope"],
}
MEMORY_DESCRIPTION = (
    "Remember a lasting fact for later tasks, correct one or forget one. Save only what will matter again "
    f"(preferences, stable facts), never secrets. At most {MAX_WRITES} writes per task."
)


def memory_line(row: Dict[str, Any]) -> str:
    """One memory's line in the block (pure).

    Args:
        row: the memory as the platform sends it (``memory_id``, ``memory``, ``writer_agent_name``, ``updated_at``).

    Returns:
        ``- [id8] (by writer, yyyy-mm-dd) text``.
    """
    memory_id = str(row.get("memory_id") or "")[:8]
    writer = str(row.get("writer_agent_name") or row.get("writer_agent_id") or "unknown")
    date = str(row.get("updated_at") or row.get("created_at") or "")[:10]
    origin = f"by {writer}, {date}" if date else f"by {writer}"
    text = " ".join(str(row.get("memory") or "").split())
    return f"- [{memory_id}] ({origin}) {text}"


def memories_block(user_rows: List[Dict[str, Any]], agent_rows: List[Dict[str, Any]]) -> str:
    """The ``<memories note=...>`` block: a ``USER`` and an ``AGENT`` section (pure).

    Args:
        user_rows: the memories about this user.
        agent_rows: the memories of the agent, from every user.

    Returns:
        The block, ``- (none)`` in an empty section.
    """

    def section(title: str, rows: List[Dict[str, Any]]) -> List[str]:
        return [title, *([memory_line(r) for r in rows] or ["- (none)"])]

    lines = [f'<memories note="{BLOCK_NOTE}">']
    lines += section("USER (this user):", user_rows)
    lines += section("AGENT (every user of this agent):", agent_rows)
    lines.append("</memories>")
    return "\n".join(lines)


def rows_of(value: Any) -> List[Dict[str, Any]]:
    """The memory rows of one section of the answer (pure).

    Args:
        value: the section (``answer["user"]`` or ``answer["agent"]``).

    Returns:
        Its JSON objects that have a text ``memory``; anything else dropped.
    """
    if not isinstance(value, list):
        return []
    return [row for row in value if isinstance(row, dict) and isinstance(row.get("memory"), str)]


def found_memories(data: Any) -> Optional[Dict[str, Any]]:
    """The memories of the platform's answer (pure).

    Args:
        data: the decoded answer of the memories read.

    Returns:
        ``{"user": [row], "agent": [row]}``, or ``None`` when ``settings.enabled`` is not true.

    Raises:
        ResponseDecodeError: the answer is not a JSON object (a failure: not cached).
    """
    if not isinstance(data, dict):
        raise ResponseDecodeError("memories", ["expected an object @ $"])
    settings = data.get("settings")
    if not isinstance(settings, dict) or settings.get("enabled") is not True:
        return None
    return {"user": rows_of(data.get("user")), "agent": rows_of(data.get("agent"))}


def forget_memories(caches: Any, agent_id: str, user_id: Optional[str], scope: Any) -> None:
    """Drop the cached memories a write changes: that user's (``user`` scope), else every user's of the agent.

    Args:
        caches: the transport's :class:`~xpander_sync._cache.PlatformCaches`.
        agent_id: the agent written to.
        user_id: the task's user.
        scope: the write's scope.
    """
    if scope == "user" and user_id:
        caches.memories.discard((agent_id, user_id))
    else:
        caches.memories.forget(lambda key: isinstance(key, tuple) and key[:1] == (agent_id,))


def has_memory_ops(schema: Any) -> bool:
    """Whether an output schema has a ``memory_ops`` property (the answer then carries the writes).

    Args:
        schema: the task's output schema, or ``None``.

    Returns:
        ``True`` when ``schema["properties"]`` names ``memory_ops``.
    """
    return isinstance(schema, dict) and isinstance(schema.get("properties"), dict) and "memory_ops" in schema[
        "properties"]


def call_within(seconds: float, function: Callable[[], T], what: str) -> T:
    """``function()``, waited for at most ``seconds`` (it runs on a daemon thread).

    Args:
        seconds: how long to wait.
        function: the call.
        what: its name, for the timeout's message.

    Returns:
        What ``function`` returned.

    Raises:
        RequestTimeoutError: no answer within ``seconds`` (the call goes on and is dropped).
        Exception: whatever ``function`` raised.
    """
    box: Dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = function()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="xpander-memories", daemon=True).start()
    if not done.wait(seconds):
        raise RequestTimeoutError(f"{what}: no answer within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


class _Writes:
    """Memory writes per task (process-wide: a task built twice still gets :data:`MAX_WRITES`)."""

    def __init__(self, limit: int = 4096) -> None:
        self._lock = threading.Lock()
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._limit = limit

    def take(self, task_id: str) -> bool:
        """Count one write for ``task_id``; ``False`` when it already made :data:`MAX_WRITES`."""
        with self._lock:
            count = self._counts.pop(task_id, 0)
            self._counts[task_id] = count + (count < MAX_WRITES)
            while len(self._counts) > self._limit:
                self._counts.popitem(last=False)
            return count < MAX_WRITES


WRITES = _Writes()
_pending_lock = threading.Lock()
_pending: Set[threading.Thread] = set()


def wait_for_saves(timeout: float = SAVE_TIMEOUT) -> bool:
    """Wait (at most ``timeout`` seconds in all) for the pending fire-and-forget saves.

    Called at interpreter exit, so a save made just before the end is not lost.

    Args:
        timeout: seconds to wait at most.

    Returns:
        Whether none is left.
    """
    deadline = time.monotonic() + timeout
    with _pending_lock:
        threads = list(_pending)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with _pending_lock:
        return not any(t.is_alive() for t in _pending)


atexit.register(wait_for_saves)


class MemoriesFeature(Feature):
    """The ``<memories>`` block and the ``manage_memory`` tool (see the module docstring).

    Args:
        adapter: the build.
    """

    name = "memories"

    def __init__(self, adapter: Any) -> None:
        super().__init__(adapter)
        self._answers: Dict[str, Optional[Dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def _resource(self) -> Memories:
        transport = self.context.transport
        return Memories(transport.configuration, transport=transport)

    @property
    def user_id(self) -> Optional[str]:
        """The task's user id, or ``None``."""
        task = self.task
        user = task.input.user if task is not None else None
        return user.id if user is not None and user.id else None

    def applies(self, agent: Agent) -> bool:
        """Whether memories are asked for ``agent`` (a task with a user id, not a leader, no block yet).

        A build context without a transport (a test double that reaches no platform) turns it off.

        Args:
            agent: the agent being built.

        Returns:
            ``True`` when the platform is asked for ``agent``'s memories.
        """
        task = self.task
        if task is None or self.user_id is None or agent.is_a_team:
            return False
        if getattr(self.context, "transport", None) is None:
            return False
        return BLOCK_MARKER not in (task.additional_context or "")

    def memories(self, agent: Agent) -> Optional[Dict[str, Any]]:
        """``agent``'s memories: once per build, from the transport's cache when warm.

        Args:
            agent: the agent being built.

        Returns:
            ``{"user": [row], "agent": [row]}``, or ``None`` when memories are off for it.
        """
        if not self.applies(agent):
            return None
        with self._lock:
            if agent.id not in self._answers:
                self._answers[agent.id] = self._fetch(agent)
            return self._answers[agent.id]

    def _fetch(self, agent: Agent) -> Optional[Dict[str, Any]]:
        user_id = self.user_id
        assert user_id is not None
        resource = self._resource()

        def load() -> Dict[str, Any]:  # raises on a failure: nothing cached then
            data = call_within(
                READ_TIMEOUT,
                lambda: resource.get(agent.id, user_id, timeout=(READ_TIMEOUT, READ_TIMEOUT), retry=False),
                "memories",
            )
            return {"found": found_memories(data)}

        try:
            answer = self.context.transport.caches.memories.get_or_load((agent.id, user_id), load)
        except XpanderError as exc:  # fail open: the agent runs without its memories
            logger.warning("agent %s: memories unavailable, building without them: %s", agent.id, exc)
            return None
        found: Optional[Dict[str, Any]] = answer["found"]
        return found

    def additional_context(self, agent: Agent, root: bool, text: str) -> str:
        """The memories block, prepended (a blank line before the rest).

        Args:
            agent: the agent being built.
            root: whether it is the agent the task runs.
            text: the additional context so far.

        Returns:
            The additional context with the block first.
        """
        found = self.memories(agent)
        if found is None:
            return text
        block = memories_block(found["user"], found["agent"])
        return join_blocks(block, text)

    def tools(self, agent: Agent, root: bool) -> List[ToolSpec]:
        """``manage_memory``, unless the task's output schema has ``memory_ops``.

        Args:
            agent: the agent being built.
            root: whether it is the agent the task runs.

        Returns:
            The tool, or ``[]``.
        """
        found = self.memories(agent)
        task = self.task
        if found is None or task is None or has_memory_ops(task.output_schema):
            return []
        return [FunctionToolSpec(MEMORY_TOOL, MEMORY_DESCRIPTION, MEMORY_SCHEMA, MemoryWriter(self, agent, found))]


class MemoryWriter:
    """The ``manage_memory`` function of one agent in one build (a :class:`FunctionToolSpec` calls it).

    Args:
        feature: the build's memories feature.
        agent: the agent writing.
        found: its memories (their ids resolve the 8-character ids the model sees).
    """

    def __init__(self, feature: MemoriesFeature, agent: Agent, found: Dict[str, Any]) -> None:
        self.feature = feature
        self.agent = agent
        self.known = [str(r.get("memory_id")) for r in found["user"] + found["agent"] if r.get("memory_id")]

    def full_id(self, given: Any) -> Any:
        """The full id of a memory the model names by its first 8 characters.

        Args:
            given: the model's ``memory_id``.

        Returns:
            The one known id starting with it, else ``given`` as is.
        """
        if not isinstance(given, str):
            return given
        matches = [m for m in self.known if m.startswith(given.strip())] if given.strip() else []
        return matches[0] if len(matches) == 1 else given.strip()

    def __call__(self, arguments: Dict[str, Any]) -> Any:
        feature, agent = self.feature, self.agent
        task, user_id = feature.task, feature.user_id
        assert task is not None
        action, scope, memory = arguments.get("action"), arguments.get("scope"), arguments.get("memory")
        memory_id = self.full_id(arguments.get("memory_id"))
        if action == "save" and isinstance(memory, str):
            memory_id = memory_id_for(str(scope), user_id, agent.id, memory)
        body = write_body(str(action), str(scope), memory=memory, memory_id=memory_id, user_id=user_id,
                          writer_agent_id=agent.id, writer_agent_name=agent.name)  # ValueError: the model sees it
        if not WRITES.take(task.id):
            raise ValueError(f"not written: at most {MAX_WRITES} memory writes per task")
        resource = feature._resource()
        self.forget(scope)  # the next build reads the platform again (now, and once the write is done)
        if action == "save":
            self._save(resource, body, scope)
            return {"action": "save", "memory_id": body["memory_id"], "status": "saving"}
        answer = call_within(WRITE_TIMEOUT, lambda: self._write(resource, body, scope, WRITE_TIMEOUT),
                             f"memory {action}")
        return answer if isinstance(answer, dict) else {"applied": False}

    def _write(self, resource: Memories, body: Dict[str, Any], scope: Any, seconds: float) -> Any:
        try:
            return resource.write(self.agent.id, body, timeout=(seconds, seconds))
        finally:  # done (even past the caller's wait): drop what a build read meanwhile
            self.forget(scope)

    def forget(self, scope: Any) -> None:
        """Drop the cached memories a write in ``scope`` changes (see :func:`forget_memories`).

        Args:
            scope: the write's scope.
        """
        forget_memories(self.feature.context.transport.caches, self.agent.id, self.feature.user_id, scope)

    def _save(self, resource: Memories, body: Dict[str, Any], scope: Any) -> None:
        agent_id = self.agent.id

        def run() -> None:
            try:
                call_within(SAVE_TIMEOUT, lambda: self._write(resource, body, scope, SAVE_TIMEOUT), "memory save")
            except Exception as exc:  # never lost silently
                logger.warning("agent %s: saving memory %s failed: %s", agent_id, body["memory_id"], exc)
            finally:
                with _pending_lock:
                    _pending.discard(threading.current_thread())

        thread = threading.Thread(target=run, name="xpander-memory-save", daemon=True)
        with _pending_lock:
            _pending.add(thread)
        thread.start()

