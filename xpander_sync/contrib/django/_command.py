"""The base of the ``manage.py xpander_*`` commands: the ``xpander-sync`` command line, run with the
project's settings (:func:`~xpander_sync.contrib.django.configuration`).

The arguments after the command name go to the CLI's own parser unchanged, so the options, the
output, the error lines and the exit statuses are the CLI's (0 ok, 1 the platform failed, 2 usage
or configuration, 3 queued); a non-zero status ends ``manage.py`` with it (``SystemExit``, also
under ``call_command``). Only Django's ``--settings`` and ``--pythonpath`` are taken out (Django
applied them already).
"""

from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence, Tuple

from django.core.management.base import BaseCommand, CommandParser

from ... import cli
from ...errors import ConfigurationError
from . import configuration


class _PassThroughParser(CommandParser):
    """Keeps Django's ``--settings``/``--pythonpath``; every other argument goes to the CLI."""

    def parse_args(self, args: Optional[Sequence[str]] = None, namespace: Any = None) -> Any:
        known, rest = self.parse_known_args(args, namespace)
        known.cli_args = list(rest)
        return known


class XpanderCommand(BaseCommand):
    """Runs ``xpander-sync <prefix> <arguments>`` in the project; subclasses set :attr:`prefix`."""

    #: The CLI command (and action) the arguments follow, e.g. ``("worker",)``.
    prefix: Tuple[str, ...] = ()
    #: The CLI reports a missing key or URL itself, with its exit status 2.
    requires_system_checks: List[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        """A parser that hands the CLI every argument but Django's ``--settings``/``--pythonpath``.

        Args:
            prog_name: ``manage.py`` (or ``django-admin``).
            subcommand: this command's name.
            **kwargs: Django's parser options (``called_from_command_line``...).

        Returns:
            The parser (``--help`` is the CLI's).
        """
        parser = _PassThroughParser(prog=f"{os.path.basename(prog_name)} {subcommand}", description=self.help,
                                    add_help=False, **kwargs)
        for flag in ("--settings", "--pythonpath"):
            parser.add_argument(flag)
        for flag in ("--traceback", "--no-color", "--force-color", "--skip-checks"):
            parser.add_argument(flag, action="store_true")
        parser.set_defaults(verbosity=1, cli_args=[])
        return parser

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the CLI command with the project's configuration; exit with its status when not 0.

        Args:
            *args: ignored (``call_command``'s positional arguments arrive in ``cli_args`` too).
            **options: ``cli_args``, the CLI arguments.

        Raises:
            SystemExit: the CLI's exit status, when it is not 0.
        """
        argv = [*self.prefix, *options.get("cli_args", [])]
        status = _run_cli(argv, self)
        if status:
            raise SystemExit(status)


def _run_cli(argv: List[str], command: BaseCommand) -> int:
    try:
        base = configuration()
    except ConfigurationError as exc:  # an invalid XPANDER: the CLI's usage status, one line
        command.stderr.write(f"xpander-sync: error: {exc}")
        return cli.EXIT_USAGE
    return cli.main(argv, out=command.stdout, err=command.stderr, configuration=base)
