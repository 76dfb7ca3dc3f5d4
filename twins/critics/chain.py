"""Multiscale chains: voxel metrics → transport → flow or cell model, one per material.

A chain is what campaigns and environments call: ``get_chain("electrode").evaluate(micro)``
returns every property with its unit, the named objectives, per-stage timings and the
resolution it scored at (τ depends on voxels per particle, so candidates are compared at one).
Transport wraps across the axes along which the structure is periodic
(``Microstructure.periodic``).

Axes are named by array index: x = 0, y = 1, z = 2 (z is through the thickness in every twin).
Keys: ``tau_<phase>_<axis>`` and ``deff_<phase>_<axis>`` (relative D_eff/D0) from the voxel
diffusion solver, ``sigma_eff_<phase>_<axis>_s_m`` from conduction, ``k_<axis>_m2`` from Stokes
flow, the cell model's ``capacity_ah_<rate>`` and ``energy_density_wh_l_<rate>``, and the
morphology keys of ``twins.critics.morphology``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from poreloop.registry import Registry
from poreloop.twins.critics.flow import permeability
from poreloop.twins.critics.morphology import morphology, phase_key
from poreloop.twins.critics.transport import conductivity, tortuosity
from poreloop.twins.errors import CriticError
from poreloop.twins.microstructure import Microstructure

if TYPE_CHECKING:
    from poreloop.twins.critics.surrogate import SurrogateChain

AXES = "xyz"

Properties = dict[str, float]
Stage = Callable[[Microstructure, Properties, Properties], Properties]
"""One step of a chain: (structure, what earlier stages found, diagnostics to add solver
reports to) → new properties."""

# Bulk conductivities (S/m). Electrode: NMC811 as in PyBaMM's Chen2020 set; carbon-black/PVDF
# composite about 10 S/m. SOFC at 800 °C: nickel (electronic) and 8YSZ (ionic).
SIGMA_ACTIVE_S_M = 0.18
SIGMA_CBD_S_M = 10.0
SIGMA_NI_S_M = 2.0e6
SIGMA_YSZ_S_M = 3.0

_RATE_TAG = re.compile(r"_\d+(p\d+)?c$")  # the C-rate a cell property was measured at
_UNITS = (
    ("_per_um2", "1/um^2"),
    ("_per_um", "1/um"),
    ("_um", "um"),
    ("_m2", "m^2"),
    ("_s_m", "S/m"),
    ("_mah_cm2", "mAh/cm^2"),
    ("_ah", "Ah"),
    ("_wh_l", "Wh/L"),
    ("_wh", "Wh"),
)


def unit_of(key: str) -> str:
    """The unit a property key carries in its name ("1" for dimensionless)."""
    stem = _RATE_TAG.sub("", key)
    return next((unit for suffix, unit in _UNITS if stem.endswith(suffix)), "1")


class ChainResult(BaseModel):
    """Everything one chain found for one structure.

    ``ok`` is False when a stage could not score the structure (e.g. the cell model failed
    to discharge it); ``reason`` says why, ``unfinished`` names that stage and the ones after
    it, which never ran, and every property computed before and by it stays in.
    ``unconverged`` names the solves that stopped at their iteration cap (diagnostics key → the
    residual they stopped at): their numbers are not to be used as clean ones, so ``problem``
    reports them to whoever consumes the result.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    chain: str
    properties: dict[str, float]
    objectives: dict[str, float]
    diagnostics: dict[str, float]
    timings_s: dict[str, float]
    voxel_size_um: float
    shape: tuple[int, ...]
    ok: bool = True
    reason: str = ""
    unfinished: tuple[str, ...] = ()
    unconverged: dict[str, float] = {}

    @property
    def converged(self) -> bool:
        return not self.unconverged

    @property
    def problem(self) -> str:
        """Why the numbers are not clean: the failed stage, else the unconverged solves; ""
        when the result is fit to use."""
        if not self.ok:
            return self.reason
        if self.unconverged:
            solves = ", ".join(
                f"{key} (residual {residual:.2g} after "
                f"{self.diagnostics.get(f'{key}_iterations', 0):.0f} iterations)"
                for key, residual in self.unconverged.items()
            )
            return f"the solver stopped at its iteration cap without converging: {solves}"
        return ""

    @property
    def units(self) -> dict[str, str]:
        return {key: unit_of(key) for key in self.properties}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: infinite values are written as the strings "inf" / "-inf"."""
        data = self.model_dump()
        for group in ("properties", "objectives", "diagnostics"):
            data[group] = {key: _json_number(value) for key, value in data[group].items()}
        data["units"] = self.units
        data["converged"] = self.converged
        return data


def _json_number(value: float) -> float | str:
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


class StageFailed(Exception):
    """A stage could not score the structure; the message is the reason, ``found`` what the
    stage computed before it failed (e.g. the C-rates a cell did discharge at)."""

    def __init__(self, reason: str, found: Properties | None = None) -> None:
        super().__init__(reason)
        self.found = found or {}


@dataclass(frozen=True)
class Chain:
    """Stages run in order on one structure; ``objectives`` maps a property to max or min."""

    name: str
    stages: Sequence[tuple[str, Stage]]
    objectives: Mapping[str, Literal["max", "min"]]
    phases: Sequence[str] = ()
    """Phase names the structure must have (by name, as in ``Microstructure.phases``)."""

    def evaluate(self, micro: Microstructure, thickness_um: float | None = None) -> ChainResult:
        """Score ``micro``; the box is a representative volume of a coating ``thickness_um``
        thick (else the recipe's ``thickness_um``, else the box height), reported as such."""
        if not isinstance(micro, Microstructure) or micro.labels.ndim != 3:
            got = getattr(micro, "shape", type(micro).__name__)
            raise CriticError(f"chain '{self.name}' scores 3D microstructures, got {got}")
        missing = [name for name in self.phases if name not in micro.phases.values()]
        if missing:
            raise CriticError(
                f"chain '{self.name}' needs phases named {list(self.phases)}, the structure has "
                f"{sorted(micro.phases.values())}; name them, e.g. --phases 0=pore,1=active,2=cbd"
            )
        if thickness_um is None:
            recorded = micro.provenance.recipe.get("thickness_um")
            thickness_um = float(recorded) if recorded is not None else None
        if thickness_um is None:
            thickness_um = micro.shape[2] * micro.voxel_size_um
        if not (
            isinstance(thickness_um, int | float)
            and math.isfinite(thickness_um)
            and thickness_um > 0
        ):
            raise CriticError(f"expected a positive thickness_um, got {thickness_um!r}")
        properties: Properties = {"thickness_um": float(thickness_um)}
        timings: dict[str, float] = {}
        diagnostics: Properties = {}
        reason = ""
        unfinished: tuple[str, ...] = ()
        for index, (stage_name, stage) in enumerate(self.stages):
            start = time.perf_counter()
            try:
                found = stage(micro, properties, diagnostics)
            except StageFailed as failure:
                reason = f"{stage_name}: {failure}"
                unfinished = tuple(name for name, _ in self.stages[index:])
                found = failure.found
            finally:
                timings[stage_name] = time.perf_counter() - start
            nan = sorted(key for key, value in found.items() if math.isnan(value))
            if nan:
                raise CriticError(f"stage '{stage_name}' of chain '{self.name}' gave NaN for {nan}")
            properties |= found
            if reason:
                break
        return ChainResult(
            chain=self.name,
            properties=properties,
            objectives={key: properties[key] for key in self.objectives if key in properties},
            diagnostics=diagnostics,
            timings_s=timings,
            voxel_size_um=micro.voxel_size_um,
            shape=micro.shape,
            ok=not reason,
            reason=reason,
            unfinished=unfinished,
            unconverged=_unconverged(diagnostics),
        )


def _record(diagnostics: Properties, key: str, result: Any) -> None:
    """Keep a solver's convergence report beside the property it gave."""
    diagnostics[f"{key}_iterations"] = float(result.iterations)
    diagnostics[f"{key}_residual"] = float(result.residual)
    diagnostics[f"{key}_converged"] = float(result.converged)


def _unconverged(diagnostics: Properties) -> dict[str, float]:
    """The solves ``_record`` saw stop at their cap: diagnostics key → final residual."""
    stems = [
        k.removesuffix("_converged")
        for k, v in diagnostics.items()
        if k.endswith("_converged") and not v
    ]
    return {stem: diagnostics[f"{stem}_residual"] for stem in stems}


def _cap(max_iterations: int | None) -> dict[str, Any]:
    """The solver option that caps iterations, left to the solver's default when None."""
    return {} if max_iterations is None else {"max_iterations": max_iterations}


def _axes(axes: Sequence[str]) -> list[tuple[int, str]]:
    bad = [a for a in axes if a not in AXES]
    if bad or not axes:
        raise CriticError(f"axes must be some of {list(AXES)}, got {list(axes)}")
    return [(AXES.index(a), a) for a in axes]


def morphology_stage(micro: Microstructure, _: Properties, __: Properties) -> Properties:
    return morphology(micro)


def diffusion_stage(
    phases: Sequence[str] | None, axes: Sequence[str], max_iterations: int | None = None
) -> Stage:
    """τ and D_eff/D0 of each named phase (all phases when None) along each axis."""

    def stage(micro: Microstructure, _: Properties, diagnostics: Properties) -> Properties:
        found: Properties = {}
        names = phases if phases is not None else list(micro.phases.values())
        for name in names:
            mask = micro.labels == micro.phase_id(name)
            for axis, letter in _axes(axes):
                result = tortuosity(mask, axis, periodic=micro.periodic, **_cap(max_iterations))
                key = f"{phase_key(name)}_{letter}"
                found[f"tau_{key}"] = result.tau
                found[f"deff_{key}"] = result.d_eff
                _record(diagnostics, f"tau_{key}", result)
        return found

    return stage


def solid_tortuosity_stage(axes: Sequence[str], max_iterations: int | None = None) -> Stage:
    """Geometric tortuosity factor ``tau_solid_<axis>`` of everything that is not pore."""

    def stage(micro: Microstructure, _: Properties, diagnostics: Properties) -> Properties:
        found: Properties = {}
        solid = micro.labels != micro.phase_id("pore")
        for axis, letter in _axes(axes):
            result = tortuosity(solid, axis, periodic=micro.periodic, **_cap(max_iterations))
            found[f"tau_solid_{letter}"] = result.tau
            _record(diagnostics, f"tau_solid_{letter}", result)
        return found

    return stage


def conduction_stage(
    label: str,
    sigmas_s_m: Mapping[str, float],
    axes: Sequence[str],
    max_iterations: int | None = None,
) -> Stage:
    """``sigma_eff_<label>_<axis>_s_m`` with a conductivity per named phase; phases the
    structure lacks are skipped, all others insulate."""

    def stage(micro: Microstructure, _: Properties, diagnostics: Properties) -> Properties:
        found: Properties = {}
        present = set(micro.phases.values())
        sigmas = {micro.phase_id(n): s for n, s in sigmas_s_m.items() if n in present}
        for axis, letter in _axes(axes):
            result = conductivity(
                micro.labels, sigmas, axis, periodic=micro.periodic, **_cap(max_iterations)
            )
            found[f"sigma_eff_{label}_{letter}_s_m"] = result.sigma_eff
            _record(diagnostics, f"sigma_eff_{label}_{letter}", result)
        return found

    return stage


def flow_stage(axes: Sequence[str], max_iterations: int | None = None) -> Stage:
    """Darcy permeability ``k_<axis>_m2`` of the pore space (Stokes flow)."""

    def stage(micro: Microstructure, _: Properties, diagnostics: Properties) -> Properties:
        found: Properties = {}
        pore = micro.labels == micro.phase_id("pore")
        for axis, letter in _axes(axes):
            result = permeability(pore, micro.voxel_size_um, axis, **_cap(max_iterations))
            found[f"k_{letter}_m2"] = result.k_m2
            _record(diagnostics, f"k_{letter}", result)
        return found

    return stage


def cell_stage(c_rates: Sequence[float]) -> Stage:
    """Discharge capacity and energy density of the structure as a cell's positive electrode.

    The DFN model is built on first use and re-solved for every later structure.
    """
    model = None

    def stage(micro: Microstructure, found: Properties, _: Properties) -> Properties:
        nonlocal model
        from poreloop.twins.critics.cell import CellModel

        for phase in ("pore", "solid"):
            if math.isinf(found[f"tau_{phase}_z"]):
                raise StageFailed(
                    f"the {phase} does not percolate through the thickness (tau_{phase}_z = inf)"
                )
        if model is None:
            model = CellModel(c_rates)
        result = model.evaluate(cell_properties(found))
        if not result.ok:
            raise StageFailed(result.reason, dict(result.values))
        return dict(result.values)

    return stage


CELL_INPUTS = {
    "porosity": "porosity",
    "fraction_active": "active_fraction",
    "fraction_cbd": "cbd_fraction",
    "tau_pore_z": "tau_pore_z",
    "tau_solid_z": "tau_solid_z",
    "ssa_active_per_um": "ssa_active_per_um",
    "thickness_um": "thickness_um",
}
"""The electrode chain's properties that its cell model reads → the cell model's names: effective
properties from the structure, the thickness from the coating it represents."""


def cell_properties(found: Properties) -> Properties:
    """The electrode chain's properties as ``CellModel.evaluate`` reads them (a structure
    without binder has a binder fraction of 0)."""
    found = {"fraction_cbd": 0.0, **found}
    return {name: found[key] for key, name in CELL_INPUTS.items()}


def _generic(axes: Sequence[str] = tuple(AXES), max_iterations: int | None = None) -> Chain:
    stages = (
        ("morphology", morphology_stage),
        ("diffusion", diffusion_stage(None, axes, max_iterations)),
    )
    return Chain("generic", stages, objectives={})


def _electrode(
    axes: Sequence[str] = ("z",),
    c_rates: Sequence[float] = (0.5, 1.0, 3.0),
    cell: bool = True,
    max_iterations: int | None = None,
) -> Chain:
    """``cell=False``: the structure's properties only, for a caller with its own cell model."""
    axes = sorted(set(axes) | {"z"}, key=AXES.index)  # the cell model needs through-thickness
    sigmas = {"active": SIGMA_ACTIVE_S_M, "cbd": SIGMA_CBD_S_M}
    stages: tuple[tuple[str, Stage], ...] = (
        ("morphology", morphology_stage),
        ("diffusion", diffusion_stage(["pore"], axes, max_iterations)),
        ("solid_tortuosity", solid_tortuosity_stage(axes, max_iterations)),
        ("conduction", conduction_stage("solid", sigmas, axes, max_iterations)),
    )
    if not cell:
        return Chain("electrode", stages, {}, ("pore", "active"))
    stages += (("cell", cell_stage(c_rates)),)
    return Chain("electrode", stages, {"energy_density_wh_l_1c": "max"}, ("pore", "active"))


def _gdl(axes: Sequence[str] = ("z", "x"), max_iterations: int | None = None) -> Chain:
    stages = (
        ("morphology", morphology_stage),
        ("diffusion", diffusion_stage(["pore"], axes, max_iterations)),
        ("flow", flow_stage(axes, max_iterations)),
    )
    return Chain("gdl", stages, {"k_z_m2": "max", "deff_pore_z": "max"}, ("pore",))


def _sofc_anode(axes: Sequence[str] = ("z",), max_iterations: int | None = None) -> Chain:
    stages = (
        ("morphology", morphology_stage),
        ("diffusion", diffusion_stage(["pore"], axes, max_iterations)),
        ("conduction_ni", conduction_stage("ni", {"ni": SIGMA_NI_S_M}, axes, max_iterations)),
        ("conduction_ysz", conduction_stage("ysz", {"ysz": SIGMA_YSZ_S_M}, axes, max_iterations)),
    )
    objectives: dict[str, Literal["max", "min"]] = {
        "tpb_active_per_um2": "max",
        "deff_pore_z": "max",
    }
    return Chain("sofc_anode", stages, objectives, ("pore", "ni", "ysz"))


CHAINS: Registry[Callable[..., Chain]] = Registry(
    "chain",
    CriticError,
    {"generic": _generic, "electrode": _electrode, "gdl": _gdl, "sofc_anode": _sofc_anode},
)


def get_chain(
    name: str, surrogate: Mapping[str, Any] | None = None, **options: Any
) -> Chain | SurrogateChain:
    """A fresh chain for a material (``options``: e.g. ``axes=("z", "x")``, ``c_rates``,
    ``max_iterations`` to cap every solve instead of the solvers' defaults); with
    ``surrogate`` (``model`` path, ``trust``, ``watch``: see ``SurrogateChain``) a neural
    critic answers for it where it is sure."""
    chain = CHAINS.lookup(name)(**options)
    if surrogate is None:
        return chain
    from poreloop.twins.critics.surrogate import SurrogateChain

    return SurrogateChain.open(chain, **surrogate)


__all__ = ["AXES", "CHAINS", "Chain", "ChainResult", "StageFailed", "get_chain", "unit_of"]
