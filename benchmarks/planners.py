"""Planners beside Ax: simple regret on Hartmann6 and on our electrode, proposal wall time.

Every planner optimises sequentially (one evaluation per ask), seen through the planner contract
only: a ``ParameterSpace`` and a plain Python function returning ``{objective: value}`` (or
``{'failed': True, 'reason': ...}``). Ax runs on the same space through its public ``Client``
with its default generation strategy, untuned, in the same process.

1. Hartmann6 (BoTorch's test function, negated so that every problem is maximised): simple
   regret to the known optimum after each number of evaluations, mean ± sd over seeds.
2. Our electrode twin + chain at a small box, maximising the 1C energy density; the voxel size
   is fixed and the particle radius capped to fit the box. No optimum is known: regret is to
   the best value any run found.
3. Proposal wall time: one ``ask(1)`` after telling N random Hartmann6 observations, beside one
   Ax ``get_next_trials`` after attaching the same N.

Torch threads: our planners pin torch to one thread while they plan, so Ax runs under the same
setting everywhere (plan_s and proposal_s compare like with like); the timing table also times
Ax at torch's default threads and shows that row where the two settings differ by more than
``THREADS_DIFFER``.

    .venv/bin/python -m benchmarks.planners [--problems hartmann6 electrode timing]
        [--planners sobol bayes ax rl] [--seeds 5] [--evals 10 20 30 40]
        [--electrode-seeds 3] [--electrode-evals 10 20] [--electrode-size 40]
        [--timing-planners bayes ax] [--timing-sizes 20 100 300]
        [--option [PROBLEM:]PLANNER.KEY=VALUE ...] [--cache FILE] [--quick] [--json PATH]

from the repository root. The tables go to stdout, progress to stderr, and the results as JSON
to PATH (default runs/benchmarks/planners.json) for a later run to be compared with.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import scipy.stats

from benchmarks._table import (
    add_json_option,
    log,
    machine,
    number,
    print_comments,
    print_table,
    threads,
    verdict,
    write_json,
)
from poreloop.agent.planners import PLANNERS, make_planner
from poreloop.agent.planners.surrogate import torch_on_one_thread
from poreloop.twins.space import Categorical, Integer, ParameterSpace, Recipe

AX = "ax"
INITIALISATION_NODES = ("CenterOfSearchSpace", "Sobol")
MAX_INITIALISATION_STEPS = 2
"""Ax's default generation strategy starts with these nodes, one call each at least."""
PROBLEMS = ["hartmann6", "electrode", "timing"]
TARGET_PLANNER = "bayes"
TARGET_EVALS = 40
"""On Hartmann6 after this many evaluations, ``bayes``'s mean regret no worse than Ax's."""
TARGET_OBSERVATIONS = 300
TARGET_SECONDS = 5.0
"""One ``bayes`` proposal after telling this many observations takes less than this."""
THREADS_DIFFER = 1.25
"""Ax's proposal at torch's default threads is shown beside its one-thread time when one is
more than this many times the other."""

ELECTRODE_VOXEL_UM = 0.4
ELECTRODE_OBJECTIVE = "energy_density_wh_l_1c"
STRUCTURE_SEED = 0
"""Every candidate electrode is generated with this seed, so the objective is a deterministic
function of the recipe and runs of different planners are comparable."""

FULL = {
    "seeds": 5,
    "evals": [10, 20, 30, 40],
    "electrode_seeds": 3,
    "electrode_evals": [10, 20],
    "electrode_size": 40,
    "timing_sizes": [20, 100, 300],
}
QUICK = {
    "seeds": 2,
    "evals": [3, 6],
    "electrode_seeds": 1,
    "electrode_evals": [3, 6],
    "electrode_size": 32,
    "timing_sizes": [20],
}
"""Defaults of the full run and of ``--quick`` (a smoke run of a minute or two)."""


@dataclass(frozen=True)
class Problem:
    """A function to maximise, as a user would hand it to a planner.

    evaluate: recipe → ``{objective: value}``, or ``{'failed': True, 'reason': ...}``;
    optimum: the known maximum, or None when regret is taken to the best value seen in the run.
    """

    name: str
    space: ParameterSpace
    objective: str
    evaluate: Callable[[Recipe], dict[str, Any]]
    optimum: float | None = None
    judged: bool = False
    """Whether the regret target applies to this problem."""


def hartmann6() -> Problem:
    """BoTorch's six-dimensional Hartmann function on [0, 1]^6, negated: maximum 3.32237."""
    import torch
    from botorch.test_functions import Hartmann

    function = Hartmann(dim=6, negate=True)
    names = [f"x{i}" for i in range(1, 7)]

    def evaluate(recipe: Recipe) -> dict[str, Any]:
        x = torch.tensor([[float(recipe[name]) for name in names]], dtype=torch.double)
        return {"hartmann6": float(function(x))}

    space = ParameterSpace.continuous({name: (0.0, 1.0) for name in names})
    return Problem("hartmann6", space, "hartmann6", evaluate, function.optimal_value, judged=True)


def electrode(size: int) -> Problem:
    """The design space and critic of ``poreloop/ElectrodeDesign-v0`` (``envs.design``): the
    electrode twin's recipe at a fixed voxel size, its particle radius capped to fit the box,
    scored by the electrode chain at 1C on a ``size``³ box. A structure that cannot be made or
    scored, or whose solves did not converge, is a failure."""
    from poreloop.envs.design import ElectrodeDesignEnv

    env = ElectrodeDesignEnv(size=size, voxel_size_um=ELECTRODE_VOXEL_UM)

    def evaluate(recipe: Recipe) -> dict[str, Any]:
        (score,) = env.scorer([recipe], [STRUCTURE_SEED])
        if score.reason or score.unconverged:
            capped = f"solves stopped at their iteration cap: {dict(score.unconverged)}"
            return {"failed": True, "reason": score.reason or capped}
        return {ELECTRODE_OBJECTIVE: score.properties[ELECTRODE_OBJECTIVE]}

    return Problem(f"electrode {size}^3", env.space, ELECTRODE_OBJECTIVE, evaluate)


@dataclass
class Run:
    """One planner on one problem with one seed.

    values: the objective of each evaluation in order, NaN where it failed;
    plan_seconds: wall time inside the planner (building it, asking, telling);
    env_steps: environment steps the planner spent in the digital space, if it says;
    reasons: why each failed evaluation failed.
    """

    values: list[float] = field(default_factory=list)
    plan_seconds: float = 0.0
    env_steps: int | None = None
    reasons: list[str] = field(default_factory=list)

    def record(self, problem: Problem, outcome: Mapping[str, Any]) -> None:
        """Keep one evaluation's objective (NaN and the reason when it failed)."""
        if outcome.get("failed"):
            self.values.append(math.nan)
            self.reasons.append(str(outcome.get("reason", "")))
        else:
            self.values.append(float(outcome[problem.objective]))

    def best_after(self, k: int) -> float:
        """Best objective among the first ``k`` evaluations (NaN when none succeeded)."""
        done = np.asarray(self.values[:k], dtype=float)
        return float(np.nanmax(done)) if np.isfinite(done).any() else math.nan


class RunCache:
    """Finished runs kept on disk (JSON lines), so that a long benchmark split over several
    invocations, or stopped, reuses what it has already run instead of running it again."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.runs: dict[str, Run] = {}
        self.reused = 0
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                entry = json.loads(line)
                self.runs[entry["key"]] = Run(**entry["run"])

    @staticmethod
    def key(problem: Problem, planner: Contender, seed: int, evals: int) -> str:
        options = dict(getattr(planner, "options", {}))
        return json.dumps([problem.name, planner.name, options, seed, evals], sort_keys=True)

    def get(self, key: str) -> Run | None:
        run = self.runs.get(key)
        self.reused += run is not None
        return run

    def take_reused(self) -> int:
        """How many runs were reused since the last call."""
        reused, self.reused = self.reused, 0
        return reused

    def put(self, key: str, run: Run) -> None:
        self.runs[key] = run
        if self.path is not None:
            with self.path.open("a") as handle:
                handle.write(json.dumps({"key": key, "run": asdict(run)}) + "\n")


class Stopwatch:
    """Adds up the wall time of the blocks it times."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextmanager
    def __call__(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start


class Contender(Protocol):
    """A planner under test: a sequential run, and the time of one proposal after N points."""

    name: str

    def run(self, problem: Problem, seed: int, evals: int) -> Run: ...

    def time_proposal(
        self, problem: Problem, recipes: list[Recipe], outcomes: list[dict[str, Any]], seed: int
    ) -> float: ...


@dataclass
class Ours:
    """One of our planners, by name, through ``make_planner`` and ask/tell only."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def _make(self, problem: Problem, seed: int, **extra: Any) -> Any:
        objectives = {problem.objective: "max"}
        return make_planner(
            self.name, problem.space, objectives, seed=seed, **extra, **self.options
        )

    def run(self, problem: Problem, seed: int, evals: int) -> Run:
        planning = Stopwatch()
        run = Run()
        with planning():
            planner = self._make(problem, seed)
        for _ in range(evals):
            with planning():
                recipes = planner.ask(1)
            outcome = problem.evaluate(recipes[0])
            with planning():
                planner.tell(recipes, [outcome])
            run.record(problem, outcome)
        run.plan_seconds = planning.seconds
        run.env_steps = getattr(planner, "env_steps", None)
        return run

    def time_proposal(
        self, problem: Problem, recipes: list[Recipe], outcomes: list[dict[str, Any]], seed: int
    ) -> float:
        planner = self._make(problem, seed, warm_start=(recipes, outcomes))
        start = time.perf_counter()
        planner.ask(1)
        return time.perf_counter() - start


@dataclass
class Ax:
    """Ax's ``Client`` with its default generation strategy (no ``configure_generation_strategy``
    call): centre + Sobol initialisation, then its modular BoTorch model. ``one_thread``: torch
    on one thread, as our planners plan (else torch's default threads)."""

    one_thread: bool = True
    name: str = field(init=False)

    def __post_init__(self) -> None:
        import torch

        self.name = AX if self.one_thread else f"{AX} ({torch.get_num_threads()} threads)"

    @property
    def options(self) -> dict[str, Any]:
        """What tells its cached runs apart (``RunCache.key``)."""
        return {"torch_threads": 1} if self.one_thread else {}

    def _threads(self) -> AbstractContextManager[None]:
        return torch_on_one_thread() if self.one_thread else nullcontext()

    @staticmethod
    def client(problem: Problem, seed: int) -> Any:
        """An Ax client on the problem's space (bounds and linear constraints), maximising."""
        from ax import ChoiceParameterConfig, Client, RangeParameterConfig

        for handler in logging.getLogger("ax").handlers:  # Ax logs every trial at INFO
            handler.setLevel(logging.WARNING)
        parameters = []
        for p in problem.space.parameters:
            if isinstance(p, Categorical):
                parameters.append(
                    ChoiceParameterConfig(name=p.name, values=list(p.choices), parameter_type="str")
                )
            else:
                kind = "int" if isinstance(p, Integer) else "float"
                parameters.append(
                    RangeParameterConfig(name=p.name, bounds=(p.low, p.high), parameter_type=kind)
                )
        constraints = [
            " + ".join(f"{c!r} * {name}" for name, c in constraint.coefficients.items())
            + f" <= {constraint.bound!r}"
            for constraint in problem.space.constraints
        ]
        client = Client(random_seed=seed)
        client.configure_experiment(parameters=parameters, parameter_constraints=constraints)
        client.configure_optimization(objective=problem.objective)
        return client

    @staticmethod
    def _tell(client: Any, index: int, outcome: Mapping[str, Any]) -> None:
        if outcome.get("failed"):
            client.mark_trial_failed(index, failed_reason=str(outcome.get("reason", "")))
        else:
            client.complete_trial(index, raw_data=dict(outcome))

    def run(self, problem: Problem, seed: int, evals: int) -> Run:
        planning = Stopwatch()
        run = Run()
        with planning(), self._threads():
            client = self.client(problem, seed)
        for _ in range(evals):
            with planning(), self._threads():
                ((index, parameters),) = client.get_next_trials(max_trials=1).items()
            outcome = problem.evaluate(dict(parameters))
            with planning(), self._threads():
                self._tell(client, index, outcome)
            run.record(problem, outcome)
        run.plan_seconds = planning.seconds
        return run

    def time_proposal(
        self, problem: Problem, recipes: list[Recipe], outcomes: list[dict[str, Any]], seed: int
    ) -> float:
        """The first proposal from Ax's model: attached trials count towards its initialisation,
        but it still steps through its centre and Sobol nodes once each (their trials are
        abandoned, untimed) before its model proposes."""
        with self._threads():
            return self._time_proposal(problem, recipes, outcomes, seed)

    def _time_proposal(
        self, problem: Problem, recipes: list[Recipe], outcomes: list[dict[str, Any]], seed: int
    ) -> float:
        client = self.client(problem, seed)
        for recipe, outcome in zip(recipes, outcomes, strict=True):
            self._tell(client, client.attach_trial(parameters=dict(recipe)), outcome)
        for _ in range(MAX_INITIALISATION_STEPS + 1):
            start = time.perf_counter()
            (index,) = client.get_next_trials(max_trials=1)
            seconds = time.perf_counter() - start
            node = client.summarize(trial_indices=[index])["generation_node"].iloc[0]
            if node not in INITIALISATION_NODES:
                return seconds
            client.mark_trial_abandoned(index)
        raise RuntimeError(
            f"{AX} still proposed from {node} after {MAX_INITIALISATION_STEPS + 1} calls"
        )


def contender(name: str, options: Mapping[str, Any]) -> Contender:
    return Ax() if name == AX else Ours(name, options)


@dataclass
class Result:
    """All seeds of one planner on one problem, or the error that stopped it."""

    planner: str
    runs: list[Run] = field(default_factory=list)
    error: str = ""

    def best(self, k: int) -> np.ndarray:
        """Best value after ``k`` evaluations, one per run (NaN where none succeeded)."""
        return np.array([run.best_after(k) for run in self.runs])


def _error(exc: Exception) -> str:
    log("".join(traceback.format_exception(exc)).rstrip())
    return f"error: {type(exc).__name__}: {' '.join(str(exc).split())}"[:160]


def bench_problem(
    problem: Problem, contenders: Sequence[Contender], seeds: int, evals: int, cache: RunCache
) -> list[Result]:
    """Every contender for ``seeds`` sequential runs of ``evals`` evaluations (taken from the
    cache where it has them); a contender that raises keeps the runs it finished and the
    error, and the others go on."""
    results = []
    for planner in contenders:
        result = Result(planner.name)
        for seed in range(seeds):
            key = cache.key(problem, planner, seed, evals)
            run = cache.get(key)
            if run is not None:
                log(f"{problem.name}: {planner.name} seed {seed}: reused from {cache.path}")
                result.runs.append(run)
                continue
            log(f"{problem.name}: {planner.name} seed {seed}, {evals} evaluations")
            start = time.perf_counter()
            try:
                run = planner.run(problem, seed, evals)
            except Exception as exc:  # one planner's crash is reported in its row
                result.error = _error(exc)
                break
            cache.put(key, run)
            result.runs.append(run)
            log(
                f"{problem.name}: {planner.name} seed {seed}: best {run.best_after(evals):.4g} "
                f"in {time.perf_counter() - start:.1f} s ({run.plan_seconds:.1f} s planning)"
            )
        results.append(result)
    return results


def mean_sd(values: np.ndarray, digits: int) -> str:
    """``mean ± sd`` of the finite values; ``(k/n)`` appended when only k of n are finite."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return "-"
    sd = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    text = f"{np.mean(finite):.{digits}f} ± {sd:.{digits}f}"
    return text if len(finite) == len(values) else f"{text} ({len(finite)}/{len(values)})"


def comparison(ours: np.ndarray, peer: np.ndarray, digits: int) -> str:
    """Difference of mean regrets and one-sided p-values for 'ours is lower' (unpaired: the
    seeds of two planners share nothing but their number)."""
    ours, peer = ours[np.isfinite(ours)], peer[np.isfinite(peer)]
    if len(ours) < 2 or len(peer) < 2:
        return ""
    welch = scipy.stats.ttest_ind(ours, peer, equal_var=False, alternative="less").pvalue
    mann_whitney = scipy.stats.mannwhitneyu(ours, peer, alternative="less").pvalue
    return (
        f"mean - {AX}'s = {np.mean(ours) - np.mean(peer):+.{digits}f}; one-sided p "
        f"(lower than {AX}): Welch {welch:.2f}, Mann-Whitney {mann_whitney:.2f}"
    )


def regret_rows(
    problem: Problem, results: list[Result], checkpoints: list[int], digits: int
) -> tuple[list[str], list[list[str]]]:
    """One row per planner: regret at each checkpoint, best value, failures, planning time."""
    reference = problem.optimum
    if reference is None:
        seen = [v for r in results for run in r.runs for v in run.values if math.isfinite(v)]
        reference = max(seen) if seen else math.nan
    last = checkpoints[-1]
    peer = next((r for r in results if r.planner == AX and r.runs), None)
    columns = [
        "planner",
        "runs",
        *(f"regret@{k}" for k in checkpoints),
        f"best@{last}",
        "failed",
        "plan_s",
        "target",
        "note",
    ]
    rows = []
    for result in results:
        notes = [result.error] if result.error else []
        if not result.runs:
            rows.append([result.planner, "0", *["-"] * (len(columns) - 4), "", " ".join(notes)])
            continue
        regrets = {k: reference - result.best(k) for k in checkpoints}
        steps = [run.env_steps for run in result.runs if run.env_steps is not None]
        if steps:
            notes.append(f"env steps per run: {np.mean(steps):.0f}")
        target = ""
        if peer is not None and result is not peer:
            notes.append(comparison(regrets[last], reference - peer.best(last), digits))
            if problem.judged and result.planner == TARGET_PLANNER and last == TARGET_EVALS:
                met = np.nanmean(regrets[last]) <= np.nanmean(reference - peer.best(last))
                target = verdict(bool(met))
        failed = np.mean([np.isnan(run.values).sum() for run in result.runs])
        reasons = Counter(reason for run in result.runs for reason in run.reasons)
        if reasons:
            reason, count = reasons.most_common(1)[0]
            total = sum(reasons.values())
            notes.append(f"most common failure ({count} of {total}): {reason[:80]}")
        rows.append(
            [
                result.planner,
                str(len(result.runs)),
                *(mean_sd(regrets[k], digits) for k in checkpoints),
                mean_sd(result.best(last), digits),
                f"{failed:.1f}",
                f"{np.mean([run.plan_seconds for run in result.runs]):.1f}",
                target,
                "; ".join(n for n in notes if n),
            ]
        )
    return columns, rows


def bench_timing(
    problem: Problem, contenders: Sequence[Contender], sizes: list[int]
) -> list[list[str]]:
    """Wall time of one proposal after ``n`` uniformly random observations, for each ``n``."""
    rows = []
    for n in sizes:
        recipes = problem.space.sample(n, seed=n, method="random")
        outcomes = [problem.evaluate(recipe) for recipe in recipes]
        for planner in contenders:
            log(f"timing: {planner.name} after {n} observations")
            try:
                seconds = planner.time_proposal(problem, recipes, outcomes, seed=0)
            except Exception as exc:  # one planner's crash is reported in its row
                rows.append([str(n), planner.name, "-", "", _error(exc)])
                continue
            target = ""
            if planner.name == TARGET_PLANNER and n == TARGET_OBSERVATIONS:
                target = verdict(seconds < TARGET_SECONDS)
            rows.append([str(n), planner.name, number(seconds, 2), target, ""])
    return rows


def differ(rows: list[list[str]], row: list[str]) -> bool:
    """Whether Ax's time in ``row`` (at torch's default threads) and its one-thread time at the
    same N differ by more than ``THREADS_DIFFER`` (or either is missing)."""
    one = next((r[2] for r in rows if r[0] == row[0] and r[1] == AX), "-")
    if "-" in (one, row[2]):
        return True
    ratio = float(row[2]) / max(float(one), 1e-9)
    return not 1 / THREADS_DIFFER <= ratio <= THREADS_DIFFER


def threads_note(rows: list[list[str]]) -> str:
    """Which torch thread setting each timing row ran under."""
    note = f"every planner here, {AX} included, ran with torch on 1 thread (ours pin it)"
    default = [row for row in rows if row[1].startswith(f"{AX} (")]
    if not default:
        return note + f"; torch's default is {threads()['torch']} thread(s), the same setting"
    shown = sum(differ(rows, row) for row in default)
    return (
        note + f"; '{default[0][1]}' is {AX} at torch's default threads, shown where it differs "
        f"from its 1-thread time by more than {THREADS_DIFFER:g}x ({shown} of {len(default)} N)"
    )


def parse_options(
    items: list[str], problems: list[str], planners: list[str]
) -> dict[tuple[str, str], dict[str, Any]]:
    """``[PROBLEM:]PLANNER.KEY=VALUE`` → {(problem, planner): {key: value}}; the value is read
    as JSON where it parses (numbers, true, lists), else kept as a string; without a problem
    the option applies to every problem."""
    pattern = re.compile(r"^(?:(\w+):)?(\w+)\.(\w+)=(.*)$")
    options: dict[tuple[str, str], dict[str, Any]] = {}
    for item in items:
        match = pattern.match(item)
        if not match or match.group(1) not in (None, *problems) or match.group(2) not in planners:
            raise ValueError(
                f"--option expects [PROBLEM:]PLANNER.KEY=VALUE with PROBLEM one of {problems} "
                f"and PLANNER one of {planners}, got {item!r}"
            )
        scope, planner, key, text = match.groups()
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        for problem in [scope] if scope else problems:
            options.setdefault((problem, planner), {})[key] = value
    return options


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    planners = [*PLANNERS, AX]
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, metavar="PROBLEM")
    parser.add_argument("--planners", nargs="+", choices=planners, metavar="PLANNER")
    parser.add_argument(
        "--seeds", type=int, help=f"runs per planner on Hartmann6 ({FULL['seeds']})"
    )
    parser.add_argument(
        "--evals", type=int, nargs="+", help="report regret after these many evaluations"
    )
    parser.add_argument("--electrode-seeds", type=int)
    parser.add_argument("--electrode-evals", type=int, nargs="+")
    parser.add_argument("--electrode-size", type=int, help="edge of the electrode box (voxels)")
    parser.add_argument("--timing-planners", nargs="+", choices=planners, metavar="PLANNER")
    parser.add_argument("--timing-sizes", type=int, nargs="+", help="observations told first")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="[PROBLEM:]PLANNER.KEY=VALUE",
        help="a planner option, e.g. rl.algorithm=PPO or electrode:rl.total_timesteps=2000",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        help="keep finished runs in this JSON-lines file and reuse those it holds",
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    add_json_option(parser, "planners")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    problems = args.problems or PROBLEMS
    names = args.planners or ["sobol", TARGET_PLANNER, AX, "rl"]
    timing_names = args.timing_planners or [TARGET_PLANNER, AX]
    try:
        options = parse_options(args.option, PROBLEMS, planners)
    except ValueError as exc:
        parser.error(str(exc))

    def contenders(problem: str, chosen: list[str]) -> list[Contender]:
        return [contender(name, options.get((problem, name), {})) for name in chosen]

    header = machine("ax-platform", "botorch", "gpytorch", "stable-baselines3")
    notes = [
        "every run is sequential: one evaluation per ask; our planners see only a "
        "ParameterSpace and a plain function; seeds 0..n-1",
        f"{AX}: ax.Client(random_seed=seed) with its default generation strategy (centre + "
        "Sobol, 5 trials, then its modular BoTorch model), untuned; failures marked failed",
        "regret: reference - best value found so far, mean ± sd over runs; best: best value "
        "found; failed: failed evaluations per run; plan_s: wall time inside the planner per "
        "run (build, ask, tell), evaluations excluded, with torch on 1 thread for every planner "
        f"({AX} included: ours pin it while planning)",
        "p-values: one-sided, unpaired (Welch t-test and Mann-Whitney U) for a planner's regret "
        f"being lower than {AX}'s; with few runs they are a guide, not a verdict",
        f"target: {TARGET_PLANNER}'s mean regret after {TARGET_EVALS} Hartmann6 evaluations no "
        f"worse than {AX}'s; one {TARGET_PLANNER} proposal after {TARGET_OBSERVATIONS} "
        f"observations under {TARGET_SECONDS:g} s",
    ]
    print_comments(header, notes)
    sys.stdout.flush()
    cache = RunCache(args.cache)
    tables: dict[str, list[Any]] = {}
    if "hartmann6" in problems:
        problem = hartmann6()
        note = (
            "hartmann6: BoTorch Hartmann(dim=6, negate=True) on [0, 1]^6, maximised; regret to "
            f"its optimum {problem.optimum:g}"
        )
        runs = bench_problem(
            problem, contenders("hartmann6", names), args.seeds, max(args.evals), cache
        )
        checkpoints = sorted(args.evals)
        print_regret(problem, runs, checkpoints, 3, note, "hartmann6", cache, notes, tables)
    if "electrode" in problems:
        problem = electrode(args.electrode_size)
        note = (
            f"{problem.name}: poreloop/ElectrodeDesign-v0's space and critic: li_ion_electrode "
            f"twin (structure seed {STRUCTURE_SEED}, voxel {ELECTRODE_VOXEL_UM} um, particle "
            f"radius capped at {problem.space['particle_radius_um'].high:.3g} um to fit the box) "
            f"+ electrode chain at 1C, maximising {ELECTRODE_OBJECTIVE} (Wh/L); no optimum is "
            "known: regret is to the best value any run in this table found; structures the "
            "chain cannot score are told as failed"
        )
        runs = bench_problem(
            problem,
            contenders("electrode", names),
            args.electrode_seeds,
            max(args.electrode_evals),
            cache,
        )
        title = f"{problem.name} ({ELECTRODE_OBJECTIVE}, Wh/L)"
        checkpoints = sorted(args.electrode_evals)
        print_regret(problem, runs, checkpoints, 1, note, title, cache, notes, tables)
    if "timing" in problems:
        timed = contenders("timing", timing_names)
        if AX in timing_names and threads()["torch"] != 1:
            timed.append(Ax(one_thread=False))
        rows = bench_timing(hartmann6(), timed, args.timing_sizes)
        note = (
            "proposal_s: wall time of one ask(1) (ours: the first after warm-starting with "
            f"the observations) or of {AX}'s first get_next_trials(1) from its model (after "
            "attaching and completing them as trials; its centre and Sobol steps are "
            "skipped, untimed), model fitting included; one call each, on uniformly random "
            "Hartmann6 observations (seed N); " + threads_note(rows)
        )
        columns = ("N", "planner", "proposal_s", "target", "note")
        print()
        print_comments({}, [note])
        print_table(
            columns,
            [row for row in rows if not row[1].startswith(f"{AX} (") or differ(rows, row)],
            {"N", "proposal_s"},
            group=1,
            title="proposal wall time after N observations (hartmann6)",
        )
        sys.stdout.flush()
        notes.append(note)
        tables["timing"] = [dict(zip(columns, row, strict=True)) for row in rows]
    write_json(args, header, notes, tables)


def print_regret(
    problem: Problem,
    results: list[Result],
    checkpoints: list[int],
    digits: int,
    note: str,
    title: str,
    cache: RunCache,
    notes: list[str],
    tables: dict[str, list[Any]],
) -> None:
    """A problem's notes and regret table, printed as soon as its runs are done, and kept for
    the JSON: the notes appended to ``notes``, the rows and every run's values to ``tables``."""
    printed = [note]
    reused = cache.take_reused()
    if reused:
        printed.append(
            f"{reused} of these runs reused from {cache.path}, finished by an earlier "
            "invocation on this machine (their plan_s was measured then)"
        )
    columns, rows = regret_rows(problem, results, checkpoints, digits)
    print()
    print_comments({}, printed)
    print_table(columns, rows, set(columns[1:-2]), title=title)
    sys.stdout.flush()
    tables[problem.name] = [dict(zip(columns, row, strict=True)) for row in rows]
    tables[f"{problem.name} runs"] = results
    notes += printed


if __name__ == "__main__":
    main()
