"""Cycle life from early cycles: the Severson relation, the model against a constant, its file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from poreloop.instruments.aging import simulated_cells
from poreloop.twins.critics.lifetime import (
    LifetimeModel,
    features,
    mean_absolute_percentage_error,
)
from poreloop.twins.errors import CriticError

EARLY = 100


@pytest.fixture(scope="module")
def cells() -> dict[str, tuple[list[dict], np.ndarray]]:
    return {"train": simulated_cells(150, EARLY, seed=0), "test": simulated_cells(80, EARLY, 1)}


@pytest.fixture(scope="module")
def model(cells: dict[str, tuple[list[dict], np.ndarray]]) -> LifetimeModel:
    return LifetimeModel.fit(*cells["train"], EARLY)


def test_log_variance_of_the_early_curve_change_predicts_log_life(
    cells: dict[str, tuple[list[dict], np.ndarray]],
) -> None:
    """Severson's finding holds on the simulated cycler: log var ΔQ_100-10(V) and log life
    are strongly anti-correlated (ρ = -0.95 on these 150 cells)."""
    tests, lives = cells["train"]
    log_variance = [features(t, EARLY)[0] for t in tests]
    assert np.corrcoef(log_variance, np.log10(lives))[0, 1] < -0.85


def test_the_model_beats_a_constant_on_fresh_cells(
    cells: dict[str, tuple[list[dict], np.ndarray]], model: LifetimeModel
) -> None:
    tests, lives = cells["test"]
    predictions = [model.predict(t) for t in tests]
    predicted = np.array([p.cycles for p in predictions])
    error = mean_absolute_percentage_error(predicted, lives)
    constant = mean_absolute_percentage_error(
        np.full(len(lives), np.median(cells["train"][1])), lives
    )
    assert error < 0.25 and error < constant / 3
    inside = [p.low <= life <= p.high for p, life in zip(predictions, lives, strict=True)]
    assert 0.75 <= np.mean(inside) <= 1.0


def test_a_saved_model_predicts_the_same(model: LifetimeModel, tmp_path: Path) -> None:
    test = simulated_cells(1, EARLY, seed=5)[0][0]
    model.save(tmp_path / "life.json")
    assert LifetimeModel.load(tmp_path / "life.json").predict(test) == model.predict(test)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "cannot load a lifetime model from .*FileNotFoundError"),
        ("not json", "cannot load a lifetime model from .*JSONDecodeError"),
        ('{"format": 99, "features": []}', "another format or other features"),
        ('{"format": 1}', "cannot load a lifetime model .*KeyError"),
    ],
)
def test_a_file_that_is_no_lifetime_model_is_refused(
    tmp_path: Path, content: str | None, match: str
) -> None:
    path = tmp_path / "life.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CriticError, match=match):
        LifetimeModel.load(path)


def test_a_test_without_the_check_ups_it_needs_is_refused(model: LifetimeModel) -> None:
    short = simulated_cells(1, 60, seed=2)[0][0]
    with pytest.raises(CriticError, match=r"none at \[100\] \(run cycle_life with cycles=100\)"):
        model.predict(short)
    broken = {**simulated_cells(1, EARLY, seed=2)[0][0], "capacity_fraction": [float("nan")] * 21}
    with pytest.raises(CriticError, match="NaN"):
        model.predict(broken)
    with pytest.raises(CriticError, match="needs cycles"):
        model.predict(json.loads('{"cycles": [1]}'))
