"""``poreloop lab``: a whole simulated lab, one server per configured instrument, and what
it made."""

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

    samples = lab_commands.add_parser(
        "samples",
        help="list the samples a lab made, with their scans and measurements",
        description=(
            "Every sample in the lab folder DIR (an instrument's --lab-dir; a campaign's is "
            "OUT/lab) with its status and what its instruments' journals recorded as done for "
            "it. --json prints a list of {sample_id, status, created_run, recipe, measurements: "
            "[{instrument, action, at (epoch s), result}]}. Reads only: a running lab is left "
            "as it is."
        ),
    )
    samples.add_argument("dir", type=Path, metavar="DIR", help="the lab folder, e.g. lab")
    samples.add_argument("--json", action="store_true", help="machine-readable output")
    samples.set_defaults(run=lab_samples)


def lab_up(args: argparse.Namespace) -> int:
    from poreloop.instruments.lab_config import load_lab_config
    from poreloop.instruments.lab_up import run_lab

    return run_lab(load_lab_config(args.config))


def lab_samples(args: argparse.Namespace) -> int:
    import json
    from collections import Counter

    from poreloop.instruments.records import list_samples

    samples = list_samples(args.dir)
    if args.json:
        print(json.dumps(samples, indent=2))
        return 0
    if not samples:
        print(f"no samples in {args.dir}")
        return 0
    rows = [("sample", "status", "measurements")]
    for sample in samples:
        done = [
            f"{m['instrument']}.{m['action']}"
            + (f" ({m['result']['scan_id']})" if "scan_id" in m["result"] else "")
            for m in sample["measurements"]
        ]
        rows.append((sample["sample_id"], sample["status"], ", ".join(done) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}")
    statuses = Counter(sample["status"] for sample in samples)
    print(f"{len(samples)} samples: " + ", ".join(f"{n} {s}" for s, n in statuses.most_common()))
    return 0
