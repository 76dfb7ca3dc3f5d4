"""``poreloop lifetime``: learn cycle life from the first cycles of simulated cells, and predict a
test's."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from poreloop.agent.cli.types import positive_int

DEFAULT_MODEL = Path("runs/critics/lifetime.json")


def register(commands: argparse._SubParsersAction) -> None:
    lifetime = commands.add_parser(
        "lifetime", help="cycle life (cycles to 80 %%) from the first cycles of a cycle-life test"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    train = lifetime.add_parser(
        "train",
        help="learn cycle life from simulated cells' first cycles",
        description=(
            "Age CELLS simulated cells with the cycler's forward model of aging (electrodes, defects "
            "and rates the lab makes, each cell with its own spread) to their true life, fit a "
            "ridge regression of log life on Severson-style features of their first "
            "EARLY_CYCLES, and print its error on as many fresh cells again (a quarter of "
            "CELLS) beside a constant predictor's."
        ),
    )
    train.add_argument("--out", type=Path, default=DEFAULT_MODEL, help=f"(default {DEFAULT_MODEL})")
    train.add_argument("--cells", type=positive_int, default=400)
    train.add_argument("--early-cycles", type=positive_int, default=100)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(run=train_lifetime)

    predict = lifetime.add_parser(
        "predict",
        help="predict a cell's life from a cycle-life test",
        description=(
            "Predict cycles to 80 %% capacity, with a 90 %% interval, from TEST: a cycle-life "
            "result as the cycler returns it (JSON), with check-ups at cycle 10 and at the "
            "model's early cycles. Exit status 2 when the model or the test cannot be read."
        ),
    )
    predict.add_argument("model", type=Path, metavar="MODEL", help="a lifetime model (.json)")
    predict.add_argument("test", type=Path, metavar="TEST", help="a cycle_life result (.json)")
    predict.add_argument("--json", action="store_true", help="machine-readable output")
    predict.set_defaults(run=predict_lifetime)


def train_lifetime(args: argparse.Namespace) -> int:
    import numpy as np

    from poreloop.instruments.aging import SEVERSON_CYCLE, simulated_cells
    from poreloop.twins.critics.lifetime import LifetimeModel, mean_absolute_percentage_error
    from poreloop.twins.errors import CriticError

    if args.early_cycles <= SEVERSON_CYCLE:
        raise CriticError(
            f"--early-cycles must exceed cycle {SEVERSON_CYCLE}, where the reference curve is "
            f"read; got {args.early_cycles}"
        )
    tests, lives = simulated_cells(args.cells, args.early_cycles, args.seed)
    model = LifetimeModel.fit(tests, lives, args.early_cycles)
    model.save(args.out)
    fresh, true = simulated_cells(max(args.cells // 4, 1), args.early_cycles, args.seed + 1)
    predicted = np.array([model.predict(t).cycles for t in fresh])
    constant = np.full(len(true), float(np.median(lives)))
    print(
        f"wrote {args.out}: ridge on {model.cells} cells' first {args.early_cycles} cycles "
        f"(lives {int(lives.min())}-{int(lives.max())} cycles)"
    )
    print(
        f"on {len(true)} fresh cells: mean absolute error "
        f"{100 * mean_absolute_percentage_error(predicted, true):.1f} % "
        f"(constant predictor {100 * mean_absolute_percentage_error(constant, true):.1f} %)"
    )
    return 0


def predict_lifetime(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from poreloop.twins.critics.lifetime import LifetimeModel
    from poreloop.twins.errors import CriticError

    model = LifetimeModel.load(args.model)
    try:
        test = json.loads(args.test.read_text())
    except (OSError, ValueError) as error:
        raise CriticError(f"cannot read a cycle-life test from {args.test}: {error}") from None
    if not isinstance(test, dict):
        raise CriticError(f"{args.test} holds no cycle-life test (a JSON object)")
    life = model.predict(test)
    if args.json:
        print(json.dumps({"model": str(args.model), "coverage": 0.9, **asdict(life)}, indent=2))
    else:
        print(
            f"{args.test}: {life.cycles:.0f} cycles to 80 % capacity "
            f"(90 % in {life.low:.0f}-{life.high:.0f}), from its first {model.early_cycles}"
        )
    return 0
