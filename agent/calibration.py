"""Calibrating the twin to the lab: its process offsets fitted to what the lab measured.

A real line does not make exactly the recipe it is given: the calender squeezes more than set,
some active material is lost in mixing, the powder is coarser than its datasheet. Each of
these is a process offset on a twin parameter (added, or multiplying it), and each is fitted
to the measurement that sees it best:

- the calender's offset to the coating's thickness (a micrometer): calendering keeps the mass,
  so the made thickness is the dried thickness times (1 − true compression);
- the active-material factor to the active loading (a balance): loading = active fraction ×
  dried thickness × the active material's density;
- the particle-size factor to the tomograph's scans: for every scanned sample the twin makes
  the same recipe under the fitted offsets and the CT's own image formation
  (``instruments.tomography``) scans it virtually, so scan and twin are segmented alike and
  the segmentation's bias cancels; the factor scales until the particle size seen in the
  active surface (3·φ_active / s_active) agrees in the median.

Later screening generates ``calibration.apply(recipe)``: the twin then predicts what the lab
will make of a recipe, not what the recipe says.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from poreloop.twins.manufacturing.electrode import dried_thickness_um
from poreloop.twins.space import ParameterSpace, Recipe


@dataclass(frozen=True)
class Offset:
    """How the process departs from one twin parameter: ``add`` a shift or ``scale`` it."""

    parameter: str
    kind: Literal["add", "scale"]
    low: float
    high: float

    @property
    def neutral(self) -> float:
        return 0.0 if self.kind == "add" else 1.0

    @property
    def name(self) -> str:
        return f"{self.parameter}_{'offset' if self.kind == 'add' else 'factor'}"


COMPRESSION = Offset("compression", "add", -0.1, 0.1)
ACTIVE = Offset("active_fraction", "scale", 0.8, 1.2)
PARTICLE = Offset("particle_radius_um", "scale", 0.8, 1.25)
PROCESS_OFFSETS: dict[str, tuple[Offset, ...]] = {
    "li_ion_electrode": (COMPRESSION, ACTIVE, PARTICLE)
}
"""The process offsets a campaign fits, per twin (a twin not listed is not calibrated)."""

MIN_SAMPLES = 2
"""Samples measured before the offsets are fitted."""
RADIUS_ITERATIONS = 2
"""Fixed-point steps for the particle-size factor: the size the scans see grows about in
proportion to the set radius, so each step scales the factor by the median lab/twin ratio
(the median: one odd structure in a small box must not drag the fit)."""


@dataclass(frozen=True)
class Calibration:
    """Fitted offsets (name → value), how well they fit, and from how many samples."""

    offsets: dict[str, float] = field(default_factory=dict)
    misfit: float = math.nan
    samples: int = 0

    def apply(self, recipe: Recipe, twin: str, space: ParameterSpace) -> Recipe:
        """What the lab makes of ``recipe``: the offsets applied within the twin's bounds, and
        pulled back towards the set recipe as far as its linear constraints need (a calender
        stalls at the densest packing rather than making an impossible electrode). A coating
        calendered harder comes out thinner: its mass is kept."""
        shifted = dict(recipe)
        for offset in PROCESS_OFFSETS.get(twin, ()):
            value = self.offsets.get(offset.name, offset.neutral)
            set_value = float(recipe[offset.parameter])
            moved = set_value + value if offset.kind == "add" else set_value * value
            shifted[offset.parameter] = space.clip(offset.parameter, moved)
        if not space.is_feasible(shifted):
            low, high = 0.0, 1.0
            for _ in range(30):
                mid = (low + high) / 2
                trial = _towards(recipe, shifted, mid)
                low, high = (mid, high) if space.is_feasible(trial) else (low, mid)
            shifted = _towards(recipe, shifted, low)
        if "thickness_um" in recipe and "compression" in recipe:
            made = dried_thickness_um(recipe) * (1.0 - float(shifted["compression"]))
            shifted["thickness_um"] = space.clip("thickness_um", made)
        return shifted


def _towards(start: Recipe, end: Recipe, t: float) -> Recipe:
    """The recipe a share ``t`` of the way from ``start`` to ``end`` (numeric values only)."""
    return {
        name: value + t * (end[name] - value) if isinstance(value, int | float) else value
        for name, value in start.items()
    }


def structure_metrics(properties: Mapping[str, float]) -> dict[str, float]:
    """The metrics calibration compares, from ``morphology`` properties of a segmented stack."""
    ssa = properties.get("ssa_active_per_um", 0.0)
    return {
        "porosity": properties["porosity"],
        "fraction_active": properties["fraction_active"],
        "radius_um": 3.0 * properties["fraction_active"] / ssa if ssa > 0 else math.nan,
    }


@dataclass(frozen=True)
class MeasuredSample:
    """One lab sample as calibration sees it: the set recipe, its gauged thickness and weighed
    loading, its scan's metrics, and how to scan its twin alike."""

    recipe: Recipe
    thickness_um: float
    loading_mg_cm2: float
    metrics: dict[str, float]
    shape: tuple[int, int, int]
    voxel_size_um: float
    exposure_s: float
    seed: int
    segmentation: str = "tomograph"
    """The method that segmented its scan (``segmentation.segment``): the twin's is segmented
    the same way, so the bias cancels."""


def virtual_scan_metrics(
    twin: Any, recipe: Recipe, sample: MeasuredSample, rng: np.random.Generator
) -> dict[str, float]:
    """The metrics of the twin's structure for ``recipe``, scanned and segmented as the lab's."""
    from poreloop.instruments.tomography import render
    from poreloop.twins.critics.morphology import morphology
    from poreloop.twins.critics.segmentation import segment

    shape = sample.shape
    if "particle_radius_um" in recipe:  # the in-plane box must hold three particle radii
        edge = math.ceil(3 * float(recipe["particle_radius_um"]) / sample.voxel_size_um)
        shape = (max(shape[0], edge), max(shape[1], edge), shape[2])
    micro = twin.generate(recipe, shape=shape, seed=sample.seed)
    grey = render(micro, sample.voxel_size_um, sample.exposure_s, rng)
    scanned = segment(grey, twin.phases, sample.voxel_size_um, sample.segmentation)
    return structure_metrics(morphology(scanned))


def fit(twin: Any, samples: Sequence[MeasuredSample]) -> Calibration:
    """The offsets that explain the lab's thicknesses, loadings and scans (see the module).

    Needs MIN_SAMPLES samples; with fewer, or for a twin without offsets, the neutral one.
    """
    from poreloop.twins.manufacturing.electrode import active_loading_mg_cm2

    if twin.name not in PROCESS_OFFSETS or len(samples) < MIN_SAMPLES:
        return Calibration()
    squeeze = [
        (1.0 - float(s.recipe["compression"]))
        * (1.0 - s.thickness_um / float(s.recipe["thickness_um"]))
        for s in samples
    ]
    factor = [s.loading_mg_cm2 / active_loading_mg_cm2(s.recipe) for s in samples]
    offsets = {
        COMPRESSION.name: float(np.clip(np.median(squeeze), COMPRESSION.low, COMPRESSION.high)),
        ACTIVE.name: float(np.clip(np.median(factor), ACTIVE.low, ACTIVE.high)),
    }

    radius_factor, logs = PARTICLE.neutral, np.zeros(len(samples))
    for _ in range(RADIUS_ITERATIONS):
        trial = Calibration({**offsets, PARTICLE.name: radius_factor})
        logs = np.array([_log_radius_ratio(twin, trial, sample) for sample in samples])
        radius_factor = float(
            np.clip(radius_factor * math.exp(np.median(logs)), PARTICLE.low, PARTICLE.high)
        )
    offsets[PARTICLE.name] = radius_factor
    return Calibration(offsets, float(np.sqrt(np.mean(np.square(logs)))), len(samples))


def _log_radius_ratio(twin: Any, calibration: Calibration, sample: MeasuredSample) -> float:
    """log(lab / twin) of the particle size the scans see, for one sample's recipe."""
    rng = np.random.default_rng(sample.seed)
    recipe = calibration.apply(sample.recipe, twin.name, twin.space)
    seen = virtual_scan_metrics(twin, recipe, sample, rng)["radius_um"]
    return math.log(sample.metrics["radius_um"] / seen)
