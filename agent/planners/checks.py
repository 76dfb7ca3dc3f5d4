"""Whether a planner honours the planner contract, as gymnasium's ``check_env`` does for envs.

    from poreloop.agent.planners.checks import check_planner
    check_planner("bayes", num_restarts=2, raw_samples=64, n_initial=2)

A planner is run briefly, past its initial design, on a small problem whose objective pushes
against a linear constraint of the space, and must

- propose ``n`` distinct recipes per ``ask(n)``, each within the space's bounds and linear
  constraints, and the same ones for the same seed;
- refuse, with a ``PlannerError``, an outcome with NaN, inf, no value or a non-number for an
  objective, and then have recorded nothing;
- keep asked recipes pending until told, and not propose a pending recipe again;
- record a failed sample, and go on proposing after it;
- give a ``state()`` that survives JSON, from which ``make_planner(state=...)`` resumes a
  planner with the same state that proposes what the original proposes.

A violation is an ``AssertionError`` that names the planner and the broken promise. Budgets
are the caller's: pass the planner's options (e.g. a tiny ``train_steps`` for ``rl``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from poreloop.agent.errors import PlannerError
from poreloop.agent.planners import make_planner
from poreloop.agent.planners.base import Planner
from poreloop.twins.errors import TwinError
from poreloop.twins.space import Continuous, LinearConstraint, ParameterSpace, Recipe

CHECK_SPACE = ParameterSpace(
    parameters=(
        Continuous(name="a", low=0.0, high=1.0),
        Continuous(name="b", low=0.0, high=1.0),
        Continuous(name="c", low=-1.0, high=1.0),
    ),
    constraints=(LinearConstraint(coefficients={"a": 1.0, "b": 2.0}, bound=1.0),),
)
"""Three parameters and a linear constraint that cuts off the objective's unconstrained peak."""

OBJECTIVE = "f"
PEAK = 0.7
"""The objective peaks where every unit-cube coordinate is ``PEAK`` (outside ``CHECK_SPACE``'s
constraint, so a good planner's proposals press against it)."""

BAD_OUTCOMES: dict[str, dict[str, Any]] = {
    "NaN": {OBJECTIVE: math.nan},
    "inf": {OBJECTIVE: math.inf},
    "no value": {},
    "a non-number": {OBJECTIVE: "high"},
}
"""Outcomes ``tell`` must refuse, by what is wrong with the objective."""

FAILED = {"failed": True, "reason": "cracked (told by check_planner)"}


def check_planner(
    name: str, space: ParameterSpace | None = None, *, seed: int = 0, **options: Any
) -> None:
    """Run planner ``name`` (with ``options``) on ``space`` (default ``CHECK_SPACE``) and raise
    an AssertionError at the first broken promise of the planner contract."""
    space = space or CHECK_SPACE

    def make() -> Planner:
        return make_planner(name, space, {OBJECTIVE: "max"}, seed=seed, **options)

    planner = make()
    _refused(planner, partial(planner.ask, 0), "ask(0)")
    initial = _ask(planner, planner.n_initial)
    _expect(make().ask(len(initial)) == initial, planner, "gave other recipes for the same seed")
    planner.tell(initial, [score(space, r) for r in initial])

    first = _ask(planner, 2)
    for problem, outcome in BAD_OUTCOMES.items():
        told = [score(space, first[0]), outcome]
        _refused(planner, partial(planner.tell, first, told), f"an outcome with {problem}")
    second = _ask(planner, 2)
    _expect(
        all(recipe not in first for recipe in second),
        planner,
        "proposed a recipe that is still pending",
    )
    _expect(planner.pending == first + second, planner, "does not keep asked recipes pending")

    resumed = _resume(planner)
    for p in (planner, resumed):
        p.tell(first, [score(space, first[0]), FAILED])
    _expect(planner.pending == second, planner, "keeps told recipes pending")
    _expect(planner.observations[-1].failed, planner, "did not record a failed sample as failed")
    _expect(
        _ask(resumed, 2) == _ask(planner, 2),
        planner,
        "resumed from its state() proposed other recipes than the original",
    )


def score(space: ParameterSpace, recipe: Recipe) -> dict[str, float]:
    """The check's objective: smooth, peaking where every unit-cube coordinate is ``PEAK``."""
    return {OBJECTIVE: -float(np.sum((space.to_unit(recipe) - PEAK) ** 2))}


def _ask(planner: Planner, n: int) -> list[Recipe]:
    """``planner.ask(n)``, checked: n distinct recipes in the space, pending and counted."""
    n_asked = planner.n_asked
    try:
        recipes = planner.ask(n)
    except TwinError as exc:
        raise AssertionError(
            f"planner '{planner.name}' proposed a recipe its space refuses: {exc}"
        ) from None
    _expect(len(recipes) == n, planner, f"answered ask({n}) with {len(recipes)} recipes")
    for i, recipe in enumerate(recipes):
        _expect(
            _inside(planner.space, recipe),
            planner,
            f"proposed recipe {i} of ask({n}) outside its space: {recipe}",
        )
        _expect(recipe not in recipes[:i], planner, f"proposed {recipe} twice in one ask({n})")
    _expect(planner.pending[-n:] == recipes, planner, f"did not keep ask({n})'s recipes pending")
    _expect(planner.n_asked == n_asked + n, planner, f"counted ask({n}) as {planner.n_asked}")
    return recipes


def _refused(planner: Planner, call: Callable[[], object], what: str) -> None:
    """``call`` raises a PlannerError and leaves the planner as it was."""
    before = _record(planner)
    try:
        call()
    except PlannerError:
        pass
    except Exception as exc:
        raise AssertionError(
            f"planner '{planner.name}' refused {what} with {type(exc).__name__} ({exc}), "
            "not a PlannerError"
        ) from exc
    else:
        raise AssertionError(f"planner '{planner.name}' accepted {what}")
    _expect(_record(planner) == before, planner, f"recorded something when it refused {what}")


def _resume(planner: Planner) -> Planner:
    """A planner made from ``planner.state()`` after a JSON round trip, checked to hold the
    same state (``state()`` is compared through JSON too, so tuples and lists are alike)."""
    try:
        saved = json.loads(json.dumps(planner.state()))
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"planner '{planner.name}' state() is not plain JSON: {exc}") from None
    resumed = make_planner(state=saved)
    _expect(
        json.loads(json.dumps(resumed.state())) == saved,
        planner,
        "resumed from its state() holds another state",
    )
    _expect(resumed.pending == planner.pending, planner, "resumed without its pending recipes")
    return resumed


def _inside(space: ParameterSpace, recipe: Recipe) -> bool:
    """Within the bounds and linear constraints, with values of the parameters' types."""
    try:
        return space.validate(recipe) == recipe and space.is_feasible(recipe)
    except TwinError:
        return False


def _record(planner: Planner) -> tuple[list[Any], list[Recipe], int]:
    return list(planner.observations), list(planner.pending), planner.n_asked


def _expect(condition: bool, planner: Planner, broken: str) -> None:
    """An AssertionError naming the planner and what it did wrong, unless ``condition``
    (explicit, so ``python -O`` does not skip the check)."""
    if not condition:
        raise AssertionError(f"planner '{planner.name}' {broken}")
