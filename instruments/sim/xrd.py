"""A simulated X-ray diffractometer: solid-phase composition of a sample by Rietveld refinement.

Pores do not diffract, so it sees only the solid: the active and CBD volume fractions of the
true structure become weight fractions through the phase densities (``DENSITY_G_CM3``), and the
refinement's scatter (``WEIGHT_NOISE``, absolute) comes from a generator seeded by (seed, run).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from poreloop.instruments.base import Action, ActionContext
from poreloop.instruments.sim.lab import LabInstrument, load_sample

DENSITY_G_CM3: dict[str, float] = {"active": 4.75, "cbd": 1.9}
"""NMC811 (crystallographic) and the carbon-black/PVDF domain, g/cm³."""
WEIGHT_NOISE = 0.005
"""Absolute standard deviation of a refined weight fraction (0.5 wt%)."""
SCAN_S = 1800.0


def weight_fractions(volume_fractions: dict[str, float]) -> dict[str, float]:
    """Weight fractions of the solid phases (summing to 1) from their volume fractions."""
    masses = {name: DENSITY_G_CM3[name] * volume_fractions[name] for name in DENSITY_G_CM3}
    total = sum(masses.values())
    if total <= 0:
        return dict.fromkeys(masses, 0.0)
    return {name: mass / total for name, mass in masses.items()}


class MeasureParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample_id: str = Field(description="id returned by robot.fabricate, e.g. S00001")


class MeasureResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample_id: str
    active_weight_fraction: float = Field(description="NMC811 share of the solid mass")
    cbd_weight_fraction: float = Field(description="carbon-binder share of the solid mass")
    run: int = Field(description="1-based count of XRD scans in this lab")


class SimXRD(LabInstrument):
    """Phase composition of a lab sample; ``time_scale`` wall seconds per simulated second."""

    kind: ClassVar[str] = "xrd"
    actions: ClassVar[dict[str, Action]] = {
        "measure": Action(
            params=MeasureParams,
            result=MeasureResult,
            description="scan a sample and refine the weight fractions of its solid phases",
        )
    }

    def _measure(self, params: MeasureParams, ctx: ActionContext) -> MeasureResult:
        micro, _ = load_sample(self.lab_dir, params.sample_id)
        rng, run = self.start_run(ctx, SCAN_S)
        active = weight_fractions(micro.phase_fractions())["active"]
        active = float(np.clip(active + rng.normal(0.0, WEIGHT_NOISE), 0.0, 1.0))
        return MeasureResult(
            sample_id=params.sample_id,
            active_weight_fraction=active,
            cbd_weight_fraction=1.0 - active,
            run=run,
        )
