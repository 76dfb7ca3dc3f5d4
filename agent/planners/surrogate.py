"""The GP model of what a planner was told, shared by the planners that model it (``bayes``
optimises an acquisition on it, ``rl`` trains a policy on its posterior means).

One Gaussian process per modelled outcome (objectives and constrained outcomes), fitted by
botorch on inputs in the unit cube and standardised outputs, plus one of success once a sample
failed; with fidelities the fidelity is a categorical input. BoTorch stays inside this module
and the planners that use it; torch is imported where it is used, so listing planners is quick.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from poreloop.agent.errors import PlannerError
from poreloop.agent.planners.base import Planner
from poreloop.agent.planners.outcomes import Observation
from poreloop.threads import torch_threads
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
                low, high = self.space.bounds(name)
                indices.append(self.space.names.index(name))
                coefficients.append(-coefficient * (high - low))
                rhs -= coefficient * low
            constraints.append(
                (
                    torch.tensor(indices, dtype=torch.long),
                    torch.tensor(coefficients, dtype=torch.double),
                    -rhs + _MARGIN * (1.0 + abs(rhs)),
                )
            )
        return constraints


FIT_STEPS = 300
"""L-BFGS steps for the GP hyperparameters. The marginal likelihood is flat near its optimum:
on a 270-point campaign model, 300 steps took 3 s a GP and came within 0.5 % per point of the
converged value for the objective (10 s to converge) and 4 % for the success GP, whose 0/1
labels L-BFGS otherwise crawls along for 7,600 steps (73 s)."""


MAX_OBSERVATIONS = 1024
"""The most observations a GP is fitted to: an exact GP costs n³, and a campaign that screens
thousands of recipes (a neural critic answering most) would spend minutes an iteration on it."""


def _fitted(planner: Planner) -> list[Observation]:
    """What the GPs are fitted to: every observation, or, beyond ``MAX_OBSERVATIONS``, every one
    at the target fidelity and the newest of the others (they come from the latest calibrated
    twin and lie where the planner now looks)."""
    observations = list(planner.observations)
    if len(observations) <= MAX_OBSERVATIONS:
        return observations
    target = planner.target_fidelity
    kept = [o for o in observations if o.fidelity in (None, target)]
    cheap = [o for o in observations if o.fidelity not in (None, target)]
    return kept + cheap[len(cheap) - max(MAX_OBSERVATIONS - len(kept), 0) :]


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
        observations = _fitted(planner)
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
                fit_gpytorch_mll(
                    ExactMarginalLogLikelihood(model.likelihood, model),
                    optimizer_kwargs={"options": {"maxiter": FIT_STEPS}},
                )
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


def torch_on_one_thread() -> AbstractContextManager[None]:
    """Torch on one thread while a planner fits and optimises: its GPs (hundreds of points) and
    policies are so small that a thread pool costs more than it saves (a proposal at 300
    observations took 2.2 s on one thread, 23 s on two, on a busy 2-core machine), and results
    do not depend on the machine's core count."""
    return torch_threads(1)
