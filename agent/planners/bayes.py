"""Bayesian optimisation with BoTorch.

The GPs of ``agent.planners.surrogate`` (one per modelled outcome); qLogNEI for one objective,
qLogNEHVI for several. What the GPs cannot see is modelled too:

- failures: once a sample fails, a GP of success (1) / failure (0) joins the model and the
  acquisition counts a candidate only where success is likely, and the objectives' GPs see a
  failure as the worst success so far, so they do not extrapolate optimism into a region that
  breaks samples; failed samples are never dropped;
- fidelity: with ``fidelities={'twin': 1, 'lab': 50}`` the fidelity is a categorical input, so
  one GP learns the shared trend, a fidelity-specific deviation and an offset from cheap twin
  scores and expensive lab results together; proposals maximise the acquisition at the target
  (most expensive) fidelity, and ``choose_fidelity`` says which fidelity is worth its cost;
- integers and categories: optimised as what they are (botorch's mixed alternating optimiser),
  categories through a categorical kernel;
- pending samples: recipes asked but not yet told are fantasised, so a batch or a lab queue
  never gets the same recipe twice.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import partial
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from poreloop.agent.errors import PlannerError
from poreloop.agent.planners.base import Planner
from poreloop.agent.planners.surrogate import (
    Encoding,
    Surrogate,
    model_or_space_filling,
    torch_on_one_thread,
)
from poreloop.twins.errors import TwinError
from poreloop.twins.space import Categorical, Integer, Recipe

THOMPSON_CANDIDATES = 1024
"""Feasible Sobol points a Thompson draw chooses among (its joint posterior is N × N)."""


class BayesPlanner(Planner):
    """BoTorch Bayesian optimisation: space-filling first, then qLogNEI / qLogNEHVI."""

    name: ClassVar[str] = "bayes"

    class Options(Planner.Options):
        num_restarts: int = Field(default=10, ge=1)
        raw_samples: int = Field(default=512, ge=1)
        mc_samples: int = Field(default=128, ge=8)

    options: Options

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._surrogate: tuple[int, Surrogate] | None = None

    def surrogate(self) -> Surrogate:
        """The GPs fitted to the current observations (refitted only when they changed)."""
        import torch

        if self._surrogate is None or self._surrogate[0] != len(self.observations):
            torch.manual_seed(self._torch_seed())
            with torch_on_one_thread():
                self._surrogate = (len(self.observations), Surrogate.fit(self))
        return self._surrogate[1]

    def _propose(self, n: int, fidelity: str | None) -> list[Recipe]:
        if fidelity is None or fidelity == self.target_fidelity:
            return model_or_space_filling(self, n, self._optimise)
        return model_or_space_filling(self, n, lambda k: self._thompson(k, fidelity))

    def _thompson(self, n: int, fidelity: str) -> list[Recipe]:
        """``n`` recipes for a cheap fidelity by Thompson sampling: each is the best of
        ``THOMPSON_CANDIDATES`` feasible Sobol points under one joint draw from the posterior at
        that fidelity. Fast for the large batches a screening step asks for (a q-batch
        acquisition optimised jointly grows with q), and as diverse as the posterior is unsure.
        """
        import torch

        surrogate = self.surrogate()
        candidates = self.space.sample(THOMPSON_CANDIDATES, seed=self._torch_seed())
        X = surrogate.encoding.encode(candidates, fidelity)
        torch.manual_seed(self._torch_seed())
        with torch.no_grad():
            draws = surrogate.model.posterior(X).rsample(torch.Size([n])).numpy()  # n x N x m
        names = surrogate.outcome_names
        weights = self._rng().dirichlet(np.ones(len(self.objectives)), size=n)  # n x objectives
        scores = np.zeros(draws.shape[:2])
        for k, objective in enumerate(self.objectives):
            values = objective.sign * draws[..., names.index(objective.name)]
            spread = values.std(axis=1, keepdims=True) + 1e-12
            scores += weights[:, k : k + 1] * (values - values.mean(axis=1, keepdims=True)) / spread
        violation = np.zeros(draws.shape[:2])
        for c in self.constraints:
            violation += np.maximum(-c.slack(draws[..., names.index(c.name)]), 0.0)
        if surrogate.models_failures:
            violation += np.maximum(0.5 - draws[..., len(names)], 0.0)
        scores = np.where(violation > 0, -1e9 - violation, scores)
        chosen: list[int] = []
        for draw in scores:
            chosen.append(next(int(i) for i in np.argsort(-draw) if int(i) not in chosen))
        return [candidates[i] for i in chosen]

    def _optimise(self, n: int) -> list[Recipe]:
        import torch
        from botorch.optim import optimize_acqf
        from botorch.optim.optimize_mixed import optimize_acqf_mixed_alternating

        surrogate = self.surrogate()
        encoding = surrogate.encoding
        torch.manual_seed(self._torch_seed())
        acquisition = self._acquisition(surrogate)
        fixed = {encoding.fidelity_dim: len(self.fidelities) - 1.0} if self.fidelities else None
        settings = dict(
            bounds=encoding.bounds(),
            q=n,
            num_restarts=self.options.num_restarts,
            raw_samples=self.options.raw_samples,
            fixed_features=fixed,
            inequality_constraints=encoding.inequality_constraints() or None,
        )
        integers, categories = encoding.integer_dims(), encoding.categorical_dims(False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            if integers or categories:
                # start from feasible Sobol points: the relaxed start walks the polytope
                X, _ = optimize_acqf_mixed_alternating(
                    acquisition,
                    discrete_dims=integers,
                    cat_dims=categories,
                    options={"initialization_strategy": "random"},
                    **settings,
                )
            else:
                X, _ = optimize_acqf(
                    acquisition,
                    sequential=n > 1,
                    ic_generator=self._initial_conditions(encoding),
                    **settings,
                )
        return self._distinct([self._feasible(recipe) for recipe in encoding.decode(X)])

    def _acquisition(self, surrogate: Surrogate):
        import torch
        from botorch.acquisition.logei import qLogNoisyExpectedImprovement
        from botorch.acquisition.multi_objective.logei import (
            qLogNoisyExpectedHypervolumeImprovement,
        )
        from botorch.acquisition.multi_objective.objective import WeightedMCMultiOutputObjective
        from botorch.acquisition.objective import GenericMCObjective
        from botorch.sampling import SobolQMCNormalSampler

        encoding, names = surrogate.encoding, surrogate.outcome_names
        target = self.target_fidelity
        # improvement is over what the target fidelity measured (all of it while it measured
        # nothing); a baseline of every screened recipe cost 15 ms per evaluation at 150 points
        measured = [o for o in self.observations if o.fidelity == target] or self.observations
        X_baseline = encoding.encode([o.recipe for o in measured], target).unique(dim=0)
        X_pending = encoding.encode(self.pending, target) if self.pending else None
        sampler = SobolQMCNormalSampler(
            torch.Size([self.options.mc_samples]), seed=self._torch_seed()
        )
        constraints = [
            _constraint_callable(names.index(c.name), c.op, c.bound) for c in self.constraints
        ]
        if surrogate.models_failures:  # the success GP is the last output; count P(success) ≥ ½
            constraints.append(_constraint_callable(len(names), ">=", 0.5))
        common = dict(
            model=surrogate.model,
            X_baseline=X_baseline,
            sampler=sampler,
            X_pending=X_pending,
            constraints=constraints or None,
            prune_baseline=True,
        )
        if len(self.objectives) == 1:
            index, sign = names.index(self.objectives[0].name), self.objectives[0].sign
            single = GenericMCObjective(partial(_signed, sign=sign, index=index))
            return qLogNoisyExpectedImprovement(objective=single, **common)
        objective = WeightedMCMultiOutputObjective(
            weights=torch.tensor([o.sign for o in self.objectives], dtype=torch.double),
            outcomes=[names.index(o.name) for o in self.objectives],
        )
        return qLogNoisyExpectedHypervolumeImprovement(
            ref_point=self.reference_point(), objective=objective, **common
        )

    def reference_point(self) -> list[float]:
        """The hypervolume's reference point in maximisation form (``sign * value``): the
        objectives' thresholds where given, else botorch's inference from the observed front."""
        import torch
        from botorch.utils.multi_objective.hypervolume import infer_reference_point
        from botorch.utils.multi_objective.pareto import is_non_dominated

        observed = [
            o for o in self.observations if all(ob.name in o.values for ob in self.objectives)
        ]
        feasible = [o for o in observed if self.is_feasible(o)] or observed
        Y = torch.tensor(
            [[ob.sign * o.values[ob.name] for ob in self.objectives] for o in feasible],
            dtype=torch.double,
        )
        inferred = infer_reference_point(Y[is_non_dominated(Y)]).tolist()
        return [
            ob.sign * ob.threshold if ob.threshold is not None else value
            for ob, value in zip(self.objectives, inferred, strict=True)
        ]

    def choose_fidelity(self, recipes: Sequence[Recipe]) -> list[str]:
        """For each recipe, the fidelity worth measuring it at.

        The cheapest fidelity that is still unsure of the recipe is chosen: its posterior
        standard deviation there must exceed its own measurement noise and ``sqrt(cost /
        target cost)`` times the target's (the cost-scaled thresholds of MF-GP-UCB, Kandasamy
        et al. 2016); else the target. So a recipe goes to the twin while the twin can still
        teach something about it, and to the lab once the twin is known there. With several
        objectives, any objective the cheap fidelity is unsure of is enough.
        """
        import torch

        if not self.fidelities:
            raise PlannerError("choose_fidelity needs fidelities, e.g. {'twin': 1, 'lab': 50}")
        recipes = [self.space.validate(dict(r)) for r in recipes]
        target = str(self.target_fidelity)  # set: there are fidelities
        if self.in_initial_design:
            return [target] * len(recipes)
        surrogate = self.surrogate()
        cheapest_first = sorted(self.fidelities, key=self.fidelities.__getitem__)
        objectives = [surrogate.outcome_names.index(o.name) for o in self.objectives]
        thresholds = torch.tensor(
            [(self.fidelities[f] / self.fidelities[target]) ** 0.5 for f in cheapest_first]
        )
        choices = []
        for recipe in recipes:
            X = surrogate.encoding.encode([recipe] * len(cheapest_first), cheapest_first)
            unsure = torch.zeros(len(cheapest_first), dtype=torch.bool)
            with torch.no_grad():
                for i in objectives:
                    model: Any = surrogate.model.models[i]
                    latent = model.posterior(X).variance.squeeze(-1)
                    noise = model.posterior(X, observation_noise=True).variance.squeeze(-1) - latent
                    std = latent.sqrt()
                    unsure |= (std > noise.clamp_min(0).sqrt()) & (std > thresholds * std[-1])
            cheap = [f for f, u in zip(cheapest_first[:-1], unsure.tolist(), strict=False) if u]
            choices.append(cheap[0] if cheap else target)
        return choices

    def _initial_conditions(self, encoding: Encoding):
        """botorch's starting-point generator, fed with the space's feasible Sobol points: its
        own hit-and-run sampler of the constraint polytope costs seconds per proposal."""
        import torch
        from botorch.optim.initializers import gen_batch_initial_conditions, initialize_q_batch

        def generate(acq_function, bounds, q, num_restarts, raw_samples, fixed_features, **kwargs):
            try:
                recipes = self.space.sample(raw_samples * q, seed=self._rng())
            except TwinError:  # a sliver of feasible volume: let botorch walk the polytope
                return gen_batch_initial_conditions(
                    acq_function, bounds, q, num_restarts, raw_samples, fixed_features, **kwargs
                )
            X = encoding.encode(recipes, self.target_fidelity).reshape(raw_samples, q, -1)
            with torch.no_grad():
                values = torch.cat([acq_function(chunk) for chunk in X.split(256)])
            return initialize_q_batch(X, values, num_restarts)[0]

        return generate

    def _distinct(self, recipes: list[Recipe]) -> list[Recipe]:
        """The proposals, each repeat of a pending recipe (or of an earlier one in the batch)
        replaced by a space-filling point: a recipe already in the lab is not proposed again."""
        spare = iter(self._space_filling(len(recipes)))
        taken = list(self.pending)
        for i, recipe in enumerate(recipes):
            if recipe in taken:
                recipes[i] = next(spare)
            taken.append(recipes[i])
        return recipes

    def _feasible(self, recipe: Recipe) -> Recipe:
        """The recipe, pulled toward a feasible anchor where rounding an integer broke a linear
        constraint."""
        if self.space.is_feasible(recipe):
            return recipe
        anchor = self.space.sample(1, seed=self._rng())[0]
        names = [p.name for p in self.space.parameters if not isinstance(p, Categorical)]
        for t in 0.5 ** np.arange(1, 30):
            moved = dict(recipe)
            for name in names:
                value = anchor[name] + t * (recipe[name] - anchor[name])
                moved[name] = round(value) if isinstance(self.space[name], Integer) else value
            if self.space.is_feasible(moved):
                return moved
        return anchor

    def _torch_seed(self) -> int:
        return int(self._rng().integers(2**31))


def _signed(Z: Any, X: Any = None, *, sign: float, index: int) -> Any:
    """The objective as botorch maximises it: ``sign`` times output ``index`` of samples Z."""
    return sign * Z[..., index]


def _constraint_callable(index: int, op: str, bound: float):
    """botorch's outcome constraint form: a callable of samples that is ≤ 0 where satisfied."""
    if op == "<=":
        return lambda Z: Z[..., index] - bound
    return lambda Z: bound - Z[..., index]
