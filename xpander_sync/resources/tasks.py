"""``Tasks``: create, load, save and stop tasks; and the pure body builders they use."""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urljoin, urlsplit

import requests

from .._async import async_twin
from .._converter import unstructure
from ..errors import InvalidInputError, ResponseDecodeError
from ..models.agent import MCPServerDetails
from ..models.common import AgentExecutionStatus, OutputFormat, ThinkMode
from ..models.task import Task, User
from ._base import Resource, check_id, route, version_header

logger = logging.getLogger(__name__)

#: The create-task body keys, in the order the official client sends them (all always present).
CREATE_TASK_KEYS = (
    "id", "input", "payload_extension", "source", "worker_id", "output_format", "output_schema",
    "run_locally", "events_streaming", "additional_context", "instructions_override", "test_run_node_id",
    "user_oidc_token", "expected_output", "mcp_servers", "triggering_agent_id", "title", "think_mode",
    "disable_attachment_injection", "user_tokens", "return_metrics", "llm_model_provider", "llm_model_name",
    "llm_reasoning_effort", "harness_cli", "permission_mode", "tool_call_limit",
)


def _enum_value(field: str, value: Any, enum_cls: Any, default: Optional[str] = None) -> Optional[str]:
    if value is None:
        return default
    raw = value.value if isinstance(value, enum_cls) else value
    if raw not in enum_cls.known():
        raise InvalidInputError(f"{field} must be one of {', '.join(enum_cls.known())}")
    return str(raw)


def _user_json(user: Union[User, Mapping[str, Any], None]) -> Optional[Dict[str, Any]]:
    if user is None:
        return None
    if isinstance(user, User):
        return unstructure(user)
    if isinstance(user, Mapping):
        from .._converter import structure

        try:
            return unstructure(structure(dict(user), User))
        except ResponseDecodeError as exc:
            raise InvalidInputError(f"user_details is not a valid User: {'; '.join(exc.errors)}") from None
    raise InvalidInputError("user_details must be an xpander_sync.User or a dict")


def _mcp_json(servers: Optional[Sequence[Union[MCPServerDetails, Mapping[str, Any]]]]) -> List[Any]:
    out = []
    for i, server in enumerate(servers or []):
        if isinstance(server, MCPServerDetails):
            out.append(unstructure(server))
        elif isinstance(server, Mapping):
            from .._converter import structure

            try:
                out.append(unstructure(structure(dict(server), MCPServerDetails)))
            except ResponseDecodeError as exc:
                raise InvalidInputError(f"mcp_servers[{i}] is invalid: {'; '.join(exc.errors)}") from None
        else:
            raise InvalidInputError(f"mcp_servers[{i}] must be an MCPServerDetails or a dict")
    return out


def build_create_task_body(
    prompt: str = "",
    *,
    existing_task_id: Optional[str] = None,
    file_urls: Optional[List[str]] = None,
    user_details: Union[User, Mapping[str, Any], None] = None,
    payload_extension: Optional[Dict[str, Any]] = None,
    source: Optional[str] = "sdk",
    worker_id: Optional[str] = None,
    output_format: Union[OutputFormat, str, None] = None,
    output_schema: Optional[Dict[str, Any]] = None,
    run_locally: bool = False,
    events_streaming: bool = False,
    additional_context: Optional[str] = None,
    instructions_override: Optional[str] = None,
    test_run_node_id: Optional[str] = None,
    user_oidc_token: Optional[str] = None,
    expected_output: Optional[str] = None,
    mcp_servers: Optional[Sequence[Union[MCPServerDetails, Mapping[str, Any]]]] = None,
    triggering_agent_id: Optional[str] = None,
    title: Optional[str] = None,
    think_mode: Union[ThinkMode, str, None] = ThinkMode.DEFAULT,
    disable_attachment_injection: bool = False,
    user_tokens: Optional[Dict[str, Any]] = None,
    return_metrics: bool = False,
    llm_model_provider: Optional[str] = None,
    llm_model_name: Optional[str] = None,
    llm_reasoning_effort: Optional[str] = None,
    harness_cli: Optional[str] = None,
    permission_mode: Optional[str] = None,
    tool_call_limit: Optional[int] = None,
    attachments: Optional[List[Dict[str, Any]]] = None,
    principal: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """The create-task body: all 27 keys, nulls included (``input.attachments``/``principal`` only when set).

    Most arguments are sent as the body key of the same name; the exceptions are noted.

    Args:
        prompt: the input text (``input.text``).
        existing_task_id: sent as ``id``.
        file_urls: input file URLs (``input.files``), a list of strings.
        user_details: a :class:`~xpander_sync.models.task.User` or a dict of its fields (``input.user``).
        payload_extension: a dict.
        source: the task source.
        worker_id: the worker id.
        output_format: an :class:`~xpander_sync.OutputFormat` or one of its known values.
        output_schema: a JSON schema for the result (a dict).
        run_locally: sent as a bool.
        events_streaming: sent as a bool.
        additional_context: extra context text.
        instructions_override: instructions that replace the agent's.
        test_run_node_id: sent as is.
        user_oidc_token: the user's OIDC token.
        expected_output: a description of the expected output.
        mcp_servers: extra MCP servers: :class:`~xpander_sync.models.agent.MCPServerDetails`
            objects or dicts of their fields (default ``[]``).
        triggering_agent_id: sent as is.
        title: the task title.
        think_mode: a :class:`~xpander_sync.models.common.ThinkMode` or one of its known
            values; ``None`` sends ``"default"``.
        disable_attachment_injection: sent as a bool.
        user_tokens: a dict.
        return_metrics: sent as a bool.
        llm_model_provider: sent as is.
        llm_model_name: sent as is.
        llm_reasoning_effort: sent as is.
        harness_cli: sent as is.
        permission_mode: sent as is.
        tool_call_limit: a positive integer.
        attachments: ``input.attachments``, only when not empty.
        principal: ``input.principal``, only when not empty.

    Returns:
        The JSON body for ``POST /agent-execution/{agent_id}``.

    Raises:
        InvalidInputError: a value of the wrong kind; the message names the field.
    """
    if not isinstance(prompt, str):
        raise InvalidInputError("prompt must be a string")
    if file_urls is not None and (
        not isinstance(file_urls, (list, tuple)) or not all(isinstance(u, str) for u in file_urls)
    ):
        raise InvalidInputError("file_urls must be a list of URL strings")
    if tool_call_limit is not None and (not isinstance(tool_call_limit, int) or tool_call_limit < 1):
        raise InvalidInputError("tool_call_limit must be a positive integer")
    for name, value in (("output_schema", output_schema), ("payload_extension", payload_extension),
                        ("user_tokens", user_tokens)):
        if value is not None and not isinstance(value, Mapping):
            raise InvalidInputError(f"{name} must be a dict (a JSON object)")
    task_input: Dict[str, Any] = {
        "text": prompt,
        "files": list(file_urls) if file_urls is not None else None,
        "user": _user_json(user_details),
    }
    if attachments:
        task_input["attachments"] = list(attachments)
    if principal:
        task_input["principal"] = dict(principal)
    body = {
        "id": existing_task_id,
        "input": task_input,
        "payload_extension": payload_extension,
        "source": source,
        "worker_id": worker_id,
        "output_format": _enum_value("output_format", output_format, OutputFormat),
        "output_schema": output_schema,
        "run_locally": bool(run_locally),
        "events_streaming": bool(events_streaming),
        "additional_context": additional_context,
        "instructions_override": instructions_override,
        "test_run_node_id": test_run_node_id,
        "user_oidc_token": user_oidc_token,
        "expected_output": expected_output,
        "mcp_servers": _mcp_json(mcp_servers),
        "triggering_agent_id": triggering_agent_id,
        "title": title,
        "think_mode": _enum_value("think_mode", think_mode, ThinkMode, default="default"),
        "disable_attachment_injection": bool(disable_attachment_injection),
        "user_tokens": user_tokens,
        "return_metrics": bool(return_metrics),
        "llm_model_provider": llm_model_provider,
        "llm_model_name": llm_model_name,
        "llm_reasoning_effort": llm_reasoning_effort,
        "harness_cli": harness_cli,
        "permission_mode": permission_mode,
        "tool_call_limit": tool_call_limit,
    }
    return body


def task_save_body(task: Task, *, with_deep_plan_update: bool = False) -> Dict[str, Any]:
    """The full-task PATCH body (``deep_planning`` only on request, as upstream).

    Args:
        task: the task to send.
        with_deep_plan_update: keep ``deep_planning`` in the body.

    Returns:
        The task's JSON, as ``PATCH /agent-execution/{id}/update`` expects it, without
        ``payload_extension.llm_gateway`` (a credential for this run only).
    """
    body = unstructure(task)
    if not with_deep_plan_update:
        body.pop("deep_planning", None)
    extension = body.get("payload_extension")
    if isinstance(extension, dict) and "llm_gateway" in extension:
        # The LLM gateway's token was handed to this run: it never goes back to the platform
        # (the official SDK takes it off the task when the task arrives).
        body["payload_extension"] = {k: v for k, v in extension.items() if k != "llm_gateway"}
    return body


class Tasks(Resource):
    """Tasks (agent executions).

    Args:
        configuration: settings; default: a :class:`~xpander_sync.Configuration` read from the
            environment. Objects built with equal configurations share one transport (one
            connection pool).
        transport: an explicit transport (tests inject one with a fake ``sleep``).

    Raises:
        InvalidInputError: ``configuration`` is not a :class:`~xpander_sync.Configuration`.
    """

    def get(self, task_id: str) -> Task:
        """Load a task (``GET /agent-execution/{task_id}/status``).

        Args:
            task_id: the task.

        Returns:
            The :class:`~xpander_sync.Task`.

        Raises:
            InvalidInputError: ``task_id`` is empty or contains ``/``, ``?`` or ``#``.
            NotFoundError: no such task.
            ModuleException: any other platform or transport failure.
        """
        path = route("/agent-execution/{task_id}/status", task_id=task_id)
        return self._structure(self._transport.request("GET", path).data, Task)

    def create(self, agent_id: str, prompt: str = "", *, agent_version: Union[int, str, None] = None,
               source: Optional[str] = None, file_urls: Optional[List[str]] = None, **options: Any) -> Task:
        """Create a task (``POST /agent-execution/{agent_id}``).

        Args:
            agent_id: the agent to run.
            prompt: the input text.
            agent_version: sent as ``x-agent-version`` when given.
            source: the task source (``None`` by default here, ``"sdk"`` from ``Agent.create_task``).
            file_urls: input file URLs (default ``[]``).
            **options: the other keyword arguments of :func:`build_create_task_body`.

        Returns:
            The created :class:`~xpander_sync.Task`.

        Raises:
            InvalidInputError: an unknown option or a bad value.
            ModuleException: the platform refused or could not be reached.
        """
        check_id("agent_id", agent_id)
        try:
            body = build_create_task_body(
                prompt, source=source, file_urls=[] if file_urls is None else file_urls, **options
            )
        except TypeError as exc:
            raise InvalidInputError(f"unknown create-task option: {exc}") from None
        return self.create_with_body(agent_id, body, agent_version=agent_version)

    def create_with_body(self, agent_id: str, body: Dict[str, Any], *,
                         agent_version: Union[int, str, None] = None) -> Task:
        """Create a task from a ready body (``POST /agent-execution/{agent_id}``).

        Args:
            agent_id: the agent to run.
            body: a body from :func:`build_create_task_body`.
            agent_version: sent as ``x-agent-version`` when given.

        Returns:
            The created :class:`~xpander_sync.Task`.

        Raises:
            InvalidInputError: a bad ``agent_id`` or ``agent_version``.
            ModuleException: the platform refused or could not be reached.
        """
        path = route("/agent-execution/{agent_id}", agent_id=agent_id)
        data = self._transport.request("POST", path, json=body, headers=version_header(agent_version)).data
        return self._structure(data, Task)

    def save(self, task: Task, *, with_deep_plan_update: bool = False) -> Task:
        """Send the whole task (``PATCH /agent-execution/{id}/update``); returns the server's copy.

        Args:
            task: the task to send (not modified).
            with_deep_plan_update: include ``deep_planning`` (left out by default, as the official SDK does).

        Returns:
            The server's copy, a new :class:`~xpander_sync.Task` (with ``task``'s
            ``payload_extension.llm_gateway``, which is not sent: the run keeps its LLM route).

        Raises:
            InvalidInputError: ``task`` is not a :class:`~xpander_sync.Task`, or its id is unusable.
            ModuleException: the platform refused it or could not be reached.
        """
        if not isinstance(task, Task):
            raise InvalidInputError("task must be an xpander_sync.Task")
        body = task_save_body(task, with_deep_plan_update=with_deep_plan_update)
        check_id("task.id", task.id)
        data = self._transport.request("PATCH", route("/agent-execution/{task_id}/update", task_id=task.id),
                                       json=body).data
        fresh = self._structure(data, Task)
        sent = task.payload_extension
        if isinstance(sent, dict) and "llm_gateway" in sent:  # not sent back, so not in the answer: keep it for the run
            fresh.payload_extension = {**(fresh.payload_extension or {}), "llm_gateway": sent["llm_gateway"]}
        return fresh

    def update(
        self,
        task_id: str,
        *,
        tool_call_payload_extension: Optional[Dict[str, Any]] = None,
        source: Optional[str] = None,
        status: Union[AgentExecutionStatus, str, None] = None,
        last_executed_node_id: Optional[str] = None,
        result: Optional[str] = None,
        timeout: Optional[Tuple[float, float]] = None,
    ) -> Task:
        """Partial update: only the arguments that are not ``None`` are sent.

        ``PATCH /agent-execution/{task_id}/update`` with a body of the given keys.

        Args:
            task_id: the task.
            tool_call_payload_extension: sent as ``tool_call_payload_extension``.
            source: the task source.
            status: an :class:`~xpander_sync.AgentExecutionStatus` or one of its known values.
            last_executed_node_id: sent as is.
            result: the result text.
            timeout: a ``(connect, read)`` timeout for this call instead of the configured one.

        Returns:
            The server's copy of the task.

        Raises:
            InvalidInputError: a bad ``task_id`` or an unknown ``status``.
            ModuleException: the platform refused it or could not be reached.
        """
        check_id("task_id", task_id)
        body: Dict[str, Any] = {}
        if tool_call_payload_extension is not None:
            body["tool_call_payload_extension"] = tool_call_payload_extension
        if source is not None:
            body["source"] = source
        if status is not None:
            body["status"] = _enum_value("status", status, AgentExecutionStatus)
        if last_executed_node_id is not None:
            body["last_executed_node_id"] = last_executed_node_id
        if result is not None:
            body["result"] = result
        data = self._transport.request("PATCH", route("/agent-execution/{task_id}/update", task_id=task_id), json=body,
                                       timeout=timeout).data
        return self._structure(data, Task)

    def stop(self, task_id: str) -> Task:
        """Stop a task (``DELETE /agent-execution/{task_id}``).

        Args:
            task_id: the task.

        Returns:
            The stopped :class:`~xpander_sync.Task`, as the platform returned it.

        Raises:
            InvalidInputError: ``task_id`` is empty or contains ``/``, ``?`` or ``#``.
            ModuleException: the platform refused it or could not be reached.
        """
        path = route("/agent-execution/{task_id}", task_id=task_id)
        return self._structure(self._transport.request("DELETE", path).data, Task)

    def download_text(self, url: str, timeout: float = 10.0) -> str:
        """Download a task's input file as text, for :meth:`Task.to_message <xpander_sync.Task.to_message>`.

        A plain request: file hosts never receive the xpander API key. Redirects are followed
        (at most 5), but never from a public host to a loopback, private or link-local
        address (a file URL must not become a way into the worker's network). At most
        :data:`MAX_FILE_BYTES` are read; a longer file is cut, and the text says so. A failure
        is logged (the URL's path only) and returned as ``"Error: <reason>"``.

        Args:
            url: the file URL.
            timeout: seconds allowed for each request of the download.

        Returns:
            The file's text, or the error marker.
        """
        try:
            return _download(url, timeout)
        except (requests.RequestException, _RedirectRefused) as exc:
            logger.warning("could not download task file %s: %s", urlsplit(url).path, type(exc).__name__)
            return f"Error: {type(exc).__name__}"

    aget = async_twin(get)
    acreate = async_twin(create)
    acreate_with_body = async_twin(create_with_body)
    asave = async_twin(save)
    aupdate = async_twin(update)
    astop = async_twin(stop)
    adownload_text = async_twin(download_text)


#: The most bytes of one input file that ``Task.to_message`` inlines (the rest is cut).
MAX_FILE_BYTES = 1024 * 1024
_MAX_REDIRECTS = 5


class _RedirectRefused(Exception):
    """A redirect from a public host to an internal address."""


def _download(url: str, timeout: float) -> str:
    current = url
    with requests.Session() as session:
        for _ in range(_MAX_REDIRECTS + 1):
            response = session.get(current, timeout=timeout, allow_redirects=False, stream=True)
            with response:
                if response.is_redirect:
                    target = urljoin(current, response.headers.get("location", ""))
                    if _is_internal(target) and not _is_internal(current):
                        raise _RedirectRefused(urlsplit(target).hostname)
                    current = target
                    continue
                response.raise_for_status()
                data = b""
                for chunk in response.iter_content(65536):
                    data += chunk
                    if len(data) > MAX_FILE_BYTES:
                        break
                try:
                    text = data[:MAX_FILE_BYTES].decode(response.encoding or "utf-8", errors="replace")
                except LookupError:  # a charset Python does not know: read it as UTF-8
                    text = data[:MAX_FILE_BYTES].decode("utf-8", errors="replace")
                if len(data) > MAX_FILE_BYTES:
                    text += f"\n[cut: the file is longer than {MAX_FILE_BYTES} bytes]"
                return text
    raise requests.TooManyRedirects(f"more than {_MAX_REDIRECTS} redirects")


def _is_internal(url: str) -> bool:
    """Whether a URL's host is (or resolves to) a loopback, private, link-local or reserved address."""
    host = urlsplit(url).hostname or ""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in socket.getaddrinfo(host, None)]
        except (OSError, ValueError):
            return False  # cannot be resolved here: the request itself will fail
    return any(a.is_loopback or a.is_private or a.is_link_local or a.is_reserved or a.is_unspecified
               for a in addresses)
