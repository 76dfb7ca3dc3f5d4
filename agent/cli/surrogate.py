"""``poreloop surrogate``: train the neural critic for a campaign, and ask it about a structure."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from poreloop.agent.cli.types import positive_float, positive_int


def register(commands: argparse._SubParsersAction) -> None:
    surrogate = commands.add_parser(
        "surrogate", help="the neural critic: a 3D-CNN ensemble that answers for a critic chain"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    train = surrogate.add_parser(
        "train",
        help="train a neural critic on the structures a campaign config screens",
        description=(
            "Spread recipes over CONFIG's design space (its twin, free bounds and fixed values), "
            "make and score them with its chain at its screening box and resolution on Ray, and "
            "train a deep ensemble of 3D CNNs on the pairs: a mean and a 90 % interval per "
            "property (porosity, tau, D_eff, sigma_eff, surface areas, the objectives), the "
            "intervals calibrated on a third of the structures held out of training. Writes "
            "MODEL.pt and its training set MODEL.npz; a campaign with screening.surrogate "
            "uses them. Prints each property's R^2 and interval coverage on the held-out third. "
            "Uses CUDA when torch sees a GPU."
        ),
    )
    train.add_argument("config", type=Path, metavar="CONFIG", help="a campaign YAML")
    train.add_argument(
        "--out",
        type=Path,
        help="model file to write (.pt); default: the config's screening.surrogate.model",
    )
    train.add_argument("--structures", type=positive_int, help="structures to make and score")
    train.add_argument("--members", type=positive_int, help="networks in the ensemble")
    train.add_argument("--epochs", type=positive_int, help="passes over the training structures")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(run=train_surrogate)

    evaluate = surrogate.add_parser(
        "evaluate",
        help="predict a structure's properties with a neural critic",
        description=(
            "Predict every property MODEL learnt for a .tif/.npz structure, with its 90 % "
            "interval and the probability that the physics chain would score it. A structure "
            "unlike the training structures (other phases, box, voxel size) is refused. Exit "
            "status 0; 1 when a prediction is not a finite number; 2 on a usage error, a file "
            "that cannot be read or a refused structure."
        ),
    )
    evaluate.add_argument("model", type=Path, metavar="MODEL", help="a neural critic (.pt)")
    evaluate.add_argument("file", type=Path, metavar="FILE", help="a .tif/.tiff or .npz file")
    evaluate.add_argument(
        "--thickness-um",
        type=positive_float,
        help="coating thickness the box represents (default: the recipe's, else the box height)",
    )
    evaluate.add_argument(
        "--voxel-size-um", type=positive_float, help="voxel size in µm, overriding the file's"
    )
    evaluate.add_argument("--json", action="store_true", help="machine-readable output")
    evaluate.set_defaults(run=evaluate_surrogate)


def train_surrogate(args: argparse.Namespace) -> int:
    import numpy as np

    from poreloop.agent.cli.progress import StatusLine
    from poreloop.agent.cluster import ScreeningPool, connect
    from poreloop.agent.config import ConfigError, SurrogateSettings, load_config
    from poreloop.agent.learning import check_critic, training_set
    from poreloop.twins.critics import surrogate, weights

    config = load_config(args.config)
    settings = config.screening.surrogate
    out = args.out or (settings.model if settings else None)
    if out is None:
        raise ConfigError(f"{args.config} has no screening.surrogate.model: give --out MODEL.pt")
    if out.suffix != weights.SUFFIX:
        raise ConfigError(f"the model is written as {weights.SUFFIX}, got '{out}'")
    defaults = settings or SurrogateSettings(model=out)
    structures = args.structures or defaults.structures
    status = StatusLine()
    start = time.perf_counter()
    with connect(config.ray.address, config.ray.num_cpus) as cluster:
        workers = config.ray.workers or max(int(cluster.cpus), 1)
        shape = (config.screening.size,) * 3
        with ScreeningPool(config.twin.name, config.screening.chain, shape, workers) as pool:
            status.show(f"making and scoring {structures} structures on {workers} workers")
            data = training_set(config, structures, args.seed, pool)
    made_s = time.perf_counter() - start
    status.end()
    print(
        f"{len(data)} structures made and scored in {made_s:.0f} s "
        f"({sum(data.ok)} scored cleanly by {config.screening.chain})"
    )
    objectives = [*config.objectives, *(c.split()[0] for c in config.constraints)]
    start = time.perf_counter()
    critic = surrogate.train(
        data,
        surrogate.default_properties(data, objectives),
        members=args.members or defaults.members,
        epochs=args.epochs or defaults.epochs,
        seed=args.seed,
        log=status.show,
    )
    status.end()
    check_critic(critic, config)
    critic.save(out)
    data.save(out.with_suffix(".npz"))
    print(
        f"wrote {out} and {out.with_suffix('.npz')}: {critic.trained.members} networks, "
        f"trained in {time.perf_counter() - start:.0f} s on {len(data) - critic.trained.held_out} "
        f"structures, calibrated on {critic.trained.held_out}"
    )
    rows = surrogate.held_out(data)
    indices = [int(i) for i in np.flatnonzero(rows)]
    micros = [data.structure(i) for i in indices]
    thickness = [data.values[i]["thickness_um"] for i in indices]
    predictions = critic.predict(micros, thickness)
    width = max(map(len, critic.properties))
    print(f"{'property':<{width}}  R^2 (held out)  90% coverage")
    for key in critic.properties:
        scored = data.column(key)[rows]
        print(
            f"{key:<{width}}  {surrogate.r2(scored, [p.mean[key] for p in predictions], key):14.3f}"
            f"  {surrogate.coverage(scored, predictions, key):12.2f}"
        )
    return 0


def evaluate_surrogate(args: argparse.Namespace) -> int:
    from poreloop.agent.cli.twin import warn_assumed
    from poreloop.twins.critics.chain import unit_of
    from poreloop.twins.critics.surrogate import NeuralCritic
    from poreloop.twins.microstructure import Microstructure

    critic = NeuralCritic.load(args.model)
    micro = Microstructure.load(args.file, voxel_size_um=args.voxel_size_um)
    warn_assumed(micro.provenance.assumed, args.file)
    start = time.perf_counter()
    [prediction] = critic.predict([micro], [args.thickness_um])
    seconds = time.perf_counter() - start
    if not prediction.inside:
        low, high = critic.trained.thickness_um
        print(
            f"poreloop: warning: the coating thickness lies outside the {low:g}-{high:g} um the "
            "critic learnt from; its intervals do not hold there",
            file=sys.stderr,
        )
    if args.json:
        print(
            json.dumps(
                {
                    "model": str(args.model),
                    "mean": prediction.mean,
                    "low": prediction.low,
                    "high": prediction.high,
                    "units": {key: unit_of(key) for key in prediction.mean},
                    "coverage": 0.9,
                    "p_ok": prediction.p_ok,
                    "inside": prediction.inside,
                    "seconds": seconds,
                },
                indent=2,
            )
        )
        return 0
    t = critic.trained
    print(
        f"{args.file}: neural critic of chain {t.chain} ({t.members} networks, "
        f"{t.examples} structures of {t.twin}), {seconds * 1e3:.0f} ms"
    )
    width = max(map(len, prediction.mean))
    for key, value in prediction.mean.items():
        interval = f"[{prediction.low[key]:.4g}, {prediction.high[key]:.4g}]"
        print(f"  {key:<{width}}  {value:<11.5g} 90% in {interval:<24} {unit_of(key)}")
    verdict = "scores it" if prediction.p_ok >= 0.5 else "fails on it"
    print(f"the chain {verdict}: p = {prediction.p_ok:.2f} that it scores it cleanly")
    return 0 if all(math.isfinite(v) for v in prediction.mean.values()) else 1
