"""The planner contract: ask for recipes, tell what they gave, save and restore the state.

A planner searches a ``ParameterSpace`` for recipes that maximise or minimise outcomes
(objectives) while keeping others within bounds (outcome constraints). Outcomes come from the
digital space (``fidelity="twin"``) or the lab (``"lab"``); a sample that could not be made or
scored is told as ``failed`` with a reason, never dropped. Everything a planner knows is in
``state()``, plain JSON, so a campaign that is killed resumes where it stopped.

The public ``ask``, ``tell`` and ``state`` check and count; a planner fills the protected hooks
(``_propose``, and ``_extra_state`` / ``_load_extra_state`` where it keeps more than its
observations). ``agent.planners.checks.check_planner`` tests a planner against this contract.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, ValidationError

from poreloop.agent.errors import PlannerError
from poreloop.agent.planners.outcomes import (
    RESERVED_KEYS,
    Frozen,
    Objective,
    Observation,
    OutcomeConstraint,
    pareto_front,
    parse_constraints,
    parse_fidelities,
    parse_objectives,
)
from poreloop.registry import did_you_mean, validation_summary
from poreloop.twins.errors import TwinError
from poreloop.twins.space import ParameterSpace, Recipe

STATE_FORMAT = "poreloop.planner/1"


class Planner(ABC):
    """Proposes recipes and learns from their outcomes; subclasses implement ``_propose``.

    ``Options`` lists a planner's settings (a subclass's ``Options`` extends this one); they
    are checked when it is built and saved in its state. ``pending`` holds asked recipes whose
    outcomes have not been told yet.
    """

    name: ClassVar[str]

    class Options(Frozen):
        n_initial: int | None = Field(default=None, ge=2)
        """Space-filling proposals until this many samples succeeded (a model of the outcomes
        needs two of each); default max(5, (dim + 1) // 2)."""

    options: Options

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not issubclass(cls.Options, Planner.Options):
            raise TypeError(
                f"{cls.__name__}.Options must subclass Planner.Options, which holds the options "
                "every planner shares"
            )

    def __init__(
        self,
        space: ParameterSpace,
        objectives: Mapping[str, Any] | Sequence[Objective],
        constraints: Iterable[str | OutcomeConstraint | Mapping[str, Any]] = (),
        *,
        seed: int = 0,
        fidelities: Mapping[str, float] | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(space, ParameterSpace):
            raise PlannerError(f"a planner needs a ParameterSpace, got {type(space).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise PlannerError(f"seed must be an integer, got {seed!r}")
        self.space = space
        self.objectives = parse_objectives(objectives)
        self.constraints = parse_constraints(constraints)
        self.seed = seed
        self.fidelities = parse_fidelities(fidelities)
        self.options = self._parse_options(options)
        self.observations: list[Observation] = []
        self.pending: list[Recipe] = []
        self.n_asked = 0

    # --- the contract -------------------------------------------------------------------------

    def ask(self, n: int = 1, fidelity: str | None = None) -> list[Recipe]:
        """``n`` new recipes to evaluate, each within the space's bounds and linear constraints.

        ``fidelity`` is where they will be evaluated (the target fidelity when left out): a
        planner may propose cheap evaluations more boldly. They stay pending until told, and
        later proposals avoid them.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise PlannerError(f"ask(n) needs a whole number n >= 1, got {n!r}")
        if fidelity is not None and fidelity not in self.fidelities:
            known = did_you_mean(str(fidelity), self.fidelities) if self.fidelities else ""
            raise PlannerError(
                f"planner '{self.name}' has no fidelity '{fidelity}'"
                f"{known or '; it was made without fidelities'}"
            )
        recipes = [self.space.validate(recipe) for recipe in self._propose(n, fidelity)]
        self.pending.extend(recipes)
        self.n_asked += n
        return [dict(recipe) for recipe in recipes]

    def tell(
        self, recipes: Sequence[Mapping[str, Any]], outcomes: Sequence[Mapping[str, Any]]
    ) -> None:
        """Record what recipes gave; all are checked before any is recorded.

        An outcome is a dict of measured values, plus optionally ``fidelity`` (a name from
        ``fidelities``; the most expensive one when left out), ``failed`` and ``reason``.
        """
        if len(recipes) != len(outcomes):
            raise PlannerError(
                f"tell needs one outcome per recipe, got {len(recipes)} recipes and "
                f"{len(outcomes)} outcomes"
            )
        observations = [
            self._observation(i, recipe, outcome)
            for i, (recipe, outcome) in enumerate(zip(recipes, outcomes, strict=True))
        ]
        self.observations.extend(observations)
        for observation in observations:
            if observation.recipe in self.pending:
                self.pending.remove(observation.recipe)

    def state(self) -> dict[str, Any]:
        """Everything the planner knows, as JSON-ready data; ``make_planner(state=...)`` resumes."""
        return {
            "format": STATE_FORMAT,
            **self._config(),
            "observations": [o.model_dump(mode="json") for o in self.observations],
            "pending": [dict(recipe) for recipe in self.pending],
            "n_asked": self.n_asked,
            **self._extra_state(),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take over a saved state; it must come from a planner configured like this one."""
        check_state(state)
        saved = dict(state)
        if isinstance(state.get("options"), Mapping):  # options added since it was saved: defaults
            saved["options"] = {**self.Options().model_dump(mode="json"), **state["options"]}
        for key, value in self._config().items():
            if saved.get(key) != value:
                raise PlannerError(
                    f"the saved state's {key} differs from this planner's: saved "
                    f"{_short(state.get(key))}, given {_short(value)}"
                )
        try:
            observations = [Observation.model_validate(o) for o in state["observations"]]
            pending = [self.space.validate(dict(recipe)) for recipe in state["pending"]]
            n_asked = int(state["n_asked"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PlannerError(f"planner state is damaged: {' '.join(str(exc).split())}") from None
        self.observations, self.pending, self.n_asked = observations, pending, n_asked
        self._load_extra_state(state)

    # --- what the observations say ------------------------------------------------------------

    @property
    def target_fidelity(self) -> str | None:
        """The fidelity the objectives are judged at: the most expensive one (None: just one)."""
        return max(self.fidelities, key=self.fidelities.__getitem__) if self.fidelities else None

    @property
    def outcome_names(self) -> list[str]:
        """Every outcome a planner models: the objectives, then the constrained outcomes."""
        names = [o.name for o in self.objectives]
        return names + [c.name for c in self.constraints if c.name not in names]

    def is_feasible(self, observation: Observation) -> bool:
        """Not failed and inside every outcome constraint."""
        return not observation.failed and all(
            c.slack(observation.values[c.name]) >= 0 for c in self.constraints
        )

    def best(self) -> list[Observation]:
        """The best feasible observations at the target fidelity: one for a single objective,
        the Pareto set for several (empty before any feasible one)."""
        feasible = [
            o
            for o in self.observations
            if self.is_feasible(o) and o.fidelity in (None, self.target_fidelity)
        ]
        front = pareto_front(feasible, self.objectives)
        return front[:1] if len(self.objectives) == 1 else front

    # --- for subclasses -----------------------------------------------------------------------

    @abstractmethod
    def _propose(self, n: int, fidelity: str | None) -> list[Recipe]:
        """``n`` new recipes (validated by ``ask``); ``fidelity`` as given to ``ask``."""

    @property
    def n_initial(self) -> int:
        """Space-filling proposals until this many samples succeeded: a model needs them."""
        return self.options.n_initial or max(5, (self.space.dim + 1) // 2)

    @property
    def in_initial_design(self) -> bool:
        """Whether proposals are still space-filling: fewer than ``n_initial`` successes."""
        return sum(not o.failed for o in self.observations) < self.n_initial

    def _space_filling(self, n: int) -> list[Recipe]:
        """The next ``n`` feasible points of the planner's scrambled Sobol sequence."""
        return self.space.sample(self.n_asked + n, seed=self.seed)[self.n_asked :]

    def _rng(self) -> np.random.Generator:
        """A generator for the next proposal: the same seed and history give the same draws."""
        return np.random.default_rng([self.seed, self.n_asked])

    def _extra_state(self) -> dict[str, Any]:
        """What a subclass keeps beyond the observations (e.g. a trained policy)."""
        return {}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:  # noqa: B027 -- optional
        """Take over what ``_extra_state`` saved."""

    # --- checking -----------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return {
            "planner": self.name,
            "space": self.space.model_dump(mode="json"),
            "objectives": [o.model_dump(mode="json") for o in self.objectives],
            "constraints": [c.model_dump(mode="json") for c in self.constraints],
            "fidelities": self.fidelities,
            "seed": self.seed,
            "options": self.options.model_dump(mode="json"),
        }

    def _parse_options(self, options: Mapping[str, Any]) -> Options:
        known = list(self.Options.model_fields)
        for key in options:
            if key not in known:
                raise PlannerError(
                    f"planner '{self.name}' has no option '{key}'{did_you_mean(key, known)}"
                )
        try:
            return self.Options(**options)
        except ValidationError as exc:
            raise PlannerError(f"planner '{self.name}' option {validation_summary(exc)}") from None

    def _observation(self, i: int, recipe: Mapping[str, Any], outcome: Any) -> Observation:
        try:
            checked = self.space.validate(dict(recipe) if isinstance(recipe, Mapping) else recipe)
        except TwinError as exc:
            raise PlannerError(f"recipe {i}: {exc}") from None
        if isinstance(outcome, Observation):
            outcome = {
                **outcome.values,
                "fidelity": outcome.fidelity,
                "failed": outcome.failed,
                "reason": outcome.reason,
            }
        if not isinstance(outcome, Mapping):
            raise PlannerError(f"outcome {i} must be a dict of values, got {outcome!r}")
        failed = outcome.get("failed", False)
        if not isinstance(failed, bool | np.bool_):
            raise PlannerError(f"outcome {i}: 'failed' must be true or false, got {failed!r}")
        fidelity = outcome.get("fidelity")
        if fidelity is not None and fidelity not in self.fidelities:
            known = (
                did_you_mean(str(fidelity), self.fidelities)
                if self.fidelities
                else ("; this planner has no fidelities: give fidelities={'twin': 1, 'lab': 50}")
            )
            raise PlannerError(f"outcome {i}: unknown fidelity {fidelity!r}{known}")
        values: dict[str, float] = {}
        for key, value in outcome.items():
            if key in RESERVED_KEYS or (failed and value is None):
                continue
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise PlannerError(f"outcome {i}: '{key}' must be a number, got {value!r}")
            values[key] = float(value)
        if not failed:
            for name in self.outcome_names:
                value = values.get(name)
                if value is None or not math.isfinite(value):
                    got = "no value" if value is None else value
                    raise PlannerError(
                        f"outcome {i} has {got} for '{name}'; a sample that could not be scored "
                        "is told as {'failed': True, 'reason': ...}"
                    )
        return Observation(
            recipe=checked,
            values={k: v for k, v in values.items() if math.isfinite(v)} if failed else values,
            fidelity=fidelity if fidelity is not None else self.target_fidelity,
            failed=bool(failed),
            reason=str(outcome.get("reason", "")),
        )


def check_state(state: Any) -> None:
    """A saved planner state is a dict of this format, or a PlannerError."""
    if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
        got = state.get("format") if isinstance(state, Mapping) else type(state).__name__
        raise PlannerError(f"planner state must have format '{STATE_FORMAT}', got {got!r}")


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
