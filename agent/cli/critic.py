"""``poreloop critic``: score a microstructure file with a critic chain."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from poreloop.agent.cli.types import (
    axes,
    periodic_axes,
    phase_names,
    positive_float,
    positive_int,
)


def register(commands: argparse._SubParsersAction) -> None:
    critic = commands.add_parser(
        "critic",
        help="critics: score a microstructure (metrics, transport, flow, cell model)",
        description="Critics (microstructure → properties → performance).",
    )
    critic_commands = critic.add_subparsers(dest="critic_command", required=True, metavar="COMMAND")
    evaluate = critic_commands.add_parser(
        "evaluate",
        help="run a critic chain on a microstructure file",
        description=(
            "Score a .tif/.tiff/.npz microstructure (ours or a segmented stack you bring) with a "
            "chain: generic (morphology + tau/deff of every phase along x, y, z), electrode "
            "(+ solid conduction + PyBaMM cell model), gdl (+ permeability), sofc_anode "
            "(+ Ni and YSZ conduction). Axes x, y, z are array indices 0, 1, 2; tau = inf "
            'is written as the JSON string "inf". Exit status: 0 when every stage finished '
            "and every solve converged; 1 when a stage could not finish (every property that "
            'could be computed is printed; JSON: "ok": false, "reason", "unfinished": the '
            'stages not finished) or a solve stopped at its iteration cap (JSON: "converged": '
            'false, "unconverged"); 2 on a usage error or a file that cannot be read.'
        ),
    )
    evaluate.add_argument("file", type=Path, metavar="FILE", help="a .tif/.tiff or .npz file")
    evaluate.add_argument("--chain", default="generic", help="generic, electrode, gdl, sofc_anode")
    evaluate.add_argument(
        "--phases",
        type=phase_names,
        help="name the phase ids, e.g. 85=active,170=cbd,0=pore (the phase named pore is the "
        "pore space, whatever its id)",
    )
    evaluate.add_argument("--axes", type=axes, help="axes to solve along, e.g. z or x,y,z")
    evaluate.add_argument(
        "--periodic",
        type=periodic_axes,
        help="axes along which the box wraps (a periodic volume), e.g. x,y, or none; default: "
        "what the file says (the twins' files say it, foreign files wrap nowhere)",
    )
    evaluate.add_argument(
        "--voxel-size-um", type=positive_float, help="voxel size in µm, overriding the file's"
    )
    evaluate.add_argument(
        "--max-iterations",
        type=positive_int,
        help="cap every transport and flow solve at N iterations (default: each solver's own)",
    )
    evaluate.add_argument("--json", action="store_true", help="machine-readable output")
    evaluate.set_defaults(run=critic_evaluate)


def critic_evaluate(args: argparse.Namespace) -> int:
    from poreloop.agent.cli.twin import warn_assumed
    from poreloop.twins.critics.chain import get_chain
    from poreloop.twins.microstructure import Microstructure

    options = {"axes": args.axes, "max_iterations": args.max_iterations}
    chain = get_chain(args.chain, **{key: value for key, value in options.items() if value})
    micro = Microstructure.load(args.file, voxel_size_um=args.voxel_size_um)
    given = {"phases": args.phases, "periodic": args.periodic}
    micro = replace(micro, **{key: value for key, value in given.items() if value is not None})
    result = chain.evaluate(micro)
    warn_assumed(micro.provenance.assumed, args.file)
    if args.json:
        print(json.dumps({**result.to_json(), "assumed": micro.provenance.assumed}, indent=2))
        return 0 if not result.problem else 1
    shape = "x".join(map(str, result.shape))
    print(f"{args.file}: chain {result.chain}, {shape} voxels of {result.voxel_size_um:g} um")
    units = result.units
    width = max(map(len, result.properties), default=0)
    for key, value in result.properties.items():
        print(f"  {key:<{width}}  {value:<12.6g}  {units[key]}")
    stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in result.timings_s.items())
    print(f"stages: {stages}")
    if not result.ok:
        print(
            f"poreloop: {result.reason}; not finished: {', '.join(result.unfinished)}; the "
            "properties above are every one that could be computed",
            file=sys.stderr,
        )
        return 1
    if not result.converged:
        print(f"poreloop: {result.problem}; raise --max-iterations", file=sys.stderr)
        return 1
    return 0
