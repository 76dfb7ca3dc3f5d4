"""``poreloop lab``: a whole simulated lab, one server per configured instrument."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    lab = commands.add_parser(
        "lab",
        help="a simulated lab: every configured instrument at once",
        description="A simulated lab: one instrument server subprocess per configured instrument.",
    )
    lab_commands = lab.add_subparsers(dest="lab_command", required=True, metavar="COMMAND")
    up = lab_commands.add_parser(
        "up",
        help="serve every instrument of a lab config until Ctrl-C",
        description=(
            "Start one server subprocess per instrument in CONFIG, print their endpoints and "
            "PIDs, and stop them all on Ctrl-C or SIGTERM. A bad config or a server that does "
            "not start exits with 2."
        ),
    )
    up.add_argument("config", type=Path, metavar="CONFIG", help="lab YAML, e.g. configs/lab.yaml")
    up.set_defaults(run=lab_up)


def lab_up(args: argparse.Namespace) -> int:
    from poreloop.instruments.lab_config import load_lab_config
    from poreloop.instruments.lab_up import run_lab

    return run_lab(load_lab_config(args.config))
