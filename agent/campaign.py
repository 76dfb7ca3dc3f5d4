"""The closed loop of Fig. 13 of the review, as one object a lab leaves running overnight.

Each iteration:

1. propose   the planner asks for a screening batch (at the twin fidelity);
2. screen    twins generate the structures and critic chains score them on Ray; the scores
             are told to the planner at fidelity ``twin``; with ``screening.surrogate`` a
             neural critic answers where it is sure, and the physics chain's answers teach it
             (``agent.learning``);
3. select    the planner's acquisition at the lab fidelity picks ``k`` recipes (a batch, so
             they differ; never one already pending or measured);
4. lab       the samples go robot → inspector → tomograph (→ segmented, scored by the
             critics) → cycler on the lab pipeline's threads, while the next batch screens;
5. feedback  finished samples are told at fidelity ``lab`` (a cracked one as failed, with its
             reason); the twin–lab discrepancy is kept per objective and structure metric;
6. calibrate the twin's process offsets are fitted to the scans; later screening generates
             what the lab will make of a recipe.

Everything is journalled in ``agent.store`` before it is acted on, so ``resume=True`` after a
``kill -9`` goes on where the campaign stopped: screened results and lab results are kept, and
samples in flight continue under their recorded idempotency keys.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from poreloop.agent.calibration import Calibration, MeasuredSample, fit, structure_metrics
from poreloop.agent.config import CampaignConfig, ConfigError, LabSettings
from poreloop.agent.lab import LabPipeline
from poreloop.agent.learning import ActiveLearning
from poreloop.agent.store import FINAL, Store
from poreloop.twins.errors import CriticError

log = logging.getLogger("poreloop.campaign")

LAB_FIDELITY_COST = 50.0
"""What a lab sample costs against one twin screening, for the multi-fidelity planner."""
PURPOSES = ("screen", "lab", "check")
"""Why the twin made a structure (see ``agent.store``); also part of its seed."""
POLL_S = 0.5
"""How often the campaign looks at the lab while it has nothing else to do."""
SCAN_EXPOSURE_S = 1.0


@dataclass
class Progress:
    """What a person watching the campaign sees; ``waiting`` lists held robot motions."""

    iteration: int = 0
    screened: int = 0
    lab: dict[str, int] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, float] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)
    message: str = ""


class Campaign:
    """A campaign of ``config`` in ``config.out``; ``resume`` goes on with the one there."""

    def __init__(
        self,
        config: CampaignConfig,
        *,
        resume: bool = False,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.out = Path(config.out)
        exists = (self.out / Store.FILE).exists()
        if resume and not exists:
            raise ConfigError(f"nothing to resume in {self.out}: it holds no campaign")
        if exists and not resume:
            raise ConfigError(
                f"{self.out} already holds a campaign; add --resume to go on with it, "
                "or choose another --out"
            )
        recorded_in = Store(self.out) if resume else None
        if recorded_in is not None:
            recorded = CampaignConfig.model_validate(recorded_in.meta("config"))
            if config.lab is not None and recorded.lab is not None:
                recorded.lab.samples = max(recorded.lab.samples, config.lab.samples)
            config = recorded.model_copy(update={"out": self.out})
        surrogate = config.screening.surrogate
        self.learning = (  # loaded and checked before a new campaign writes anything
            ActiveLearning(surrogate, self.out / "surrogate", config) if surrogate else None
        )
        self.lifetime = config.lab.cycle_life.model() if config.lab is not None else None
        self.store = recorded_in or Store(self.out)
        self.config = config
        self.on_progress = on_progress or (lambda progress: None)
        self.progress = Progress(  # recipes screened, as ``status`` counts them
            screened=sum(row["purpose"] == "screen" for row in self.store.screens())
        )
        self._shown: Progress | None = None
        self.twin, self.space, self.fixed = config.design()
        self.shape = (config.screening.size,) * 3
        if not resume:
            self.store.set_meta(
                config=config.model_dump(mode="json"),
                campaign_id=uuid.uuid4().hex[:12],
                state="running",
                started=time.time(),
                versions=_versions(),
            )
        self.campaign_id = self.store.meta("campaign_id")
        calibrations = self.store.calibrations()
        self.calibration = (
            Calibration(calibrations[-1]["offsets"], **calibrations[-1]["metrics"])
            if calibrations
            else Calibration()
        )
        self.calibration_id: int | None = calibrations[-1]["id"] if calibrations else None

    @property
    def pipeline(self) -> LabPipeline:
        """The lab pipeline; only asked for by a campaign that has a lab."""
        if self.lab is None:
            raise ConfigError(f"campaign '{self.config.name}' has no lab")
        return self.lab

    @property
    def lab_settings(self) -> LabSettings:
        """The lab's settings; only asked for by a campaign that has a lab."""
        if self.config.lab is None:
            raise ConfigError(f"campaign '{self.config.name}' has no lab")
        return self.config.lab

    # --- the loop -----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run to the end (lab budget spent and every sample back, or the iterations done)."""
        from poreloop.agent.cluster import ScreeningPool, connect

        config = self.config
        lock = self.store.hold()
        self.store.set_meta(state="running")
        try:
            with contextlib.ExitStack() as stack:
                stack.callback(lock.close)
                cluster = stack.enter_context(connect(config.ray.address, config.ray.num_cpus))
                stack.enter_context(_stopped_by_sigterm())
                self.store.set_meta(
                    ray={"mode": cluster.mode, "address": cluster.address, "cpus": cluster.cpus}
                )
                workers = config.ray.workers or _cpus()
                self.pool = stack.enter_context(
                    ScreeningPool(
                        config.twin.name,
                        config.screening.chain,
                        self.shape,
                        workers,
                        chain_options=self.learning.chain_options if self.learning else None,
                    )
                )
                self.lab: LabPipeline | None = (
                    stack.enter_context(self._lab()) if config.lab is not None else None
                )
                self.planner = self._planner()
                self._loop()
                self._cycle_life()
                self._check_twin_against_lab()
        except BaseException:
            self.store.set_meta(state="interrupted")
            raise
        self.store.set_meta(state="finished", finished=time.time())
        from poreloop.agent.report import status, write_report

        write_report(self.out)
        return status(self.out)

    def _loop(self) -> None:
        """Screen while screening iterations are left; send the lab more whenever it has room
        (fewer than ``per_iteration`` samples in flight) until its budget is spent; stop when
        both are done and every sample is back. Time is kept per activity (``timings``)."""
        config = self.config
        iteration = int(self.store.meta("iteration", 0))
        screened = int(self.store.meta("screening_iterations", 0))
        timings = self.store.meta(
            "timings", {"screening_s": 0.0, "selecting_s": 0.0, "waiting_s": 0.0}
        )
        while True:
            lab_idle = self._absorb_lab()
            screening_left = screened < config.iterations and config.screening.batch > 0
            room = self._lab_room()
            if not screening_left and room is None and lab_idle:
                return
            start = time.perf_counter()
            if screening_left or room:
                iteration += 1
                self.progress.iteration = iteration
                if screening_left:
                    self._screen_batch(iteration)
                    screened += 1
                    timings["screening_s"] += time.perf_counter() - start
                    self._absorb_lab()
                    room = self._lab_room()
                if room:
                    started = time.perf_counter()
                    self._select_for_lab(iteration, room)
                    timings["selecting_s"] += time.perf_counter() - started
                self.store.set_meta(
                    iteration=iteration, screening_iterations=screened, timings=timings
                )
                self._save_planner(iteration)
            else:
                time.sleep(POLL_S)
                timings["waiting_s"] += time.perf_counter() - start
                self.store.set_meta(timings=timings)
            self._report_progress()

    def _lab_room(self) -> int | None:
        """How many samples the lab can take now (0: it is busy), None once the budget is
        spent or there is no lab."""
        if self.lab is None:
            return None
        samples = self.store.samples()
        budget = self.lab_settings.samples - len(samples)
        if budget <= 0:
            return None
        in_flight = sum(s["stage"] not in FINAL for s in samples)
        return min(max(self.lab_settings.per_iteration - in_flight, 0), budget)

    def _screen_batch(self, iteration: int) -> None:
        recipes = self._ask(self.config.screening.batch, fidelity="twin")
        ids, outcomes = self._screen(iteration, recipes, "screen")
        self.planner.tell(recipes, outcomes)
        self.screens_told = max(ids)
        self.progress.screened += len(ids)

    def _select_for_lab(self, iteration: int, k: int) -> None:
        recipes = self._ask(k, fidelity="lab")
        samples = [self.store.add_sample(iteration, {**recipe, **self.fixed}) for recipe in recipes]
        self._screen(iteration, recipes, "lab", samples)
        for sample in samples:
            self.pipeline.submit(sample)
        self.store.log("dispatch", f"iteration {iteration}: {k} recipes sent to the lab")

    def _ask(self, n: int, fidelity: str) -> list[dict[str, Any]]:
        """``n`` recipes for ``fidelity``; a planner without fidelities has only one."""
        return self.planner.ask(n, fidelity=fidelity if self.planner.fidelities else None)

    def _screen(
        self,
        iteration: int,
        recipes: list[dict[str, Any]],
        purpose: str,
        samples: list[int] | None = None,
        calibration: Calibration | None = None,
    ) -> tuple[list[int], list[dict[str, Any]]]:
        """Screen ``recipes`` with the twin under ``calibration`` (the current one by default);
        the journal's row ids and the planner's outcomes, in order."""
        calibration = calibration or self.calibration
        calibration_id = self.calibration_id if calibration is self.calibration else None
        seeds = np.random.SeedSequence(
            [self.config.seed, iteration, PURPOSES.index(purpose)]
        ).generate_state(len(recipes))
        jobs: list[tuple[int, dict[str, Any], int, dict[str, Any]]] = [
            (
                index,
                calibration.apply({**recipe, **self.fixed}, self.twin.name, self.twin.space),
                int(seed),
                {},
            )
            for index, (recipe, seed) in enumerate(zip(recipes, seeds, strict=True))
        ]
        done = {result.key: result for result in self.pool.screen(jobs)}
        results = [done[index] for index in range(len(jobs))]
        if self.learning is not None:
            learnt = self.learning.learn(self.pool, results)
            self.store.log("surrogate", f"iteration {iteration}, {purpose}: {learnt}")
        rows, outcomes = [], []
        for index, (recipe, seed, result) in enumerate(zip(recipes, seeds, results, strict=True)):
            properties = dict(result.properties) if not result.failed else {}
            if result.result is not None and "surrogate" in result.result.diagnostics:
                properties["surrogate"] = result.result.diagnostics["surrogate"]
            rows.append(
                {
                    "recipe": {**recipe, **self.fixed},
                    "sample": samples[index] if samples else None,
                    "seed": int(seed),
                    "calibration": calibration_id,
                    "failed": result.failed,
                    "reason": result.reason,
                    "properties": properties,
                }
            )
            outcomes.append(self._outcome(properties, result.reason, "twin"))
        ids = self.store.add_screens(iteration, rows, purpose)
        return ids, outcomes

    def _outcome(
        self, values: dict[str, float], reason: str | None, fidelity: str
    ) -> dict[str, Any]:
        """A planner outcome from measured values: objectives and constrained outcomes, or
        failed with the reason (also when a value is missing or not finite); the fidelity
        where the planner tells twin from lab (a digital-only campaign has one)."""
        needed = [*self.config.objectives, *(c.split()[0] for c in self.config.constraints)]
        bad = [name for name in needed if not math.isfinite(values.get(name, math.nan))]
        where = {"fidelity": fidelity} if self.planner.fidelities else {}
        if reason or bad:
            return {"failed": True, "reason": reason or f"no finite value for {bad}", **where}
        return {**{name: float(values[name]) for name in needed}, **where}

    # --- the lab ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lab(self) -> Iterator[LabPipeline]:
        settings = self.lab_settings
        with contextlib.ExitStack() as stack:
            if settings.simulated is not None:
                from poreloop.instruments.lab_config import load_lab_config
                from poreloop.instruments.lab_up import serving

                lab_config = load_lab_config(settings.simulated)
                endpoints = stack.enter_context(serving(lab_config, lab_dir=self.out / "lab"))
            else:
                endpoints = settings.endpoints or {}
            pipeline = LabPipeline(
                self.store,
                self.campaign_id,
                endpoints,
                measure=self._measure,
                objectives=self.config.objectives,
                scan_voxel_size_um=self.config.screening.voxel_size_um,
                c_rates=_c_rates(self.config.objectives),
                timeout_s=settings.timeout_s,
                holder=settings.holder,
                keys=settings.keys,
            )
            stack.callback(pipeline.close)
            for sample in self.store.samples():
                if sample["stage"] not in FINAL:
                    self.store.log(
                        "resume", f"sample {sample['id']} goes on from {sample['stage']}"
                    )
                    pipeline.submit(sample["id"])
            yield pipeline

    def _measure(self, sample: dict[str, Any], scan: dict[str, Any]) -> dict[str, Any]:
        """A scan segmented and scored by the critics (runs on the tomograph's thread); failed
        where a stage could not score it or a solve did not converge."""
        from poreloop.twins.critics.chain import get_chain
        from poreloop.twins.critics.segmentation import segment_file

        micro = segment_file(scan["path"], self.twin.phases, method=self.lab_settings.segmentation)
        path = self.out / "structures" / f"sample-{sample['id']}.npz"
        micro.save(path)
        result = get_chain(self.config.screening.chain).evaluate(
            micro, thickness_um=sample["recipe"].get("thickness_um")
        )
        return {
            "structure": str(path.relative_to(self.out)),
            "shape": list(micro.shape),
            "voxel_size_um": micro.voxel_size_um,
            "properties": dict(result.properties),
            "failed": bool(result.problem),
            "reason": result.problem,
        }

    def _absorb_lab(self) -> bool:
        """Tell the planner what the lab finished since the last call; refit the calibration
        on new scans. True when the lab is idle (every sample final): judged on the same read
        of the journal as what was told, so a sample that ends meanwhile waits for the next
        call instead of being missed."""
        if self.config.lab is None:
            return True
        samples = self.store.samples()
        finished = [s for s in samples if s["stage"] in FINAL and not s["told"]]
        told = [sample for sample in finished if self._tell_lab(sample)]  # saved as told below
        if told:
            self._save_planner(int(self.store.meta("iteration", 0)))
            self._calibrate()
        return all(sample["stage"] in FINAL for sample in samples)

    def _tell_lab(self, sample: dict[str, Any]) -> bool:
        """Tell a finished sample's lab outcome, with the twin's prediction for it where the
        planner learns twin and lab together; False for an unknown outcome or a lab failure,
        which are never guessed into the planner: the recipe stays pending, so it is never
        re-made by accident."""
        if sample["stage"] == "measured":
            outcome = self._outcome(sample["results"]["outcome"], None, "lab")
        elif sample["stage"] == "failed" and sample["results"].get("recipe_at_fault"):
            outcome = self._outcome({}, sample["reason"], "lab")
        else:  # unknown, or failed by the lab: it says nothing of the recipe, never guessed
            return False
        recipe = {name: sample["recipe"][name] for name in self.space.names}
        predictions = [
            row
            for row in self.store.screens()
            if row["purpose"] == "lab" and row["sample"] == sample["id"]
        ]
        twin = [
            self._outcome(row["properties"], row["reason"], "twin")
            for row in predictions[-1:]
            if self.planner.fidelities  # a lab-only planner hears the lab alone
        ]
        self.planner.tell([recipe] * (1 + len(twin)), [*twin, outcome])
        self.samples_told.append(sample["id"])
        return True

    def _calibrate(self) -> None:
        """Refit the process offsets once more samples were gauged, weighed and scanned."""
        measured = [
            MeasuredSample(
                recipe=s["recipe"],
                thickness_um=s["results"]["inspection"]["thickness_um"],
                loading_mg_cm2=s["results"]["inspection"]["loading_mg_cm2"],
                metrics=structure_metrics(s["results"]["measured_structure"]["properties"]),
                shape=tuple(s["results"]["measured_structure"]["shape"]),
                voxel_size_um=s["results"]["measured_structure"]["voxel_size_um"],
                exposure_s=SCAN_EXPOSURE_S,
                seed=s["id"],
                segmentation=self.lab_settings.segmentation,
            )
            for s in self.store.samples()
            if "measured_structure" in s["results"]
            and not s["results"]["measured_structure"]["failed"]
        ]
        if len(measured) <= self.calibration.samples:
            return
        calibration = fit(self.twin, measured)
        if calibration.samples == 0:
            return
        self.calibration = calibration
        self.calibration_id = self.store.add_calibration(
            int(self.store.meta("iteration", 0)),
            calibration.offsets,
            {"misfit": calibration.misfit, "samples": calibration.samples},
            calibration.samples,
        )
        self.store.log(
            "calibration",
            "offsets "
            + ", ".join(f"{k} {v:.4g}" for k, v in calibration.offsets.items())
            + f" from {len(measured)} samples",
        )

    def _cycle_life(self) -> None:
        """Cycle-life tests of the best ``lab.cycle_life.top`` measured samples, and their
        lives predicted where a lifetime model is set."""
        if self.lab is None or self.lab_settings.cycle_life.top == 0:
            return
        from poreloop.agent.report import ranked

        settings = self.lab_settings.cycle_life
        for sample in ranked(self.store.samples(), self.config.objectives)[: settings.top]:
            fade = sample["results"].get("cycle_life") or self.lab.cycle_life(
                sample["id"], settings.cycles, settings.c_rate
            )
            if fade is not None and self.lifetime is not None and "life" not in sample["results"]:
                self._predict_life(sample["id"], fade)

    def _predict_life(self, sample: int, fade: dict[str, Any]) -> None:
        """Cycles to 80 % from a sample's early cycles; none recorded when the test cannot be
        read (the life stays unknown)."""
        assert self.lifetime is not None
        try:
            life = self.lifetime.predict(fade)
        except CriticError as error:
            self.store.log("lifetime", f"sample {sample}: no prediction: {error}")
            return
        self.store.update_sample(sample, "measured", {"life": asdict(life)})
        self.store.log(
            "lifetime",
            f"sample {sample}: {life.cycles:.0f} cycles to 80 % "
            f"(90 % in {life.low:.0f}-{life.high:.0f}) from its first {self.lifetime.early_cycles}",
        )

    def _check_twin_against_lab(self) -> None:
        """The twin's predictions of every measured sample, with neutral offsets and with the
        final calibration (the report's before/after), and the best sample's twin structure."""
        from poreloop.agent.report import best

        measured = [s for s in self.store.samples() if s["stage"] == "measured"]
        if not measured:
            return
        iteration = int(self.store.meta("iteration", 0))
        recipes = [{name: s["recipe"][name] for name in self.space.names} for s in measured]
        ids = [s["id"] for s in measured]
        self._screen(iteration, recipes, "check", ids, Calibration())
        if self.calibration_id is not None:
            self._screen(iteration, recipes, "check", ids)
        top = best(measured, self.config.objectives)
        chosen = top.get("sample") or top["pareto"][0]["sample"]
        sample = next(s for s in measured if s["lab_id"] == chosen)
        scan = sample["results"]["measured_structure"]
        recipe = self.calibration.apply(sample["recipe"], self.twin.name, self.twin.space)
        twin = self.twin.generate(recipe, shape=tuple(scan["shape"]), seed=sample["id"])
        twin.save(self.out / "structures" / f"twin-{sample['id']}.npz")

    # --- the planner --------------------------------------------------------------------------

    def _planner(self) -> Any:
        from poreloop.agent.planners import make_planner

        state, self.screens_told = self.store.planner_state()
        self.samples_told: list[int] = []
        if state is not None:
            planner = make_planner(state=state)
        else:
            config = self.config
            multi = config.lab is not None and config.screening.batch > 0
            planner = make_planner(
                config.planner.name,
                self.space,
                objectives=config.objectives,
                constraints=config.constraints,
                seed=config.seed,
                fidelities={"twin": 1.0, "lab": LAB_FIDELITY_COST} if multi else None,
                **config.planner.options,
            )
        self.planner = planner
        self._replay_untold()
        return planner

    def _replay_untold(self) -> None:
        """What was journalled after the planner's state was last saved (a crash in between):
        screenings beyond ``screens_told``, and lab samples that finished but were not told."""
        missed = [
            row
            for row in self.store.screens()
            if row["purpose"] == "screen" and row["id"] > self.screens_told
        ]
        if missed:
            self.planner.tell(
                [{name: row["recipe"][name] for name in self.space.names} for row in missed],
                [self._outcome(row["properties"], row["reason"], "twin") for row in missed],
            )
            self.screens_told = missed[-1]["id"]
        self._absorb_lab()

    def _save_planner(self, iteration: int) -> None:
        self.store.save_planner(
            iteration, self.planner.state(), self.screens_told, self.samples_told
        )
        self.samples_told = []

    def _report_progress(self) -> None:
        samples = self.store.samples()
        counts: dict[str, int] = {}
        for sample in samples:
            counts[sample["stage"]] = counts.get(sample["stage"], 0) + 1
        self.progress.lab = counts
        from poreloop.agent.report import best

        top = best(samples, self.config.objectives)
        self.progress.best = {k: v for k, v in top.items() if k in self.config.objectives}
        self.progress.calibration = dict(self.calibration.offsets)
        self.progress.waiting = self.lab.held() if self.lab is not None else []
        if self.progress != self._shown:
            self._shown = replace(self.progress)
            self.on_progress(self.progress)


def _c_rates(objectives: Mapping[str, str]) -> tuple[float, ...]:
    """The C-rates a rate test must run for the objectives (``..._1c``, ``..._3c``, ``..._0p5c``)."""
    rates = {1.0}
    for name in objectives:
        tag = name.rsplit("_", 1)[-1]
        if tag.endswith("c") and tag[:-1].replace("p", "").isdigit():
            rates.add(float(tag[:-1].replace("p", ".")))
    return tuple(sorted(rates))


def _cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("poreloop", "numpy", "scipy", "torch", "botorch", "ray", "pybamm", "pyzmq"):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found


@contextlib.contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    """A SIGTERM (a scheduler's stop, ``timeout``) ends the campaign as Ctrl-C does: the
    journal says interrupted, the lab and Ray close, exit status 143. Installed once Ray is
    connected: in a cluster it starts, its core worker takes SIGTERM as a crash (a stack
    trace, nothing closed, the journal left saying running). Only the main thread can take
    signals; elsewhere the handlers stay as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:  # None: the handler was not set from Python
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
