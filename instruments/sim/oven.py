"""A simulated drying oven: moisture leaves an electrode at an Arrhenius first-order rate.

Residual moisture after drying at T for t is ``m0 exp(-k(T) t)`` with
``k(T) = k_ref exp(-Ea/R (1/T - 1/T_ref))``; ``m0`` and a 1 % measurement noise come from a
generator seeded by (seed, run number), so a run is reproducible. Every started run is appended
to ``counter_path`` before the oven heats, so tests can prove a physical action ran exactly once.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from poreloop.instruments.base import Action, ActionContext, Instrument, Limit

GAS_CONSTANT = 8.314  # J/(mol K)
ACTIVATION_ENERGY = 40e3  # J/mol, water desorption from a porous carbon/binder electrode
RATE_AT_REFERENCE = 1 / 3600  # 1/s at 120 degC: one-hour time constant
REFERENCE_K = 393.15


class DryParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature_c: float = Field(ge=20, le=400, description="oven set point, degC")
    duration_s: float = Field(gt=0, le=7 * 86400, description="time at set point, s")


class DryResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature_c: float
    duration_s: float
    initial_moisture_ppm: float
    residual_moisture_ppm: float
    run: int = Field(description="1-based count of dry runs this oven has started")


class SimOven(Instrument):
    """Vacuum drying oven; ``time_scale`` wall seconds per simulated second (1e-3: minutes in ms)."""

    kind: ClassVar[str] = "oven"
    actions: ClassVar[dict[str, Action]] = {
        "dry": Action(
            params=DryParams,
            result=DryResult,
            limits=(
                Limit("temperature_c", high=200.0, unit="degC", why="the PVDF binder degrades"),
            ),
            description="hold the sample at temperature_c for duration_s to drive out water",
        )
    }

    def __init__(
        self, counter_path: str | Path | None = None, time_scale: float = 1.0, seed: int = 0
    ) -> None:
        self.counter_path = Path(counter_path) if counter_path is not None else None
        self.time_scale = time_scale
        self.seed = seed
        self._runs = 0

    def runs(self) -> int:
        """How many dry runs have started, counted in ``counter_path`` when there is one."""
        if self.counter_path is None:
            return self._runs
        if not self.counter_path.exists():
            return 0
        return len(self.counter_path.read_text().splitlines())

    def _record_run(self) -> int:
        """Count a started run durably (fsync) before the oven heats; returns its number."""
        self._runs += 1
        if self.counter_path is None:
            return self._runs
        with self.counter_path.open("a") as handle:
            handle.write("dry\n")
            handle.flush()
            os.fsync(handle.fileno())
        return self.runs()

    def _dry(self, params: DryParams, ctx: ActionContext) -> DryResult:
        run = self._record_run()
        rng = np.random.default_rng([self.seed, run])
        initial = float(rng.normal(2000.0, 200.0))
        ctx.pass_time(params.duration_s * self.time_scale)
        kelvin = params.temperature_c + 273.15
        rate = RATE_AT_REFERENCE * math.exp(
            -ACTIVATION_ENERGY / GAS_CONSTANT * (1 / kelvin - 1 / REFERENCE_K)
        )
        residual = initial * math.exp(-rate * params.duration_s) * float(rng.normal(1.0, 0.01))
        return DryResult(
            temperature_c=params.temperature_c,
            duration_s=params.duration_s,
            initial_moisture_ppm=initial,
            residual_moisture_ppm=residual,
            run=run,
        )
