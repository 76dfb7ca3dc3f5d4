"""The ``poreloop`` command line: a thin layer over the libraries, one module per group.

Each group module (``campaign``, ``twin``, ``segment``, ``critic``, ``surrogate``, ``instrument``,
``lab``) has a ``register(commands)`` that adds its subparser and sets each command's handler; the
handlers import the heavy libraries when they run, so ``poreloop --help`` answers at once. A user
mistake is printed as one line ``poreloop: error: <message>`` on stderr with exit code 2,
never as a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import NoReturn

from poreloop.agent.cli import (
    campaign,
    critic,
    instrument,
    lab,
    lifetime,
    segment,
    surrogate,
    twin,
)

PROG = "poreloop"
GROUPS = (campaign, twin, segment, critic, surrogate, lifetime, instrument, lab)
"""The command groups, in the order ``--help`` lists them; a new group is a module here."""


def user_errors() -> tuple[type[Exception], ...]:
    """The exception families that mean a user mistake; add each package's family here.

    Imported on demand so that ``--help`` does not pay for the packages.
    """
    from poreloop.agent.errors import AgentError
    from poreloop.instruments.errors import InstrumentError
    from poreloop.twins.errors import TwinError

    return (AgentError, TwinError, InstrumentError, OSError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status: 0 on success, 2 on a usage error or user mistake."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.run(args)
    except BrokenPipeError:  # the reader of stdout left early (`poreloop twin list | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if not isinstance(exc, user_errors()):
            raise
        from poreloop.agent.config import ConfigError

        problems = str(exc).splitlines() if isinstance(exc, ConfigError) else [str(exc)]
        for problem in problems:  # a config lists every problem, one a line
            print(f"{PROG}: error: {' '.join(problem.split())}", file=sys.stderr)
        return 2


class Parser(argparse.ArgumentParser):
    """argparse with the house's one-line errors: a usage mistake is ``poreloop: error: ...``
    naming the command and the argument, exit 2 (``--help`` still shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {self.prog.removeprefix(PROG).strip() or PROG}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="A closed-loop lab for porous energy materials.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {version('poreloop')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(commands)
    return parser
