"""Li-ion electrode twin: slurry → coating → drying → calendering (section 4.4 of the review).

Axis 2 of the box is the through-thickness direction; z = 0 is the current collector.
1. Slurry and coating: polydisperse active particles (lognormal radii) packed into the dried
   coating thickness by force-biased rearrangement, periodic in-plane.
2. Drying: binder and carbon migrate with the evaporating solvent towards the free surface;
   the carbon-binder domain (CBD) follows ``c(ζ) ∝ exp(Pe·ζ)`` through the thickness, with
   the drying Péclet number ``Pe = drying_rate · wet film thickness / D`` (Routh & Zimmerman
   2004: migration is set while the film is wet, so its initial height counts). The box is a
   representative volume: its z axis spans the coating's height ζ from 0 to 1, whatever the
   coating's ``thickness_um``, so the migration profile and the cell model see the recipe's
   thickness and the voxels only the structure's detail; the voxel size never sets it.
3. Calendering: the coating is compressed affinely through the thickness; particles rearrange
   and flatten (volume-preserving ellipsoids taking half the log-strain), and contacts merge,
   so active and CBD volume are conserved while porosity falls.
4. The CBD wets the solid: it fills pore voxels with the most solid around them first
   (particle necks and crevices), then films on surfaces, grown in two passes so bridges thicken.
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

PORE, ACTIVE, CBD = 0, 1, 2

BINDER_DIFFUSIVITY_UM2_S = 50.0
"""Effective diffusivity of binder and carbon in the drying slurry; sets the Péclet number.
Larger than the molecular value of PVDF coils and carbon aggregates in NMP (1-10 µm²/s):
binder moves only until the particles consolidate, partway through drying, so the profile is
milder than the steady one at the molecular Pe. It puts the default 70 µm coating dried at
0.5 µm/s at Pe ≈ 1.6 (mild migration), and drying above ~2 µm/s at Pe > 6, binder-starved at
the collector, as electrode drying studies report for fast drying."""

WET_TO_DRY = 2.0
"""Wet film over dried coating thickness: a slurry about half solvent by volume (NMP-based
cathode slurries hold 40-60 % solids)."""

ACTIVE_DENSITY_G_CM3 = 4.75
"""Density of the active material (NMC811): turns an active volume per area into a loading."""

MAX_SOLID_FRACTION = 0.85
"""Densest calendered electrode the twin allows (active + CBD)."""

MIN_PARTICLE_VOXELS = 1.5
"""Smallest mean particle radius, in voxels, that still rasterises as a sphere."""

CBD_SMOOTHING_VOXELS = 1.5
"""Length over which the CBD feels nearby solid: sets how far it reaches from a neck."""


class ElectrodeTwin(Twin):
    """Li-ion electrode (pore, active material, carbon-binder domain) from a process recipe."""

    name = "li_ion_electrode"
    periodic = (0, 1)
    phases: ClassVar[dict[int, str]] = {PORE: "pore", ACTIVE: "active", CBD: "cbd"}
    space = ParameterSpace(
        parameters=(
            Continuous(
                name="active_fraction",
                low=0.30,
                high=0.60,
                default=0.48,
                description="active-material volume fraction of the dried coating before calendering",
            ),
            Continuous(
                name="particle_radius_um",
                unit="um",
                low=1.0,
                high=10.0,
                default=4.0,
                description="mean active-particle radius (lognormal number distribution)",
            ),
            Continuous(
                name="particle_radius_spread",
                low=0.0,
                high=0.6,
                default=0.3,
                description="log-standard deviation of the particle radius distribution",
            ),
            Continuous(
                name="cbd_fraction",
                low=0.0,
                high=0.25,
                default=0.08,
                description="carbon-binder-domain volume fraction of the dried coating before calendering",
            ),
            Continuous(
                name="drying_rate_um_s",
                unit="um/s",
                low=0.05,
                high=5.0,
                default=0.5,
                description="speed of the evaporation front; faster drying drives binder to the top",
            ),
            Continuous(
                name="compression",
                low=0.0,
                high=0.4,
                default=0.15,
                description="calendering thickness reduction (1 - final / dried thickness)",
            ),
            Continuous(
                name="thickness_um",
                unit="um",
                low=10.0,
                high=300.0,
                default=70.0,
                description="calendered coating thickness (a coater's range; cells use 30-150): "
                "the box is a representative volume of it",
            ),
            Continuous(
                name="voxel_size_um",
                unit="um",
                low=0.05,
                high=2.0,
                default=0.4,
                description="edge length of a voxel",
            ),
        ),
        constraints=(
            LinearConstraint(
                coefficients={
                    "active_fraction": 1.0,
                    "cbd_fraction": 1.0,
                    "compression": MAX_SOLID_FRACTION,
                },
                bound=MAX_SOLID_FRACTION,
            ),
            LinearConstraint(
                coefficients={"voxel_size_um": MIN_PARTICLE_VOXELS, "particle_radius_um": -1.0},
                bound=0.0,
            ),
        ),
    )

    def _generate(self, recipe: Recipe, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        voxel = float(recipe["voxel_size_um"])
        radius = float(recipe["particle_radius_um"]) / voxel
        if 3 * radius > min(shape[:2]):
            raise TwinError(
                f"particles of radius {radius:.1f} voxels need an in-plane box of at least "
                f"{int(np.ceil(3 * radius))} voxels, got {shape[:2]} — enlarge the box or the voxels"
            )
        squeeze = 1.0 - float(recipe["compression"])
        coated = (shape[0], shape[1], shape[2] / squeeze)
        radii = lognormal_radii(
            rng,
            radius,
            float(recipe["particle_radius_spread"]),
            float(recipe["active_fraction"]) * float(np.prod(coated)),
        )
        centres = relax_packing(rng.uniform(size=(len(radii), 3)) * coated, radii, coated)

        centres[:, 2] *= squeeze
        flatten = np.array([squeeze**-0.25, squeeze**-0.25, squeeze**0.5])
        field, _ = ellipsoid_field(shape, centres, radii[:, None] * flatten)
        active = threshold_to_fraction(field, float(recipe["active_fraction"]) / squeeze)

        peclet = float(recipe["drying_rate_um_s"]) * wet_film_um(recipe) / BINDER_DIFFUSIVITY_UM2_S
        cbd = place_binder(active, float(recipe["cbd_fraction"]) / squeeze, peclet)
        labels = np.full(shape, PORE, dtype=np.uint8)
        labels[active] = ACTIVE
        labels[cbd] = CBD
        return labels


def dried_thickness_um(recipe: Recipe) -> float:
    """Coating thickness before calendering, µm: the calendered ``thickness_um`` over
    ``1 - compression``."""
    return float(recipe["thickness_um"]) / (1.0 - float(recipe["compression"]))


def wet_film_um(recipe: Recipe) -> float:
    """Wet film thickness the coater lays for a recipe, µm: what the drying front crosses."""
    return WET_TO_DRY * dried_thickness_um(recipe)


def active_loading_mg_cm2(recipe: Recipe) -> float:
    """Active mass per electrode area of a recipe: its active volume fraction of the dried
    coating times the dried thickness (calendering keeps the mass)."""
    volume_cm3_cm2 = float(recipe["active_fraction"]) * dried_thickness_um(recipe) * 1e-4
    return volume_cm3_cm2 * ACTIVE_DENSITY_G_CM3 * 1e3


def migration_profile(nz: int, peclet: float) -> np.ndarray:
    """Relative binder concentration per z slice after drying, mean 1. shape: ``(nz,)``.

    Steady evaporation-driven migration against diffusion: ``c(ζ) ∝ exp(Pe·ζ)`` with ζ the
    height over the thickness (0 at the current collector, 1 at the free surface). The ``nz``
    slices of the representative box span the whole coating, so ``peclet`` carries the
    coating's real thickness and the profile does not depend on the voxel size.
    """
    zeta = (np.arange(nz) + 0.5) / nz
    c = np.exp(peclet * (zeta - 1.0))
    return c / c.mean()


def place_binder(solid: np.ndarray, fraction: float, peclet: float) -> np.ndarray:
    """CBD mask of ``fraction`` of the box in the pores of ``solid`` (shape ``(nx, ny, nz)``),
    distributed through z by ``migration_profile`` and filling necks before surfaces."""
    nz = solid.shape[2]
    per_slice = solid.shape[0] * solid.shape[1]
    room = (~solid).sum(axis=(0, 1)).astype(float)
    quota = _allot(fraction * solid.size * migration_profile(nz, peclet) / nz, 0.95 * room)
    cbd = np.zeros_like(solid)
    for round_share in (0.5, 1.0):
        wet = gaussian_filter(
            (solid | cbd).astype(np.float32),
            CBD_SMOOTHING_VOXELS,
            mode=("wrap", "wrap", "nearest"),
        )
        wet[solid | cbd] = -np.inf
        target = np.round(quota * round_share).astype(int) - cbd.sum(axis=(0, 1))
        flat = wet.reshape(per_slice, nz)
        for z in np.flatnonzero(target > 0):
            chosen = np.argpartition(flat[:, z], per_slice - target[z])[per_slice - target[z] :]
            cbd.reshape(per_slice, nz)[chosen, z] = True
    return cbd


def _allot(demand: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Share ``demand.sum()`` over slices in proportion to ``demand``, moving what a slice
    cannot hold (above ``capacity``) to the slices that still have room."""
    total = demand.sum()
    quota = np.minimum(demand, capacity)
    for _ in range(len(demand)):
        excess = total - quota.sum()
        open_ = quota < capacity
        if excess <= 0.5 or not open_.any():
            break
        extra = np.where(open_, demand, 0.0)
        quota = np.minimum(quota + excess * extra / extra.sum(), capacity)
    return quota
