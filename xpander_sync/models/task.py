"""The task model (an agent execution) and its parts."""

from __future__ import annotations

import datetime as _dt
import json
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Union
from urllib.parse import urlsplit

import attrs

from .._async import async_twin
from .._redact import redacted_repr
from ._handle import TaskClient, handle_field, require_handle
from .agent import MCPServerDetails
from .common import AgentExecutionStatus, OutputFormat, ThinkMode
from .tokens import Tokens

if TYPE_CHECKING:
    from ..config import Configuration


@attrs.define
class User:
    """The user a task runs for.

    Args:
        email: the user's email address.
        id: the user's id.
        first_name: the user's first name.
        last_name: the user's last name.
        additional_attributes: any other user attributes (a JSON object).
        timezone: the user's time zone name.
    """

    email: Optional[str] = None
    id: Optional[str] = None
    first_name: Optional[str] = None
    last_name: Optional[str] = None
    additional_attributes: Optional[Dict[str, Any]] = None
    timezone: Optional[str] = None


@attrs.define
class AgentExecutionInput:
    """A task's input: text, file URLs, the user (and, when present, attachments and principal)."""

    text: str = ""
    files: Optional[List[str]] = attrs.field(factory=list)
    user: Optional[User] = None
    attachments: List[Dict[str, Any]] = attrs.field(factory=list)
    principal: Optional[Dict[str, Any]] = None


@attrs.define
class DeepPlanningItem:
    """One item of a deep-planning plan."""

    id: str
    title: str
    completed: bool = False


@attrs.define
class DeepPlanning:
    """A task's deep-planning state."""

    enabled: bool = False
    enforce: bool = False
    started: bool = False
    question_raised: bool = False
    tasks: List[DeepPlanningItem] = attrs.field(factory=list)


HUMAN_READABLE_EXTENSIONS = (
    ".txt", ".csv", ".json", ".xml", ".html", ".htm", ".md", ".rst", ".yaml", ".yml", ".py", ".js",
    ".ts", ".java", ".c", ".cpp", ".h", ".cs", ".go", ".rb", ".php", ".sh",
)


@attrs.define
class Task:
    """A task: one execution of an agent.

    A task loaded through xpander_sync (``Tasks``, ``Backend``, the worker) is bound to the
    client that loaded it: :meth:`save`, :meth:`reload` and :meth:`stop` go through that
    client's transport, never any shared state.
    """

    id: str
    agent_id: str
    organization_id: str
    input: AgentExecutionInput
    created_at: _dt.datetime
    status: AgentExecutionStatus = AgentExecutionStatus.PENDING
    internal_status: Optional[str] = None
    last_executed_node_id: Optional[str] = None
    agent_version: Optional[str] = None
    started_at: Optional[_dt.datetime] = None
    paused_at: Optional[_dt.datetime] = None
    finished_at: Optional[_dt.datetime] = None
    result: Optional[str] = None
    parent_execution: Optional[str] = None
    conversation_id: Optional[str] = None
    conversation_kind: Optional[str] = None
    sub_executions: List[str] = attrs.field(factory=list)
    should_update_parent: bool = False
    is_manually_stopped: bool = False
    payload_extension: Optional[Dict[str, Any]] = attrs.field(default=None, repr=redacted_repr)
    execution_kind: Optional[str] = None
    hitl_request: Optional[Dict[str, Any]] = None
    pending_eca_request: Optional[Dict[str, Any]] = None
    source: Optional[str] = None
    voice_id: Optional[str] = None
    output_format: Optional[OutputFormat] = None
    output_schema: Optional[Dict[str, Any]] = None
    events_streaming: bool = False
    is_orchestration: bool = False
    is_gateway: bool = False
    is_app: bool = False
    background_auth_eligible: bool = False
    additional_context: Optional[str] = None
    tool_call_limit: Optional[int] = None
    instructions_override: Optional[str] = None
    test_run_node_id: Optional[str] = None
    user_oidc_token: Optional[str] = attrs.field(default=None, repr=False)
    expected_output: Optional[str] = None
    mcp_servers: List[MCPServerDetails] = attrs.field(factory=list)
    triggering_agent_id: Optional[str] = None
    title: Optional[str] = None
    think_mode: Optional[ThinkMode] = ThinkMode.DEFAULT
    disable_attachment_injection: bool = False
    user_tokens: Optional[Dict[str, Any]] = attrs.field(default=None, repr=False)
    deep_planning: DeepPlanning = attrs.field(factory=DeepPlanning)
    must_deep_plan: bool = False
    execution_attempts: int = 1
    return_metrics: bool = False
    llm_model_provider: Optional[str] = None
    llm_model_name: Optional[str] = None
    llm_reasoning_effort: Optional[str] = None
    harness_cli: Optional[str] = None
    permission_mode: Optional[str] = None
    tokens: Optional[Tokens] = None
    used_tools: List[str] = attrs.field(factory=list)
    duration: float = 0.0
    _handle: Any = handle_field()  # noqa: RUF009 (it returns an attrs.field)

    @property
    def configuration(self) -> Optional[Configuration]:
        """The configuration of the client this task was loaded with (``None`` when built by hand).

        Not part of the wire JSON. ``Backend(configuration=task.configuration)`` talks to the
        same platform as the task's loader (the guide's worker handler does this).
        """
        return getattr(self._handle, "configuration", None)

    # -- delegates to the client that loaded this task ---------------------------------

    def reload(self) -> Task:
        """Refresh every field from the platform (:meth:`Tasks.get <xpander_sync.Tasks.get>`); returns ``self``.

        Returns:
            ``self``, updated from the response.

        Raises:
            InvalidInputError: the task was built by hand (not loaded through xpander_sync).
            NotFoundError: the task no longer exists.
            ModuleException: any other platform or transport failure.
        """
        fresh = _client(self, "reload").get(self.id)
        _copy_fields(fresh, self)
        return self

    def save(self, *, with_deep_plan_update: bool = False) -> Task:
        """Send the whole task (:meth:`Tasks.save <xpander_sync.Tasks.save>`) and take the server's copy.

        Args:
            with_deep_plan_update: include ``deep_planning`` (left out by default, as the official SDK does).

        Returns:
            ``self``, updated from the response.

        Raises:
            InvalidInputError: the task was built by hand (not loaded through xpander_sync).
            ModuleException: the platform refused it or could not be reached.
        """
        fresh = _client(self, "save").save(self, with_deep_plan_update=with_deep_plan_update)
        _copy_fields(fresh, self)
        return self

    def set_status(self, status: Union[AgentExecutionStatus, str], result: Optional[str] = None) -> Task:
        """Set ``status`` and ``result`` (even when ``None``), then :meth:`save`.

        Args:
            status: an :class:`AgentExecutionStatus` or its value (an unknown value is kept as is).
            result: the result text; ``None`` clears it.

        Returns:
            ``self``, updated from the response.

        Raises:
            ModuleException: the platform refused it or could not be reached.
        """
        self.status = AgentExecutionStatus(status)
        self.result = result
        return self.save()

    def stop(self) -> Task:
        """Stop the task (:meth:`Tasks.stop <xpander_sync.Tasks.stop>`); returns ``self``, updated.

        Returns:
            ``self``, updated from the response.

        Raises:
            InvalidInputError: the task was built by hand (not loaded through xpander_sync).
            ModuleException: the platform refused it or could not be reached.
        """
        fresh = _client(self, "stop").stop(self.id)
        _copy_fields(fresh, self)
        return self

    def to_message(self, *, download_timeout: float = 10.0) -> str:
        """The task's input as one message for an LLM.

        The text, then ``Files: <urls>`` when there are input files; the contents of
        text-like files (by extension) are downloaded (without the API key) and added as
        JSON lines, unless ``disable_attachment_injection`` is set.

        Args:
            download_timeout: seconds allowed for each file download; a failed download is
                logged and replaced by ``Error: <exception class>`` in the message.

        Returns:
            The message text.

        Raises:
            InvalidInputError: a file must be downloaded and the task was built by hand.
        """
        return render_message(self, lambda url: _client(self, "to_message").download_text(url, download_timeout))

    areload = async_twin(reload)
    asave = async_twin(save)
    aset_status = async_twin(set_status)
    astop = async_twin(stop)
    ato_message = async_twin(to_message)


def render_message(task: Task, download: Callable[[str], str]) -> str:
    """The LLM message of a task (see :meth:`Task.to_message`); pure but for ``download``.

    Args:
        task: the task whose input is rendered.
        download: returns a text file's contents for its URL (called only for text-like
            files, and only when attachment injection is on).

    Returns:
        The message text.
    """
    message = task.input.text or ""
    files = list(task.input.files or [])
    if not files:
        return message
    if message:
        message += "\n"
    message += "Files: " + ", ".join(files)
    readable = [u for u in files if urlsplit(u).path.lower().endswith(HUMAN_READABLE_EXTENSIONS)]
    if not readable:
        return message
    message += "\nFiles contents:"
    for url in readable:
        entry: Dict[str, Any] = {"url": url}
        if not task.disable_attachment_injection:
            entry["content"] = download(url)
        message += "\n" + json.dumps(entry)
    return message


def _client(task: Task, call: str) -> TaskClient:
    client: TaskClient = require_handle(task, call)
    return client


def _copy_fields(source: Task, target: Task) -> None:
    for field in attrs.fields(Task):
        if field.metadata.get("wire", True):
            setattr(target, field.name, getattr(source, field.name))
