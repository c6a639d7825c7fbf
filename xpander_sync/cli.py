"""The ``xpander-sync`` command line (also ``python -m xpander_sync``).

The only module of the package that prints. Exit status: 0 on success, 1 when the
platform (or the local backend) refused or could not be reached, 2 for usage and
configuration errors (an unsupported or uninstalled framework included), 3 when
``report`` (or ``run``) could not deliver and queued the report in the outbox
(``xpander-sync outbox flush`` delivers it later). ``run`` exits 1 when the run itself failed
(:mod:`xpander_sync.cli_run`). Errors are one line on stderr and never contain a secret.

Commands::

    xpander-sync quickstart                     # offline demo on an embedded local backend
    xpander-sync serve [--agents DIR] [--db PATH] [--host H] [--port N]
    xpander-sync args [AGENT_ID] [--version N] [--json]
    xpander-sync report --agent-id ID --input TEXT --result TEXT [--failed] [--duration S]
                        [--prompt-tokens N --completion-tokens N] [--tool NAME ...]
                        [--outbox PATH | --no-outbox] [--json]
    xpander-sync outbox flush|list [--outbox PATH] [--json]
    xpander-sync agents list [--json]
    xpander-sync tasks show TASK_ID [--json]
    xpander-sync worker MODULE:FUNCTION [--concurrency N] [--agent-id ID]
    xpander-sync run AGENT_ID "prompt" [--framework F] [--task-id T] [--json] [--no-report]

Global options (before the command): ``--base-url``, ``--api-key`` (default: the
environment), ``-v`` for debug logs (redacted).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any, Dict, Optional, Sequence, TextIO

import attrs

from . import __version__
from ._converter import unstructure
from .config import Configuration, state_dir
from .errors import (
    ConfigurationError,
    FrameworkNotInstalledError,
    InvalidInputError,
    ModuleException,
    UnsupportedFrameworkError,
    XpanderError,
)
from .frameworks import ADAPTERS
from .summary import summarize_args

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_QUEUED = 0, 1, 2, 3
ENV_OUTBOX = "XPANDER_OUTBOX"


def default_outbox_path() -> str:
    """``$XPANDER_OUTBOX``, else ``$XDG_STATE_HOME/xpander-sync/outbox.sqlite3`` (``~/.local/state`` by default).

    Returns:
        The path of the outbox file ``report`` and ``outbox`` use when ``--outbox`` is not given.
    """
    explicit = os.environ.get(ENV_OUTBOX)
    if explicit:
        return explicit
    return os.path.join(state_dir(), "outbox.sqlite3")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests).

    Returns:
        A new :class:`argparse.ArgumentParser` with the global options and every command.
    """
    parser = argparse.ArgumentParser(
        prog="xpander-sync", description="A plain, blocking client for the xpander.ai Backend."
    )
    parser.add_argument("--version", action="version", version=f"xpander-sync {__version__}")
    parser.add_argument("--base-url", help="API base URL (default: XPANDER_BASE_URL or the xpander cloud)")
    parser.add_argument("--api-key", help="API key (default: XPANDER_API_KEY); never printed")
    parser.add_argument("--organization-id", help="organization id (default: XPANDER_ORGANIZATION_ID)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs on stderr (secrets redacted)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    quick = commands.add_parser("quickstart", help="run the offline demo on an embedded local backend")
    quick.add_argument("--json", action="store_true", help="print the summary as JSON")

    serve = commands.add_parser("serve", help="run the local xpander-compatible backend")
    serve.add_argument("--agents", metavar="DIR", help="folder of agent JSON files (default: bundled samples)")
    serve.add_argument("--db", metavar="PATH", help="SQLite file for tasks and reports")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="port (default: a free one, printed)")
    serve.add_argument("--require-api-key", metavar="KEY", help="reject requests without this x-api-key")

    args = commands.add_parser("args", help="resolve an agent's framework arguments and summarise them")
    args.add_argument("agent_id", nargs="?", help="agent id (default: XPANDER_AGENT_ID)")
    args.add_argument("--version", dest="agent_version", type=int, help="agent version")
    args.add_argument(
        "--framework", metavar="NAME",
        help=f"build for this framework instead of the agent's own ({', '.join(ADAPTERS)}, or a registered one)",
    )
    args.add_argument("--json", action="store_true")

    report = commands.add_parser("report", help="report a task that ran outside the platform")
    report.add_argument("--agent-id", help="agent id (default: XPANDER_AGENT_ID)")
    report.add_argument("--id", dest="task_id", help="task id (default: a new uuid4)")
    report.add_argument("--input", required=True)
    report.add_argument("--result", required=True)
    report.add_argument("--failed", action="store_true", help="the run failed")
    report.add_argument("--duration", type=float, default=0.0, help="seconds the run took")
    report.add_argument("--prompt-tokens", type=int)
    report.add_argument("--completion-tokens", type=int)
    report.add_argument("--tool", action="append", default=[], metavar="NAME", help="a tool used (repeatable)")
    report.add_argument("--outbox", metavar="PATH",
                        help="where undeliverable reports wait (default: $XPANDER_OUTBOX or ~/.local/state/...)")
    report.add_argument("--no-outbox", action="store_true", help="fail instead of queueing when delivery fails")
    report.add_argument("--json", action="store_true")

    outbox = commands.add_parser("outbox", help="reports waiting in the outbox")
    outbox_cmd = outbox.add_subparsers(dest="outbox_command", metavar="ACTION")
    outbox_cmd.required = True
    for name, text in (("flush", "deliver queued reports, oldest first"), ("list", "show queued reports")):
        action = outbox_cmd.add_parser(name, help=text)
        action.add_argument("--outbox", metavar="PATH", help="the outbox file (default as for report)")
        action.add_argument("--json", action="store_true")

    worker = commands.add_parser("worker", help="run an @on_task handler as a worker (MODULE:FUNCTION)")
    worker.add_argument("target", metavar="MODULE:FUNCTION", help="the handler, e.g. my_app.agents:handle")
    worker.add_argument("--concurrency", type=int, default=6, help="tasks handled at once (default 6)")
    worker.add_argument("--agent-id", help="agent whose tasks to receive (default: XPANDER_AGENT_ID)")
    worker.add_argument("--dispatch", choices=("local", "celery"), default="local",
                        help="local: run the handler here (default); celery: enqueue each task for Celery workers")
    worker.add_argument("--celery-app", metavar="MODULE:APP",
                        help="the Celery app tasks are sent with (with --dispatch celery), e.g. proj.celery:app")

    run = commands.add_parser("run", help="run one turn of an agent here, print the answer and report the run")
    run.add_argument("agent_id", help="the agent to run")
    run.add_argument("prompt", help="the input text")
    run.add_argument("--framework", metavar="NAME",
                     help=f"run it with this framework instead of the agent's own ({', '.join(ADAPTERS)})")
    run.add_argument("--task-id", help="run it for this task (its id is the report's id)")
    run.add_argument("--json", action="store_true", help="print one JSON object (answer, tokens, tools, report)")
    run.add_argument("--no-report", action="store_true", help="do not report the run")
    run.add_argument("--outbox", metavar="PATH", help="where an undeliverable report waits (default as for report)")

    agents = commands.add_parser("agents", help="agents")
    agents_cmd = agents.add_subparsers(dest="agents_command", metavar="ACTION")
    agents_cmd.required = True
    agents_list = agents_cmd.add_parser("list", help="list agents")
    agents_list.add_argument("--json", action="store_true")

    tasks = commands.add_parser("tasks", help="tasks")
    tasks_cmd = tasks.add_subparsers(dest="tasks_command", metavar="ACTION")
    tasks_cmd.required = True
    tasks_show = tasks_cmd.add_parser("show", help="show a task")
    tasks_show.add_argument("task_id")
    tasks_show.add_argument("--json", action="store_true")
    return parser


def _configuration(ns: argparse.Namespace, **extra: Any) -> Configuration:
    overrides: Dict[str, Any] = dict(extra)
    if ns.base_url:
        overrides["base_url"] = ns.base_url
    if ns.api_key:
        overrides["api_key"] = ns.api_key
    if ns.organization_id:
        overrides["organization_id"] = ns.organization_id
    base: Optional[Configuration] = getattr(ns, "base_configuration", None)
    if base is not None:  # a host's settings (Django's XPANDER, Flask's app.config): flags still win
        return attrs.evolve(base, **overrides)
    return Configuration(**overrides)


def _outbox_path(ns: argparse.Namespace) -> str:
    """``--outbox``, else the host's configured outbox, else :func:`default_outbox_path`."""
    base: Optional[Configuration] = getattr(ns, "base_configuration", None)
    return str(ns.outbox or (base.outbox if base is not None and base.outbox else None) or default_outbox_path())


def _print_json(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


# -- summaries -------------------------------------------------------------------------------


def _render_summary(summary: Dict[str, Any], out: TextIO) -> None:
    model = summary["model"] or {}
    out.write(f"  class:   {summary['framework_class']}\n")
    out.write(f"  model:   {model.get('class')} ({model.get('id')})\n")
    out.write(f"  tools:   {', '.join(summary['tools']) or '-'}\n")
    if summary["members"]:
        out.write("  members: " + ", ".join(f"{m['name']} ({m['model']})" for m in summary["members"]) + "\n")
    storage = summary["storage"]
    out.write(f"  storage: {storage['class'] + ' schema ' + str(storage['schema']) if storage else '-'}\n")
    if summary["structured_output"]:
        out.write("  output:  structured (JSON schema)\n")


# -- commands -------------------------------------------------------------------------------


def _cmd_args(ns: argparse.Namespace, out: TextIO) -> int:
    from .backend import Backend
    from .resources.agents import Agents

    configuration = _configuration(ns)
    # Load the agent here (the one GET get_args would make) to know which framework it names.
    agent = Agents(configuration).get(ns.agent_id, version=ns.agent_version)
    args = Backend(configuration).get_args(agent=agent, framework=ns.framework)
    summary = summarize_args(args, ns.framework or agent.framework or None)
    if ns.json:
        _print_json(summary, out)
    else:
        out.write(f"{summary['name']} ({summary['id']})\n")
        _render_summary(summary, out)
    return EXIT_OK


def _cmd_report(ns: argparse.Namespace, out: TextIO) -> int:
    from .backend import Backend
    from .reporting import QueuedReport

    tokens = None
    if ns.prompt_tokens is not None or ns.completion_tokens is not None:
        tokens = {"prompt_tokens": ns.prompt_tokens or 0, "completion_tokens": ns.completion_tokens or 0}
    outbox = None if ns.no_outbox else (_outbox_path(ns))
    result = Backend(_configuration(ns, outbox=outbox)).report_external_task(
        agent_id=ns.agent_id, id=ns.task_id, input=ns.input, result=ns.result, is_success=not ns.failed,
        duration=ns.duration, tokens=tokens, used_tools=ns.tool,
    )
    if isinstance(result, QueuedReport):
        if ns.json:
            _print_json({"id": result.task_id, "agent_id": result.agent_id, "delivered": False,
                         "outbox": result.outbox}, out)
        else:
            out.write(result.task_id + "\n")
        sys.stderr.write(
            f"xpander-sync: queued: not delivered ({result.reason}); kept in {result.outbox}; "
            "run 'xpander-sync outbox flush' later\n"
        )
        return EXIT_QUEUED
    if ns.json:
        _print_json({"id": result.id, "agent_id": result.agent_id, "status": result.status.value,
                     "delivered": True}, out)
    else:
        out.write(result.id + "\n")
    return EXIT_OK


def _cmd_outbox(ns: argparse.Namespace, out: TextIO) -> int:
    from .backend import Backend
    from .reporting import Outbox

    path = _outbox_path(ns)
    if ns.outbox_command == "list":
        rows = Outbox(path).pending() if os.path.exists(path) else []
        if ns.json:
            _print_json([{k: r[k] for k in ("task_id", "agent_id", "attempts", "last_error")} for r in rows], out)
        else:
            for r in rows:
                out.write(f"{r['task_id']}\t{r['agent_id']}\tattempts={r['attempts']}\t{r['last_error'] or ''}\n")
        return EXIT_OK
    if not os.path.exists(path):
        out.write("outbox is empty\n" if not ns.json else "{}\n")
        return EXIT_OK
    flushed = Backend(_configuration(ns, outbox=path)).flush_outbox()
    if ns.json:
        _print_json({"delivered": flushed.delivered, "failed": [list(f) for f in flushed.failed],
                     "remaining": flushed.remaining}, out)
    else:
        out.write(f"delivered {len(flushed.delivered)}, remaining {flushed.remaining}\n")
        for task_id, error in flushed.failed:
            (getattr(ns, "err", None) or sys.stderr).write(f"xpander-sync: {task_id}: {error}\n")
    return EXIT_OK if not flushed.failed else EXIT_FAILED


def _cmd_agents_list(ns: argparse.Namespace, out: TextIO) -> int:
    from .resources.agents import Agents

    items = Agents(_configuration(ns)).list()
    if ns.json:
        _print_json([unstructure(i) for i in items], out)
    else:
        for item in items:
            out.write(f"{item.id}\t{item.name}\t{item.status or ''}\n")
    return EXIT_OK


def _cmd_tasks_show(ns: argparse.Namespace, out: TextIO) -> int:
    from ._redact import redact_mapping
    from .resources.tasks import Tasks

    task = Tasks(_configuration(ns)).get(ns.task_id)
    data = redact_mapping(unstructure(task))
    if ns.json:
        _print_json(data, out)
    else:
        for key in ("id", "agent_id", "status", "created_at", "finished_at", "duration", "used_tools", "result"):
            out.write(f"{key}: {data.get(key)}\n")
        out.write(f"input: {task.input.text}\n")
    return EXIT_OK


def _cmd_serve(ns: argparse.Namespace, out: TextIO) -> int:
    from .local import LocalBackend

    backend = LocalBackend(agents_dir=ns.agents, db_path=ns.db, host=ns.host, port=ns.port,
                           api_key=ns.require_api_key)
    backend.start()
    if ns.host not in ("127.0.0.1", "localhost", "::1"):
        out.write(f"xpander-sync local backend listening on {ns.host} port {backend.url.rsplit(':', 1)[1]}"
                  " (other hosts use this machine's address; every request needs the API key)\n")
        out.write(f"  from this machine: export XPANDER_BASE_URL={backend.url}\n")
    else:
        out.write(f"xpander-sync local backend on {backend.url}\n")
        out.write(f"  export XPANDER_BASE_URL={backend.url}\n")
    out.flush()
    stopped = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        backend.stop()
    return EXIT_OK


def _cmd_worker(ns: argparse.Namespace, out: TextIO) -> int:
    from .worker import run_from_cli

    if ns.concurrency < 1:
        raise InvalidInputError("--concurrency must be at least 1")
    options: Dict[str, Any] = {}
    if ns.dispatch == "celery":
        if not ns.celery_app:
            raise InvalidInputError("--dispatch celery needs --celery-app MODULE:APP (e.g. proj.celery:app)")
        from .contrib.celery import celery_dispatch

        options["dispatch"] = celery_dispatch(ns.celery_app, ns.target)
    elif ns.celery_app:
        raise InvalidInputError("--celery-app is only used with --dispatch celery")
    return run_from_cli(ns.target, _configuration(ns), concurrency=ns.concurrency, agent_id=ns.agent_id,
                        out=out, err=getattr(ns, "err", None) or sys.stderr, **options)


def _cmd_run(ns: argparse.Namespace, out: TextIO) -> int:
    from .cli_run import run_command

    return run_command(ns, _configuration(ns, outbox=_outbox_path(ns)), out)


def _cmd_quickstart(ns: argparse.Namespace, out: TextIO) -> int:
    from .quickstart import run_quickstart

    return run_quickstart(out, as_json=ns.json)


_COMMANDS = {
    "quickstart": _cmd_quickstart,
    "serve": _cmd_serve,
    "args": _cmd_args,
    "report": _cmd_report,
    "worker": _cmd_worker,
    "run": _cmd_run,
    ("agents", "list"): _cmd_agents_list,
    ("tasks", "show"): _cmd_tasks_show,
    ("outbox", "flush"): _cmd_outbox,
    ("outbox", "list"): _cmd_outbox,
}


def main(argv: Optional[Sequence[str]] = None, *, out: Optional[TextIO] = None,
         err: Optional[TextIO] = None, configuration: Optional[Configuration] = None) -> int:
    """Run the CLI; returns the exit status (``sys.exit(main())`` in the console script).

    The library's own errors (:class:`~xpander_sync.errors.XpanderError`) are caught and
    written as one line to ``err``; they become the exit status instead of a traceback.

    Args:
        argv: the arguments after the program name; default ``sys.argv[1:]``.
        out: where command output goes; default ``sys.stdout``.
        err: where error lines and ``-v`` debug logs go; default ``sys.stderr``.
        configuration: the settings to start from instead of the environment (the Django and
            Flask commands pass their framework's settings); the global options still win.

    Returns:
        The exit status: 0 success, 1 the platform refused or could not be reached, 2 usage
        or configuration error, 3 the report was queued in the outbox.

    Raises:
        SystemExit: from :mod:`argparse`: for ``--help`` and ``--version`` (status 0) and
            for unparsable arguments (status 2).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    ns = parser.parse_args(list(argv) if argv is not None else None)
    ns.base_configuration = configuration
    ns.err = err
    if ns.verbose:
        logging.basicConfig(level=logging.DEBUG, stream=err, format="%(levelname)s %(name)s: %(message)s")
    key: Any = ns.command
    if ns.command == "agents":
        key = ("agents", ns.agents_command)
    elif ns.command == "tasks":
        key = ("tasks", ns.tasks_command)
    elif ns.command == "outbox":
        key = ("outbox", ns.outbox_command)
    handler = _COMMANDS[key]
    try:
        return handler(ns, out)
    except (ConfigurationError, InvalidInputError, UnsupportedFrameworkError, FrameworkNotInstalledError) as exc:
        err.write(f"xpander-sync: error: {exc}\n")
        return EXIT_USAGE
    except ModuleException as exc:
        err.write(f"xpander-sync: failed: {exc}\n")
        return EXIT_FAILED
    except XpanderError as exc:
        err.write(f"xpander-sync: error: {exc}\n")
        return EXIT_FAILED


def run() -> None:  # pragma: no cover - console-script shim
    """The ``xpander-sync`` console script: :func:`main` with the process's arguments.

    Raises:
        SystemExit: always, with :func:`main`'s exit status.
    """
    sys.exit(main())
