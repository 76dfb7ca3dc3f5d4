"""The review's deep-RL route: a stable-baselines3 policy trained in the digital space, whose
rollouts become proposals.

Deep RL needs far more samples than GP-BO (Summit's SnAr benchmark), so it never spends them
on the lab: each ask trains the policy for ``train_steps`` env steps on a fast critic, then
rolls it out from ``n_starts`` seeded random feasible recipes and proposes the best distinct
recipes it visited. The critic is either

- a registered design env (``env='poreloop/ElectrodeDesign-v0'``, a twin and its chain at a
  small box size), whose design space must be the planner's and whose own reward (see
  ``envs.design``) is built for fixed objectives: the planner must be asked for exactly those
  (``env.unwrapped.objectives``), without outcome constraints, or it refuses the env; or
- by default, a surrogate of what the planner was told: botorch GP posterior means
  (``agent.planners.surrogate.Surrogate``) refitted at every ask, the objectives scalarised into a
  reward (one: ``sign`` × the standardised mean; several: an augmented Chebyshev scalarisation
  with random weights drawn per ask, so successive asks spread along the Pareto front), minus
  a penalty for predicted constraint violations and for predicted failure. Until ``n_initial``
  samples succeeded there is nothing to fit, and proposals are Sobol points.

The policy carries over between asks (training continues), is saved in the state and restored
identically; ``env_steps`` counts every critic evaluation the envs made.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Sequence
from copy import deepcopy
from functools import partial
from typing import Any, ClassVar, Literal

import gymnasium
import numpy as np
from pydantic import Field, field_validator
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from poreloop import envs
from poreloop.agent.errors import PlannerError
from poreloop.agent.planners.base import Planner
from poreloop.agent.planners.surrogate import (
    Surrogate,
    model_or_space_filling,
    torch_on_one_thread,
)
from poreloop.envs.design import DesignEnv, Score, Scorer
from poreloop.registry import did_you_mean
from poreloop.twins.errors import TwinError
from poreloop.twins.space import Recipe

CONSTRAINT_PENALTY = 2.0
"""Reward lost per standard deviation of predicted constraint violation, and for a predicted
certain failure (scaled by the modelled chance of failing)."""

CHEBYSHEV_RHO = 0.05
"""Weight of the linear term of the augmented Chebyshev scalarisation (keeps it from ignoring
all but the worst objective)."""

_DISTINCT = 1e-3
"""Two recipes closer than this in every unit-cube coordinate count as the same."""

_MAX_ROLLOUT = 512
"""Longest PPO rollout per env between updates."""


class RLPlanner(Planner):
    """PPO or SAC trained on a design env (the twin, or a surrogate of the observations)."""

    name: ClassVar[str] = "rl"

    class Options(Planner.Options):
        algorithm: Literal["ppo", "sac"] = "ppo"
        train_steps: int = Field(default=1024, ge=1)
        """Env steps the policy trains for at each ask (PPO rounds up to whole rollouts of a
        multiple of 16 steps per env)."""
        n_envs: int = Field(default=4, ge=1)
        """Vectorised envs it trains and rolls out on."""
        episode_length: int = Field(default=16, ge=1)
        max_step: float = Field(default=0.1, gt=0.0, le=1.0)
        """Largest move per step, in unit-cube coordinates."""
        n_starts: int = Field(default=8, ge=1)
        """Rollouts whose visited recipes are the candidates of an ask."""
        env: str | None = None
        """A registered design env to train on instead of the surrogate."""
        env_kwargs: dict[str, Any] = Field(default_factory=dict)
        """The env's own arguments (e.g. ``size``); episode_length and max_step come from
        the options above."""

        @field_validator("env_kwargs")
        @classmethod
        def _plain(cls, value: dict[str, Any]) -> dict[str, Any]:
            taken = sorted({"episode_length", "max_step"} & set(value))
            if taken:
                raise ValueError(f"give {taken} as planner options, not in env_kwargs")
            try:
                json.dumps(value)
            except TypeError as exc:
                raise ValueError(
                    f"must be JSON-serialisable (it is saved in the state): {exc}"
                ) from None
            return value

    options: Options

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env_steps = 0
        self._model: BaseAlgorithm | None = None
        self._saved_policy: str | None = None
        self._env: VecEnv | None = None
        if self.options.env is not None:
            self._check_env()

    # --- proposing ----------------------------------------------------------------------------

    def _propose(self, n: int, fidelity: str | None) -> list[Recipe]:
        if self.options.env is None:
            return model_or_space_filling(self, n, self._train_and_roll_out)
        return self._train_and_roll_out(n)

    def _train_and_roll_out(self, n: int) -> list[Recipe]:
        rng = self._rng()
        seed = int(rng.integers(2**31 - 1))
        with torch_on_one_thread():
            env = self._twin_env if self.options.env else self._surrogate_env(rng)
            before = sum(env.get_attr("evaluations"))
            model = self._policy(env, seed)
            model.set_random_seed(seed)
            model.learn(self.options.train_steps, reset_num_timesteps=False)
            candidates = self._rollouts(model, env, int(rng.integers(2**31 - 1)))
            self.env_steps += sum(env.get_attr("evaluations")) - before
        return self._select(candidates, n, rng)

    def _policy(self, env: VecEnv, seed: int) -> BaseAlgorithm:
        """The policy of the last ask (or a restored one) on ``env``, else a new one."""
        algorithm = _algorithm(self.options.algorithm)
        if self._model is None and self._saved_policy is not None:
            raw = base64.b64decode(self._saved_policy)
            self._model, self._saved_policy = algorithm.load(io.BytesIO(raw), device="cpu"), None
        if self._model is None:
            self._model = algorithm("MlpPolicy", env, seed=seed, device="cpu", **self._settings())
        else:
            self._model.set_env(env)
            if self.options.algorithm == "sac":
                # the surrogate's rewards change between asks; a fresh buffer also keeps the
                # state small and a restored planner identical
                self._model.replay_buffer.reset()  # type: ignore[attr-defined]  # SAC has one
        # a logger of no outputs: SB3's default makes an empty folder in the temp directory
        # on every learn()
        self._model.set_logger(Logger(None, []))
        return self._model

    def _settings(self) -> dict[str, Any]:
        """Algorithm settings sized to ``train_steps``."""
        o = self.options
        if o.algorithm == "ppo":
            per_env = min(o.train_steps / o.n_envs, _MAX_ROLLOUT)
            n_steps = 16 * math.ceil(per_env / 16)
            return {"n_steps": n_steps, "batch_size": math.gcd(n_steps * o.n_envs, 64)}
        return {
            "buffer_size": o.train_steps + o.n_envs * o.episode_length,
            "learning_starts": min(100, o.train_steps // 4),
        }

    def _rollouts(self, model: BaseAlgorithm, env: VecEnv, seed: int) -> list[tuple[float, Recipe]]:
        """(reward, recipe) of every recipe the deterministic policy visits (starts included)
        in ``n_starts`` episodes; failed ones and those scored by unconverged solves are left
        out."""
        trace: list[dict[str, Any]] = []
        for start in range(0, self.options.n_starts, env.num_envs):
            env.seed(seed + start)
            obs = env.reset()
            trace += env.reset_infos
            for _ in range(self.options.episode_length):
                action, _ = model.predict(obs, deterministic=True)  # type: ignore[arg-type]
                obs, _, _, infos = env.step(action)
                trace += infos
        return [
            (info["reward"], info["recipe"])
            for info in trace
            if not info["failed"] and info["converged"]
        ]

    def _select(
        self, candidates: list[tuple[float, Recipe]], n: int, rng: np.random.Generator
    ) -> list[Recipe]:
        """The ``n`` best candidates that are distinct and neither pending nor observed; random
        feasible recipes fill in where too few are."""
        taken = [
            self.space.to_unit(r) for r in [*self.pending, *(o.recipe for o in self.observations)]
        ]
        chosen: list[Recipe] = []
        for _, recipe in sorted(candidates, key=lambda c: -c[0]):
            u = self.space.to_unit(recipe)
            if all(np.max(np.abs(u - v)) > _DISTINCT for v in taken):
                chosen.append(recipe)
                taken.append(u)
            if len(chosen) == n:
                return chosen
        return chosen + self.space.sample(n - len(chosen), seed=rng, method="random")

    # --- the critics --------------------------------------------------------------------------

    def _check_env(self) -> None:
        """The named env exists, builds with ``env_kwargs``, designs over this space and
        rewards what the planner was asked for."""
        name = str(self.options.env)  # called only with an env
        if name not in gymnasium.registry:
            raise PlannerError(f"planner 'rl': unknown env '{name}'{did_you_mean(name, envs.ENVS)}")
        try:
            env = gymnasium.make(name, **self._env_kwargs()).unwrapped
        except (TypeError, TwinError) as exc:
            raise PlannerError(f"planner 'rl': env '{name}' cannot be built: {exc}") from None
        space = env.space  # type: ignore[attr-defined]  # every registered env has one
        if space != self.space:
            raise PlannerError(
                f"planner 'rl': env '{name}' designs over {space.names}, the planner's space is "
                f"{self.space.names} (or its bounds differ); build the planner on the env's space: "
                f"gymnasium.make('{name}', ...).unwrapped.space"
            )
        rewarded = env.objectives  # type: ignore[attr-defined]  # every registered env has them
        asked = {o.name: o.goal for o in self.objectives}
        if asked != rewarded or self.constraints:
            constraints = [c.describe() for c in self.constraints]
            raise PlannerError(
                f"planner 'rl': env '{name}' rewards {rewarded} without outcome constraints, the "
                f"planner was asked for {asked}"
                + (f" with constraints {constraints}" if constraints else "")
                + "; ask for the env's objectives, or leave env out to train on a surrogate of "
                "your own"
            )

    def _env_kwargs(self) -> dict[str, Any]:
        o = self.options
        return {**o.env_kwargs, "episode_length": o.episode_length, "max_step": o.max_step}

    @property
    def _twin_env(self) -> VecEnv:
        """The registered env, vectorised; built once (its critics are slow to start)."""
        if self._env is None:
            make = partial(gymnasium.make, str(self.options.env), **self._env_kwargs())
            self._env = DummyVecEnv([make] * self.options.n_envs)
        return self._env

    def _surrogate_env(self, rng: np.random.Generator) -> VecEnv:
        scorer = self._surrogate_scorer(rng)
        o = self.options
        return DesignVecEnv(
            [
                DesignEnv(
                    self.space,
                    scorer,
                    self.outcome_names,
                    episode_length=o.episode_length,
                    max_step=o.max_step,
                )
                for _ in range(o.n_envs)
            ]
        )

    def _surrogate_scorer(self, rng: np.random.Generator) -> Scorer:
        """Reward of a recipe under the GP posterior means; features: the standardised means
        of ``outcome_names``."""
        surrogate = Surrogate.fit(self)
        seen = [o for o in self.observations if not o.failed]
        values = {name: np.array([o.values[name] for o in seen]) for name in self.outcome_names}
        mean = {name: float(v.mean()) for name, v in values.items()}
        scale = {name: float(v.std()) or 1.0 for name, v in values.items()}
        utility = np.array([o.sign * values[o.name] for o in self.objectives])
        low, span = utility.min(axis=1), np.ptp(utility, axis=1)
        span[span == 0] = 1.0
        weights = rng.dirichlet(np.ones(len(self.objectives)))

        def score(recipes: Sequence[Recipe], _seeds: Sequence[int]) -> list[Score]:
            predicted = surrogate.predict(list(recipes))
            z = np.array([(predicted[k] - mean[k]) / scale[k] for k in self.outcome_names])
            if len(self.objectives) == 1:
                reward = self.objectives[0].sign * z[0]
            else:
                u = np.array([o.sign * predicted[o.name] for o in self.objectives])
                w_u = weights[:, None] * (u - low[:, None]) / span[:, None]
                reward = w_u.min(axis=0) + CHEBYSHEV_RHO * w_u.sum(axis=0)
            violation = sum(
                np.maximum(0.0, -c.slack(predicted[c.name])) / scale[c.name]
                for c in self.constraints
            )
            violation = violation + 1.0 - np.clip(predicted.get("success", 1.0), 0.0, 1.0)
            penalised = reward - CONSTRAINT_PENALTY * violation
            return [Score(float(r), z[:, i]) for i, r in enumerate(penalised)]

        return score

    # --- state --------------------------------------------------------------------------------

    def _extra_state(self) -> dict[str, Any]:
        policy = self._saved_policy
        if self._model is not None:
            buffer = io.BytesIO()
            self._model.save(buffer)
            policy = base64.b64encode(buffer.getvalue()).decode("ascii")
        return {"env_steps": self.env_steps, "policy": policy}

    def _load_extra_state(self, state: Any) -> None:
        try:
            env_steps, policy = int(state["env_steps"]), state["policy"]
        except (KeyError, TypeError, ValueError) as exc:
            raise PlannerError(f"planner state is damaged: rl needs {exc}") from None
        if policy is not None and not isinstance(policy, str):
            raise PlannerError(
                f"planner state is damaged: policy must be base64 text, got {type(policy).__name__}"
            )
        self.env_steps, self._saved_policy, self._model = env_steps, policy, None


def _algorithm(name: str) -> type[BaseAlgorithm]:
    algorithms: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "sac": SAC}
    return algorithms[name]


class DesignVecEnv(DummyVecEnv):
    """Design envs sharing one scorer: a step scores every env's recipe in one batch (the GP
    predicts a batch as fast as a point). Otherwise SB3's DummyVecEnv, auto-reset included."""

    def __init__(self, designs: Sequence[DesignEnv]) -> None:
        super().__init__([partial(lambda design: design, design) for design in designs])
        self.designs = list(designs)

    def step_wait(self) -> VecEnvStepReturn:
        recipes = [d.move(a) for d, a in zip(self.designs, self.actions, strict=True)]
        scores = self.designs[0].scorer(recipes, [d.structure_seed for d in self.designs])
        for i, (design, recipe, score) in enumerate(
            zip(self.designs, recipes, scores, strict=True)
        ):
            obs, reward, terminated, truncated, info = design.settle(recipe, score)
            self.buf_rews[i] = reward
            self.buf_dones[i] = terminated or truncated
            info["TimeLimit.truncated"] = truncated and not terminated
            if self.buf_dones[i]:
                info["terminal_observation"] = obs
                obs, self.reset_infos[i] = design.reset()
            self.buf_infos[i] = info
            self._save_obs(i, obs)
        return (
            self._obs_from_buf(),
            np.copy(self.buf_rews),
            np.copy(self.buf_dones),
            deepcopy(self.buf_infos),
        )
