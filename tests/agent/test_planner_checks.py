"""The planner contract checker: every registered planner passes it, and it catches planners
that break a promise of the contract."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from poreloop.agent.planners import PLANNERS
from poreloop.agent.planners.base import Planner
from poreloop.agent.planners.baselines import SobolPlanner
from poreloop.agent.planners.checks import OBJECTIVE, check_planner
from poreloop.twins.space import Recipe

QUICK: dict[str, dict[str, Any]] = {
    "bayes": {"n_initial": 2, "num_restarts": 2, "raw_samples": 64, "mc_samples": 32},
    "rl": {"n_initial": 2, "train_steps": 1, "n_envs": 1, "episode_length": 2, "n_starts": 1},
}
"""The smallest budgets each planner's options allow, past a short initial design (rl trains
on the GP surrogate of what it was told)."""


@pytest.mark.parametrize(
    ("name", "options"),
    [pytest.param(name, {}, id=name) for name in PLANNERS]
    + [pytest.param("rl", {"algorithm": "sac"}, id="rl-sac")],
)
def test_every_registered_planner_honours_the_contract(name: str, options: dict) -> None:
    check_planner(name, **{**QUICK.get(name, {}), **options})


class Repeating(SobolPlanner):
    """Proposes the start of its Sobol sequence at every ask, pending or not."""

    name = "repeating"

    def _propose(self, n: int, fidelity: str | None) -> list[Recipe]:
        return self.space.sample(n, seed=self.seed)


class Forgetful(Planner):
    """Draws from a generator that its state leaves out."""

    name = "forgetful"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._draws = np.random.default_rng(self.seed)

    def _propose(self, n: int, fidelity: str | None) -> list[Recipe]:
        return self.space.sample(n, seed=self._draws, method="random")


class Unbounded(SobolPlanner):
    """Steps outside the space's bounds."""

    name = "unbounded"

    def _propose(self, n: int, fidelity: str | None) -> list[Recipe]:
        return [{**recipe, "a": 2.0} for recipe in super()._propose(n, fidelity)]


class Lenient(SobolPlanner):
    """Turns an outcome it cannot use into a failure instead of refusing it."""

    name = "lenient"

    def tell(self, recipes, outcomes) -> None:
        super().tell(recipes, [o if scored(o) else {"failed": True} for o in outcomes])


def scored(outcome: dict) -> bool:
    value = outcome.get(OBJECTIVE)
    return isinstance(value, float) and math.isfinite(value)


@pytest.mark.parametrize(
    ("planner", "broken"),
    [
        (Repeating, "proposed a recipe that is still pending"),
        (Forgetful, "resumed from its state\\(\\) proposed other recipes"),
        (Unbounded, "proposed a recipe its space refuses: parameter 'a' = 2.0 is above"),
        (Lenient, "accepted an outcome with NaN"),
    ],
)
def test_a_broken_promise_is_named(monkeypatch, planner: type[Planner], broken: str) -> None:
    monkeypatch.setitem(PLANNERS, planner.name, planner)
    with pytest.raises(AssertionError, match=f"planner '{planner.name}' {broken}"):
        check_planner(planner.name)
