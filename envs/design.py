"""Design environments: an agent edits a recipe step by step and a critic pays for each step.

``DesignEnv`` works for any ``ParameterSpace`` and any scorer (recipe → ``Score``): the RL
planner runs it on a surrogate of lab data, ``ElectrodeDesignEnv`` and ``GDLDesignEnv`` run it
on a manufacturing twin and its critic chain at a small box size.

- observation: the recipe in unit-cube coordinates (``dim``), then the scorer's normalised
  features (e.g. porosity, 1/τ, the objective), float32, features clipped to ±``FEATURE_BOUND``;
- action: a change of the unit-cube recipe, ``Box(-1, 1, (dim,))`` times ``max_step``; the new
  point is clipped to the cube and, if it breaks a linear constraint of the space, pulled back
  along the step to the last feasible point, so every visited recipe is valid;
- reward: the scorer's reward for the new recipe; a recipe that cannot be scored earns
  ``FAILURE_REWARD`` and ``info["failed"]`` is True with ``info["reason"]``; never NaN; a
  recipe whose solves stopped at their iteration cap keeps its reward, flagged by
  ``info["converged"]`` False and ``info["unconverged"]`` (solve → residual);
- episodes: ``episode_length`` steps, then ``truncated``; ``reset(seed=...)`` starts from a
  feasible uniformly random recipe drawn with the env's ``np_random`` and scores it, so the
  first observation already carries the critic's features.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from poreloop.registry import did_you_mean
from poreloop.twins.critics.chain import get_chain
from poreloop.twins.errors import TwinError
from poreloop.twins.manufacturing import get_twin
from poreloop.twins.manufacturing.gdl import MIN_BOX_DIAMETERS
from poreloop.twins.space import Continuous, Integer, LinearConstraint, ParameterSpace, Recipe

FEATURE_BOUND = 10.0
"""Features are normalised to order one; the observation box clips them here."""

FAILURE_REWARD = -1.0
"""Reward of a recipe the critic cannot score: below every scorable one (twin rewards are in
[0, 1]), so a policy learns to avoid non-percolating or unbuildable structures."""

_FIT_MARGIN = 1.0 - 1e-6
"""Keeps the capped feature size a hair inside the twin's limit, clear of rounding."""

_BACKOFF_ITERATIONS = 30
"""Bisection steps when pulling a step back inside the linear constraints (2⁻³⁰ of the step)."""


class EnvError(TwinError):
    """An environment was built with arguments it cannot use."""


@dataclass(frozen=True)
class Score:
    """What a scorer says about one recipe.

    features: ``(n_features,)`` normalised values, the second part of the observation.
    ``reason`` is empty when the recipe was scored, else why not (then ``reward`` is ignored).
    ``unconverged``: the solves that stopped at their iteration cap, with their residuals.
    """

    reward: float
    features: np.ndarray
    reason: str = ""
    properties: Mapping[str, float] = field(default_factory=dict)
    unconverged: Mapping[str, float] = field(default_factory=dict)


Scorer = Callable[[Sequence[Recipe], Sequence[int]], Sequence[Score]]
"""(recipes, structure seeds) → one Score per recipe. Batched, so a vectorised env can score
all its envs' recipes in one call (a GP predicts a batch as fast as one point). The seed is
drawn once per episode, so a stochastic critic (a twin) builds every recipe of an episode
from the same random realisation."""


class DesignEnv(gym.Env):
    """Step through a ``ParameterSpace`` with bounded moves, paid by ``scorer``.

    ``features`` names the scorer's features, in order. ``evaluations`` counts scored recipes
    (resets and steps): the cost of the env to whoever trains on it. ``step`` is ``move`` (the
    new recipe), the scorer, then ``settle`` (what the agent sees); a vectorised env may call
    the three itself to batch the scorer.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # gymnasium.Env declares it per instance

    def __init__(
        self,
        space: ParameterSpace,
        scorer: Scorer,
        features: Sequence[str],
        *,
        episode_length: int = 16,
        max_step: float = 0.1,
    ) -> None:
        if not isinstance(space, ParameterSpace):
            raise EnvError(f"a design env needs a ParameterSpace, got {type(space).__name__}")
        if isinstance(episode_length, bool) or not isinstance(episode_length, int):
            raise EnvError(f"episode_length must be a whole number >= 1, got {episode_length!r}")
        if episode_length < 1:
            raise EnvError(f"episode_length must be a whole number >= 1, got {episode_length}")
        if not 0.0 < max_step <= 1.0:
            raise EnvError(f"max_step must be in (0, 1] (unit-cube coordinates), got {max_step}")
        self.space = space
        self.scorer = scorer
        self.features = tuple(features)
        self.episode_length = episode_length
        self.max_step = float(max_step)
        self.evaluations = 0
        self.structure_seed = 0
        dim, n = space.dim, len(self.features)
        self.observation_space = gym.spaces.Box(
            low=np.concatenate([np.zeros(dim), np.full(n, -FEATURE_BOUND)]).astype(np.float32),
            high=np.concatenate([np.ones(dim), np.full(n, FEATURE_BOUND)]).astype(np.float32),
            dtype=np.float32,
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(dim,), dtype=np.float32)
        self._u = np.zeros(dim)
        self._t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.structure_seed = int(self.np_random.integers(2**31 - 1))
        start = self.space.sample(1, seed=self.np_random, method="random")[0]
        self._u = self.space.to_unit(start)
        self._t = 0
        obs, _, _, _, info = self.settle(start, self.scorer([start], [self.structure_seed])[0])
        return obs, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        recipe = self.move(action)
        return self.settle(recipe, self.scorer([recipe], [self.structure_seed])[0])

    def move(self, action: np.ndarray) -> Recipe:
        """Take the step ``action`` asks for (clipped, kept feasible); the recipe reached."""
        action = np.asarray(action, dtype=float).reshape(self.space.dim)
        self._u = feasible_move(self.space, self._u, self.max_step * np.clip(action, -1.0, 1.0))
        self._t += 1
        return self.space.from_unit(self._u)

    def settle(
        self, recipe: Recipe, score: Score
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """What the agent sees of the recipe just reached and its score."""
        self.evaluations += 1
        features = np.asarray(score.features, dtype=float)
        if features.shape != (len(self.features),):
            raise EnvError(
                f"the scorer gave {features.shape} features, expected ({len(self.features)},) "
                f"named {list(self.features)}"
            )
        reason = score.reason or ("" if math.isfinite(score.reward) else "reward is not finite")
        features = np.clip(np.nan_to_num(features), -FEATURE_BOUND, FEATURE_BOUND)
        obs = np.concatenate([self._u, features]).astype(np.float32)
        reward = FAILURE_REWARD if reason else float(score.reward)
        info = {
            "recipe": recipe,
            "reward": reward,
            "properties": dict(score.properties),
            "failed": bool(reason),
            "reason": reason,
            "converged": not score.unconverged,
            "unconverged": dict(score.unconverged),
        }
        return obs, reward, False, self._t >= self.episode_length, info


def feasible_move(space: ParameterSpace, u: np.ndarray, step: np.ndarray) -> np.ndarray:
    """``u + step`` clipped to the unit cube, pulled back along the step to the last point
    that keeps the space's linear constraints. ``u``: feasible ``(dim,)`` unit-cube point."""
    target = np.clip(u + step, 0.0, 1.0)
    if space.is_feasible(space.from_unit(target)):
        return target
    low, high = 0.0, 1.0
    for _ in range(_BACKOFF_ITERATIONS):
        mid = (low + high) / 2
        if space.is_feasible(space.from_unit(u + mid * (target - u))):
            low = mid
        else:
            high = mid
    return u + low * (target - u)


def design_space(
    space: ParameterSpace,
    fixed: Mapping[str, float],
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> ParameterSpace:
    """The space left to design once ``fixed`` parameters are set, with bounds narrowed to
    ``bounds`` (name → (low, high), intersected with the parameter's own).

    Constraints are rewritten with the fixed values; one left with a single parameter becomes
    a bound on it (e.g. ``1.5 * voxel_size_um <= particle_radius_um``).
    """
    bounds = bounds or {}
    for name in [*fixed, *bounds]:
        if name not in space.names:
            raise EnvError(f"unknown parameter '{name}'{did_you_mean(name, space.names)}")
    low = {
        name: max(p.low, bounds.get(name, (-math.inf, math.inf))[0])
        for name, p in _numeric(space).items()
    }
    high = {
        name: min(p.high, bounds.get(name, (-math.inf, math.inf))[1])
        for name, p in _numeric(space).items()
    }
    constraints = []
    for c in space.constraints:
        free = {name: k for name, k in c.coefficients.items() if name not in fixed}
        bound = c.bound - sum(
            k * float(fixed[name]) for name, k in c.coefficients.items() if name in fixed
        )
        if not free and bound < 0:
            raise EnvError(f"the fixed values {dict(fixed)} break the constraint {c.describe()}")
        if len(free) == 1:
            ((name, k),) = free.items()
            if k > 0:
                high[name] = min(high[name], bound / k)
            else:
                low[name] = max(low[name], bound / k)
        elif free:
            constraints.append(LinearConstraint(coefficients=free, bound=bound))
    parameters = []
    for p in space.parameters:
        if p.name in fixed:
            continue
        if isinstance(p, Continuous | Integer):
            if not low[p.name] < high[p.name]:
                raise EnvError(
                    f"with {dict(fixed)} parameter '{p.name}' has no room left: expected "
                    f"low < high, got [{low[p.name]:.4g}, {high[p.name]:.4g}] — enlarge the box"
                )
            default = None if p.default is None else min(max(p.default, low[p.name]), high[p.name])
            p = p.model_copy(update={"low": low[p.name], "high": high[p.name], "default": default})
        parameters.append(p)
    return ParameterSpace(parameters=tuple(parameters), constraints=tuple(constraints))


def _numeric(space: ParameterSpace) -> dict[str, Continuous | Integer]:
    return {p.name: p for p in space.parameters if isinstance(p, Continuous | Integer)}


Feature = Callable[[Mapping[str, float]], float]
"""A normalised feature of a chain's properties (0 when the property was not reached)."""


def scaled(key: str, scale: float) -> Feature:
    return lambda p: p.get(key, 0.0) / scale


def inverse(key: str) -> Feature:
    """1/x: maps a tortuosity in [1, ∞] (∞: no percolating path) to [0, 1]."""
    return lambda p: 1.0 / p[key] if p.get(key, math.inf) > 0 else 0.0


def log_scaled(key: str, low: float, high: float) -> Feature:
    """log10(x) mapped linearly from [low, high] to [0, 1] and clipped (x = 0 gives 0)."""

    def feature(p: Mapping[str, float]) -> float:
        value = p.get(key, 0.0)
        if value <= 0:
            return 0.0
        return float(np.clip((math.log10(value) - math.log10(low)) / math.log10(high / low), 0, 1))

    return feature


class TwinDesignEnv(DesignEnv):
    """A design env scored by a twin and its chain on a cube of ``size`` voxels.

    ``voxel_size_um`` is a resolution, not a design choice: it is left out of the design space
    and fixed here (the twin's default when not given). The size of the twin's features
    (``FEATURE_PARAMETER``: particle radius, fibre diameter) is capped so that ``PER_EDGE`` of
    them fit along a box edge, as the twin requires; ``BOUNDS`` narrow other parameters to
    what the product allows. The reward is the mean of the ``OBJECTIVES`` features.
    """

    TWIN: ClassVar[str]
    CHAIN: ClassVar[tuple[str, dict[str, Any]]]
    FEATURES: ClassVar[dict[str, Feature]]
    OBJECTIVES: ClassVar[tuple[str, ...]]
    FEATURE_PARAMETER: ClassVar[str]
    PER_EDGE: ClassVar[float]
    BOUNDS: ClassVar[dict[str, tuple[float, float]]] = {}

    def __init__(
        self,
        size: int = 32,
        voxel_size_um: float | None = None,
        *,
        episode_length: int = 16,
        max_step: float = 0.1,
    ) -> None:
        twin = get_twin(self.TWIN)
        if isinstance(size, bool) or not isinstance(size, int):
            raise EnvError(f"size must be a whole number of voxels, got {size!r}")
        voxel = (
            float(twin.space.defaults()["voxel_size_um"])
            if voxel_size_um is None
            else float(voxel_size_um)
        )
        twin.space["voxel_size_um"].check(voxel)
        space = design_space(
            twin.space,
            fixed={"voxel_size_um": voxel},
            bounds={
                **self.BOUNDS,
                self.FEATURE_PARAMETER: (-math.inf, _FIT_MARGIN * size / self.PER_EDGE * voxel),
            },
        )
        self.twin, self.chain = twin, get_chain(self.CHAIN[0], **self.CHAIN[1])
        self.shape = (size, size, size)
        self.voxel_size_um = voxel
        super().__init__(
            space,
            self._score,
            list(self.FEATURES),
            episode_length=episode_length,
            max_step=max_step,
        )

    @property
    def objectives(self) -> dict[str, str]:
        """What the reward stands for: the chain's objectives (property → "max"/"min"), each
        mapped by an ``OBJECTIVES`` feature that grows as the property gets better."""
        return dict(self.chain.objectives)

    def _score(self, recipes: Sequence[Recipe], seeds: Sequence[int]) -> list[Score]:
        return [self._score_one(recipe, seed) for recipe, seed in zip(recipes, seeds, strict=True)]

    def _score_one(self, recipe: Recipe, seed: int) -> Score:
        try:
            micro = self.twin.generate(
                {**recipe, "voxel_size_um": self.voxel_size_um}, shape=self.shape, seed=seed
            )
            result = self.chain.evaluate(micro)
        except TwinError as exc:
            return Score(0.0, np.zeros(len(self.FEATURES)), reason=str(exc))
        features = {name: f(result.properties) for name, f in self.FEATURES.items()}
        return Score(
            reward=float(np.mean([features[name] for name in self.OBJECTIVES])),
            features=np.array(list(features.values())),
            reason=result.reason,
            properties=result.properties,
            unconverged=result.unconverged,
        )


ENERGY_SCALE_WH_L = 800.0
"""Normalises the electrode's energy density at 1C (coatings of 30-150 µm score about
500-850 Wh/L, whatever the box: its height is not the coating's)."""

CELL_THICKNESS_UM = (30.0, 150.0)
"""Coating thicknesses a cell designer uses (the coater reaches 10-300 µm): thinner wastes
collector and separator volume, thicker cannot be wetted and cycled at 1C."""

PERMEABILITY_RANGE_M2 = (1e-14, 1e-10)
"""log10 of the GDL's through-plane permeability is mapped from this range to [0, 1]."""


class ElectrodeDesignEnv(TwinDesignEnv):
    """``poreloop/ElectrodeDesign-v0``: Li-ion electrode recipes scored by the electrode chain
    at 1C. Reward: energy density at 1C / ``ENERGY_SCALE_WH_L``. Features: porosity, 1/τ of the
    pore through the thickness, the normalised energy density. The coating thickness is a
    design variable within ``CELL_THICKNESS_UM`` (the box is a representative volume of it);
    the particle radius is capped so the in-plane box holds three mean radii (the twin's
    rule)."""

    TWIN = "li_ion_electrode"
    CHAIN = ("electrode", {"c_rates": (1.0,)})
    FEATURES: ClassVar[dict[str, Feature]] = {
        "porosity": scaled("porosity", 1.0),
        "inv_tau_pore_z": inverse("tau_pore_z"),
        "energy_density_1c": scaled("energy_density_wh_l_1c", ENERGY_SCALE_WH_L),
    }
    OBJECTIVES = ("energy_density_1c",)
    FEATURE_PARAMETER = "particle_radius_um"
    PER_EDGE = 3.0
    BOUNDS: ClassVar[dict[str, tuple[float, float]]] = {"thickness_um": CELL_THICKNESS_UM}


class GDLDesignEnv(TwinDesignEnv):
    """``poreloop/GDLDesign-v0``: carbon-paper GDL recipes scored by the GDL chain along z.

    Its two objectives are scalarised with equal weights: reward = mean of log10 k_z mapped
    from ``PERMEABILITY_RANGE_M2`` to [0, 1] and D_eff/D0 of the pore along z (already in
    [0, 1]); the log because permeability spans decades. Features: porosity, 1/τ of the pore
    along z, and the two normalised objectives. The fibre diameter is capped so every box edge
    spans the twin's ``MIN_BOX_DIAMETERS``."""

    TWIN = "gdl"
    CHAIN = ("gdl", {"axes": ("z",)})
    FEATURES: ClassVar[dict[str, Feature]] = {
        "porosity": scaled("porosity", 1.0),
        "inv_tau_pore_z": inverse("tau_pore_z"),
        "log_k_z": log_scaled("k_z_m2", *PERMEABILITY_RANGE_M2),
        "deff_pore_z": scaled("deff_pore_z", 1.0),
    }
    OBJECTIVES = ("log_k_z", "deff_pore_z")
    FEATURE_PARAMETER = "fibre_diameter_um"
    PER_EDGE = MIN_BOX_DIAMETERS
