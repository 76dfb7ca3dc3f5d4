"""A simulated electrode-fabrication robot: mix, coat, dry and calender one sample per run.

The real sample is made by the same ``li_ion_electrode`` twin the agent screens with, but the
lab is not the twin: hidden process offsets (``DEFAULT_HIDDEN``: the real calender squeezes
0.03 more than set, 2 % of the active material is lost in mixing, the real powder is 8 %
coarser) make a systematic twin/lab discrepancy the agent must learn, and batch-to-batch
Gaussian jitter (``BATCH_JITTER``) makes two runs of one recipe differ. The true recipe is
then folded back into what the process can make (the twin's bounds, the densest packing).
The coater lays the wet film the set recipe asks for, so the true calendered thickness is the
set dried thickness squeezed by the true compression; drying takes that wet film over the
drying rate, and the stored structure is a representative box of the coating (its voxels
never set the thickness).

Manufacturing failures, each drawn with a probability rising smoothly (logistic) past a
threshold of the true recipe: cracking from over-calendering or from fast drying (which
stresses the film), carved into the structure as vertical cracks from the free surface; and
delamination at low binder (CBD) content, a detached gap over part of the current collector
(DELAMINATED_SHARE). A run is seeded by (seed, run number); its number is counted durably
before anything moves.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model
from scipy.ndimage import gaussian_filter

from poreloop.instruments.base import Action, ActionContext, Limit
from poreloop.instruments.errors import ErrorCode, InstrumentError, InvalidRequest
from poreloop.instruments.sim.inspector import pinholes_per_cm2
from poreloop.instruments.sim.lab import (
    SAMPLE_COUNTER,
    LabInstrument,
    next_run,
    run_count,
    save_sample,
)
from poreloop.twins import get_twin
from poreloop.twins.errors import TwinError
from poreloop.twins.manufacturing.electrode import (
    MAX_SOLID_FRACTION,
    MIN_PARTICLE_VOXELS,
    PORE,
    dried_thickness_um,
    wet_film_um,
)
from poreloop.twins.microstructure import Provenance
from poreloop.twins.space import Continuous, Recipe

TWIN = get_twin("li_ion_electrode")

DEFAULT_HIDDEN: dict[str, float] = {
    "compression_offset": 0.03,
    "active_fraction_factor": 0.98,
    "particle_radius_factor": 1.08,
}
"""The lab's systematic departures from the twin: added to the set compression, multiplying
the set active fraction and the set particle radius."""

BATCH_JITTER: dict[str, tuple[float, float]] = {
    "active_fraction": (0.0, 0.01),
    "particle_radius_um": (0.0, 0.02),
    "particle_radius_spread": (0.01, 0.0),
    "cbd_fraction": (0.0, 0.03),
    "drying_rate_um_s": (0.0, 0.05),
    "compression": (0.005, 0.0),
}
"""Batch-to-batch scatter per recipe parameter: (absolute, relative) standard deviations."""

CRACK_COMPRESSION = 0.33
"""True calendering compression at which half the coatings crack."""
CRACK_COMPRESSION_WIDTH = 0.02
CRACK_DRYING_RATE_UM_S = 3.0
"""True drying rate at which half the coatings crack (capillary stress beats the binder)."""
CRACK_DRYING_LOG_WIDTH = 0.15
"""Logistic width of the drying onset in ln(drying rate)."""
CRACK_DENSITY_AT_ONSET_PER_MM2 = 150.0
"""Crack density of a coating that cracks at the onset; it grows with the excess past it."""
CRACK_DENSITY_SCATTER = 0.3
"""Log-normal scatter of the crack density between coatings of one recipe."""
CRACK_WIDTH_UM = 0.8
DELAMINATION_CBD = 0.025
"""True CBD fraction below which the coating lifts off the collector half the time."""
DELAMINATION_CBD_WIDTH = 0.006
DELAMINATED_SHARE = (0.1, 0.5)
"""Range of the collector area a delaminating coating loses (drawn uniformly)."""
DELAMINATION_PATCH_UM = 3.0
"""Correlation length of the detached patches at the current collector."""

MIXING_S = 600.0
CALENDERING_S = 120.0


def _param_field(p: Continuous) -> Any:
    unit = "" if p.unit == "1" else f", {p.unit}"
    return (float, Field(default=p.default, description=f"{p.description}{unit}"))


FabricateParams: type[BaseModel] = create_model(
    "FabricateParams",
    __config__=ConfigDict(extra="forbid"),
    **{p.name: _param_field(p) for p in TWIN.space.parameters if isinstance(p, Continuous)},
)
FabricateParams.__doc__ = "The li_ion_electrode recipe; parameters left out take the default."


class FabricateResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample_id: str = Field(description="id of the new sample, for inspector, xrd, tomograph")
    status: str = Field(description="ok | cracked | delaminated")
    duration_s: float = Field(description="simulated process time, s")


def logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def crack_drives(recipe: Recipe) -> tuple[float, float]:
    """How far the true recipe is past the calendering and the drying cracking onsets, in
    logistic widths (0 at an onset, negative below it)."""
    by_calendering = (float(recipe["compression"]) - CRACK_COMPRESSION) / CRACK_COMPRESSION_WIDTH
    by_drying = (
        math.log(float(recipe["drying_rate_um_s"]) / CRACK_DRYING_RATE_UM_S)
        / CRACK_DRYING_LOG_WIDTH
    )
    return by_calendering, by_drying


def crack_probability(recipe: Recipe) -> float:
    """Chance that a coating of the true recipe cracks: calendering or drying, independently."""
    by_calendering, by_drying = crack_drives(recipe)
    return 1.0 - (1.0 - logistic(by_calendering)) * (1.0 - logistic(by_drying))


def delamination_probability(recipe: Recipe) -> float:
    """Chance that a coating of the true recipe lifts off: too little binder to hold it."""
    return logistic((DELAMINATION_CBD - float(recipe["cbd_fraction"])) / DELAMINATION_CBD_WIDTH)


def carve_cracks(labels: np.ndarray, voxel_um: float, n: int, rng: np.random.Generator) -> None:
    """Open ``n`` straight vertical cracks from the free surface (z = nz - 1) down, in place.

    Each crack is a plane at a random in-plane angle and position, CRACK_WIDTH_UM wide (at least
    a voxel), reaching a random 50-100 % of the thickness. labels: ``(nx, ny, nz)`` uint8.
    """
    nx, ny, nz = labels.shape
    x, y = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    half_width = max(CRACK_WIDTH_UM / voxel_um, 1.0) / 2
    for angle, x0, y0, depth in zip(
        rng.uniform(0, np.pi, n),
        rng.uniform(0, nx, n),
        rng.uniform(0, ny, n),
        rng.uniform(0.5, 1.0, n),
        strict=True,
    ):
        gap = np.abs((x - x0) * np.cos(angle) + (y - y0) * np.sin(angle)) <= half_width
        labels[:, :, nz - int(math.ceil(depth * nz)) :][gap] = PORE


def carve_delamination(
    labels: np.ndarray, voxel_um: float, fraction: float, rng: np.random.Generator
) -> float:
    """Detach patches covering ``fraction`` of the collector (the z = 0 layer), in place.

    Patches are a smoothed random field cut at its quantile, so they are blobs of about
    DELAMINATION_PATCH_UM. Returns the detached share actually carved. labels: ``(nx, ny, nz)``.
    """
    noise = gaussian_filter(
        rng.standard_normal(labels.shape[:2]), DELAMINATION_PATCH_UM / voxel_um, mode="wrap"
    )
    detached = noise >= np.quantile(noise, 1.0 - fraction)
    labels[:, :, 0][detached] = PORE
    return float(detached.mean())


class SimRobot(LabInstrument):
    """Electrode fabrication in a simulated lab at ``lab_dir``.

    ``hidden`` overrides keys of DEFAULT_HIDDEN; ``batch_noise`` scales BATCH_JITTER (0: none);
    ``box_voxels`` is the edge of the stored structure (the in-plane edges grow to hold three
    particle radii); ``time_scale`` is wall seconds per simulated second.
    """

    kind: ClassVar[str] = "robot"
    actions: ClassVar[dict[str, Action]] = {
        "fabricate": Action(
            params=FabricateParams,
            result=FabricateResult,
            limits=(
                Limit("compression", high=0.4, why="the calender's smallest roll gap"),
                Limit(
                    "drying_rate_um_s",
                    high=5.0,
                    unit="um/s",
                    why="the dryer's hottest air at full flow",
                ),
            ),
            description="mix, coat, dry and calender an electrode from a li_ion_electrode recipe",
        )
    }

    def __init__(
        self,
        lab_dir: str | Path,
        seed: int = 0,
        time_scale: float = 1.0,
        box_voxels: int = 48,
        hidden: dict[str, float] | None = None,
        batch_noise: float = 1.0,
    ) -> None:
        unknown = sorted(set(hidden or {}) - set(DEFAULT_HIDDEN))
        if unknown:
            raise InstrumentError(
                f"unknown hidden offsets {unknown}; expected keys of {sorted(DEFAULT_HIDDEN)}"
            )
        super().__init__(lab_dir, seed, time_scale)
        self.box_voxels = box_voxels
        self.hidden = {**DEFAULT_HIDDEN, **(hidden or {})}
        self.batch_noise = batch_noise

    def runs(self) -> int:
        """How many fabrications have started in this lab."""
        return run_count(self.lab_dir, SAMPLE_COUNTER)

    def validate(self, action: str, params: dict[str, Any]) -> BaseModel:
        """Schema and safety limits first, then the recipe against the twin's parameter space."""
        parsed = super().validate(action, params)
        try:
            TWIN.space.validate(parsed.model_dump())
        except TwinError as error:
            raise InvalidRequest(
                f"{self.kind}.{action} recipe is not one the process can make: {error}",
                ErrorCode.invalid_params,
            ) from None
        return parsed

    def true_recipe(self, recipe: Recipe, rng: np.random.Generator) -> Recipe:
        """What the line actually makes of a set recipe: hidden offsets, then batch jitter,
        then folded into the twin's bounds and the densest packing (the calender stalls)."""
        real = dict(recipe)
        real["compression"] = float(real["compression"]) + self.hidden["compression_offset"]
        real["active_fraction"] = (
            float(real["active_fraction"]) * self.hidden["active_fraction_factor"]
        )
        real["particle_radius_um"] = (
            float(real["particle_radius_um"]) * self.hidden["particle_radius_factor"]
        )
        for name, (absolute, relative) in BATCH_JITTER.items():
            sigma = self.batch_noise * (absolute + relative * abs(float(real[name])))
            real[name] = float(real[name]) + float(rng.normal(0.0, 1.0)) * sigma
        for name in TWIN.space.names:
            real[name] = TWIN.space.clip(name, float(real[name]))
        real["particle_radius_um"] = max(
            real["particle_radius_um"], MIN_PARTICLE_VOXELS * real["voxel_size_um"]
        )
        densest = 1.0 - (real["active_fraction"] + real["cbd_fraction"]) / MAX_SOLID_FRACTION
        real["compression"] = min(real["compression"], densest)
        # the coater lays the dried thickness the set recipe asks for; the calender then
        # squeezes it by the true compression, so an offset there shows in the thickness
        thickness = dried_thickness_um(recipe) * (1.0 - real["compression"])
        real["thickness_um"] = TWIN.space.clip("thickness_um", thickness)
        return TWIN.space.validate(real)

    def _fabricate(self, params: BaseModel, ctx: ActionContext) -> FabricateResult:
        recipe = TWIN.space.validate(params.model_dump())
        run = next_run(self.lab_dir, SAMPLE_COUNTER)
        rng = np.random.default_rng([self.seed, run])
        real = self.true_recipe(recipe, rng)
        drying_s = wet_film_um(real) / float(real["drying_rate_um_s"])
        duration = MIXING_S + drying_s + CALENDERING_S
        ctx.pass_time(duration * self.time_scale)

        voxel = float(real["voxel_size_um"])
        edge = max(self.box_voxels, math.ceil(3 * float(real["particle_radius_um"]) / voxel))
        structure_seed = int(rng.integers(2**31))
        micro = TWIN.generate(real, shape=(edge, edge, self.box_voxels), seed=structure_seed)
        labels = micro.labels.copy()

        status, crack_density, delamination = "ok", 0.0, 0.0
        if rng.uniform() < delamination_probability(real):
            status = "delaminated"
            share = rng.uniform(*DELAMINATED_SHARE)
            delamination = carve_delamination(labels, voxel, share, rng)
        if rng.uniform() < crack_probability(real):
            status = "cracked"
            crack_density = (
                CRACK_DENSITY_AT_ONSET_PER_MM2
                * (1.0 + max(*crack_drives(real), 0.0))
                * float(rng.lognormal(0.0, CRACK_DENSITY_SCATTER))
            )
            area_mm2 = edge * edge * (voxel * 1e-3) ** 2
            carve_cracks(labels, voxel, max(1, int(rng.poisson(crack_density * area_mm2))), rng)
        sample = replace(
            micro,
            labels=labels,
            provenance=Provenance(
                twin=TWIN.name,
                recipe=recipe,
                seed=structure_seed,
                version=micro.provenance.version,
                source=f"simulated lab robot at {self.lab_dir}, run {run}",
            ),
        )
        truth = {
            "true_recipe": real,
            "seed": structure_seed,
            "defects": {
                "crack_density_per_mm2": crack_density,
                "delamination_fraction": delamination,
                "pinholes_per_cm2": pinholes_per_cm2(sample, real["thickness_um"]),
            },
        }
        record = {"recipe": recipe, "status": status}
        sample_id = save_sample(self.lab_dir, sample, record, truth, run=run)
        return FabricateResult(sample_id=sample_id, status=status, duration_s=duration)
