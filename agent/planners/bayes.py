"""Bayesian optimisation with BoTorch.

One Gaussian process per modelled outcome (objectives and constrained outcomes), fitted by
botorch on inputs in the unit cube and standardised outputs; qLogNEI for one objective,
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field

from poreloop.agent.errors import PlannerError
from poreloop.agent.planners.base import Observation, Planner, _Frozen
from poreloop.twins.errors import TwinError
from poreloop.twins.space import Categorical, Integer, ParameterSpace, Recipe

if TYPE_CHECKING:
    import torch
    from botorch.models import ModelListGP

_MARGIN = 1e-7
"""Linear constraints are tightened by this much in the unit cube, so that a proposal that sits
on a constraint still passes the space's check after decoding."""


class Encoding:
    """Recipes ↔ model inputs.

    Numeric parameters map to [0, 1] (integers onto their grid), categories to their index, and
    with several fidelities a last column holds the fidelity's index.
    """

    def __init__(self, space: ParameterSpace, fidelities: Sequence[str] = ()) -> None:
        self.space = space
        self.fidelities = list(fidelities)
        self.fidelity_dim = space.dim if self.fidelities else None

    @property
    def dim(self) -> int:
        return self.space.dim + (1 if self.fidelities else 0)

    def encode(self, recipes: Sequence[Recipe], fidelity: Sequence[str | None] | str | None = None):
        import torch

        columns = []
        for p in self.space.parameters:
            values = [recipe[p.name] for recipe in recipes]
            if isinstance(p, Categorical):
                columns.append([float(p.choices.index(str(v))) for v in values])
            else:
                columns.append([(float(v) - p.low) / (p.high - p.low) for v in values])
        if self.fidelities:
            if fidelity is None or isinstance(fidelity, str):
                fidelity = [fidelity] * len(recipes)
            target = self.fidelities[-1]
            columns.append([float(self.fidelities.index(f or target)) for f in fidelity])
        return torch.tensor(np.array(columns, dtype=float).T.reshape(len(recipes), self.dim))

    def decode(self, X: torch.Tensor) -> list[Recipe]:
        recipes = []
        for row in X.detach().cpu().numpy():
            recipe: Recipe = {}
            for p, z in zip(self.space.parameters, row, strict=False):
                if isinstance(p, Categorical):
                    recipe[p.name] = p.choices[int(np.clip(round(z), 0, len(p.choices) - 1))]
                elif isinstance(p, Integer):
                    recipe[p.name] = int(
                        np.clip(round(p.low + z * (p.high - p.low)), p.low, p.high)
                    )
                else:
                    recipe[p.name] = float(np.clip(p.low + z * (p.high - p.low), p.low, p.high))
            recipes.append(recipe)
        return recipes

    def bounds(self):
        import torch

        upper = [
            len(p.choices) - 1.0 if isinstance(p, Categorical) else 1.0
            for p in self.space.parameters
        ]
        if self.fidelities:
            upper.append(len(self.fidelities) - 1.0)
        return torch.tensor([[0.0] * self.dim, upper], dtype=torch.double)

    def categorical_dims(self, with_fidelity: bool = True) -> dict[int, list[float]]:
        dims = {
            i: [float(k) for k in range(len(p.choices))]
            for i, p in enumerate(self.space.parameters)
            if isinstance(p, Categorical)
        }
        if with_fidelity and self.fidelities:
            dims[self.space.dim] = [float(k) for k in range(len(self.fidelities))]
        return dims

    def integer_dims(self) -> dict[int, list[float]]:
        return {
            i: [(v - p.low) / (p.high - p.low) for v in range(p.low, p.high + 1)]
            for i, p in enumerate(self.space.parameters)
            if isinstance(p, Integer)
        }

    def inequality_constraints(self) -> list[tuple[Any, Any, float]]:
        """The space's ``sum c x <= b`` in botorch's form ``sum a z >= r`` over the encoding."""
        import torch

        constraints = []
        for c in self.space.constraints:
            indices, coefficients, rhs = [], [], c.bound
            for name, coefficient in c.coefficients.items():
                p = self.space[name]
                indices.append(self.space.names.index(name))
                coefficients.append(-coefficient * (p.high - p.low))
                rhs -= coefficient * p.low
            constraints.append(
                (
                    torch.tensor(indices, dtype=torch.long),
                    torch.tensor(coefficients, dtype=torch.double),
                    -rhs + _MARGIN * (1.0 + abs(rhs)),
                )
            )
        return constraints


@dataclass
class Surrogate:
    """GPs of a planner's outcomes, in ``outcome_names`` order, then (once a sample failed) one
    of success; ``model`` is the botorch ModelListGP behind them."""

    model: ModelListGP
    encoding: Encoding
    outcome_names: list[str]
    models_failures: bool

    @classmethod
    def fit(cls, planner: Planner) -> Surrogate:
        """Fit to everything the planner was told; needs two observations of every outcome."""
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import ModelListGP
        from gpytorch.mlls import ExactMarginalLogLikelihood

        encoding = Encoding(planner.space, list(planner.fidelities))
        observations = planner.observations
        models = []
        for name in planner.outcome_names:
            seen = [o for o in observations if name in o.values]
            if len(seen) < 2:
                raise PlannerError(f"outcome '{name}' needs two observations before it is modelled")
            values = [o.values[name] for o in seen]
            sign = next((ob.sign for ob in planner.objectives if ob.name == name), None)
            unseen = [o for o in observations if o.failed and name not in o.values]
            if sign is not None and unseen:  # a failure is as bad as the worst success
                worst = min(sign * v for v in values) * sign
                seen, values = seen + unseen, values + [worst] * len(unseen)
            models.append(_gp(encoding, seen, values))
        models_failures = any(o.failed for o in observations)
        if models_failures:
            models.append(
                _gp(encoding, observations, [0.0 if o.failed else 1.0 for o in observations])
            )
        for model in models:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        return cls(ModelListGP(*models), encoding, list(planner.outcome_names), models_failures)

    def predict(self, recipes: Sequence[Recipe]) -> dict[str, np.ndarray]:
        """Posterior means of every outcome at the target fidelity (and ``success``, the modelled
        chance of not failing, where failures were seen)."""
        import torch

        X = self.encoding.encode(recipes)
        with torch.no_grad():
            mean = self.model.posterior(X).mean.numpy()
        names = self.outcome_names + (["success"] if self.models_failures else [])
        return {name: mean[:, i] for i, name in enumerate(names)}


def _gp(encoding: Encoding, observations: Sequence[Observation], y: Sequence[float]):
    """A GP with standardised outputs; a categorical kernel where there are categories."""
    import torch
    from botorch.models import MixedSingleTaskGP, SingleTaskGP
    from botorch.models.transforms.outcome import Standardize

    X = encoding.encode([o.recipe for o in observations], [o.fidelity for o in observations])
    Y = torch.tensor(y, dtype=torch.double).unsqueeze(-1)
    categorical = list(encoding.categorical_dims())
    if categorical:
        return MixedSingleTaskGP(X, Y, cat_dims=categorical, outcome_transform=Standardize(m=1))
    return SingleTaskGP(X, Y, outcome_transform=Standardize(m=1))


THOMPSON_CANDIDATES = 1024
"""Feasible Sobol points a Thompson draw chooses among (its joint posterior is N × N)."""


class BayesPlanner(Planner):
    """BoTorch Bayesian optimisation: space-filling first, then qLogNEI / qLogNEHVI."""

    name: ClassVar[str] = "bayes"

    class Options(_Frozen):
        n_initial: int | None = Field(default=None, ge=1)
        """Space-filling (Sobol) proposals until this many samples succeeded; default
        max(5, (dim + 1) // 2)."""
        num_restarts: int = Field(default=10, ge=1)
        raw_samples: int = Field(default=512, ge=1)
        mc_samples: int = Field(default=128, ge=8)

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
        # a recipe seen at two fidelities is one baseline point at the target
        X_baseline = encoding.encode([o.recipe for o in self.observations], target).unique(dim=0)
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
            objective = GenericMCObjective(lambda Z, X=None: sign * Z[..., index])
            return qLogNoisyExpectedImprovement(objective=objective, **common)
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
        target = self.target_fidelity
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
                    model = surrogate.model.models[i]
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


def model_or_space_filling(
    planner: Planner, n: int, propose: Callable[[int], list[Recipe]]
) -> list[Recipe]:
    """``propose(n)`` once ``n_initial`` samples succeeded, space-filling points before, and
    (with a warning) where the GPs cannot be fitted: a numerical failure of the model must not
    stop a campaign."""
    from botorch.exceptions.errors import ModelFittingError
    from linear_operator.utils.errors import NotPSDError

    if planner.in_initial_design:
        return planner._space_filling(n)
    try:
        with torch_on_one_thread():
            return propose(n)
    except (ModelFittingError, NotPSDError) as exc:
        warnings.warn(
            f"{planner.name}: the model could not be fitted ({exc}); proposing space-filling "
            "points",
            RuntimeWarning,
            stacklevel=4,
        )
        return planner._space_filling(n)


@contextmanager
def torch_on_one_thread() -> Iterator[None]:
    """Torch on one thread while a planner fits and optimises: its GPs (hundreds of points) and
    policies are so small that a thread pool costs more than it saves (a proposal at 300
    observations took 2.2 s on one thread, 23 s on two, on a busy 2-core machine), and results
    do not depend on the machine's core count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _constraint_callable(index: int, op: str, bound: float):
    """botorch's outcome constraint form: a callable of samples that is ≤ 0 where satisfied."""
    if op == "<=":
        return lambda Z: Z[..., index] - bound
    return lambda Z: bound - Z[..., index]
