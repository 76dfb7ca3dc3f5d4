"""What the planner base class promises beside the contract checker (test_planner_checks.py):
its messages, baselines, best observations, configuration and warm starts."""

from __future__ import annotations

import math

import pytest

from poreloop.agent.errors import PlannerError
from poreloop.agent.planners import PLANNERS, Planner, make_planner, read_observations
from poreloop.agent.planners.baselines import SobolPlanner
from poreloop.agent.planners.outcomes import Frozen
from poreloop.twins import get_twin
from poreloop.twins.space import ParameterSpace


def electrode_space() -> ParameterSpace:
    """Seven parameters and two linear constraints: a space where bounds alone are not enough."""
    return get_twin("li_ion_electrode").space


def score(recipe: dict) -> dict[str, float]:
    """A cheap stand-in for the chain: smooth, with an interior optimum."""
    value = 400 - 900 * (recipe["active_fraction"] - 0.5) ** 2 - 30 * recipe["compression"]
    return {"energy_density_wh_l_1c": value, "porosity": 0.5 - recipe["compression"]}


def planner_for(name: str, **kwargs):
    return make_planner(
        name, electrode_space(), objectives={"energy_density_wh_l_1c": "max"}, **kwargs
    )


def run(planner, rounds: int, batch: int = 2) -> None:
    for _ in range(rounds):
        recipes = planner.ask(batch)
        planner.tell(recipes, [score(r) for r in recipes])


def test_seeds_make_runs_reproducible_and_differ_between_seeds() -> None:
    a, b, c = (planner_for("random", seed=s) for s in (5, 5, 6))
    assert a.ask(3) == b.ask(3)
    assert a.ask(3) != c.ask(3)


def test_sobol_continues_one_sequence_across_asks() -> None:
    space = electrode_space()
    planner = planner_for("sobol", seed=2)
    assert planner.ask(2) + planner.ask(3) == space.sample(5, seed=2)


def test_a_plain_function_on_a_box_is_all_it_takes() -> None:
    space = ParameterSpace.continuous({"x": (-2.0, 2.0), "y": (-2.0, 2.0)})
    planner = make_planner("sobol", space, objectives={"f": "min"}, seed=0)
    for _ in range(8):
        (recipe,) = planner.ask(1)
        planner.tell([recipe], [{"f": recipe["x"] ** 2 + recipe["y"] ** 2}])
    (best,) = planner.best()
    assert best.values["f"] == min(o.values["f"] for o in planner.observations)


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        ({"energy_density_wh_l_1c": math.nan}, "nan for 'energy_density_wh_l_1c'"),
        ({"energy_density_wh_l_1c": math.inf}, "inf for 'energy_density_wh_l_1c'"),
        ({"porosity": 0.3}, "no value for 'energy_density_wh_l_1c'"),
        ({"energy_density_wh_l_1c": "high"}, "must be a number"),
        ({"energy_density_wh_l_1c": 1.0, "fidelity": "lab"}, "no fidelities"),
        ({"energy_density_wh_l_1c": 1.0, "failed": "yes"}, "true or false"),
        (412.0, "must be a dict"),
    ],
)
def test_a_bad_outcome_is_refused_and_nothing_is_recorded(outcome, message: str) -> None:
    planner = planner_for("sobol")
    recipes = planner.ask(2)
    with pytest.raises(PlannerError, match=message):
        planner.tell(recipes, [score(recipes[0]), outcome])
    assert planner.observations == []
    assert planner.pending == recipes


def test_a_bad_recipe_or_count_is_refused() -> None:
    planner = planner_for("sobol")
    (recipe,) = planner.ask(1)
    with pytest.raises(PlannerError, match="recipe 0: parameter 'compression' = 0.9 is above"):
        planner.tell([{**recipe, "compression": 0.9}], [score(recipe)])
    with pytest.raises(PlannerError, match="one outcome per recipe"):
        planner.tell([recipe], [])
    for n in (0, -1, 1.5, True):
        with pytest.raises(PlannerError, match="whole number"):
            planner.ask(n)


def test_failed_samples_are_kept_with_their_reason_but_never_best() -> None:
    planner = planner_for("sobol")
    recipes = planner.ask(3)
    outcomes = [
        score(recipes[0]),
        {"failed": True, "reason": "cracked in calendering", "porosity": 0.4},
        {"failed": True, "reason": "solver", "energy_density_wh_l_1c": math.nan},
    ]
    planner.tell(recipes, outcomes)
    failed = [o for o in planner.observations if o.failed]
    assert [o.reason for o in failed] == ["cracked in calendering", "solver"]
    assert failed[0].values == {"porosity": 0.4}
    assert failed[1].values == {}
    assert planner.best()[0].recipe == recipes[0]


def test_outcome_constraints_and_pareto_front_decide_what_is_best() -> None:
    space = ParameterSpace.continuous({"x": (0.0, 1.0)})
    planner = make_planner(
        "sobol", space, objectives={"a": "max", "b": "min"}, constraints=["c <= 1"]
    )
    recipes = [{"x": x} for x in (0.1, 0.2, 0.3, 0.4)]
    planner.tell(
        recipes,
        [
            {"a": 1, "b": 1, "c": 0},  # on the front
            {"a": 2, "b": 2, "c": 0},  # on the front
            {"a": 0, "b": 2, "c": 0},  # dominated
            {"a": 9, "b": 0, "c": 5},  # dominates all, but breaks c <= 1
        ],
    )
    assert [o.recipe for o in planner.best()] == recipes[:2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objectives": {}}, "at least one objective"),
        ({"objectives": {"e": "maximise"}}, "'max' or 'min'"),
        ({"constraints": ["porosity > 0.3"]}, "'name <= number'"),
        ({"constraints": ["porosity >= lots"]}, "'name <= number'"),
        ({"fidelities": {"lab": 5}}, "at least two names"),
        ({"fidelities": {"twin": 0, "lab": 5}}, "positive cost"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"num_restart": 3}, "did you mean 'num_restarts'"),
        ({"raw_samples": 0}, "raw_samples"),
    ],
)
def test_a_bad_configuration_is_one_clear_error(kwargs: dict, message: str) -> None:
    arguments = {"objectives": {"e": "max"}, **kwargs}
    with pytest.raises(PlannerError, match=message):
        make_planner("bayes", electrode_space(), **arguments)


def test_an_unknown_planner_suggests_the_closest() -> None:
    with pytest.raises(PlannerError, match="did you mean 'bayes'"):
        make_planner("bayse", electrode_space(), objectives={"e": "max"})
    assert set(PLANNERS) >= {"sobol", "random", "bayes", "rl"}


def test_a_state_from_another_setup_is_refused() -> None:
    planner = planner_for("sobol", seed=0)
    run(planner, rounds=1)
    state = planner.state()
    with pytest.raises(PlannerError, match="saved state's planner differs"):
        make_planner("random", electrode_space(), {"energy_density_wh_l_1c": "max"}, state=state)
    with pytest.raises(PlannerError, match="saved state's objectives differs"):
        make_planner("sobol", electrode_space(), {"porosity": "max"}, state=state)
    with pytest.raises(PlannerError, match="format"):
        make_planner(state={"planner": "sobol"})


def test_warm_start_from_a_csv_of_earlier_samples(tmp_path) -> None:
    space = ParameterSpace.continuous({"x": (0.0, 1.0), "y": (0.0, 2.0)})
    path = tmp_path / "earlier.csv"
    path.write_text(
        "x,y,f,failed,reason\n0.1,0.5,3.0,,\n0.2,1.5,,true,no powder left\n0.9,0.1,4.5,false,\n"
    )
    planner = make_planner("sobol", space, objectives={"f": "max"}, warm_start=path)
    assert len(planner.observations) == 3
    assert [o.failed for o in planner.observations] == [False, True, False]
    assert planner.best()[0].recipe == {"x": 0.9, "y": 0.1}
    path.write_text("x,f\n0.1,3\n")
    with pytest.raises(PlannerError, match="no column for parameter"):
        read_observations(path, space)
    path.write_text("x,y,f\n0.1,abc,3\n")
    with pytest.raises(PlannerError, match=r"earlier.csv:2: parameter 'y' expects a number"):
        read_observations(path, space)


def test_a_state_saved_before_an_option_existed_resumes_with_its_default() -> None:
    planner = planner_for("sobol", seed=4)
    run(planner, rounds=1)
    state = {**planner.state(), "options": {}}
    assert make_planner(state=state).ask(2) == planner.ask(2)


def test_a_planner_is_abstract_and_extends_the_shared_options() -> None:
    with pytest.raises(TypeError, match="abstract"):
        Planner(electrode_space(), {"e": "max"})
    with pytest.raises(TypeError, match="Odd.Options must subclass Planner.Options"):

        class Odd(SobolPlanner):
            class Options(Frozen):
                pass
