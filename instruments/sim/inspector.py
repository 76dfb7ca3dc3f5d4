"""A simulated optical defect inspector: light table and microscope over a fabricated coating.

It weighs the coating (active loading, a balance's scatter ``LOADING_NOISE``) and gauges its
thickness (a micrometer's scatter ``THICKNESS_NOISE_UM``), as every electrode line does; it
reports crack density and delaminated area from the sample's truth with a counting noise,
and counts pinholes itself from the true structure: a pinhole is a line of sight through the
whole coating (columns of pore voxels along the thickness, axis 2) wide enough for the optics
to resolve, which is what transmitted light on a light table reveals. The noise comes from a
generator seeded by (seed, run), so a replayed lab reads the same numbers. A sample passes when
every defect is below its acceptance limit (``MAX_*``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

from poreloop.instruments.base import Action, ActionContext
from poreloop.instruments.sim.lab import LabInstrument, load_sample
from poreloop.twins.manufacturing.electrode import active_loading_mg_cm2
from poreloop.twins.microstructure import Microstructure

UM2_PER_CM2 = 1e8
COUNT_NOISE = 0.10
"""Relative (log-normal) scatter of a counted density: field-of-view sampling."""
AREA_NOISE = 0.01
"""Absolute scatter of the delaminated area fraction read from the images."""
PINHOLE_MIN_RADIUS_UM = 1.0
"""Narrowest open line of sight the light table resolves (a 2 um hole)."""
MAX_CRACKS_PER_MM2 = 1.0
MAX_DELAMINATION_FRACTION = 0.02
MAX_PINHOLES_PER_CM2 = 1.0
INSPECT_S = 180.0
THICKNESS_NOISE_UM = 0.5
LOADING_NOISE = 0.005
"""Relative scatter of the loading: the balance and the punched disc's area."""


def pinholes_per_cm2(micro: Microstructure, thickness_um: float | None = None) -> float:
    """Line-of-sight holes through the coating per cm² of its face.

    Columns along axis 2 that are pore over the whole box, in open patches holding a disc of
    PINHOLE_MIN_RADIUS_UM, grouped into in-plane (4-connected) holes. labels ``(nx, ny, nz)``,
    pore id 0. The box is a representative volume: a coating ``thickness_um`` thick is a stack
    of about ``thickness_um / box height`` independent such layers, and a hole must pass all of
    them, so the count falls by the open share of the face to the power of the extra layers.
    """
    open_columns = np.all(micro.labels == 0, axis=2)
    clearance_um = ndimage.distance_transform_edt(open_columns) * micro.voxel_size_um
    passable = clearance_um >= PINHOLE_MIN_RADIUS_UM
    holes = ndimage.label(passable)[1]
    area_um2 = micro.shape[0] * micro.shape[1] * micro.voxel_size_um**2
    height_um = micro.shape[2] * micro.voxel_size_um
    layers = max((thickness_um or height_um) / height_um, 1.0)
    return holes * UM2_PER_CM2 / area_um2 * float(passable.mean()) ** (layers - 1.0)


class InspectParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample_id: str = Field(description="id returned by robot.fabricate, e.g. S00001")


class InspectResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample_id: str
    cracks_per_mm2: float = Field(description="surface cracks counted per mm² of coating")
    delamination_fraction: float = Field(description="share of the collector area detached")
    pinholes_per_cm2: float = Field(description="through-coating holes per cm²")
    thickness_um: float = Field(description="calendered coating thickness (micrometer), um")
    loading_mg_cm2: float = Field(description="active material mass per area, mg/cm²")
    passed: bool = Field(description="every defect below its acceptance limit")
    run: int = Field(description="1-based count of inspections in this lab")


class SimInspector(LabInstrument):
    """Defect inspection of a lab sample; ``time_scale`` wall seconds per simulated second."""

    kind: ClassVar[str] = "inspector"
    actions: ClassVar[dict[str, Action]] = {
        "inspect": Action(
            params=InspectParams,
            result=InspectResult,
            description="image a sample for cracks, delamination and pinholes; pass or fail it",
        )
    }

    def _inspect(self, params: InspectParams, ctx: ActionContext) -> InspectResult:
        micro, meta = load_sample(self.lab_dir, params.sample_id)
        rng, run = self.start_run(ctx, INSPECT_S, steps=10)
        scatter = rng.lognormal(0.0, COUNT_NOISE, size=2)
        true_recipe = meta["true_recipe"]
        thickness = float(true_recipe["thickness_um"]) + rng.normal(0.0, THICKNESS_NOISE_UM)
        loading = active_loading_mg_cm2(true_recipe) * rng.normal(1.0, LOADING_NOISE)
        cracks = float(meta["defects"]["crack_density_per_mm2"]) * scatter[0]
        delamination = float(meta["defects"]["delamination_fraction"])
        if delamination > 0:
            delamination = float(np.clip(delamination + rng.normal(0.0, AREA_NOISE), 0.0, 1.0))
        pinholes = pinholes_per_cm2(micro, true_recipe["thickness_um"]) * scatter[1]
        return InspectResult(
            sample_id=params.sample_id,
            cracks_per_mm2=cracks,
            delamination_fraction=delamination,
            pinholes_per_cm2=pinholes,
            thickness_um=thickness,
            loading_mg_cm2=loading,
            passed=cracks < MAX_CRACKS_PER_MM2
            and delamination < MAX_DELAMINATION_FRACTION
            and pinholes < MAX_PINHOLES_PER_CM2,
            run=run,
        )
