"""Cell model critic: a measured positive electrode → discharge capacity and energy density.

A Doyle-Fuller-Newman model (PyBaMM, Chen2020 LG M50 NMC811/graphite parameters) is built and
discretised once, with the positive electrode's porosity, active fraction, particle radius,
tortuosity factors and thickness as input parameters; every evaluation is a re-solve.

Mapping from microstructure properties to the model (``electrode_inputs``):

- porosity ε = pore (electrolyte) volume fraction; the carbon-binder domain is dense solid, so
  it lowers ε and adds to the solid 1 − ε but not to the active fraction ε_act;
- PyBaMM's tortuosity-factor option uses D_eff = D·ε/τ_pore and σ_eff = σ·(1 − ε)/τ_solid, the
  definition of the tortuosity factor along the through-thickness axis of a voxel solver;
- particle radius R = 3·ε_act/a, so PyBaMM's spherical-particle surface area 3·ε_act/R equals
  the measured active/pore interface area per electrode volume a;
- the negative electrode is sized to the positive (thickness ∝ ε_act·L), keeping the Chen2020
  balance, and 1C is the Chen2020 nominal capacity scaled by the same loading ratio;
- negative electrode and separator keep Chen2020 values, their Bruggeman transport written as the
  equivalent tortuosity factor τ = ε^(1 − b).

Energy density divides the discharge energy by the volume of one cell layer over the electrode
area: negative collector + negative + separator + positive + positive collector.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, field_validator

from poreloop.twins.errors import CriticError

if TYPE_CHECKING:
    import pybamm

PARAMETER_SET = "Chen2020"
C_RATES: tuple[float, ...] = (0.5, 1.0, 3.0)
# Finite-volume cells per domain. Against an 80/40/80/60/60 mesh, capacities differ < 1 % for
# particles up to ~10 µm and electrodes up to ~120 µm at 0.5-3C; strongly limited discharges
# (20 µm particles at 3C, 200 µm electrodes at 1C) err by 2-12 %.
VAR_PTS: dict[str, int] = {"x_n": 30, "x_s": 10, "x_p": 30, "r_n": 15, "r_p": 30}
# Microstructure properties that ``electrode_inputs`` reads; units in the names.
PROPERTY_KEYS = (
    "porosity",
    "active_fraction",
    "cbd_fraction",
    "tau_pore_z",
    "tau_solid_z",
    "ssa_active_per_um",
    "thickness_um",
)

# Wiener bound τ ≥ 1, less 2 % for the discretisation error of voxel transport solvers.
TAU_RANGE = (0.98, 1000.0)
RADIUS_RANGE_UM = (0.05, 50.0)
THICKNESS_RANGE_UM = (1.0, 1000.0)
_FRACTION_SUM_TOLERANCE = 0.01

_T_END = 1.5  # simulated time, in units of the nominal discharge time 1/C
# A discharge that delivers less than this share of the rated capacity ended at once.
_MIN_UTILISATION = 0.01
# atol 1e-4 is 30 % faster but fails near the end of some 3C discharges on fine meshes.
_RTOL, _ATOL = 1e-4, 1e-5
_MAX_STEPS = 20_000
_REASON_CHARS = 200
_M3_PER_L = 1e-3
_CM2_PER_M2 = 1e4

_INPUTS = {
    "porosity": "Positive electrode porosity",
    "active_fraction": "Positive electrode active material volume fraction",
    "particle_radius_m": "Positive particle radius [m]",
    "tau_electrolyte": "Positive electrode tortuosity factor (electrolyte)",
    "tau_electrode": "Positive electrode tortuosity factor (electrode)",
    "thickness_m": "Positive electrode thickness [m]",
}
_NEGATIVE_THICKNESS = "Negative electrode thickness [m]"
_CURRENT = "Current function [A]"
_CONTACT = "Contact resistance [Ohm]"
_CAPACITY = "Discharge capacity [A.h]"
_ENERGY = "Discharge energy [W.h]"
_CUT_OFF = "Minimum voltage [V]"
# A particle surface that fills (positive) or empties (negative) ends the discharge: the
# exchange currents take the square root of c_s and of c_max - c_s, so one step past it makes
# NaNs and the solver fails, sometimes while the voltage is still above the cut-off.
_SURFACE_MARGIN = 1e-5  # stoichiometry from a full or an empty particle surface
_LIMITS = {
    _CUT_OFF: "voltage cut-off",
    "Positive particle surface saturated": "positive particle surface saturated",
    "Negative particle surface emptied": "negative particle surface emptied",
}
# Domains whose length holds an input parameter need a mesh scaled symbolically.
_SYMBOLIC_DOMAINS = ("negative electrode", "separator", "positive electrode", "positive particle")


def _import_pybamm() -> ModuleType:
    """PyBaMM, imported where used (it takes seconds) and without its telemetry prompt.

    On first import PyBaMM asks on stdin whether to send usage data and waits 10 s for an
    answer; an unattended loop (and a Ray worker) must not wait. A user's own setting wins.
    """
    os.environ.setdefault("PYBAMM_DISABLE_TELEMETRY", "true")
    import pybamm

    return pybamm


@dataclass(frozen=True)
class ElectrodeInputs:
    """The positive electrode as PyBaMM sees it, SI units.

    Checks only what the model needs to run (finite, positive, fractions that fit in the
    volume); ``electrode_inputs`` checks the physical ranges of measured properties.
    """

    porosity: float
    active_fraction: float
    particle_radius_m: float
    tau_electrolyte: float
    tau_electrode: float
    thickness_m: float

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (math.isfinite(value) and value > 0):
                raise CriticError(
                    f"electrode input '{name}' must be a positive number, got {value}"
                )
        if self.porosity + self.active_fraction > 1 + 1e-9:
            raise CriticError(
                f"porosity {self.porosity} + active fraction {self.active_fraction} exceed 1; "
                "pass volume fractions of the same electrode"
            )

    @property
    def loading_m(self) -> float:
        """Active material volume per electrode area (m³/m²): what the capacity scales with."""
        return self.active_fraction * self.thickness_m

    def as_pybamm(self) -> dict[str, float]:
        """The values keyed by PyBaMM parameter name."""
        return {pybamm_name: getattr(self, name) for name, pybamm_name in _INPUTS.items()}


def electrode_inputs(properties: Mapping[str, float]) -> ElectrodeInputs:
    """Map measured microstructure properties (``PROPERTY_KEYS``) to the model's inputs.

    Raises ``CriticError`` for a missing key, a non-finite value or one out of physical range.
    """
    missing = [key for key in PROPERTY_KEYS if key not in properties]
    if missing:
        raise CriticError(
            f"the cell model needs properties {list(PROPERTY_KEYS)}; missing {missing}"
        )
    p = {key: float(properties[key]) for key in PROPERTY_KEYS}
    bad = [key for key, value in p.items() if not math.isfinite(value)]
    if bad:
        raise CriticError(f"properties {bad} are not finite: {[p[k] for k in bad]}")
    for key in ("porosity", "active_fraction"):
        _check_range(key, p[key], (0.0, 1.0), open_ends=True)
    _check_range("cbd_fraction", p["cbd_fraction"], (0.0, 1.0))
    total = p["porosity"] + p["active_fraction"] + p["cbd_fraction"]
    if abs(total - 1) > _FRACTION_SUM_TOLERANCE:
        raise CriticError(
            f"porosity + active_fraction + cbd_fraction must be 1 (pore, active and binder fill "
            f"the electrode), got {total:.4f}"
        )
    for key in ("tau_pore_z", "tau_solid_z"):
        _check_range(key, p[key], TAU_RANGE)
    _check_range("thickness_um", p["thickness_um"], THICKNESS_RANGE_UM)
    if p["ssa_active_per_um"] <= 0:
        raise CriticError(
            f"ssa_active_per_um must be positive, got {p['ssa_active_per_um']}; an electrode "
            "without active surface cannot be cycled"
        )
    radius_um = 3 * p["active_fraction"] / p["ssa_active_per_um"]
    _check_range("particle radius 3·active_fraction/ssa_active_per_um", radius_um, RADIUS_RANGE_UM)
    return ElectrodeInputs(
        porosity=p["porosity"],
        active_fraction=p["active_fraction"],
        particle_radius_m=radius_um * 1e-6,
        tau_electrolyte=p["tau_pore_z"],
        tau_electrode=p["tau_solid_z"],
        thickness_m=p["thickness_um"] * 1e-6,
    )


def _check_range(
    name: str, value: float, bounds: tuple[float, float], open_ends: bool = False
) -> None:
    low, high = bounds
    inside = low < value < high if open_ends else low <= value <= high
    if not inside:
        brackets = "()" if open_ends else "[]"
        raise CriticError(
            f"{name} must lie in {brackets[0]}{low}, {high}{brackets[1]}, got {value:.6g}"
        )


def c_rate_tag(c_rate: float) -> str:
    """Key suffix of a C-rate: 0.5 → '0p5c', 1 → '1c', 3 → '3c'."""
    return f"{c_rate:g}".replace(".", "p") + "c"


class CellResult(BaseModel):
    """Performance of one electrode in the cell, or why it could not be computed.

    ``values`` (per C-rate tag ``t`` of ``c_rate_tag``): ``capacity_ah_t`` (Chen2020 electrode
    area), ``capacity_mah_cm2_t``, ``energy_wh_t``, ``energy_density_wh_l_t``, and
    ``rated_capacity_ah`` (the 1C basis). ``limits`` names what ended each discharge (voltage
    cut-off, or a positive particle surface saturated / negative one emptied). When ``ok`` is
    False, ``reason`` says which discharge failed and why, and ``values`` holds only the
    discharges that succeeded. ``inputs`` are the
    PyBaMM input parameters used, SI units.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ok: bool
    reason: str = ""
    values: dict[str, float] = {}
    limits: dict[str, str] = {}
    inputs: dict[str, float] = {}

    @field_validator("values")
    @classmethod
    def _finite(cls, values: dict[str, float]) -> dict[str, float]:
        bad = {key: value for key, value in values.items() if not math.isfinite(value)}
        if bad:
            raise ValueError(f"cell results must be finite, got {bad}")
        return values


class _DischargeFailed(Exception):
    """One discharge gave no usable result; the message is the reason."""


class CellModel:
    """A DFN cell whose positive electrode comes from a measured microstructure.

    Built (model, mesh, discretisation, solver) once at construction; ``evaluate`` re-solves
    one constant-current discharge to the lower cut-off per C-rate. ``reference`` is the stock
    Chen2020 positive electrode, with its Bruggeman transport as tortuosity factors.
    """

    def __init__(
        self,
        c_rates: Sequence[float] = C_RATES,
        var_pts: Mapping[str, int] | None = None,
        contact_resistance: bool = False,
    ) -> None:
        c_rates = tuple(float(c) for c in c_rates)
        if not c_rates or not all(math.isfinite(c) and c > 0 for c in c_rates):
            raise CriticError(f"c_rates must be positive numbers, got {c_rates}")
        if len({c_rate_tag(c) for c in c_rates}) != len(c_rates):
            raise CriticError(f"c_rates must be distinct, got {c_rates}")
        self.c_rates = c_rates
        self.var_pts = dict(VAR_PTS if var_pts is None else var_pts)
        self.contact_resistance = contact_resistance
        self.n_builds = 0
        self._build()

    def _build(self) -> None:
        pybamm = _import_pybamm()
        options = {
            "transport efficiency": "tortuosity factor",
            "calculate discharge energy": "true",
        }
        if self.contact_resistance:
            options["contact resistance"] = "true"
        model = pybamm.lithium_ion.DFN(options)
        variables = model.variables
        model.events += [
            pybamm.Event(
                "Positive particle surface saturated",
                1 - _SURFACE_MARGIN - variables["Maximum positive particle surface stoichiometry"],
            ),
            pybamm.Event(
                "Negative particle surface emptied",
                variables["Minimum negative particle surface stoichiometry"] - _SURFACE_MARGIN,
            ),
        ]
        values = pybamm.ParameterValues(PARAMETER_SET)
        self.reference = ElectrodeInputs(
            porosity=values["Positive electrode porosity"],
            active_fraction=values["Positive electrode active material volume fraction"],
            particle_radius_m=values["Positive particle radius [m]"],
            tau_electrolyte=_bruggeman_tau(values, "Positive electrode", "electrolyte"),
            tau_electrode=_bruggeman_tau(values, "Positive electrode", "electrode"),
            thickness_m=values["Positive electrode thickness [m]"],
        )
        self.nominal_capacity_ah = values["Nominal cell capacity [A.h]"]
        self.negative_thickness_m = values[_NEGATIVE_THICKNESS]
        self.area_m2 = values["Electrode height [m]"] * values["Electrode width [m]"]
        self.fixed_thickness_m = (
            values["Negative current collector thickness [m]"]
            + values["Separator thickness [m]"]
            + values["Positive current collector thickness [m]"]
        )
        values.update(
            {
                "Negative electrode tortuosity factor (electrolyte)": _bruggeman_tau(
                    values, "Negative electrode", "electrolyte"
                ),
                "Negative electrode tortuosity factor (electrode)": _bruggeman_tau(
                    values, "Negative electrode", "electrode"
                ),
                "Separator tortuosity factor (electrolyte)": _bruggeman_tau(
                    values, "Separator", "electrolyte"
                ),
            },
            check_already_exists=False,
        )
        names = [*_INPUTS.values(), _NEGATIVE_THICKNESS, _CURRENT]
        if self.contact_resistance:
            names.append(_CONTACT)
        values.update({name: "[input]" for name in names}, check_already_exists=False)
        geometry = model.default_geometry
        values.process_model(model)
        values.process_geometry(geometry)
        submeshes = dict(model.default_submesh_types)
        submeshes.update({domain: pybamm.SymbolicUniform1DSubMesh for domain in _SYMBOLIC_DOMAINS})
        mesh = pybamm.Mesh(geometry, submeshes, self.var_pts)
        pybamm.Discretisation(mesh, model.default_spatial_methods).process_model(model)
        self.model = model
        self._solver = pybamm.IDAKLUSolver(
            rtol=_RTOL,
            atol=_ATOL,
            output_variables=[_CAPACITY, _ENERGY],
            options={"max_num_steps": _MAX_STEPS},
        )
        self.n_builds += 1

    def evaluate(
        self, properties: Mapping[str, float], contact_asr_ohm_m2: float = 0.0
    ) -> CellResult:
        """Discharge performance of the electrode described by measured ``properties``.

        Raises ``CriticError`` for properties out of range; a discharge the solver cannot
        finish gives ``ok=False`` with the reason.
        """
        return self.evaluate_inputs(electrode_inputs(properties), contact_asr_ohm_m2)

    def evaluate_inputs(
        self, electrode: ElectrodeInputs, contact_asr_ohm_m2: float = 0.0
    ) -> CellResult:
        """Discharge performance of an electrode given directly as model inputs.

        The negative electrode's thickness and the 1C current scale with the active loading
        ε_act·L relative to ``reference``: 1C drains the rated capacity in an hour.
        ``contact_asr_ohm_m2``: an area-specific contact resistance in series (a model built
        with ``contact_resistance=True`` only).
        """
        if contact_asr_ohm_m2 and not self.contact_resistance:
            raise CriticError("a contact resistance needs CellModel(contact_resistance=True)")
        ratio = electrode.loading_m / self.reference.loading_m
        rated_ah = self.nominal_capacity_ah * ratio
        negative_m = self.negative_thickness_m * ratio
        inputs = {**electrode.as_pybamm(), _NEGATIVE_THICKNESS: negative_m}
        if self.contact_resistance:
            inputs[_CONTACT] = contact_asr_ohm_m2 / self.area_m2
        volume_l = (
            self.area_m2 * (self.fixed_thickness_m + negative_m + electrode.thickness_m) / _M3_PER_L
        )
        values = {"rated_capacity_ah": rated_ah}
        limits: dict[str, str] = {}
        failures = []
        for c_rate in self.c_rates:
            tag = c_rate_tag(c_rate)
            try:
                capacity_ah, energy_wh, limits[tag] = self._discharge(inputs, c_rate, rated_ah)
            except _DischargeFailed as failure:
                failures.append(f"{tag}: {failure}")
                continue
            values[f"capacity_ah_{tag}"] = capacity_ah
            values[f"capacity_mah_cm2_{tag}"] = capacity_ah * 1e3 / (self.area_m2 * _CM2_PER_M2)
            values[f"energy_wh_{tag}"] = energy_wh
            values[f"energy_density_wh_l_{tag}"] = energy_wh / volume_l
        return CellResult(
            ok=not failures,
            reason="; ".join(failures),
            values=values,
            limits=limits,
            inputs=inputs,
        )

    def _discharge(
        self, inputs: dict[str, float], c_rate: float, rated_ah: float
    ) -> tuple[float, float, str]:
        """Capacity (Ah), energy (Wh) and the end of one constant-current discharge."""
        pybamm = _import_pybamm()
        t_end_s = _T_END * 3600 / c_rate
        try:
            solution = self._solver.solve(
                self.model, [0.0, t_end_s], inputs={**inputs, _CURRENT: c_rate * rated_ah}
            )
        except pybamm.SolverError as exc:
            message = " ".join(str(exc).split(" with inputs")[0].split())
            raise _DischargeFailed(f"solver failed: {message[:_REASON_CHARS]}") from None
        capacity_ah = float(solution[_CAPACITY].entries[-1])
        energy_wh = float(solution[_ENERGY].entries[-1])
        if not (math.isfinite(capacity_ah) and math.isfinite(energy_wh)):
            raise _DischargeFailed(
                f"the solution holds non-finite values (capacity {capacity_ah} Ah, "
                f"energy {energy_wh} Wh)"
            )
        end = solution.termination.removeprefix("event: ")
        if end not in _LIMITS:
            raise _DischargeFailed(
                f"the discharge ended by '{solution.termination}' after {capacity_ah:.4g} Ah, "
                "not at an end of discharge"
            )
        if capacity_ah < _MIN_UTILISATION * rated_ah:
            raise _DischargeFailed(
                f"the discharge ended at once ({_LIMITS[end]}, {capacity_ah:.3g} Ah of "
                f"{rated_ah:.3g} Ah rated): the electrode cannot carry this current"
            )
        return capacity_ah, energy_wh, _LIMITS[end]


def _bruggeman_tau(values: pybamm.ParameterValues, domain: str, phase: str) -> float:
    """Tortuosity factor equal to a parameter set's Bruggeman law: ε_k/τ = ε_k^b → τ = ε_k^(1−b).

    ``domain``: 'Negative electrode', 'Separator' or 'Positive electrode'; ``phase``:
    'electrolyte' (ε_k = porosity) or 'electrode' (ε_k = 1 − porosity).
    """
    porosity = values[f"{domain} porosity"]
    fraction = porosity if phase == "electrolyte" else 1 - porosity
    return fraction ** (1 - values[f"{domain} Bruggeman coefficient ({phase})"])
