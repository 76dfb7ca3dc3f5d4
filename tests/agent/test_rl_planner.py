"""The RL planner beyond the contract checker: its env steps, that it beats random search,
training on a twin env, its options."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gymnasium
import numpy as np
import pytest

from poreloop import envs  # noqa: F401 -- registers the design envs
from poreloop.agent.errors import PlannerError
from poreloop.agent.planners import make_planner
from poreloop.twins.space import ParameterSpace

SQUARE = ParameterSpace.continuous({"x1": (-1.0, 1.0), "x2": (-1.0, 1.0)})
OPTIMUM = {"x1": 0.3, "x2": -0.4}
FAST = {"train_steps": 128, "n_envs": 2, "episode_length": 4, "n_starts": 2, "n_initial": 4}


def quadratic(recipe: dict) -> float:
    """Peak 0 at ``OPTIMUM``."""
    return -sum((recipe[name] - x) ** 2 for name, x in OPTIMUM.items())


def run(planner, asks: int, q: int) -> float:
    """Ask and tell ``asks`` batches of ``q`` on the quadratic; the best value found."""
    for _ in range(asks):
        recipes = planner.ask(q)
        planner.tell(recipes, [{"y": quadratic(r)} for r in recipes])
    return max(o.values["y"] for o in planner.observations)


def test_env_steps_are_counted_and_survive_a_state_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where SB3 would leave its logs
    planner = make_planner("rl", SQUARE, {"y": "max"}, seed=3, **FAST)
    run(planner, asks=3, q=2)  # two Sobol batches, then one trained on the surrogate
    assert planner.env_steps > 0
    state = json.loads(json.dumps(planner.state()))
    resumed = make_planner(state=state)
    assert resumed.env_steps == planner.env_steps
    assert resumed.ask(2) == planner.ask(2)
    assert resumed.env_steps == planner.env_steps
    assert not list(tmp_path.glob("SB3-*"))  # training, new or resumed, leaves no log folder


def test_rl_on_a_surrogate_beats_random_search_at_equal_lab_evaluations() -> None:
    settings = {"train_steps": 512, "n_initial": 4}
    rl = [run(make_planner("rl", SQUARE, {"y": "max"}, seed=s, **settings), 6, 2) for s in range(3)]
    rand = [run(make_planner("random", SQUARE, {"y": "max"}, seed=s), 6, 2) for s in range(3)]
    assert np.mean(rl) > np.mean(rand)


def test_rl_trains_on_a_registered_twin_env() -> None:
    space = gymnasium.make("poreloop/GDLDesign-v0", size=16).unwrapped.space
    planner = make_planner(
        "rl",
        space,
        {"k_z_m2": "max", "deff_pore_z": "max"},
        seed=0,
        env="poreloop/GDLDesign-v0",
        env_kwargs={"size": 16},
        train_steps=8,
        n_envs=1,
        n_starts=1,
        episode_length=2,
    )
    recipes = planner.ask(2)
    assert [space.validate(r) for r in recipes] == recipes
    assert planner.env_steps >= 8 + 3  # training, then one rollout of a start and two steps


def test_rl_on_a_twin_env_refuses_objectives_or_constraints_its_reward_ignores() -> None:
    space = gymnasium.make("poreloop/ElectrodeDesign-v0", size=12).unwrapped.space
    twin = {"env": "poreloop/ElectrodeDesign-v0", "env_kwargs": {"size": 12}}
    with pytest.raises(
        PlannerError,
        match=r"rewards \{'energy_density_wh_l_1c': 'max'\}.*"
        r"asked for \{'porosity': 'min'\}; ask for the env's objectives",
    ):
        make_planner("rl", space, {"porosity": "min"}, **twin)
    with pytest.raises(PlannerError, match=r"with constraints \['porosity >= 0.3'\]"):
        make_planner("rl", space, {"energy_density_wh_l_1c": "max"}, ["porosity >= 0.3"], **twin)
    with pytest.raises(PlannerError, match="asked for .'energy_density_wh_l_1c': 'min'"):
        make_planner("rl", space, {"energy_density_wh_l_1c": "min"}, **twin)
    planner = make_planner("rl", space, {"energy_density_wh_l_1c": "max"}, **twin)
    assert planner.options.env == "poreloop/ElectrodeDesign-v0"


def test_options_are_checked() -> None:
    with pytest.raises(PlannerError, match="unknown env 'poreloop/GDLDesign-v1'; did you mean"):
        make_planner("rl", SQUARE, {"y": "max"}, env="poreloop/GDLDesign-v1")
    with pytest.raises(PlannerError, match="designs over"):
        make_planner("rl", SQUARE, {"y": "max"}, env="poreloop/GDLDesign-v0")
    with pytest.raises(PlannerError, match="planner options, not in env_kwargs"):
        make_planner("rl", SQUARE, {"y": "max"}, env_kwargs={"max_step": 0.2})
    with pytest.raises(PlannerError, match="algorithm"):
        make_planner("rl", SQUARE, {"y": "max"}, algorithm="dqn")
