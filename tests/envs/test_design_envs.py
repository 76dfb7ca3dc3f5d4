"""Design envs: the gymnasium and SB3 checkers, reproducible resets, feasible steps, failures."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.env_util import make_vec_env

from poreloop import envs
from poreloop.envs.design import (
    CELL_THICKNESS_UM,
    FAILURE_REWARD,
    DesignEnv,
    EnvError,
    Score,
    design_space,
)
from poreloop.twins.errors import TwinError
from poreloop.twins.manufacturing import get_twin
from poreloop.twins.space import Continuous, LinearConstraint, ParameterSpace

TINY = {
    "poreloop/ElectrodeDesign-v0": {"size": 12},
    "poreloop/GDLDesign-v0": {"size": 16},
}
"""Smallest boxes that keep the checkers fast; every registered env must be listed."""


def quadratic(recipes, seeds):
    """Analytic scorer: reward -|x - 0.3|², one feature (the reward); fails where x0 > 0.9."""
    scores = []
    for recipe in recipes:
        x = np.array([recipe["x0"], recipe["x1"]])
        reward = -float(np.sum((x - 0.3) ** 2))
        reason = "x0 is too large to make" if x[0] > 0.9 else ""
        scores.append(Score(reward, np.array([reward]), reason=reason))
    return scores


TRIANGLE = ParameterSpace(
    parameters=(Continuous(name="x0", low=0.0, high=1.0), Continuous(name="x1", low=0.0, high=1.0)),
    constraints=(LinearConstraint(coefficients={"x0": 1.0, "x1": 1.0}, bound=1.0),),
)


def test_every_registered_env_has_a_tiny_size() -> None:
    assert set(TINY) == set(envs.ENVS)


@pytest.mark.parametrize("env_id", sorted(TINY))
def test_registered_envs_pass_the_gymnasium_and_sb3_checkers(env_id: str) -> None:
    env = gymnasium.make(env_id, episode_length=3, **TINY[env_id]).unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env)
        sb3_check_env(env)
    assert "voxel_size_um" not in env.space.names


@pytest.mark.filterwarnings("ignore:.*render_mode")  # make_vec_env first tries rgb_array
def test_gdl_env_runs_vectorised_and_truncates_at_the_episode_length() -> None:
    vec = make_vec_env(
        "poreloop/GDLDesign-v0", n_envs=2, seed=0, env_kwargs={"size": 16, "episode_length": 2}
    )
    obs = vec.reset()
    assert obs.shape == (2, vec.observation_space.shape[0])
    dones = [vec.step(np.ones((2, vec.action_space.shape[0])))[2] for _ in range(2)]
    assert not dones[0].any() and dones[1].all()
    assert all(np.isfinite(vec.step(np.zeros((2, vec.action_space.shape[0])))[1]))


def test_reset_with_a_seed_is_reproducible() -> None:
    env = gymnasium.make("poreloop/GDLDesign-v0", size=16).unwrapped
    first, info = env.reset(seed=7)
    again, info_again = env.reset(seed=7)
    other, _ = env.reset(seed=8)
    np.testing.assert_array_equal(first, again)
    assert info["recipe"] == info_again["recipe"] and info["reward"] == info_again["reward"]
    assert not np.array_equal(first, other)


def test_a_step_that_breaks_a_constraint_is_pulled_back_to_it() -> None:
    env = DesignEnv(TRIANGLE, quadratic, ["reward"], episode_length=8, max_step=0.5)
    env.reset(seed=0)
    for _ in range(8):
        _, _, _, _, info = env.step(np.ones(2, dtype=np.float32))
        assert TRIANGLE.validate(info["recipe"]) == info["recipe"]
    assert info["recipe"]["x0"] + info["recipe"]["x1"] == pytest.approx(1.0, abs=1e-6)


def test_a_recipe_that_cannot_be_scored_earns_the_penalty_and_says_why() -> None:
    env = DesignEnv(TRIANGLE, quadratic, ["reward"], episode_length=4, max_step=1.0)
    env.reset(seed=0)
    obs, reward, _, _, info = env.step(np.array([1.0, -1.0], dtype=np.float32))
    assert info["recipe"]["x0"] == 1.0
    assert reward == FAILURE_REWARD and info["failed"] and "too large" in info["reason"]
    assert np.all(np.isfinite(obs))


def test_a_non_finite_reward_is_a_failure_not_a_nan() -> None:
    env = DesignEnv(TRIANGLE, lambda rs, _: [Score(np.nan, np.zeros(1)) for _ in rs], ["f"])
    _, info = env.reset(seed=0)
    assert info["failed"] and info["reward"] == FAILURE_REWARD


def test_a_structure_the_twin_cannot_build_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    env = gymnasium.make("poreloop/GDLDesign-v0", size=16).unwrapped

    def unbuildable(*args, **kwargs):
        raise TwinError("fibres did not fit")

    monkeypatch.setattr(env.twin, "generate", unbuildable)
    obs, info = env.reset(seed=0)
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert reward == FAILURE_REWARD and info["failed"] and info["reason"] == "fibres did not fit"
    assert np.all(np.isfinite(obs))


def test_design_space_fixes_the_voxel_size_and_fits_particles_in_the_box() -> None:
    env = gymnasium.make("poreloop/ElectrodeDesign-v0", size=24, voxel_size_um=0.5).unwrapped
    radius = env.space["particle_radius_um"]
    assert radius.high == pytest.approx(24 / 3 * 0.5, rel=1e-5)
    assert radius.low == max(
        get_twin("li_ion_electrode").space["particle_radius_um"].low, 1.5 * 0.5
    )
    assert len(env.space.constraints) == 1  # the radius-voxel constraint became a bound


def test_the_coating_thickness_is_a_design_variable_and_the_cell_sees_it() -> None:
    """The box is a representative volume: the energy comes from the recipe's thickness."""
    env = gymnasium.make("poreloop/ElectrodeDesign-v0", size=12, voxel_size_um=0.5).unwrapped
    thickness = env.space["thickness_um"]
    assert (thickness.low, thickness.high) == CELL_THICKNESS_UM
    assert "voxel_size_um" not in env.space.names
    recipe = env.space.complete({"particle_radius_um": 1.0, "thickness_um": 100.0})
    (score,) = env._score([recipe], [0])
    assert score.properties["thickness_um"] == 100.0


def test_a_box_too_small_for_any_particle_is_refused() -> None:
    with pytest.raises(EnvError, match="particle_radius_um.*no room"):
        gymnasium.make("poreloop/ElectrodeDesign-v0", size=8, voxel_size_um=0.1)
    with pytest.raises(EnvError, match="unknown parameter 'voxel'"):
        design_space(TRIANGLE, fixed={"voxel": 1.0})
    with pytest.raises(EnvError, match="episode_length"):
        DesignEnv(TRIANGLE, quadratic, ["reward"], episode_length=0)


class CappedGDLEnv(envs.design.GDLDesignEnv):
    """The GDL env with every solve capped at 2 iterations: none converges."""

    CHAIN = ("gdl", {"axes": ("z",), "max_iterations": 2})


def test_a_step_whose_solves_stopped_at_their_cap_says_so_in_info() -> None:
    capped = CappedGDLEnv(size=16)
    _, info = capped.reset(seed=0)
    stay = np.zeros(capped.action_space.shape, dtype=capped.action_space.dtype)
    _, _, _, _, info = capped.step(stay)  # the reset recipe, whose pores percolate
    assert not info["converged"] and {"tau_pore_z", "k_z"} <= set(info["unconverged"])
    assert info["unconverged"]["k_z"] > 1e-3 and not info["failed"]
    _, info = envs.design.GDLDesignEnv(size=16).reset(seed=0)
    assert info["converged"] and info["unconverged"] == {}
