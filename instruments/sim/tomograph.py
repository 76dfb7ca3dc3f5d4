"""A simulated X-ray tomograph: a sample's true structure → a grey-value stack with artefacts.

The image formation (attenuation, partial volume, blur, noise, rings) is the CT physics of
``instruments.tomography``; this instrument adds the scan time, the run counter and the sample
store. The stack is written as an ImageJ uint16 TIFF to ``lab_dir/scans/<scan_id>.tif``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from poreloop.instruments.base import Action, ActionContext, Limit
from poreloop.instruments.errors import ErrorCode, InvalidRequest, RefusedError
from poreloop.instruments.sim.lab import LabInstrument, load_sample
from poreloop.instruments.tomography import noise_sigma, render, write_scan
from poreloop.twins.critics.segmentation import ATTENUATION

PROJECTIONS = 1201
READOUT_S = 0.1
SETUP_S = 120.0


class ScanParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample_id: str = Field(description="id the robot's fabricate returned, e.g. S00001")
    voxel_size_um: float = Field(
        gt=0, description="scan voxel edge, µm; not finer than the sample's own voxel size"
    )
    exposure_s: float = Field(
        gt=0, default=1.0, description="exposure per projection, s; noise σ ∝ 1/√exposure_s"
    )
    ring_artefacts: bool = Field(
        default=False, description="simulate an uncalibrated detector (ring artefacts)"
    )


class ScanResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scan_id: str
    sample_id: str
    path: str = Field(description="uint16 ImageJ TIFF of the grey-value stack")
    shape: tuple[int, int, int]
    voxel_size_um: float
    snr: float = Field(description="NMC/pore grey contrast over the noise σ")
    duration_s: float = Field(description="simulated scan time, s")
    run: int


class SimTomograph(LabInstrument):
    """X-ray CT of lab samples; ``time_scale`` wall seconds per simulated second."""

    kind: ClassVar[str] = "tomograph"
    actions: ClassVar[dict[str, Action]] = {
        "scan": Action(
            params=ScanParams,
            result=ScanResult,
            limits=(
                Limit("voxel_size_um", low=0.05, high=10.0, unit="um", why="optics of the CT"),
                Limit("exposure_s", high=10.0, unit="s", why="dose heats and damages the binder"),
            ),
            description="scan a sample and write its grey-value stack to lab_dir/scans",
        )
    }

    def _scan(self, params: ScanParams, ctx: ActionContext) -> ScanResult:
        micro, _ = load_sample(self.lab_dir, params.sample_id)
        if params.voxel_size_um < micro.voxel_size_um * (1 - 1e-6):
            raise RefusedError(
                f"tomograph.scan refused: voxel_size_um={params.voxel_size_um} is finer than "
                f"sample {params.sample_id}'s own voxel size {micro.voxel_size_um} um; ask for "
                f"at least {micro.voxel_size_um} um"
            )
        unknown = sorted(set(micro.phases.values()) - set(ATTENUATION))
        if unknown:
            raise InvalidRequest(
                f"tomograph.scan cannot render phases {unknown} of sample {params.sample_id}; "
                f"known phases: {sorted(ATTENUATION)}",
                ErrorCode.invalid_params,
            )
        duration_s = SETUP_S + PROJECTIONS * (params.exposure_s + READOUT_S)
        rng, run = self.start_run(ctx, duration_s)
        grey = render(micro, params.voxel_size_um, params.exposure_s, rng, params.ring_artefacts)
        scan_id = f"T{run:05d}"
        path = self.lab_dir / "scans" / f"{scan_id}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_scan(path, grey, params.voxel_size_um, params.sample_id)
        contrast = ATTENUATION["active"] - ATTENUATION["pore"]
        return ScanResult(
            scan_id=scan_id,
            sample_id=params.sample_id,
            path=str(path),
            shape=grey.shape,
            voxel_size_um=params.voxel_size_um,
            snr=contrast / noise_sigma(params.exposure_s),
            duration_s=duration_s,
            run=run,
        )
