"""The neural critic in a campaign: its training data made on Ray, and active learning.

``training_set`` screens recipes spread over a campaign's design space with the physics chain
on a ``ScreeningPool`` and keeps every (structure, result) pair: what ``poreloop surrogate
train`` learns from. ``ActiveLearning`` then runs inside the campaign: every structure the
neural critic was unsure of went to the physics chain, and that answer is exactly the example
it lacked, so it joins the training set; after ``retrain_every`` of them the critic is refined
from its weights and recalibrated, and the chain actors take the refined critic.

The training set and every refined critic are kept under ``OUT/surrogate/`` (``training.npz``,
``critic-<examples>.pt``), so a resumed campaign goes on with the newest.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from poreloop.agent.config import CampaignConfig, ConfigError, SurrogateSettings

if TYPE_CHECKING:
    from poreloop.agent.cluster import Job, ScreeningPool, ScreenResult
    from poreloop.twins.critics.chain import ChainResult
    from poreloop.twins.critics.surrogate import NeuralCritic, TrainingSet

TRAINING_SEED = 7919
"""Mixed into the seeds of training recipes, so they are not the campaign's own."""


def training_set(config: CampaignConfig, count: int, seed: int, pool: ScreeningPool) -> TrainingSet:
    """``count`` recipes spread over the campaign's design space (scrambled Sobol), made by the
    twin and scored by the physics chain at the screening box and resolution; recipes the twin
    cannot make are left out."""
    from poreloop.twins.critics.surrogate import TrainingSet

    twin, space, fixed = config.design()
    recipes = [{**recipe, **fixed} for recipe in space.sample(count, seed=seed)]
    seeds = np.random.SeedSequence([seed, TRAINING_SEED]).generate_state(count)
    data = TrainingSet(twin.name, config.screening.chain, dict(twin.phases))
    jobs: list[Job] = [
        (i, recipe, int(s), {}) for i, (recipe, s) in enumerate(zip(recipes, seeds, strict=True))
    ]
    done = {result.key: result for result in pool.screen(jobs)}
    for result in (done[i] for i in range(len(jobs))):  # in recipe order, whatever the timing
        if result.result is not None and result.structure is not None:
            data.add(pool.structure(result), result.result)
    return data


def check_critic(critic: NeuralCritic, config: CampaignConfig) -> None:
    """A ``ConfigError`` listing every way the critic does not fit what the campaign screens."""
    trained, screening = critic.trained, config.screening
    needed = [*config.objectives, *(c.split()[0] for c in config.constraints)]
    problems = []
    if trained.twin != config.twin.name:
        problems.append(f"it learnt twin {trained.twin}, the campaign's is {config.twin.name}")
    if trained.chain != screening.chain:
        problems.append(f"it learnt chain {trained.chain}, the campaign's is {screening.chain}")
    if trained.shape != [screening.size] * 3:
        problems.append(f"it learnt {trained.shape} boxes, the campaign screens {screening.size}^3")
    if abs(trained.voxel_size_um / screening.voxel_size_um - 1) > 0.01:
        problems.append(
            f"it learnt {trained.voxel_size_um:g} um voxels, the campaign screens at "
            f"{screening.voxel_size_um:g} um"
        )
    missing = [key for key in needed if key not in trained.properties]
    if missing:
        problems.append(f"it does not predict {missing}")
    if problems:
        model = screening.surrogate.model if screening.surrogate else "the neural critic"
        raise ConfigError(
            "\n".join(f"screening.surrogate.model: {model}: {p}" for p in problems)
            + "\ntrain it for this config: poreloop surrogate train CONFIG"
        )


class ActiveLearning:
    """The campaign's neural critic and its growing training set, under ``folder``."""

    DATA = "training.npz"

    def __init__(self, settings: SurrogateSettings, folder: Path, config: CampaignConfig) -> None:
        from poreloop.twins.critics.surrogate import NeuralCritic, TrainingSet

        self.settings = settings
        self.folder = folder
        refined = sorted(folder.glob("critic-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
        self.model = refined[-1] if refined else settings.model
        self.critic = NeuralCritic.load(self.model)
        check_critic(self.critic, config)
        self.watch = [*config.objectives, *(c.split()[0] for c in config.constraints)]
        grown = folder / self.DATA
        origin = grown if grown.is_file() else settings.model.with_suffix(".npz")
        if not origin.is_file():
            raise ConfigError(
                f"screening.surrogate.model: no training set at {origin} beside the critic; "
                "`poreloop surrogate train CONFIG` writes both"
            )
        self.data: TrainingSet = TrainingSet.load(origin)

    @property
    def chain_options(self) -> dict[str, Any]:
        """What a chain actor needs to answer with the current critic."""
        return {
            "surrogate": {
                "model": str(self.model),
                "trust": self.settings.trust,
                "watch": self.watch,
                "audit": self.settings.audit,
            }
        }

    def learn(self, pool: ScreeningPool, results: Sequence[ScreenResult]) -> str:
        """Add the physics chain's answers among ``results`` to the training set, refine the
        critic when enough are new; a line saying what happened, for the journal."""
        from poreloop.twins.critics.surrogate import train

        taught = [
            r
            for r in results
            if r.result is not None
            and r.structure is not None
            and r.result.diagnostics.get("surrogate") == 0.0
        ]
        answered = sum(
            r.result is not None and r.result.diagnostics.get("surrogate") == 1.0 for r in results
        )
        for result in taught:
            self.data.add(pool.structure(result), result.result)  # type: ignore[arg-type]
        if taught:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = self.folder / f"{self.DATA}.partial.npz"
            self.data.save(partial)
            os.replace(partial, self.folder / self.DATA)
        line = f"the neural critic answered {answered} of {len(results)}"
        audits = [r.result for r in taught if r.result and r.result.diagnostics.get("audit")]
        if audits:
            inside = sum(_inside(result, self.watch) for result in audits)
            line += (
                f"; physics checked {len(audits)} of its sure answers: {inside} within their "
                "90 % intervals"
            )
        new = len(self.data) - self.critic.trained.examples
        every = self.settings.retrain_every
        if not every or new < every:
            return line
        critic = train(
            self.data,
            self.critic.properties,
            epochs=self.settings.refine_epochs,
            seed=len(self.data),
            start=self.critic,
        )
        path = self.folder / f"critic-{len(self.data)}.pt"
        critic.save(path)
        self.critic, self.model = critic, path
        pool.rebuild_chains(**self.chain_options)
        return f"{line}; refined it on {len(self.data)} structures ({new} new)"


def _inside(result: ChainResult, keys: Sequence[str]) -> bool:
    """Whether physics found every one of ``keys`` within the interval the critic gave."""
    found, said = result.properties, result.diagnostics
    return all(
        said[f"{key}_low"] <= found.get(key, math.nan) <= said[f"{key}_high"] for key in keys
    )
