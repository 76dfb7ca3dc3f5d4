"""Baselines every other planner has to beat: space-filling and uniform random designs."""

from __future__ import annotations

from typing import ClassVar

from poreloop.agent.planners.base import Planner
from poreloop.twins.space import Recipe


class SobolPlanner(Planner):
    """The next points of one scrambled Sobol sequence (those that satisfy the constraints)."""

    name: ClassVar[str] = "sobol"

    def _propose(self, n: int, fidelity: str | None) -> list[Recipe]:
        return self._space_filling(n)


class RandomPlanner(Planner):
    """Independent uniform draws (rejecting those that break a constraint)."""

    name: ClassVar[str] = "random"

    def _propose(self, n: int, fidelity: str | None) -> list[Recipe]:
        return self.space.sample(n, seed=self._rng(), method="random")
