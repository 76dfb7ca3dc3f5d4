"""SOFC anode twin: Ni–YSZ cermet from powder mixing, pressing and sintering (section 3.2 of
the review); its triple-phase boundary (pore | Ni | YSZ) is where fuel is oxidised.

Axis 2 of the box is the through-thickness direction (walls at z = 0 and z = nz); x and y
are periodic.
1. Mixing and pressing: two powders, Ni(O) and YSZ, each with a lognormal grain-radius
   distribution, in the recipe's Ni:YSZ solid volume ratio, packed together by force-biased
   rearrangement into the green body at its solid loading.
2. Densification: the green body shrinks isotropically by the volumetric sintering shrinkage;
   grain centres follow affinely while grains keep their size, so neighbours overlap (necks)
   and the pores shrink. Solid volume is conserved: the grains are grown in proportion until
   the solid fills ``solid_fraction / (1 - sintering_shrinkage)`` of the sintered box.
3. Neck growth by surface diffusion: one volume-preserving mean-curvature-flow step
   (Gaussian smoothing of the solid indicator, re-thresholded to the same solid volume, the
   Merriman–Bence–Osher scheme): concave necks fill and convex tips recede.
4. Ni and YSZ: each solid voxel takes the phase of its grain; the Ni/YSZ grain boundaries
   relax by the same smoothing, with the Ni share of the solid kept exact.
5. Ni coarsening: Ni wets YSZ poorly and its surface diffusion outruns YSZ's, so Ni
   agglomerates on the fixed YSZ backbone — a further curvature-flow step of the Ni phase
   alone, which may retreat into pores but never into YSZ, Ni volume kept.
The Ni:YSZ ratio is that of the reduced anode (NiO → Ni volume loss is folded into it).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.ndimage import gaussian_filter

from poreloop.twins.errors import TwinError
from poreloop.twins.manufacturing.base import Shape, Twin
from poreloop.twins.manufacturing.packing import (
    ellipsoid_field,
    lognormal_radii,
    relax_packing,
    threshold_to_fraction,
)
from poreloop.twins.space import Continuous, LinearConstraint, ParameterSpace, Recipe

PORE, NI, YSZ = 0, 1, 2

MAX_SOLID_FRACTION = 0.85
"""Densest sintered solid fraction allowed, ``solid_fraction / (1 - sintering_shrinkage)``;
open porosity closes off beyond it. Linear in the recipe as the shrinkage is volumetric."""

GREEN_RELAXATION_PASSES = 50
"""Rearrangement passes for the pressed powder: they leave overlaps of a few per cent of the
contact distance, less than the necks that sintering shrinkage makes next, so more passes
change the sintered structure little and cost time."""

MIN_GRAIN_VOXELS = 1.5
"""Smallest mean grain radius, in voxels, that still resolves a grain and its necks."""

BOUNDARY_SMOOTHING_VOXELS = 1.0
"""Least smoothing of the Ni/YSZ split: places the grain boundary between voxel centres."""

_SMOOTH_MODE = ("wrap", "wrap", "nearest")


class SOFCAnodeTwin(Twin):
    """Ni–YSZ cermet SOFC anode (pore, Ni, YSZ) from a powder and sintering recipe."""

    name = "sofc_anode"
    periodic = (0, 1)
    phases: ClassVar[dict[int, str]] = {PORE: "pore", NI: "ni", YSZ: "ysz"}
    space = ParameterSpace(
        parameters=(
            Continuous(
                name="ni_volume_fraction_of_solid",
                low=0.3,
                high=0.7,
                default=0.5,
                description="Ni share of the solid volume (Ni / (Ni + YSZ)) of the reduced anode",
            ),
            Continuous(
                name="solid_fraction",
                low=0.45,
                high=0.65,
                default=0.55,
                description="solid volume fraction of the pressed green body before sintering",
            ),
            Continuous(
                name="ni_radius_um",
                unit="um",
                low=0.2,
                high=2.0,
                default=0.5,
                description="mean Ni(O) grain radius of the powder (lognormal number distribution)",
            ),
            Continuous(
                name="ni_radius_spread",
                low=0.0,
                high=0.5,
                default=0.25,
                description="log-standard deviation of the Ni(O) grain radius distribution",
            ),
            Continuous(
                name="ysz_radius_um",
                unit="um",
                low=0.2,
                high=2.0,
                default=0.4,
                description="mean YSZ grain radius of the powder (lognormal number distribution)",
            ),
            Continuous(
                name="ysz_radius_spread",
                low=0.0,
                high=0.5,
                default=0.25,
                description="log-standard deviation of the YSZ grain radius distribution",
            ),
            Continuous(
                name="sintering_shrinkage",
                low=0.0,
                high=0.4,
                default=0.2,
                description=(
                    "volumetric shrinkage on sintering (1 - sintered / green volume); "
                    "the linear shrinkage is 1 - (1 - this)**(1/3)"
                ),
            ),
            Continuous(
                name="neck_growth",
                low=0.0,
                high=0.6,
                default=0.25,
                description=(
                    "surface-diffusion smoothing length during sintering, in mean grain radii; "
                    "grows necks and rounds grains (longer or hotter firing → larger)"
                ),
            ),
            Continuous(
                name="ni_coarsening",
                low=0.0,
                high=1.0,
                default=0.0,
                description=(
                    "Ni agglomeration on the YSZ backbone during firing and reduction: "
                    "smoothing length of the Ni phase in mean Ni radii (shortens the TPB)"
                ),
            ),
            Continuous(
                name="voxel_size_um",
                unit="um",
                low=0.02,
                high=0.5,
                default=0.1,
                description="edge length of a voxel",
            ),
        ),
        constraints=(
            LinearConstraint(
                coefficients={"solid_fraction": 1.0, "sintering_shrinkage": MAX_SOLID_FRACTION},
                bound=MAX_SOLID_FRACTION,
            ),
            *(
                LinearConstraint(
                    coefficients={"voxel_size_um": MIN_GRAIN_VOXELS, f"{powder}_radius_um": -1.0},
                    bound=0.0,
                )
                for powder in ("ni", "ysz")
            ),
        ),
    )

    def _generate(self, recipe: Recipe, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        voxel = float(recipe["voxel_size_um"])
        ni_share = float(recipe["ni_volume_fraction_of_solid"])
        radius = {p: float(recipe[f"{p}_radius_um"]) / voxel for p in ("ni", "ysz")}
        for powder, r in radius.items():
            if 3 * r > min(shape):
                raise TwinError(
                    f"'{powder}_radius_um' = {recipe[f'{powder}_radius_um']} um is {r:.1f} voxels; "
                    f"it needs a box of at least {int(np.ceil(3 * r))} voxels a side, got {shape} "
                    "— enlarge the box or the voxels"
                )
        shrinkage = float(recipe["sintering_shrinkage"])
        linear = (1.0 - shrinkage) ** (1 / 3)
        green = tuple(n / linear for n in shape)
        solid_volume = float(recipe["solid_fraction"]) * float(np.prod(green))

        ni_radii = lognormal_radii(
            rng, radius["ni"], float(recipe["ni_radius_spread"]), ni_share * solid_volume
        )
        ysz_radii = lognormal_radii(
            rng, radius["ysz"], float(recipe["ysz_radius_spread"]), (1 - ni_share) * solid_volume
        )
        radii = np.concatenate([ni_radii, ysz_radii])
        centres = relax_packing(
            rng.uniform(size=(len(radii), 3)) * green, radii, green, GREEN_RELAXATION_PASSES
        )

        field, owner = ellipsoid_field(shape, centres * linear, np.repeat(radii[:, None], 3, 1))
        dense = float(recipe["solid_fraction"]) / (1.0 - shrinkage)
        mean_radius = ni_share * radius["ni"] + (1 - ni_share) * radius["ysz"]
        neck = float(recipe["neck_growth"]) * mean_radius
        solid = curvature_flow(threshold_to_fraction(field, dense), neck)

        is_ni = np.where(owner < 0, 0.5, owner < len(ni_radii)).astype(np.float32)
        ni = split_solid(solid, is_ni, ni_share, max(neck, BOUNDARY_SMOOTHING_VOXELS))
        ysz = solid & ~ni
        ni = curvature_flow(ni, float(recipe["ni_coarsening"]) * radius["ni"], fixed=ysz)
        labels = np.full(shape, PORE, dtype=np.uint8)
        labels[ysz] = YSZ
        labels[ni] = NI
        return labels


def curvature_flow(phase: np.ndarray, sigma: float, fixed: np.ndarray | None = None) -> np.ndarray:
    """``phase`` after surface diffusion over a smoothing length ``sigma`` voxels.

    One volume-preserving mean-curvature-flow step (Merriman–Bence–Osher): the indicator is
    smoothed with a Gaussian and the same number of voxels kept where it is highest, so
    concave necks fill while convex tips recede. The phase never moves into ``fixed``.
    phase, fixed: ``(nx, ny, nz)`` bool, periodic in x and y.
    """
    if sigma <= 0:
        return phase
    score = gaussian_filter(phase.astype(np.float32), sigma, mode=_SMOOTH_MODE)
    if fixed is not None:
        score[fixed] = -np.inf
    return threshold_to_fraction(-score, float(phase.mean()))


def split_solid(solid: np.ndarray, is_ni: np.ndarray, ni_share: float, sigma: float) -> np.ndarray:
    """Ni mask: the ``ni_share`` of the ``solid`` voxels where the grain-owner indicator
    ``is_ni`` (1 Ni grain, 0 YSZ grain), smoothed over ``sigma`` voxels, is highest.

    Smoothing moves the Ni/YSZ grain boundaries by curvature like the free surface.
    solid: ``(nx, ny, nz)`` bool; is_ni: ``(nx, ny, nz)`` float32.
    """
    score = gaussian_filter(is_ni, sigma, mode=_SMOOTH_MODE)
    score[~solid] = -np.inf
    return threshold_to_fraction(-score, ni_share * float(solid.mean()))
