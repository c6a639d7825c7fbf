"""``Backend``: the facade most users need (report runs, invoke agents, resolve arguments)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from ._async import async_twin, caller_loop
from .config import ENV_AGENT_ID, Configuration
from .errors import ConfigurationError, InvalidInputError, MissingAgentError
from .models.agent import Agent
from .models.common import OutputFormat
from .models.task import Task, User
from .models.tokens import Tokens
from .reporting import FlushResult, QueuedReport, deliver, flush_background, outbox_at
from .resources._base import Resource, check_id
from .resources.agents import Agents
from .resources.reports import REPORT_KEYS, Reports
from .resources.tasks import Tasks, build_create_task_body
from .tracking import Tracked
from .transport import Transport

logger = logging.getLogger(__name__)

__all__ = ["REPORT_KEYS", "Backend", "resolve_agent_id"]

def resolve_agent_id(agent: Optional[Agent], agent_id: Optional[str], configured: Optional[str]) -> str:
    """``agent.id``, else ``agent_id``, else the configured/env agent id.

    Args:
        agent: an :class:`Agent`, whose ``id`` wins over everything else.
        agent_id: an explicit agent id, used when ``agent`` is ``None``.
        configured: ``Configuration.agent_id``; when empty, ``XPANDER_AGENT_ID`` is read.

    Returns:
        The agent id, checked to be usable in a URL path.

    Raises:
        InvalidInputError: ``agent`` is not an :class:`Agent`, or the chosen id is empty or
            contains ``/``, ``?`` or ``#``.
        MissingAgentError: none of the three is set.
    """
    if agent is not None:
        if not isinstance(agent, Agent):
            raise InvalidInputError("agent must be an xpander_sync.Agent (or pass agent_id=)")
        return check_id("agent.id", agent.id)
    if agent_id is not None:
        return check_id("agent_id", agent_id)
    env_value = configured or os.environ.get(ENV_AGENT_ID)
    if env_value:
        return check_id(ENV_AGENT_ID, env_value)
    raise MissingAgentError(
        f"no agent given: pass agent=<Agent>, agent_id='...', or set the {ENV_AGENT_ID} environment variable"
    )


class Backend(Resource):
    """The Backend module: report external runs, invoke agents, resolve framework arguments.

    Args:
        configuration: settings; default read from the environment. Backends built with
            equal configurations share one connection pool.
        transport: an explicit transport (tests inject one with a fake ``sleep``); its
            configuration is used when ``configuration`` is not given.

    Raises:
        InvalidInputError: ``configuration`` is not a :class:`Configuration`.
    """

    def __init__(self, configuration: Optional[Configuration] = None, *, transport: Optional[Transport] = None) -> None:
        super().__init__(configuration, transport=transport)
        self._tasks = Tasks(self.configuration, transport=self._transport)
        self._agents = Agents(self.configuration, transport=self._transport)
        self._reports = Reports(self.configuration, transport=self._transport)

    def _handle_for(self, model: Any) -> Any:
        return self._tasks if isinstance(model, Task) else self._agents

    def report_external_task(
        self,
        agent_id: Optional[str] = None,
        agent: Optional[Agent] = None,
        id: Optional[str] = None,
        input: Optional[str] = None,
        llm_response: Any = None,
        tokens: Union[Tokens, Mapping[str, Any], None] = None,
        is_success: bool = True,
        result: Optional[str] = None,
        duration: float = 0,
        used_tools: Optional[Sequence[str]] = None,
    ) -> Union[Task, QueuedReport]:
        """Record a run that happened outside the platform.

        :meth:`Reports.send <xpander_sync.Reports.send>` with the 8-key body. The report
        carries its own task id (a new uuid4 unless ``id`` is given), so it is safe to
        retry: the platform stores it once.

        With ``Configuration(outbox=PATH)``, a report that cannot be delivered (no answer,
        5xx or 429 after the retries) is stored there and a :class:`QueuedReport` is
        returned instead of a :class:`Task`; :meth:`flush_outbox` delivers it later with the
        same task id. With ``background_reports=True`` the call returns a
        :class:`QueuedReport` at once and a background thread delivers it (:meth:`flush` waits).

        Args:
            agent_id: the agent the run belongs to.
            agent: an :class:`Agent` (wins over ``agent_id``).
            id: the task id to record (default: a new uuid4).
            input: the input text.
            llm_response: the raw LLM response (any JSON, or an attrs/dataclass/pydantic object).
            tokens: a :class:`Tokens` or a dict of its fields.
            is_success: whether the run succeeded.
            result: the result text.
            duration: seconds the run took.
            used_tools: names of the tools used.

        Returns:
            The recorded :class:`Task`, or a :class:`QueuedReport` when it was queued.

        Raises:
            MissingAgentError: no agent given and ``XPANDER_AGENT_ID`` unset.
            InvalidInputError: a bad argument (named in the message).
            ModuleException: the platform refused it or could not be reached (and no outbox
                is configured, or the platform rejected it with a 4xx).
        """
        target = resolve_agent_id(agent, agent_id, self.configuration.agent_id)
        body = self._reports.body(
            id=id, input=input, llm_response=llm_response, tokens=tokens, is_success=is_success,
            result=result, duration=duration, used_tools=used_tools,
        )
        answer = deliver(
            target, body, send=self._reports.send, base_url=self.configuration.base_url,
            outbox_path=self.configuration.outbox, background=self.configuration.background_reports,
            owner=self._transport,
        )
        return answer if isinstance(answer, QueuedReport) else self._reports.task(answer)

    def report_run(
        self,
        agent_id: Optional[str] = None,
        run: Any = None,
        input: Optional[str] = None,
        duration: Optional[float] = None,
        task: Optional[Task] = None,
        agent: Optional[Agent] = None,
        **fields: Any,
    ) -> Union[Task, QueuedReport]:
        """Report a framework's run result: its text, tokens, tools and success read from it.

        ``run`` is what the framework's run returned: an agno ``RunOutput``/``TeamRunOutput``,
        an openai-agents ``RunResult``, a LangChain agent's state (``{"messages": [...]}``) or
        ``AIMessage``, a strands ``AgentResult``, a pydantic-ai ``AgentRunResult``, the list of
        google-adk ``Event`` objects of one run, or the exception the run raised. It is
        recognised by its type, importing no framework. The summary
        (:func:`xpander_sync.frameworks.summarize_run`) gives ``result`` (the final text, or
        the structured output as JSON text), ``llm_response`` (the framework, model, status and
        output; never a key), ``tokens`` (summed over every model call, team members included
        where the result carries them), ``used_tools`` (in call order) and ``is_success``
        (``False`` for an error status, a failed tool, a guardrail stop or an exception).
        Explicit ``fields`` win. Then :meth:`report_external_task` delivers it (outbox,
        background when configured).

        Args:
            agent_id: the agent the run belongs to.
            run: the framework's run result (or the exception the run raised).
            input: the input text (default: the task's input text, when ``task`` is given).
            duration: seconds the run took.
            task: the task the run was for: its id is the report's id (unless ``id=`` is given).
            agent: an :class:`Agent` (wins over ``agent_id``).
            **fields: any :meth:`report_external_task` argument (``result``, ``tokens``,
                ``used_tools``, ``is_success``, ``llm_response``, ``id``): wins over the summary.

        Returns:
            The recorded :class:`Task`, or a :class:`QueuedReport` when it was queued.

        Raises:
            InvalidInputError: ``run`` is no supported run result (the message names the
                supported types), or a bad argument.
            MissingAgentError: no agent given and ``XPANDER_AGENT_ID`` unset.
            ModuleException: the platform refused it or could not be reached.
        """
        from .frameworks import summarize_run

        unknown = set(fields) - _REPORT_FIELDS
        if unknown:
            raise InvalidInputError(f"report_run got unknown fields: {', '.join(sorted(unknown))}")
        if task is not None and not isinstance(task, Task):
            raise InvalidInputError("task must be an xpander_sync.Task (or None)")
        summary = summarize_run(run, self._secrets())
        values: Dict[str, Any] = summary.fields()
        if task is not None:
            values["id"] = task.id
            if input is None:
                input = _task_input(task)
        values.update(fields)
        return self.report_external_task(
            agent_id=agent_id, agent=agent, input=input, duration=duration or 0, **values
        )

    def track(
        self,
        agent_id: Optional[str] = None,
        input: Optional[str] = None,
        task: Optional[Task] = None,
        agent: Optional[Agent] = None,
    ) -> Tracked:
        """Time a block (``with``/``async with``) or each call of a function (a decorator) and report it once.

        ::

            with backend.track(agent_id="agt-1", input=prompt) as tracked:
                tracked.set_run(agent.run(prompt))   # agno RunOutput: text, tokens, tools

            @backend.track(agent_id="agt-1")
            async def answer(prompt): return await agent.arun(prompt)

        On exit: :meth:`report_run` when a run result was given to ``tracked.set_run(...)``
        or returned by the decorated function, else :meth:`report_external_task` with the
        duration and what ``tracked.set_result(text, **fields)`` gave (a decorated function's
        returned string is the result). When the block raises, the report has
        ``is_success=False`` and the scrubbed error text, and the exception is re-raised.

        Args:
            agent_id: the agent the run belongs to.
            input: the input text.
            task: the task the run is for (its id is the report's id).
            agent: an :class:`Agent` (wins over ``agent_id``).

        Returns:
            A :class:`~xpander_sync.tracking.Tracked` (its ``report`` and ``duration`` are set on exit).

        Raises:
            InvalidInputError: ``task`` is not a :class:`Task`.
        """
        if task is not None and not isinstance(task, Task):
            raise InvalidInputError("task must be an xpander_sync.Task (or None)")
        return Tracked(self, agent_id, input, task, agent)

    def _secrets(self) -> List[str]:
        """Values an exception's text is scrubbed of: the API key, the providers' environment keys."""
        from .frameworks._llm import ENV_KEYS

        found = list(self._transport.secrets)
        found += [os.environ.get(name) or "" for names in ENV_KEYS.values() for name in names]
        return [s for s in found if s]

    def flush_outbox(self, *, limit: int = 1000) -> FlushResult:
        """Deliver the reports queued in the configured outbox, in order (deleting each after a 2xx).

        Args:
            limit: deliver at most this many reports in this call.

        Returns:
            A :class:`FlushResult`: the delivered task ids, the ``(task id, error)`` pairs
            that failed, and how many reports remain queued.

        Raises:
            ConfigurationError: no ``outbox`` is configured.
        """
        outbox = outbox_at(self.configuration.outbox)
        if outbox is None:
            raise ConfigurationError("no outbox configured: pass Configuration(outbox=PATH)")
        return outbox.flush(self._reports.send, self.configuration.base_url, limit=limit)

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until background reports were delivered or stored in the outbox.

        Args:
            timeout: seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            ``False`` if ``timeout`` seconds passed first; ``True`` otherwise (also when
            background reporting is off).
        """
        return flush_background(self._transport, timeout)

    def invoke_agent(
        self,
        agent_id: Optional[str] = None,
        prompt: str = "",
        existing_task_id: Optional[str] = None,
        file_urls: Optional[List[str]] = None,
        user_details: Union[User, Mapping[str, Any], None] = None,
        agent_version: Union[int, str, None] = None,
        tool_call_payload_extension: Optional[Dict[str, Any]] = None,
        source: Optional[str] = "sdk",
        worker_id: Optional[str] = None,
        run_locally: bool = False,
        output_format: Union[OutputFormat, str, None] = None,
        output_schema: Optional[Dict[str, Any]] = None,
        events_streaming: bool = False,
        additional_context: Optional[str] = None,
        expected_output: Optional[str] = None,
        attachments: Optional[List[Dict[str, Any]]] = None,
    ) -> Task:
        """Create a task for an agent, or return the task a JSON prompt points at.

        When ``prompt`` is a JSON object with ``xpander_task_id``, that task is loaded
        (:meth:`Tasks.get <xpander_sync.Tasks.get>`) and returned; its errors are raised (the
        official SDK swallows them and creates a new task from the JSON text). Otherwise
        :meth:`Tasks.create_with_body <xpander_sync.Tasks.create_with_body>` creates a task.
        Unlike the official SDK, the agent is not loaded first: that request added nothing.

        Args:
            agent_id: the agent to run (default: ``configuration.agent_id``, then ``XPANDER_AGENT_ID``).
            prompt: the input text, or a JSON object with ``xpander_task_id`` to load that task.
            existing_task_id: sent as the body's ``id``.
            file_urls: input file URLs.
            user_details: the user the task runs for: a :class:`User` or a dict of its fields.
            agent_version: sent as ``x-agent-version`` (0, ``None`` or ``""`` send nothing).
            tool_call_payload_extension: sent as the body's ``payload_extension`` (a dict).
            source: the task source.
            worker_id: sent as the body's ``worker_id``.
            run_locally: sent as the body's ``run_locally``.
            output_format: an :class:`OutputFormat` or its value.
            output_schema: a JSON schema for the result (a dict).
            events_streaming: sent as the body's ``events_streaming``.
            additional_context: extra context for the agent.
            expected_output: a description of the expected output.
            attachments: sent as ``input.attachments`` when not empty.

        Returns:
            The created :class:`Task`, or the task named by ``xpander_task_id``.

        Raises:
            MissingAgentError: no agent id and ``XPANDER_AGENT_ID`` unset.
            InvalidInputError: a bad argument.
            ModuleException: the platform refused it or could not be reached.
        """
        task_id = _task_id_from_prompt(prompt)
        if task_id is not None:
            return self._tasks.get(task_id)
        target = resolve_agent_id(None, agent_id, self.configuration.agent_id)
        body = build_create_task_body(
            prompt,
            existing_task_id=existing_task_id,
            file_urls=file_urls,
            user_details=user_details,
            payload_extension=tool_call_payload_extension,
            source=source,
            worker_id=worker_id,
            run_locally=run_locally,
            output_format=output_format,
            output_schema=output_schema,
            events_streaming=events_streaming,
            additional_context=additional_context,
            expected_output=expected_output,
            attachments=attachments,
        )
        return self._tasks.create_with_body(target, body, agent_version=agent_version)

    def get_args(
        self,
        agent_id: Optional[str] = None,
        agent: Optional[Agent] = None,
        agent_version: Union[int, str, None] = None,
        task: Optional[Task] = None,
        override: Optional[Dict[str, Any]] = None,
        tools: Optional[Sequence[Any]] = None,
        auth_events_callback: Optional[Callable[..., Any]] = None,
        framework: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Keyword arguments for the agent framework's constructor.

        ``agno.agent.Agent(**Backend().get_args(agent_id="..."))`` (or ``agno.team.Team``
        when the result has ``members``). Works with and without a task.

        Args:
            agent_id: the agent to load (:meth:`Agents.get <xpander_sync.Agents.get>`, cached for ``agent_cache_ttl``).
            agent: an already loaded :class:`Agent` (wins over ``agent_id``; not modified).
            agent_version: load this version (``x-agent-version``); ignored with ``agent=``.
            task: the task being run: its user, ids, instructions/output overrides and MCP
                tokens are used, and tool calls carry its id.
            override: constructor arguments that replace the built ones (applied last).
            tools: extra tools appended to the built ones.
            auth_events_callback: called as ``callback(agent, task, event)`` for each MCP
                auth event of this call (sync or async), besides ``@on_auth_event`` handlers.
            framework: build for this framework instead of the agent's own.

        Returns:
            A dict of constructor keyword arguments.

        Raises:
            MissingAgentError: no agent given and ``XPANDER_AGENT_ID`` unset.
            InvalidInputError: a bad argument (named in the message).
            FrameworkNotInstalledError: the framework package is missing (the message names the extra).
            UnsupportedFrameworkError: no adapter for the agent's framework.
            AuthenticationRequiredError: an MCP server needs a login that did not complete.
            ModuleException: the platform refused a request or could not be reached.
        """
        # Imported on first use: the adapters are not needed to report or invoke, and they
        # are a measurable part of `import xpander_sync` (docs/performance.md).
        from .frameworks import get_args_for, require_framework
        from .frameworks._context import BuildContext

        if task is not None and not isinstance(task, Task):
            raise InvalidInputError("task must be an xpander_sync.Task (or None)")
        if override is not None and not isinstance(override, Mapping):
            raise InvalidInputError("override must be a dict of constructor arguments (or None)")
        if override is not None and not all(isinstance(key, str) for key in override):
            raise InvalidInputError("override keys must be strings (constructor argument names)")
        if tools is not None and (isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence)):
            raise InvalidInputError("tools must be a list of tools (or None)")
        for i, tool in enumerate(tools or ()):
            if tool is None or isinstance(tool, (str, bytes, int, float)):
                raise InvalidInputError(
                    f"tools[{i}] is a {type(tool).__name__}, not a tool: pass the framework's tool objects or functions"
                )
        if auth_events_callback is not None and not callable(auth_events_callback):
            raise InvalidInputError("auth_events_callback must be callable as callback(agent, task, event)")
        if framework is not None:
            if not isinstance(framework, str) or not framework.strip():
                raise InvalidInputError("framework must be a framework name such as 'agno' (or None)")
            require_framework(framework)  # an unknown framework fails before any request
        context = BuildContext(
            self._transport, auth_events_callback=auth_events_callback, is_async=caller_loop.get() is not None
        )
        if agent is not None:
            resolve_agent_id(agent, None, None)  # validates the type
        else:
            target = resolve_agent_id(None, agent_id, self.configuration.agent_id)
            agent = context.load_agent(target, _version_number(agent_version))
        return get_args_for(
            agent,
            task=task,
            override=dict(override) if override is not None else None,
            tools=list(tools) if tools is not None else None,
            auth_events_callback=auth_events_callback,
            context=context,
            framework=framework,
        )

    aget_args = async_twin(get_args)
    areport_external_task = async_twin(report_external_task)
    areport_run = async_twin(report_run)
    aflush_outbox = async_twin(flush_outbox)
    aflush = async_twin(flush)
    ainvoke_agent = async_twin(invoke_agent)


_REPORT_FIELDS = frozenset({"id", "llm_response", "tokens", "is_success", "result", "used_tools"})


def _task_input(task: Task) -> Optional[str]:
    text = getattr(task.input, "text", None) if task.input is not None else None
    return text if isinstance(text, str) else None


def _version_number(value: Union[int, str, None]) -> Optional[int]:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidInputError("agent_version must be an int")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidInputError("agent_version must be an int (or a numeric string)") from None
    if number < 0:
        raise InvalidInputError("agent_version must be >= 0")
    return number or None


def _task_id_from_prompt(prompt: Any) -> Optional[str]:
    if not isinstance(prompt, str):
        raise InvalidInputError("prompt must be a string")
    text = prompt.strip()
    if not text.startswith("{"):
        return None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(parsed, dict) and "xpander_task_id" in parsed:
        value = parsed["xpander_task_id"]
        if not isinstance(value, str) or not value:
            raise InvalidInputError("xpander_task_id in the prompt must be a non-empty string")
        return value
    return None
