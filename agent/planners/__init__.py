"""Planners: ask for recipes, tell outcomes, resume from a saved state.

    from poreloop.agent.planners import make_planner
    planner = make_planner("bayes", space, objectives={"energy_density_wh_l_1c": "max"}, seed=0)
    recipes = planner.ask(4)
    planner.tell(recipes, [{"energy_density_wh_l_1c": 412.0}, ...])
    planner = make_planner(state=planner.state())  # a campaign resumes

``sobol`` and ``random`` are the baselines, ``bayes`` is BoTorch Bayesian optimisation, ``rl``
turns the rollouts of a stable-baselines3 policy trained in the digital space into proposals.
Torch and friends are imported only when a planner that needs them is made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from poreloop.agent.errors import PlannerError
from poreloop.agent.planners.base import Planner, check_state
from poreloop.agent.planners.observations import (
    WarmStart,
    read_observations,
    warm_start_observations,
)
from poreloop.agent.planners.outcomes import Objective, Observation, OutcomeConstraint
from poreloop.registry import Registry
from poreloop.twins.space import ParameterSpace

PLANNERS: Registry[type[Planner]] = Registry(
    "planner",
    PlannerError,
    {
        "sobol": "poreloop.agent.planners.baselines:SobolPlanner",
        "random": "poreloop.agent.planners.baselines:RandomPlanner",
        "bayes": "poreloop.agent.planners.bayes:BayesPlanner",
        "rl": "poreloop.agent.planners.rl:RLPlanner",
    },
)


def make_planner(
    name: str | None = None,
    space: ParameterSpace | None = None,
    objectives: Mapping[str, Any] | Sequence[Objective] | None = None,
    constraints: Iterable[Any] = (),
    *,
    seed: int | None = None,
    fidelities: Mapping[str, float] | None = None,
    state: Mapping[str, Any] | None = None,
    warm_start: WarmStart | None = None,
    **options: Any,
) -> Planner:
    """A planner by name, or resumed from ``state`` (whose settings then fill what is not given).

    ``warm_start`` tells earlier observations before the first ask: a CSV path (see
    ``read_observations``) or a ``(recipes, outcomes)`` pair.
    """
    if state is not None:
        check_state(state)
        name = name if name is not None else state.get("planner")
        if space is None and "space" in state:
            space = ParameterSpace.model_validate(state["space"])
        objectives = objectives if objectives is not None else state.get("objectives")
        constraints = constraints or state.get("constraints", ())
        seed = seed if seed is not None else state.get("seed")
        fidelities = fidelities if fidelities is not None else state.get("fidelities")
        options = options or dict(state.get("options", {}))
    if name is None or space is None or objectives is None:
        raise PlannerError("make_planner needs a planner name, a ParameterSpace and objectives")
    planner = PLANNERS.lookup(name)(
        space,
        objectives,
        constraints,
        seed=0 if seed is None else seed,
        fidelities=fidelities,
        **options,
    )
    if state is not None:
        planner.load_state(state)
    if warm_start is not None:
        planner.tell(*warm_start_observations(warm_start, planner.space))
    return planner


__all__ = [
    "PLANNERS",
    "Objective",
    "Observation",
    "OutcomeConstraint",
    "Planner",
    "make_planner",
    "read_observations",
]
