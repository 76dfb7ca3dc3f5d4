"""What a planner is asked to achieve and what it is told: objectives, outcome constraints,
fidelities, observations, and the Pareto front among them.

Kept apart from the planner contract so that a report, a benchmark or a warm-start file can use
the same model of an outcome without a planner.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from poreloop.agent.errors import PlannerError
from poreloop.registry import validation_summary

RESERVED_KEYS = ("fidelity", "failed", "reason")
"""Keys of an outcome dict that describe the observation rather than a measured value."""

_CONSTRAINT = re.compile(r"^\s*([A-Za-z_]\w*)\s*(<=|>=)\s*(\S+)\s*$")


class Frozen(BaseModel):
    """A settings or data model that refuses unknown keys and never changes once made."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Objective(Frozen):
    """An outcome to maximise or minimise.

    ``threshold`` is the worst value still worth having; with several objectives it is the
    reference point of the hypervolume (inferred from the data where it is not given).
    """

    name: str
    goal: Literal["max", "min"] = "max"
    threshold: float | None = None

    @property
    def sign(self) -> float:
        """+1 to maximise, -1 to minimise: ``sign * value`` is always to be maximised."""
        return 1.0 if self.goal == "max" else -1.0


class OutcomeConstraint(Frozen):
    """An outcome that must stay on one side of a bound, e.g. ``porosity >= 0.3``."""

    name: str
    op: Literal["<=", ">="]
    bound: float

    @classmethod
    def parse(cls, text: str) -> OutcomeConstraint:
        match = _CONSTRAINT.match(text)
        try:
            bound = float(match.group(3)) if match else math.nan
        except ValueError:
            bound = math.nan
        if not match or not math.isfinite(bound):
            raise PlannerError(
                f"outcome constraint {text!r} is not of the form 'name <= number' or "
                "'name >= number'"
            )
        return cls(name=match.group(1), op=match.group(2), bound=bound)

    def slack(self, value: Any) -> Any:
        """How far inside the bound the value is (negative: outside); a float or an array."""
        return self.bound - value if self.op == "<=" else value - self.bound

    def describe(self) -> str:
        return f"{self.name} {self.op} {self.bound:g}"


class Observation(Frozen):
    """One told outcome: the recipe, what was measured, at which fidelity, and whether it failed."""

    recipe: dict[str, float | int | str]
    values: dict[str, float] = Field(default_factory=dict)
    fidelity: str | None = None
    failed: bool = False
    reason: str = ""


def parse_objectives(objectives: Mapping[str, Any] | Sequence[Objective]) -> tuple[Objective, ...]:
    """``{'energy_density_wh_l_1c': 'max'}`` or ``{'x': {'goal': 'min', 'threshold': 2}}``."""
    items: list[Mapping[str, Any] | Objective]
    if isinstance(objectives, Mapping):
        items = [
            {"name": name, **(spec if isinstance(spec, Mapping) else {"goal": spec})}
            for name, spec in objectives.items()
        ]
    else:
        items = list(objectives)
    try:
        parsed = tuple(
            o if isinstance(o, Objective) else Objective.model_validate(o) for o in items
        )
    except ValidationError as exc:
        raise PlannerError(
            f"objectives must map outcome names to 'max' or 'min' (or to {{'goal': 'max', "
            f"'threshold': number}}), got {objectives!r}: {validation_summary(exc)}"
        ) from None
    if not parsed:
        raise PlannerError(
            "a planner needs at least one objective, e.g. {'energy_density_wh_l_1c': 'max'}"
        )
    names = [o.name for o in parsed]
    if len(set(names)) != len(names):
        raise PlannerError(f"objective names must be unique, got {names}")
    return parsed


def parse_constraints(
    constraints: Iterable[str | OutcomeConstraint | Mapping[str, Any]],
) -> tuple[OutcomeConstraint, ...]:
    """``['porosity >= 0.3', {'name': 'tau_pore_z', 'op': '<=', 'bound': 4}]``."""
    if isinstance(constraints, str | Mapping):
        constraints = [constraints]
    parsed = []
    for c in constraints:
        if isinstance(c, OutcomeConstraint):
            parsed.append(c)
        elif isinstance(c, str):
            parsed.append(OutcomeConstraint.parse(c))
        else:
            try:
                parsed.append(OutcomeConstraint.model_validate(c))
            except ValidationError as exc:
                raise PlannerError(f"outcome constraint {c!r}: {validation_summary(exc)}") from None
    return tuple(parsed)


def parse_fidelities(fidelities: Mapping[str, float] | None) -> dict[str, float]:
    """``{'twin': 1.0, 'lab': 50.0}``: each fidelity's cost; the most expensive is the target."""
    if not fidelities:
        return {}
    if not isinstance(fidelities, Mapping) or len(fidelities) < 2:
        raise PlannerError(
            f"fidelities must map at least two names to their costs, e.g. {{'twin': 1, 'lab': 50}}, "
            f"got {fidelities!r}"
        )
    for name, cost in fidelities.items():
        if isinstance(cost, bool) or not isinstance(cost, int | float) or not cost > 0:
            raise PlannerError(f"fidelity '{name}' needs a positive cost, got {cost!r}")
    return {str(name): float(cost) for name, cost in fidelities.items()}


def pareto_front(
    observations: Sequence[Observation], objectives: Sequence[Objective]
) -> list[Observation]:
    """The observations no other one dominates (at least as good in every objective and better
    in one), in their order; each must carry a value for every objective."""
    if not observations:
        return []
    utility = np.array(
        [[ob.sign * o.values[ob.name] for ob in objectives] for o in observations]
    )  # observations x objectives
    return [
        o
        for o, u in zip(observations, utility, strict=True)
        if not np.any(np.all(utility >= u, axis=1) & np.any(utility > u, axis=1))
    ]
