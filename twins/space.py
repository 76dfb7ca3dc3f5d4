"""Bounded, typed, unit-carrying parameter spaces shared by twins, planners and envs.

A recipe is a plain ``dict[str, float | int | str]``. The space validates it, samples it
(scrambled Sobol, rejecting points that break a linear constraint) and maps it to and from
the unit cube, where planners work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from poreloop.registry import did_you_mean
from poreloop.twins.errors import TwinError

Value = float | int | str
Recipe = dict[str, Any]
"""Parameter name → value: a number for a continuous or integer parameter, a string for a
categorical one. Which, depends on the name, so the values are typed ``Any``; the space
validates them."""

_TOLERANCE = 1e-9


class _Parameter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    unit: str = "1"
    description: str = ""


class Continuous(_Parameter):
    """A real number in ``[low, high]``."""

    kind: Literal["continuous"] = "continuous"
    low: float
    high: float
    default: float | None = None

    def check(self, value: Value) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise TwinError(f"parameter '{self.name}' expects a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise TwinError(f"parameter '{self.name}' expects a finite number, got {value}")
        _check_bounds(self, value)
        return value

    def to_unit(self, value: Value) -> float:
        return (float(value) - self.low) / (self.high - self.low)

    def from_unit(self, u: float) -> float:
        return float(self.values(np.asarray(u)))

    def values(self, u: np.ndarray) -> np.ndarray:
        """Unit-interval coordinates, any shape → values of the same shape."""
        return np.clip(self.low + u * (self.high - self.low), self.low, self.high)


class Integer(_Parameter):
    """A whole number in ``[low, high]``; each value owns an equal slice of the unit interval."""

    kind: Literal["integer"] = "integer"
    low: int
    high: int
    default: int | None = None

    def check(self, value: Value) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise TwinError(f"parameter '{self.name}' expects an integer, got {value!r}")
        if not math.isfinite(float(value)) or float(value) != int(value):
            raise TwinError(f"parameter '{self.name}' expects an integer, got {value}")
        value = int(value)
        _check_bounds(self, value)
        return value

    def to_unit(self, value: Value) -> float:
        return (int(value) - self.low + 0.5) / (self.high - self.low + 1)

    def from_unit(self, u: float) -> int:
        return int(self.values(np.asarray(u)))

    def values(self, u: np.ndarray) -> np.ndarray:
        """Unit-interval coordinates, any shape → whole numbers of the same shape."""
        return np.clip(self.low + np.floor(u * (self.high - self.low + 1)), self.low, self.high)


class Categorical(_Parameter):
    """One of a fixed set of choices; each choice owns an equal slice of the unit interval."""

    kind: Literal["categorical"] = "categorical"
    choices: tuple[str, ...] = Field(min_length=1)
    default: str | None = None

    @model_validator(mode="after")
    def _distinct(self) -> Categorical:
        if len(set(self.choices)) != len(self.choices):
            raise ValueError(f"parameter '{self.name}' repeats a choice: {list(self.choices)}")
        return self

    def check(self, value: Value) -> str:
        if value not in self.choices:
            raise TwinError(
                f"parameter '{self.name}' expects one of {list(self.choices)}, got {value!r}"
            )
        return str(value)

    def to_unit(self, value: Value) -> float:
        return (self.choices.index(str(value)) + 0.5) / len(self.choices)

    def from_unit(self, u: float) -> str:
        return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]


Parameter = Annotated[Continuous | Integer | Categorical, Field(discriminator="kind")]


def _parse_value(name: str, kind: str, text: str) -> Value:
    """Text → int/float for numeric kinds, str for a categorical one."""
    if kind == "categorical":
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        expected = "an integer" if kind == "integer" else "a number"
        raise TwinError(f"parameter '{name}' expects {expected}, got '{text}'") from None


def read_recipe(path: str | Path) -> dict[str, Value]:
    """A recipe file: a YAML mapping of parameter names to values (checked by a space)."""
    import yaml

    path = Path(path)
    try:
        recipe = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TwinError(f"cannot read recipe '{path}': {exc}") from None
    if not isinstance(recipe, dict) or not all(isinstance(k, str) for k in recipe):
        raise TwinError(
            f"recipe '{path}' must be a YAML mapping of parameter names to values, "
            f"got {type(recipe).__name__}"
        )
    return recipe


def _check_bounds(p: Continuous | Integer, value: float) -> None:
    unit = "" if p.unit == "1" else f" {p.unit}"
    if value < p.low:
        raise TwinError(
            f"parameter '{p.name}' = {value}{unit} is below its lower bound {p.low}{unit}"
        )
    if value > p.high:
        raise TwinError(
            f"parameter '{p.name}' = {value}{unit} is above its upper bound {p.high}{unit}"
        )


class LinearConstraint(BaseModel):
    """``sum(coefficients[name] * recipe[name]) <= bound`` over numeric parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    coefficients: dict[str, float] = Field(min_length=1)
    bound: float

    def value(self, recipe: Recipe) -> float:
        return sum(c * float(recipe[name]) for name, c in self.coefficients.items())

    def describe(self) -> str:
        terms = " ".join(
            f"{'-' if c < 0 else '+'} {abs(c):g}*{name}" for name, c in self.coefficients.items()
        )
        return f"{terms.removeprefix('+ ')} <= {self.bound:g}"


class ParameterSpace(BaseModel):
    """Named, bounded, typed parameters with units and linear constraints.

    The unit-cube encoding has one dimension per parameter, in declaration order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    parameters: tuple[Parameter, ...] = Field(min_length=1)
    constraints: tuple[LinearConstraint, ...] = ()

    def __str__(self) -> str:
        """A table, one row per parameter (kind, unit, range or choices, default, description),
        then the constraints: what ``print(twin.space)`` and ``poreloop twin list`` show."""
        rows = [("parameter", "kind", "unit", "range", "default", "description")]
        for p in self.parameters:
            if isinstance(p, Categorical):
                bounds = "{" + ", ".join(p.choices) + "}"
            else:
                bounds = f"[{p.low:g}, {p.high:g}]"
            default = p.default
            shown = (
                "-"
                if default is None
                else f"{default:g}"
                if isinstance(default, float)
                else str(default)
            )
            rows.append((p.name, p.kind, p.unit, bounds, shown, p.description))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        lines = [
            "  ".join(
                [*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]
            ).rstrip()
            for row in rows
        ]
        return "\n".join([*lines, *(f"constraint: {c.describe()}" for c in self.constraints)])

    @model_validator(mode="after")
    def _consistent(self) -> ParameterSpace:
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError(f"parameter names must be unique, got {names}")
        for p in self.parameters:
            if isinstance(p, Continuous | Integer) and not p.low < p.high:
                raise ValueError(f"parameter '{p.name}' needs low < high, got [{p.low}, {p.high}]")
            if p.default is not None:
                try:
                    p.check(p.default)
                except TwinError as exc:
                    raise ValueError(f"bad default: {exc}") from None
        for c in self.constraints:
            for name in c.coefficients:
                if name not in names:
                    raise ValueError(f"constraint names unknown parameter '{name}'")
                if isinstance(self[name], Categorical):
                    raise ValueError(f"constraint names categorical parameter '{name}'")
        if all(p.default is not None for p in self.parameters):
            defaults = {p.name: p.default for p in self.parameters}
            for c in self.constraints:
                if c.value(defaults) > c.bound + _TOLERANCE:
                    raise ValueError(f"the defaults break the constraint {c.describe()}")
        return self

    @classmethod
    def continuous(cls, bounds: dict[str, tuple[float, float]]) -> ParameterSpace:
        """A plain box: ``{'x1': (0.0, 1.0), ...}``, each default at the centre."""
        return cls(
            parameters=tuple(
                Continuous(name=name, low=low, high=high, default=(low + high) / 2)
                for name, (low, high) in bounds.items()
            )
        )

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    @property
    def dim(self) -> int:
        return len(self.parameters)

    def __getitem__(self, name: str) -> Continuous | Integer | Categorical:
        for p in self.parameters:
            if p.name == name:
                return p
        raise TwinError(f"unknown parameter '{name}'{did_you_mean(name, self.names)}")

    def bounds(self, name: str) -> tuple[float, float]:
        """``(low, high)`` of a continuous or integer parameter; TwinError for a categorical."""
        p = self[name]
        if isinstance(p, Categorical):
            raise TwinError(f"parameter '{name}' is categorical: it has choices, not bounds")
        return float(p.low), float(p.high)

    def clip(self, name: str, value: float) -> float:
        """``value`` brought inside the bounds of parameter ``name``."""
        low, high = self.bounds(name)
        return float(min(max(value, low), high))

    def defaults(self) -> Recipe:
        """Every parameter's default (parameters without one are left out)."""
        return {p.name: p.default for p in self.parameters if p.default is not None}

    def validate(self, recipe: dict[str, Any]) -> Recipe:  # type: ignore[override]
        """The recipe with values normalised to their types, or a TwinError naming the problem."""
        if not isinstance(recipe, dict):
            raise TwinError(
                f"a recipe must be a mapping of parameter names to values, got {recipe!r}"
            )
        for name in recipe:
            if name not in self.names:
                raise TwinError(
                    f"unknown parameter '{name}' in recipe{did_you_mean(name, self.names)}"
                )
        missing = [name for name in self.names if name not in recipe]
        if missing:
            raise TwinError(f"recipe is missing a value for {', '.join(repr(m) for m in missing)}")
        checked = {p.name: p.check(recipe[p.name]) for p in self.parameters}
        for c in self.constraints:
            if c.value(checked) > c.bound + _TOLERANCE:
                raise TwinError(
                    f"recipe breaks the constraint {c.describe()} "
                    f"(left-hand side = {c.value(checked):.6g})"
                )
        return checked

    def parse(self, values: Sequence[tuple[str, str]]) -> dict[str, Value]:
        """``name=text`` pairs (a command line's ``--set``) → a partial recipe, each text read
        by its parameter's kind; bounds are left to ``validate``."""
        recipe: dict[str, Value] = {}
        for name, text in values:
            parameter = self[name]
            if name in recipe:
                raise TwinError(f"parameter '{name}' is set twice; give each --set once")
            recipe[name] = _parse_value(parameter.name, parameter.kind, text)
        return recipe

    def complete(self, recipe: dict[str, Any] | None = None) -> Recipe:
        """Fill the parameters the recipe leaves out with their defaults, then validate."""
        return self.validate({**self.defaults(), **(recipe or {})})

    def is_feasible(self, recipe: Recipe) -> bool:
        return all(c.value(recipe) <= c.bound + _TOLERANCE for c in self.constraints)

    def to_unit(self, recipe: Recipe) -> np.ndarray:
        """Recipe → point of the unit cube, shape ``(dim,)``."""
        recipe = self.validate(recipe)
        return np.array([p.to_unit(recipe[p.name]) for p in self.parameters])

    def from_unit(self, u: np.ndarray) -> Recipe:
        """Point of the unit cube, shape ``(dim,)`` → recipe (integers and choices snapped)."""
        u = np.asarray(u, dtype=float)
        if u.shape != (self.dim,):
            raise TwinError(f"expected a unit-cube point of shape ({self.dim},), got {u.shape}")
        return {p.name: p.from_unit(float(x)) for p, x in zip(self.parameters, u, strict=True)}

    def sample(
        self,
        n: int,
        seed: int | np.random.Generator | None = None,
        max_draws: int = 1 << 18,
        method: Literal["sobol", "random"] = "sobol",
    ) -> list[Recipe]:
        """``n`` recipes that satisfy every constraint (rejection sampling), scrambled-Sobol or
        uniformly random. The Sobol points are the first ``n`` feasible ones of the sequence, so
        a longer sample starts with a shorter one of the same seed."""
        from scipy.stats import qmc  # ~1 s to import: kept out of `poreloop twin list`

        if n <= 0:
            return []
        rng = np.random.default_rng(seed)
        sobol = qmc.Sobol(d=self.dim, scramble=True, seed=rng) if method == "sobol" else None

        def draw(batch: int) -> np.ndarray:
            return sobol.random(batch) if sobol else rng.random((batch, self.dim))

        kept: list[np.ndarray] = []
        found = drawn = 0
        while found < n:
            batch = 1 << max(4, math.ceil(math.log2(max(n - found, 1) * 2)))
            if drawn + batch > max_draws:
                raise TwinError(
                    f"found only {found} of {n} feasible recipes in {drawn} draws; "
                    "the constraints leave almost no volume — loosen them or the bounds"
                )
            drawn += batch
            points = draw(batch)
            points = points[self._feasible(points)]
            kept.append(points)
            found += len(points)
        return [self.from_unit(u) for u in np.concatenate(kept)[:n]]

    def _feasible(self, points: np.ndarray) -> np.ndarray:
        """Which unit-cube points, shape ``(m, dim)``, satisfy every constraint: ``(m,)`` bool."""
        ok = np.ones(len(points), dtype=bool)
        for c in self.constraints:
            lhs = np.zeros(len(points))
            for name, coef in c.coefficients.items():
                parameter = self[name]
                if isinstance(parameter, Categorical):
                    raise TwinError(f"constraint on categorical parameter '{name}'")
                lhs += coef * parameter.values(points[:, self.names.index(name)])
            ok &= lhs <= c.bound + _TOLERANCE
        return ok
