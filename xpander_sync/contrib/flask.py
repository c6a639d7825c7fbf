"""xpander-sync in a Flask app: ``XpanderSync(app)`` (or ``init_app``) and ``flask xpander ...``.

* **Configuration** from ``app.config``: ``XPANDER_<FIELD>`` for every
  :class:`~xpander_sync.Configuration` field (``XPANDER_API_KEY``, ``XPANDER_ORGANIZATION_ID``,
  ``XPANDER_BASE_URL``, ``XPANDER_AGENT_ID``, ``XPANDER_READ_TIMEOUT``, ``XPANDER_OUTBOX``,
  ``XPANDER_RETRY``...); a key left out falls back to the environment (or the default).
* The app's :class:`~xpander_sync.Backend` is ``app.extensions["xpander"]`` (built once, in
  ``init_app``; :func:`backend` returns the current app's).
* **Commands**: ``flask xpander worker MODULE:FUNCTION [...]``, ``flask xpander outbox flush|list``,
  ``flask xpander args AGENT_ID``: the ``xpander-sync`` commands with the app's configuration (same
  options, output and exit statuses).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from ._config import FIELDS, configuration_from, require

require("flask", "flask", "xpander_sync.contrib.flask")

import click  # noqa: E402
from flask import Flask, current_app  # noqa: E402
from flask.cli import AppGroup  # noqa: E402

from .. import cli  # noqa: E402
from ..backend import Backend  # noqa: E402
from ..config import Configuration  # noqa: E402

__all__ = ["EXTENSION", "XpanderSync", "backend", "configuration_for", "xpander_cli"]

#: The key of ``app.extensions`` that holds the app's Backend.
EXTENSION = "xpander"
_PREFIX = "XPANDER_"


def configuration_for(app: Flask) -> Configuration:
    """The :class:`~xpander_sync.Configuration` of ``app.config``'s ``XPANDER_*`` keys.

    Args:
        app: the Flask app.

    Returns:
        A new configuration (the environment fills what the app does not set).

    Raises:
        ConfigurationError: a value the configuration rejects (the message names the key).
    """
    values: Dict[str, Any] = {name: app.config.get(_PREFIX + name.upper()) for name in FIELDS}
    return configuration_from(values, source="app.config[XPANDER_*]")


def backend() -> Backend:
    """The current app's Backend (``current_app.extensions["xpander"]``).

    Returns:
        The Backend built by :meth:`XpanderSync.init_app`.

    Raises:
        RuntimeError: outside an app context, or the app was not set up with :class:`XpanderSync`.
    """
    try:
        return current_app.extensions[EXTENSION]
    except KeyError:
        raise RuntimeError("this Flask app has no xpander backend: call XpanderSync(app) or init_app(app)") from None


class XpanderSync:
    """The Flask extension: ``XpanderSync(app)``, or ``ext = XpanderSync(); ext.init_app(app)``.

    Args:
        app: the app to set up now (``None``: call :meth:`init_app` later, e.g. in a factory).
    """

    def __init__(self, app: Optional[Flask] = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> Backend:
        """Build the app's Backend from its config and add the ``flask xpander`` commands.

        Args:
            app: the Flask app.

        Returns:
            The Backend, also at ``app.extensions["xpander"]``.

        Raises:
            ConfigurationError: an ``XPANDER_*`` value the configuration rejects.
        """
        built = Backend(configuration_for(app))
        app.extensions[EXTENSION] = built
        if xpander_cli.name not in app.cli.commands:
            app.cli.add_command(xpander_cli)
        return built


#: ``flask xpander ...``: the command group.
xpander_cli = AppGroup("xpander", help="xpander-sync commands, configured by the app's XPANDER_* settings.")
_PASS_THROUGH: Dict[str, Any] = {"ignore_unknown_options": True, "allow_extra_args": True,
                                 "help_option_names": []}


def _run(command: Tuple[str, ...], args: Tuple[str, ...]) -> None:
    app = current_app
    if EXTENSION in app.extensions:
        base = app.extensions[EXTENSION].configuration
    else:
        base = configuration_for(app)
    status = cli.main([*command, *args], configuration=base)
    if status:
        raise click.exceptions.Exit(status)


@xpander_cli.command("worker", context_settings=_PASS_THROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def _worker(args: Tuple[str, ...]) -> None:
    """Run an @on_task handler as a worker: MODULE:FUNCTION [--concurrency N] [--agent-id ID] [--dispatch ...]."""
    _run(("worker",), args)


@xpander_cli.command("outbox", context_settings=_PASS_THROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def _outbox(args: Tuple[str, ...]) -> None:
    """Reports waiting in the outbox: flush | list [--json]."""
    _run(("outbox",), args)


@xpander_cli.command("args", context_settings=_PASS_THROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def _args(args: Tuple[str, ...]) -> None:
    """Resolve an agent's framework arguments and summarise them: AGENT_ID [--framework F] [--json]."""
    _run(("args",), args)
