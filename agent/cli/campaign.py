"""``poreloop run``, ``status`` and ``report``: the closed-loop campaign."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from poreloop.agent.cli.types import positive_int


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run",
        help="run a closed-loop campaign (twins on Ray, the lab over ZeroMQ)",
        description=(
            "Run the campaign in CONFIG: propose recipes, screen them with the twins and "
            "critics on Ray, send the best few to the lab, learn from what it measures, "
            "calibrate the twin. A simulated lab named in the config is served by the campaign "
            "(state under OUT/lab) and stopped at the end or on Ctrl-C. Everything is journalled "
            "in OUT/campaign.sqlite: --resume goes on after a crash, without losing a result or "
            "making a sample twice. Ends by writing OUT/report.html."
        ),
    )
    run.add_argument(
        "config", type=Path, metavar="CONFIG", help="campaign YAML, e.g. configs/electrode.yaml"
    )
    run.add_argument("--out", type=Path, help="run folder (default: the config's out)")
    run.add_argument("--budget", type=positive_int, help="lab samples, overriding the config's")
    run.add_argument("--resume", action="store_true", help="go on with the campaign in OUT")
    run.add_argument(
        "--json-log", action="store_true", help="no live display: one JSON object per update"
    )
    run.set_defaults(run=campaign_run)

    status = commands.add_parser(
        "status",
        help="where a campaign stands (also while it runs, or after it was killed)",
        description="Iterations, screened recipes, lab samples by stage, best, calibration, state.",
    )
    status.add_argument("out", type=Path, metavar="DIR", help="a campaign's run folder")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=campaign_status)

    report = commands.add_parser(
        "report",
        help="write DIR/report.html for a campaign",
        description=(
            "A self-contained HTML report: best lab value against samples, the Pareto front, "
            "twin against lab before and after calibration, the best structure beside its twin, "
            "the top recipes."
        ),
    )
    report.add_argument("out", type=Path, metavar="DIR", help="a campaign's run folder")
    report.set_defaults(run=campaign_report)


def campaign_run(args: argparse.Namespace) -> int:
    from poreloop.agent.campaign import Campaign
    from poreloop.agent.config import load_config

    overrides: dict[str, Any] = {"out": args.out}
    config = load_config(args.config, **overrides)
    if args.budget is not None:
        if config.lab is None:
            from poreloop.agent.config import ConfigError

            raise ConfigError(f"--budget counts lab samples, and {args.config} names no lab")
        config.lab.samples = args.budget
    show = _json_log if args.json_log else _LiveDisplay()
    campaign = Campaign(config, resume=args.resume, on_progress=show)
    try:
        summary = campaign.run()
    finally:
        if isinstance(show, _LiveDisplay):
            show.close()
    if args.json_log:
        print(json.dumps({"event": "finished", **summary}), flush=True)
    else:
        _print_status(summary)
    print(f"report: {campaign.out / 'report.html'}")
    return 0


def campaign_status(args: argparse.Namespace) -> int:
    from poreloop.agent.report import status

    summary = status(args.out)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_status(summary)
    return 0


def campaign_report(args: argparse.Namespace) -> int:
    from poreloop.agent.report import write_report

    print(f"wrote {write_report(args.out)}")
    return 0


def _json_log(progress: Any) -> None:
    print(json.dumps({"event": "progress", "time": time.time(), **vars(progress)}), flush=True)


class _LiveDisplay:
    """A rich live panel on stderr: iteration, screened, the lab by stage, best, calibration."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self._live = Live(console=Console(stderr=True), refresh_per_second=4, transient=False)
        self._live.start()

    def __call__(self, progress: Any) -> None:
        from rich.table import Table

        table = Table(show_header=False, box=None)
        lab = ", ".join(f"{stage} {n}" for stage, n in sorted(progress.lab.items())) or "-"
        best = ", ".join(f"{k} {v:.4g}" for k, v in progress.best.items()) or "-"
        calibration = ", ".join(f"{k} {v:+.3g}" for k, v in progress.calibration.items()) or "-"
        table.add_row("iteration", str(progress.iteration))
        table.add_row("screened", str(progress.screened))
        table.add_row("lab samples", lab)
        table.add_row("best lab value", best)
        table.add_row("calibration", calibration)
        if progress.waiting:
            table.add_row("waiting for approval", ", ".join(progress.waiting))
        if progress.message:
            table.add_row("", progress.message)
        self._live.update(table)

    def close(self) -> None:
        self._live.stop()


def _print_status(summary: dict[str, Any]) -> None:
    lab = summary["lab"]
    print(
        f"state {summary['state']}: {summary['iterations']} iterations, {summary['screened']} "
        f"recipes screened; lab: {lab['dispatched']} dispatched, {lab['fabricated']} fabricated, "
        f"{lab['measured']} measured, {lab['failed']} failed, {lab['unknown']} unknown",
        file=sys.stdout,
    )
    if "pareto" in summary["best"]:
        print(f"Pareto set of {len(summary['best']['pareto'])} (status --json lists them)")
    elif summary["best"]:
        best = {k: v for k, v in summary["best"].items() if k not in ("recipe", "sample")}
        print(f"best: {json.dumps(best)} (sample {summary['best'].get('sample')})")
        if "recipe" in summary["best"]:
            print(
                "  recipe: "
                + ", ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in summary["best"]["recipe"].items()
                )
            )
    if summary["calibration"]:
        print(
            "calibration: " + ", ".join(f"{k}={v:.4g}" for k, v in summary["calibration"].items())
        )
