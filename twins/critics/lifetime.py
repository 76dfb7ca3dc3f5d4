"""Cycle life from the first cycles of a cycle-life test, after Severson et al. (2019).

A cell's life (cycles until its capacity falls below 80 % of the first cycle's) is set by
mechanisms that run away late (lithium plating once the resistance has grown), but the growth
that will drive them shows early: the discharge curve Q(V) shifts as the resistance grows and
shrinks as lithium and host are lost. Severson's best single feature is the variance over V
of ΔQ(V) = Q_N(V) − Q_10(V); log life falls about linearly with its logarithm.

``LifetimeModel`` is a ridge regression of log10(life) on six features of the first
``early_cycles`` (``FEATURES``): log10 of the variance of ΔQ(V) and its square (log life bends
against it: plating-limited cells follow it more steeply than the long-lived ones), log10 of
ΔQ's largest drop, the slope and intercept of a line through the capacity check-ups from cycle
2, and log10 of the rate (the test's protocol, known). The square took the error on 200 fresh
simulated cells from 14.3 % to 12.9 %. The features are standardised; the ridge penalty is chosen
by 5-fold cross-validation, and the 90 % interval of a prediction is the 90th percentile of the
cross-validated errors (split-conformal in spirit: held-out errors, not the fit's own).

A test reads as a mapping with the cycler's ``cycle_life`` fields: ``cycles`` (check-ups),
``capacity_fraction``, ``voltage_v``, ``discharged_fraction`` (one curve per check-up) and
``c_rate``. It must have check-ups at cycle 10 and at ``early_cycles``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poreloop.twins.errors import CriticError

FORMAT = 1
"""Version of the saved model's layout; a file of another is refused."""
FEATURES = (
    "log10_var_dq",
    "log10_var_dq_squared",
    "log10_max_drop_dq",
    "fade_slope_per_cycle",
    "fade_intercept",
    "log10_c_rate",
)
REFERENCE_CYCLE = 10
"""The early curve ΔQ(V) is measured from (Severson's cycle 10)."""
FLOOR = 1e-12
"""Smallest variance or drop whose logarithm is taken (a test with no change at all)."""
PENALTIES = tuple(10.0**k for k in np.arange(-4.0, 2.5, 0.5))
"""Ridge penalties tried by cross-validation (on standardised features, per cell)."""
FOLDS = 5
COVERAGE = 0.9


def features(test: Mapping[str, Any], early_cycles: int) -> np.ndarray:
    """The ``FEATURES`` of one test's check-ups up to ``early_cycles`` (a one-line
    ``CriticError`` when the test lacks what they need)."""
    try:
        cycles = [int(c) for c in test["cycles"]]
        curves = np.asarray(test["discharged_fraction"], dtype=float)
        capacity = np.asarray(test["capacity_fraction"], dtype=float)
        c_rate = float(test["c_rate"])
    except (KeyError, TypeError, ValueError) as error:
        raise CriticError(
            f"a cycle-life test needs cycles, capacity_fraction, discharged_fraction and c_rate; "
            f"this one: {type(error).__name__}: {error}"
        ) from None
    missing = [c for c in (REFERENCE_CYCLE, early_cycles) if c not in cycles]
    if missing:
        raise CriticError(
            f"the lifetime model reads the check-ups at cycles {REFERENCE_CYCLE} and "
            f"{early_cycles}; this test has none at {missing} (run cycle_life with "
            f"cycles={early_cycles})"
        )
    if curves.ndim != 2 or len(curves) != len(cycles) or len(capacity) != len(cycles):
        raise CriticError(
            f"a cycle-life test needs one capacity and one discharge curve per check-up; got "
            f"{len(cycles)} check-ups, {len(capacity)} capacities, curves shaped {curves.shape}"
        )
    if not (np.all(np.isfinite(curves)) and np.all(np.isfinite(capacity)) and c_rate > 0):
        raise CriticError("a cycle-life test holds a NaN, an infinity or a rate that is not > 0")
    change = curves[cycles.index(early_cycles)] - curves[cycles.index(REFERENCE_CYCLE)]
    early = [i for i, c in enumerate(cycles) if 2 <= c <= early_cycles]
    slope, intercept = np.polyfit([cycles[i] for i in early], capacity[early], 1)
    log_variance = math.log10(max(float(np.var(change)), FLOOR))
    return np.array(
        [
            log_variance,
            log_variance**2,
            math.log10(max(float(-change.min()), FLOOR)),
            slope,
            intercept,
            math.log10(c_rate),
        ]
    )


@dataclass(frozen=True)
class LifePrediction:
    """Predicted cycles to 80 % capacity, with its 90 % interval."""

    cycles: float
    low: float
    high: float


@dataclass(frozen=True)
class LifetimeModel:
    """Ridge regression of log10(cycle life) on ``FEATURES`` (see the module doc)."""

    early_cycles: int
    center: list[float]
    scale: list[float]
    coefficients: list[float]
    intercept: float
    penalty: float
    interval_log10: float
    cells: int
    format: int = FORMAT

    @classmethod
    def fit(
        cls,
        tests: Sequence[Mapping[str, Any]],
        lives: Sequence[float] | np.ndarray,
        early_cycles: int,
    ) -> LifetimeModel:
        """Learn from ``tests`` (their first ``early_cycles``) and the cells' true ``lives``."""
        if len(tests) != len(lives) or len(tests) < 2 * FOLDS:
            raise CriticError(
                f"a lifetime model needs at least {2 * FOLDS} tests, each with its life; got "
                f"{len(tests)} tests and {len(lives)} lives"
            )
        x = np.stack([features(t, early_cycles) for t in tests])
        y = np.log10(np.asarray(lives, dtype=float))
        center, scale = x.mean(axis=0), x.std(axis=0)
        scale[scale == 0] = 1.0
        z = (x - center) / scale
        folds = np.arange(len(y)) % FOLDS
        errors = {p: _cross_validated(z, y, folds, p) for p in PENALTIES}
        penalty = min(PENALTIES, key=lambda p: float(np.mean(errors[p] ** 2)))
        coefficients, intercept = _ridge(z, y, penalty)
        return cls(
            early_cycles,
            center.tolist(),
            scale.tolist(),
            coefficients.tolist(),
            intercept,
            penalty,
            float(np.quantile(np.abs(errors[penalty]), COVERAGE)),
            len(y),
        )

    def predict(self, test: Mapping[str, Any]) -> LifePrediction:
        z = (features(test, self.early_cycles) - self.center) / np.asarray(self.scale)
        log_life = float(z @ np.asarray(self.coefficients)) + self.intercept
        return LifePrediction(
            10**log_life,
            10 ** (log_life - self.interval_log10),
            10 ** (log_life + self.interval_log10),
        )

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({"features": FEATURES, **asdict(self)}, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> LifetimeModel:
        """The model saved at ``path``; a one-line ``CriticError`` for a file that is missing,
        not a lifetime model, or of another format."""
        try:
            saved = json.loads(Path(path).read_text())
            if saved.get("format") != FORMAT or tuple(saved.pop("features")) != FEATURES:
                raise CriticError(
                    f"{path} is a lifetime model of another format or other features; "
                    f"retrain it with poreloop lifetime train"
                )
            return cls(**saved)
        except CriticError:
            raise
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            raise CriticError(
                f"cannot load a lifetime model from {path}: {type(error).__name__}: {error}"
            ) from None


def mean_absolute_percentage_error(predicted: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(predicted) / np.asarray(true) - 1.0)))


def _ridge(z: np.ndarray, y: np.ndarray, penalty: float) -> tuple[np.ndarray, float]:
    """Coefficients and intercept minimising ``|y - z w - c|² / n + penalty |w|²``."""
    mean = y.mean()
    gram = z.T @ z / len(y) + penalty * np.eye(z.shape[1])
    weights = np.linalg.solve(gram, z.T @ (y - mean) / len(y))
    return weights, float(mean - z.mean(axis=0) @ weights)


def _cross_validated(z: np.ndarray, y: np.ndarray, folds: np.ndarray, penalty: float) -> np.ndarray:
    """Each cell's error of log10 life when its fold was left out of the fit."""
    errors = np.empty_like(y)
    for fold in range(FOLDS):
        held = folds == fold
        weights, intercept = _ridge(z[~held], y[~held], penalty)
        errors[held] = z[held] @ weights + intercept - y[held]
    return errors
