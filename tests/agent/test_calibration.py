"""Calibration recovers the simulated robot's hidden process offsets from what a lab measures.

The test may know the hidden offsets (it asks the simulated lab for them); the calibration
sees only gauged thicknesses, weighed loadings and segmented scans.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from poreloop.agent.calibration import (
    ACTIVE,
    COMPRESSION,
    PARTICLE,
    Calibration,
    MeasuredSample,
    fit,
    structure_metrics,
)
from poreloop.envs.design import design_space
from poreloop.instruments.base import ActionContext
from poreloop.instruments.sim.inspector import SimInspector
from poreloop.instruments.sim.robot import DEFAULT_HIDDEN, SimRobot
from poreloop.instruments.sim.tomograph import SimTomograph
from poreloop.twins import get_twin
from poreloop.twins.critics.morphology import morphology
from poreloop.twins.critics.segmentation import segment_file
from poreloop.twins.manufacturing.electrode import ElectrodeTwin

VOXEL_UM = 0.5
SAMPLES = 6
"""Intact samples the tolerances below hold after."""
TOLERANCE = {COMPRESSION.name: 0.01, ACTIVE.name: 0.02, PARTICLE.name: 0.05}
"""Gauge (0.5 um on ~70 um) and balance (0.5 %) scatter plus the robot's batch jitter give
about ±0.006 and ±0.01 per sample on the first two; the particle size the scans see varies
~10 % between small boxes, so its median over six samples is good to about ±5 %."""


def _run(instrument, action: str, params: dict) -> dict:
    return instrument.perform(action, instrument.validate(action, params), ActionContext())


def measured_samples(lab: Path, n: int) -> list[MeasuredSample]:
    robot, inspector, tomograph = (
        SimRobot(lab, seed=3, time_scale=0),
        SimInspector(lab, time_scale=0),
        SimTomograph(lab, time_scale=0),
    )
    twin = get_twin("li_ion_electrode")
    space = design_space(
        twin.space,
        {"voxel_size_um": VOXEL_UM},
        bounds={
            "compression": (0.0, 0.25),
            "drying_rate_um_s": (0.05, 2.0),
            "cbd_fraction": (0.05, 0.25),
            "particle_radius_um": (1.0, 5.0),
        },
    )
    samples = []
    for i, recipe in enumerate(space.sample(3 * n, seed=5)):
        recipe = {**recipe, "voxel_size_um": VOXEL_UM}
        made = _run(robot, "fabricate", recipe)
        if made["status"] != "ok":
            continue
        seen = _run(inspector, "inspect", {"sample_id": made["sample_id"]})
        scan = _run(tomograph, "scan", {"sample_id": made["sample_id"], "voxel_size_um": VOXEL_UM})
        micro = segment_file(scan["path"], ElectrodeTwin.phases)
        samples.append(
            MeasuredSample(
                recipe,
                seen["thickness_um"],
                seen["loading_mg_cm2"],
                structure_metrics(morphology(micro)),
                micro.shape,
                VOXEL_UM,
                1.0,
                seed=i,
            )
        )
        if len(samples) == n:
            return samples
    raise AssertionError(f"the robot made fewer than {n} intact samples")


@pytest.mark.slow
def test_calibration_recovers_the_hidden_offsets(tmp_path: Path) -> None:
    calibration = fit(get_twin("li_ion_electrode"), measured_samples(tmp_path, SAMPLES))
    truth = {
        COMPRESSION.name: DEFAULT_HIDDEN["compression_offset"],
        ACTIVE.name: DEFAULT_HIDDEN["active_fraction_factor"],
        PARTICLE.name: DEFAULT_HIDDEN["particle_radius_factor"],
    }
    for name, value in truth.items():
        assert calibration.offsets[name] == pytest.approx(value, abs=TOLERANCE[name]), name
    assert calibration.samples == SAMPLES


def test_too_few_samples_leave_the_twin_as_it_is() -> None:
    twin = get_twin("li_ion_electrode")
    assert fit(twin, []) == Calibration()
    assert fit(get_twin("gdl"), []) == Calibration()


def test_an_applied_calibration_stays_a_recipe_the_twin_can_make() -> None:
    twin = get_twin("li_ion_electrode")
    dense = twin.space.complete({"active_fraction": 0.6, "cbd_fraction": 0.2, "compression": 0.05})
    offsets = {COMPRESSION.name: 0.1, ACTIVE.name: 1.2, PARTICLE.name: 1.25}
    made = Calibration(offsets).apply(dense, twin.name, twin.space)
    assert twin.space.is_feasible(made)  # the calender stalls at the densest packing
    assert made["compression"] > dense["compression"]
    assert made["thickness_um"] < dense["thickness_um"]  # harder calendering, thinner coating
