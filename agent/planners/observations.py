"""Earlier observations from outside a planner: a CSV of samples made before the campaign, or
recipes and outcomes in memory, told before the first ask (a warm start)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from poreloop.agent.errors import PlannerError
from poreloop.agent.planners.outcomes import RESERVED_KEYS
from poreloop.twins.space import Categorical, Parameter, ParameterSpace, Recipe

WarmStart = str | Path | tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]
"""A CSV path (see ``read_observations``) or a ``(recipes, outcomes)`` pair."""


def read_observations(
    path: str | Path, space: ParameterSpace
) -> tuple[list[Recipe], list[dict[str, Any]]]:
    """Recipes and outcomes from a CSV with one column per parameter and per measured value,
    and optional ``fidelity``, ``failed`` and ``reason`` columns; an empty cell is no value."""
    path = Path(path)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise PlannerError(f"{path}: no observations (a header and at least one row expected)")
    missing = [name for name in space.names if name not in rows[0]]
    if missing:
        raise PlannerError(f"{path}: no column for parameter(s) {', '.join(missing)}")
    recipes, outcomes = [], []
    for line, row in enumerate(rows, start=2):
        try:
            recipes.append({p.name: _cell(row[p.name], p) for p in space.parameters})
            outcome: dict[str, Any] = {
                key: float(value)
                for key, value in row.items()
                if key not in space.names and key not in RESERVED_KEYS and value not in ("", None)
            }
        except ValueError as exc:
            raise PlannerError(f"{path}:{line}: {exc}") from None
        if row.get("fidelity"):
            outcome["fidelity"] = row["fidelity"]
        if row.get("failed"):
            outcome["failed"] = row["failed"].strip().lower() in ("1", "true", "yes")
        if row.get("reason"):
            outcome["reason"] = row["reason"]
        outcomes.append(outcome)
    return recipes, outcomes


def warm_start_observations(
    source: WarmStart, space: ParameterSpace
) -> tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]:
    """The recipes and outcomes a warm start tells: read from a CSV, or given as they are."""
    return read_observations(source, space) if isinstance(source, str | Path) else source


def _cell(text: str, parameter: Parameter) -> float | str:
    if isinstance(parameter, Categorical):
        return text
    if text in ("", None):
        raise ValueError(f"no value for parameter '{parameter.name}'")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"parameter '{parameter.name}' expects a number, got {text!r}") from None
