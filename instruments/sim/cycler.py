"""A simulated battery cycler: rate tests and cycle-life tests of lab samples.

``rate_test`` discharges the sample's TRUE structure, as the positive electrode of a Chen2020
(LG M50) cell, through the project's electrode critic chain (voxel transport → PyBaMM DFN), then
applies what the chain cannot see:

- cracks electronically isolate coating: each through-crack cuts off about
  ``CRACK_ISOLATED_AREA_MM2`` of electrode, so the delivered share is ``exp(-ρ·A)`` for a crack
  density ρ (sample.json ``defects.crack_density_per_mm2``; the robot's cracks start near
  150 /mm², ~7 % lost). Delamination is not counted here: the robot carves the detached gap into
  the structure, where it raises the solid tortuosity the cell model reads. Pinholes do not
  change capacity;
- measurement noise: ``RATE_NOISE`` relative, from a generator seeded by (seed, run).

``cycle_life`` gives the capacity fraction after n cycles from an empirical fade model,
``1 - a·√n - b·n`` (Schmalstieg et al. 2014 form): a = ``SEI_FADE`` for SEI/CEI growth, which is
diffusion-limited (√n), faster at high current (heat) as C^``SEI_RATE_EXPONENT`` and with the
electrolyte-wetted active surface as √(s/``REFERENCE_WETTED_SSA_PER_UM``); b = ``LINEAR_FADE``
for particle cracking and lithium plating, ∝ C^``LINEAR_RATE_EXPONENT`` and accelerated by
cracks (1 + ρ/``CRACK_FADE_DENSITY_PER_MM2``) and delamination (1 + ``DELAMINATION_FADE``·δ).
At 1C an undamaged Chen2020-like electrode keeps ~85 % after 1000 cycles.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from poreloop.instruments.base import Action, ActionContext, Limit
from poreloop.instruments.errors import ActionFailed, ErrorCode, InvalidRequest
from poreloop.instruments.sim.lab import LabInstrument, load_sample
from poreloop.twins.critics.cell import c_rate_tag
from poreloop.twins.critics.chain import Chain, get_chain
from poreloop.twins.critics.morphology import morphology
from poreloop.twins.errors import CriticError

MAX_C_RATE = 5.0
MAX_CYCLES = 2000
CRACK_ISOLATED_AREA_MM2 = 5e-4
"""Electrode area one crack isolates electronically (a ~50 µm crack with a ~10 µm dead band)."""
RATE_NOISE = 0.005
CHARGE_C_RATE = 1 / 3
"""Rate tests recharge at C/3 (CC) before every discharge."""
REST_S = 600.0

SEI_FADE = 3e-3
"""Capacity share lost per √cycle at 1C by SEI/CEI growth on the reference surface."""
SEI_RATE_EXPONENT = 0.5
LINEAR_FADE = 5e-5
"""Capacity share lost per cycle at 1C by particle cracking and lithium plating."""
LINEAR_RATE_EXPONENT = 1.0
REFERENCE_WETTED_SSA_PER_UM = 0.38
"""Chen2020 positive electrode's active surface 3ε_act/R (0.665, 5.22 µm): the fade reference."""
CRACK_FADE_DENSITY_PER_MM2 = 150.0
DELAMINATION_FADE = 2.0
FADE_NOISE = 0.003
FADE_POINTS = 20


class RateTestParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample_id: str = Field(description="id the robot's fabricate returned, e.g. S00001")
    c_rates: list[PositiveFloat] = Field(
        min_length=1, max_length=8, description="discharge rates, C (1C empties the cell in 1 h)"
    )

    @property
    def max_c_rate(self) -> float:
        """The fastest discharge asked for, C: what the safety limit bounds."""
        return max(self.c_rates)


class RateTestResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample_id: str
    c_rates: list[float]
    capacity_mah_cm2: list[float] = Field(description="per C-rate, per electrode area")
    capacity_ah: list[float] = Field(description="per C-rate, over the Chen2020 electrode area")
    rated_capacity_ah: float = Field(description="the 1C basis of the electrode's loading")
    crack_loss_fraction: float = Field(description="capacity share isolated by cracks")
    status: str = Field(description="the sample's status: ok | cracked | delaminated")
    duration_s: float = Field(description="simulated test time, s")
    run: int


class CycleLifeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample_id: str = Field(description="id the robot's fabricate returned, e.g. S00001")
    cycles: int = Field(gt=0, description="full charge/discharge cycles to run")
    c_rate: PositiveFloat = Field(default=1.0, description="charge and discharge rate, C")


class CycleLifeResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample_id: str
    c_rate: float
    cycles: list[int] = Field(description="cycle numbers of the check-ups")
    capacity_fraction: list[float] = Field(description="capacity over the first cycle's")
    duration_s: float = Field(description="simulated test time, s")
    run: int


class SimCycler(LabInstrument):
    """Coin-cell cycler for lab samples; ``time_scale`` wall seconds per simulated second."""

    kind: ClassVar[str] = "cycler"
    actions: ClassVar[dict[str, Action]] = {
        "rate_test": Action(
            params=RateTestParams,
            result=RateTestResult,
            limits=(Limit("max_c_rate", high=MAX_C_RATE, unit="C", why="plating and heating"),),
            description="discharge the sample at each C-rate and report its capacities",
        ),
        "cycle_life": Action(
            params=CycleLifeParams,
            result=CycleLifeResult,
            limits=(
                Limit("cycles", high=MAX_CYCLES, why="one cycler channel's booking"),
                Limit("c_rate", high=MAX_C_RATE, unit="C", why="plating and heating"),
            ),
            description="cycle the sample and report its capacity fade",
        ),
    }

    def __init__(self, lab_dir: str | Path, seed: int = 0, time_scale: float = 1.0) -> None:
        super().__init__(lab_dir, seed, time_scale)
        self._chains: dict[tuple[float, ...], Chain] = {}

    def _chain(self, c_rates: tuple[float, ...]) -> Chain:
        """The electrode chain for these rates, built once: it holds the discretised DFN."""
        if c_rates not in self._chains:
            self._chains[c_rates] = get_chain("electrode", c_rates=c_rates)
        return self._chains[c_rates]

    def _rate_test(self, params: RateTestParams, ctx: ActionContext) -> RateTestResult:
        micro, meta = load_sample(self.lab_dir, params.sample_id)
        rates = tuple(sorted(set(params.c_rates)))
        duration_s = sum(3600 / CHARGE_C_RATE + 3600 / c + 2 * REST_S for c in rates)
        rng, run = self.start_run(ctx, duration_s)
        try:
            result = self._chain(rates).evaluate(micro)
        except CriticError as error:
            raise InvalidRequest(
                f"cycler.rate_test cannot test sample {params.sample_id}: {error}",
                ErrorCode.invalid_params,
            ) from None
        if not result.ok:
            raise ActionFailed(
                f"cycler.rate_test of sample {params.sample_id} failed: {result.reason}"
            )
        density = _defect(meta, "crack_density_per_mm2")
        delivered = math.exp(-density * CRACK_ISOLATED_AREA_MM2)
        factors = delivered * rng.normal(1.0, RATE_NOISE, len(params.c_rates))
        props = result.properties
        tags = [c_rate_tag(c) for c in params.c_rates]
        return RateTestResult(
            sample_id=params.sample_id,
            c_rates=params.c_rates,
            capacity_mah_cm2=[
                props[f"capacity_mah_cm2_{t}"] * f for t, f in zip(tags, factors, strict=True)
            ],
            capacity_ah=[props[f"capacity_ah_{t}"] * f for t, f in zip(tags, factors, strict=True)],
            rated_capacity_ah=props["rated_capacity_ah"],
            crack_loss_fraction=1.0 - delivered,
            status=meta.get("status", "ok"),
            duration_s=duration_s,
            run=run,
        )

    def _cycle_life(self, params: CycleLifeParams, ctx: ActionContext) -> CycleLifeResult:
        micro, meta = load_sample(self.lab_dir, params.sample_id)
        if "active" not in micro.phases.values() or "pore" not in micro.phases.values():
            raise InvalidRequest(
                f"cycler.cycle_life needs an electrode (pore, active phases); sample "
                f"{params.sample_id} has {sorted(micro.phases.values())}",
                ErrorCode.invalid_params,
            )
        duration_s = params.cycles * (2 * 3600 / params.c_rate + 2 * REST_S)
        rng, run = self.start_run(ctx, duration_s)
        cycles = np.unique(np.round(np.linspace(1, params.cycles, FADE_POINTS)).astype(int))
        wetted = morphology(micro)["ssa_pore_active_per_um"]
        fraction = capacity_fade(
            cycles,
            params.c_rate,
            wetted,
            _defect(meta, "crack_density_per_mm2"),
            _defect(meta, "delamination_fraction"),
        )
        measured = np.clip(fraction * rng.normal(1.0, FADE_NOISE, fraction.shape), 0.0, None)
        return CycleLifeResult(
            sample_id=params.sample_id,
            c_rate=params.c_rate,
            cycles=cycles.tolist(),
            capacity_fraction=measured.tolist(),
            duration_s=duration_s,
            run=run,
        )


def capacity_fade(
    cycles: np.ndarray,
    c_rate: float,
    wetted_ssa_per_um: float,
    crack_density_per_mm2: float = 0.0,
    delamination_fraction: float = 0.0,
) -> np.ndarray:
    """Capacity fraction left after each of ``cycles`` (n,), noiseless; see the module doc."""
    sei = (
        SEI_FADE
        * c_rate**SEI_RATE_EXPONENT
        * math.sqrt(wetted_ssa_per_um / REFERENCE_WETTED_SSA_PER_UM)
    )
    linear = (
        LINEAR_FADE
        * c_rate**LINEAR_RATE_EXPONENT
        * (1 + crack_density_per_mm2 / CRACK_FADE_DENSITY_PER_MM2)
        * (1 + DELAMINATION_FADE * delamination_fraction)
    )
    return np.clip(1.0 - sei * np.sqrt(cycles) - linear * cycles, 0.0, None)


def _defect(meta: dict[str, Any], name: str) -> float:
    return float(meta.get("defects", {}).get(name, 0.0))
