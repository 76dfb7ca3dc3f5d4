"""Calibrating the twin to the lab: its process offsets fitted to the scans.

A real line does not make exactly the recipe it is given: the calender squeezes more than set,
some active material is lost in mixing, the powder is coarser than its datasheet. Each of
these is a process offset on a twin parameter (added, or multiplying it). The campaign fits
them to what the tomograph saw: for every scanned lab sample, the twin makes the same recipe
under trial offsets and the CT's own image formation (``instruments.tomography``) scans it
virtually, so the scan and its twin are segmented alike and the segmentation's bias cancels;
the offsets minimise the squared, scaled differences of the structure metrics (porosity,
active fraction, particle size from the active surface) over all samples.

Later screening generates ``calibration.apply(recipe)``: the twin then predicts what the lab
will make of a recipe, not what the recipe says.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

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


PROCESS_OFFSETS: dict[str, tuple[Offset, ...]] = {
    "li_ion_electrode": (
        Offset("compression", "add", -0.1, 0.1),
        Offset("active_fraction", "scale", 0.85, 1.15),
        Offset("particle_radius_um", "scale", 0.8, 1.25),
    ),
}
"""The process offsets a campaign fits, per twin (a twin not listed is not calibrated)."""

METRIC_SCALES: dict[str, float] = {"porosity": 0.01, "fraction_active": 0.01, "radius_um": 0.05}
"""What one unit of misfit is for each metric: about the sample-to-sample scatter (absolute
for the fractions; relative, as a log-ratio, for the particle size)."""

MIN_SAMPLES = 3
"""Scans needed before the offsets are fitted: three offsets, three metrics a sample."""


@dataclass(frozen=True)
class Calibration:
    """Fitted offsets (name → value) and how well they fit."""

    offsets: dict[str, float] = field(default_factory=dict)
    misfit: float = math.nan
    samples: int = 0

    def apply(self, recipe: Recipe, twin: str, space: ParameterSpace) -> Recipe:
        """What the lab makes of ``recipe``: the offsets applied within the twin's bounds, and
        pulled back towards the set recipe as far as its linear constraints need (a calender
        stalls at the densest packing rather than making an impossible electrode)."""
        shifted = dict(recipe)
        for offset in PROCESS_OFFSETS.get(twin, ()):
            value = self.offsets.get(offset.name, offset.neutral)
            set_value = float(recipe[offset.parameter])
            moved = set_value + value if offset.kind == "add" else set_value * value
            p = space[offset.parameter]
            shifted[offset.parameter] = float(np.clip(moved, p.low, p.high))
        if space.is_feasible(shifted):
            return shifted
        low, high = 0.0, 1.0
        for _ in range(30):
            mid = (low + high) / 2
            trial = _towards(recipe, shifted, mid)
            low, high = (mid, high) if space.is_feasible(trial) else (low, mid)
        return _towards(recipe, shifted, low)


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
class ScannedSample:
    """One lab sample as calibration sees it: the set recipe, the scan's metrics, and how to
    scan its twin alike (box shape, voxel size of the sample and of the scan, exposure)."""

    recipe: Recipe
    metrics: dict[str, float]
    shape: tuple[int, int, int]
    voxel_size_um: float
    scan_voxel_size_um: float
    exposure_s: float
    seed: int


def virtual_scan_metrics(
    twin: Any, recipe: Recipe, sample: ScannedSample, rng: np.random.Generator
) -> dict[str, float]:
    """The metrics of the twin's structure for ``recipe``, scanned and segmented as the lab's."""
    from poreloop.instruments.tomography import render, segment_electrode
    from poreloop.twins.critics.morphology import morphology

    shape = sample.shape
    if "particle_radius_um" in recipe:  # the in-plane box must hold three particle radii
        edge = math.ceil(3 * float(recipe["particle_radius_um"]) / sample.voxel_size_um)
        shape = (max(shape[0], edge), max(shape[1], edge), shape[2])
    micro = twin.generate(recipe, shape=shape, seed=sample.seed)
    grey = render(micro, sample.scan_voxel_size_um, sample.exposure_s, rng)
    scanned = segment_electrode(grey, sample.scan_voxel_size_um)
    return structure_metrics(morphology(scanned))


def residuals(twin: Any, calibration: Calibration, samples: Sequence[ScannedSample]) -> np.ndarray:
    """Scaled differences, twin (virtual scan) minus lab (scan), metric by metric. ``(3 n,)``."""
    out = []
    for sample in samples:
        rng = np.random.default_rng(sample.seed)  # the same noise for every trial: smooth misfit
        virtual = virtual_scan_metrics(
            twin, calibration.apply(sample.recipe, twin.name, twin.space), sample, rng
        )
        for name, scale in METRIC_SCALES.items():
            lab, model = sample.metrics[name], virtual[name]
            if name == "radius_um":
                out.append(math.log(model / lab) / scale if model > 0 and lab > 0 else 0.0)
            else:
                out.append((model - lab) / scale)
    return np.nan_to_num(np.asarray(out, dtype=float), nan=0.0)


def fit(
    twin: Any, samples: Sequence[ScannedSample], start: Calibration | None = None
) -> Calibration:
    """The offsets that make the twin's virtual scans match the lab's scans (least squares).

    Needs MIN_SAMPLES scans; with fewer the start (or the neutral calibration) is returned.
    """
    from scipy.optimize import least_squares

    offsets = PROCESS_OFFSETS.get(twin.name, ())
    if not offsets or len(samples) < MIN_SAMPLES:
        return start or Calibration()
    start = start or Calibration()
    x0 = np.array([np.clip(start.offsets.get(o.name, o.neutral), o.low, o.high) for o in offsets])

    def misfit(x: np.ndarray) -> np.ndarray:
        trial = Calibration(dict(zip((o.name for o in offsets), x.tolist(), strict=True)))
        return residuals(twin, trial, samples)

    solution = least_squares(
        misfit,
        x0,
        bounds=([o.low for o in offsets], [o.high for o in offsets]),
        diff_step=0.05,
        x_scale=[0.02 if o.kind == "add" else 0.05 for o in offsets],
        max_nfev=40,
    )
    values = dict(zip((o.name for o in offsets), solution.x.tolist(), strict=True))
    rms = float(np.sqrt(np.mean(solution.fun**2)))
    return Calibration(values, rms, len(samples))
