"""A simulated battery cycler: rate tests and cycle-life tests of lab samples.

``rate_test`` discharges the sample's TRUE structure at its TRUE thickness, as the positive
electrode of a Chen2020 (LG M50) cell: the electrode chain's voxel transport gives the
structure's properties, and a PyBaMM DFN of the cycler's own discharges it. The lab's physics
is richer than the digital chain's (model-form error the campaign must learn, not calibrate):

- binder swelling: the carbon-binder domain takes up electrolyte and swells by
  ``BINDER_SWELLING`` of its volume, eating pore volume and choking the pore throats it lines:
  porosity ε → ε' = ε − s·φ_cbd and the pore tortuosity τ → τ·(ε/ε')^
  ``SWELLING_TORTUOSITY_EXPONENT`` (a throat-narrowing exponent above Bruggeman's 0.5, as
  binder sits at the necks). Much binder, or a dense electrode: slower electrolyte transport,
  lost mostly at high rates (about 15 % of the 3C energy at 0.08 binder, 25 % at 0.14);
- electronic contact resistance: particles, carbon and current collector touch through the
  carbon-binder network, an area-specific resistance in series (PyBaMM's "contact resistance")
  of ``CONTACT_ASR_OHM_CM2`` at ``CONTACT_REFERENCE_CBD`` (the calendered electrode's CBD
  volume fraction) and ``CONTACT_REFERENCE_COMPRESSION``, growing as
  (φ_ref/φ_cbd)^``CONTACT_CBD_EXPONENT`` as the network thins and falling as
  ((1 − c)/(1 − c_ref))^``CONTACT_COMPRESSION_EXPONENT`` as calendering presses contacts
  together. Little binder: a voltage drop I·R that costs energy, most at high rates (at 0.03
  binder about 3 % at 1C and 12 % at 3C, at 0.02 binder 6 % and a third);

- cracks electronically isolate coating: each through-crack cuts off about
  ``CRACK_ISOLATED_AREA_MM2`` of electrode, so the delivered share is ``exp(-ρ·A)`` for a crack
  density ρ (sample.json ``defects.crack_density_per_mm2``; the robot's cracks start near
  150 /mm², ~7 % lost). Delamination is not counted here: the robot carves the detached gap into
  the structure, where it raises the solid tortuosity the cell model reads. Pinholes do not
  change capacity;
- measurement noise: ``RATE_NOISE`` relative, from a generator seeded by (seed, run).

``cycle_life`` ages a coin cell of the sample (``instruments.aging``: SEI growth, cracking
and a lithium-plating knee, each cell with its own spread) at the test's rate and reports
check-ups: the discharge capacity and the whole discharge curve Q(V).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from poreloop.instruments.aging import REST_S, AgingCell, cycling_s
from poreloop.instruments.base import Action, ActionContext, Limit
from poreloop.instruments.errors import ActionFailed, ErrorCode, InvalidRequest
from poreloop.instruments.sim.lab import LabInstrument, load_sample
from poreloop.twins.critics.cell import CellModel, CellResult, c_rate_tag
from poreloop.twins.critics.chain import cell_properties, get_chain
from poreloop.twins.critics.morphology import morphology
from poreloop.twins.errors import CriticError
from poreloop.twins.microstructure import Microstructure

MAX_C_RATE = 5.0
MAX_CYCLES = 2000
CRACK_ISOLATED_AREA_MM2 = 5e-4
"""Electrode area one crack isolates electronically (a ~50 µm crack with a ~10 µm dead band)."""
RATE_NOISE = 0.005
CHARGE_C_RATE = 1 / 3
"""Rate tests recharge at C/3 (CC) before every discharge."""

BINDER_SWELLING = 0.15
"""Volume the carbon-binder domain gains in electrolyte, over its dry volume. PVDF takes up
10-30 % of its volume of carbonate electrolyte; the domain is about half carbon black, which
does not swell, so 15 % of the domain."""
SWELLING_TORTUOSITY_EXPONENT = 1.5
"""Pore tortuosity grows as (ε/ε')^1.5 when swelling binder narrows the throats it lines:
steeper than Bruggeman's uniform ε^-0.5, as the binder sits at the necks."""
CONTACT_ASR_OHM_CM2 = 4.0
"""Contact resistance times area of a well-made network (reference binder and compression):
impedance studies give a few Ohm·cm² for good cathode/collector contacts and tens for poor
ones, against ~25 Ohm·cm² for a whole LG M50 cell; it costs under 1 % of the energy at 1C."""
CONTACT_REFERENCE_CBD = 0.08
CONTACT_REFERENCE_COMPRESSION = 0.15
CONTACT_CBD_EXPONENT = 2.0
"""Percolation-like growth of the network's resistance as it thins: conductivity above the
threshold scales with the square of the excess fraction (3D percolation exponent t ≈ 2)."""
CONTACT_COMPRESSION_EXPONENT = 3.0
"""Calendering presses particles onto the collector and each other; an empirical law that cuts
the resistance threefold from an uncalendered coating to 30 % compression, as measured
electrode resistances fall several-fold with calendering."""
CONTACT_MIN_CBD = 0.005
"""Below this the network no longer connects: the resistance is taken at this floor."""
M2_PER_CM2 = 1e-4


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
    energy_density_wh_l: list[float] = Field(description="per C-rate, over the cell stack volume")
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
    voltage_v: list[float] = Field(description="voltages at which the discharge curves are read")
    discharged_fraction: list[list[float]] = Field(
        description="per check-up, the capacity discharged (over the first cycle's) by the time "
        "the voltage has fallen to each of voltage_v: the discharge curve Q(V)"
    )
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
        self._structure = get_chain("electrode", cell=False)
        self._cells: dict[tuple[float, ...], CellModel] = {}

    def _cell(self, c_rates: tuple[float, ...]) -> CellModel:
        """The cell for these rates, built once: it holds the discretised DFN."""
        if c_rates not in self._cells:
            self._cells[c_rates] = CellModel(c_rates, contact_resistance=True)
        return self._cells[c_rates]

    def _rate_test(self, params: RateTestParams, ctx: ActionContext) -> RateTestResult:
        micro, meta = load_sample(self.lab_dir, params.sample_id)
        rates = tuple(sorted(set(params.c_rates)))
        duration_s = sum(3600 / CHARGE_C_RATE + 3600 / c + 2 * REST_S for c in rates)
        rng, run = self.start_run(ctx, duration_s)
        try:
            result = self.discharge(micro, meta["true_recipe"], rates)
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
        props = result.values
        tags = [c_rate_tag(c) for c in params.c_rates]
        return RateTestResult(
            sample_id=params.sample_id,
            c_rates=params.c_rates,
            capacity_mah_cm2=[
                props[f"capacity_mah_cm2_{t}"] * f for t, f in zip(tags, factors, strict=True)
            ],
            capacity_ah=[props[f"capacity_ah_{t}"] * f for t, f in zip(tags, factors, strict=True)],
            energy_density_wh_l=[
                props[f"energy_density_wh_l_{t}"] * f for t, f in zip(tags, factors, strict=True)
            ],
            rated_capacity_ah=props["rated_capacity_ah"],
            crack_loss_fraction=1.0 - delivered,
            status=meta.get("status", "ok"),
            duration_s=duration_s,
            run=run,
        )

    def discharge(
        self, micro: Microstructure, true_recipe: dict[str, Any], c_rates: tuple[float, ...]
    ) -> CellResult:
        """The lab's physics on a true structure, noiseless: its transport from the voxels at
        the true thickness, the swollen binder, the contact resistance, then the DFN.
        ``ok=False`` with the reason when it cannot be discharged or its transport did not
        converge (a lab reports no number it cannot stand by); CriticError when the structure
        is not an electrode."""
        structure = self._structure.evaluate(micro, thickness_um=true_recipe["thickness_um"])
        props = structure.properties
        if structure.problem or math.isinf(props["tau_pore_z"]) or math.isinf(props["tau_solid_z"]):
            reason = structure.problem or "the pore or the solid does not percolate"
            return CellResult(ok=False, reason=reason, values={}, limits={}, inputs={})
        asr = contact_asr_ohm_m2(props["fraction_cbd"], float(true_recipe["compression"]))
        return self._cell(c_rates).evaluate(cell_properties(swell_binder(props)), asr)

    def _cycle_life(self, params: CycleLifeParams, ctx: ActionContext) -> CycleLifeResult:
        micro, meta = load_sample(self.lab_dir, params.sample_id)
        if "active" not in micro.phases.values() or "pore" not in micro.phases.values():
            raise InvalidRequest(
                f"cycler.cycle_life needs an electrode (pore, active phases); sample "
                f"{params.sample_id} has {sorted(micro.phases.values())}",
                ErrorCode.invalid_params,
            )
        rng, run = self.start_run(ctx, cycling_s(params.cycles, params.c_rate))
        cell = AgingCell.built(
            params.c_rate,
            morphology(micro)["ssa_pore_active_per_um"],
            _defect(meta, "crack_density_per_mm2"),
            _defect(meta, "delamination_fraction"),
            rng,
        )
        return CycleLifeResult(**cell.test(params.sample_id, params.cycles, rng, run))


def swell_binder(properties: dict[str, float]) -> dict[str, float]:
    """The structure's properties once the carbon-binder domain has swollen in electrolyte;
    the swollen binder fills at most half the pore volume (a gel film cannot close the pores
    it lines)."""
    porosity, cbd = properties["porosity"], properties.get("fraction_cbd", 0.0)
    swollen = max(porosity - BINDER_SWELLING * cbd, 0.5 * porosity)
    return {
        **properties,
        "porosity": swollen,
        "fraction_cbd": cbd + porosity - swollen,
        "tau_pore_z": properties["tau_pore_z"]
        * (porosity / swollen) ** SWELLING_TORTUOSITY_EXPONENT,
    }


def contact_asr_ohm_m2(cbd_fraction: float, compression: float) -> float:
    """Area-specific contact resistance (Ohm·m²) of a network of ``cbd_fraction`` binder
    calendered by ``compression``."""
    thinning = (CONTACT_REFERENCE_CBD / max(cbd_fraction, CONTACT_MIN_CBD)) ** CONTACT_CBD_EXPONENT
    pressing = (
        (1.0 - compression) / (1.0 - CONTACT_REFERENCE_COMPRESSION)
    ) ** CONTACT_COMPRESSION_EXPONENT
    return CONTACT_ASR_OHM_CM2 * M2_PER_CM2 * thinning * pressing


def _defect(meta: dict[str, Any], name: str) -> float:
    return float(meta.get("defects", {}).get(name, 0.0))
