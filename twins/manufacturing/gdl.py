"""Carbon-paper gas diffusion layer twin (Toray-like): stochastic fibre stacking (review §3.2.1).

Axis 2 of the box is the through-plane direction; x and y are in-plane.
1. Laydown: long straight or wavy cylindrical fibres, longer than the box and cut by it, are
   stacked layer by layer through the thickness of the uncompressed paper (one fibre per layer
   and round, layers one mean diameter thick). Diameters are lognormal (not one diameter, the
   classic flaw the review names); in-plane angles follow a von Mises law of the axial angle,
   with a small out-of-plane tilt; fibre lines are a stationary line process cut by the box.
2. Compression in assembly: fibre axes laid in a box of height H/(1 - compression) are mapped
   affinely into H. Fibres are stiff carbon and keep their round section; mass is conserved,
   so every solid fraction of the paper rises by 1/(1 - compression) and porosity falls.
   Fibres are added until the rasterised fibre fraction is the compressed target, which
   compensates for the overlaps the Boolean model makes.
3. Carbonised binder fills the pore voxels with the most fibre around them first (Gaussian-
   smoothed fibre indicator), i.e. fibre crossings and necks between close fibres.
4. PTFE coats fibres and binder as a sheath: the pore voxels nearest the solid surface
   (Euclidean distance transform) take PTFE until its volume is reached.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import ndimage
from scipy.optimize import brentq
from scipy.special import i0e, i1e

from poreloop.twins.errors import TwinError
from poreloop.twins.manufacturing.base import Shape, Twin
from poreloop.twins.manufacturing.packing import threshold_to_fraction
from poreloop.twins.space import Continuous, LinearConstraint, ParameterSpace, Recipe

PORE, FIBRE, BINDER, PTFE = 0, 1, 2, 3

MAX_SOLID_FRACTION = 0.8
"""Densest compressed paper the twin allows (fibre + binder + PTFE): beyond it fibres crush."""

MIN_FIBRE_VOXELS = 2.0
"""Fewest voxels across a mean fibre that still rasterise as a round section."""

MIN_BOX_DIAMETERS = 2.0
"""Fewest mean fibre diameters along every box edge: fewer and one fibre overshoots the target."""

WAVELENGTH_DIAMETERS = (15.0, 30.0)
"""Range of undulation wavelengths, in diameters of the fibre: stiff carbon bends gently."""

MAX_TILT_SD = 3.0
"""Out-of-plane tilts are clipped at this many standard deviations (no upright fibres)."""

BINDER_SMOOTHING_RADII = 1.0
"""Width of the Gaussian that measures how crowded by fibre a pore voxel is, in mean radii."""

SHELL_LENGTH2 = 9
"""Squared distance (voxels²) up to which the PTFE sheath grows shell by shell; beyond it the
full distance transform is cheaper than the ~120 shifted copies already made."""

_SWEEP_ELEMENTS = 1 << 21
"""Most voxels tested in one vectorised sweep (bounds the memory of its temporaries)."""

_MAX_FIBRE_FACTOR = 20
"""Fibres drawn before giving up, as a multiple of the Boolean-model estimate."""


def sample_fibre_diameters(mean: float, cv: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n,)`` lognormal fibre diameters with mean ``mean`` (any unit) and coefficient of
    variation ``cv``; ``cv = 0`` gives one diameter."""
    sigma2 = np.log1p(cv**2)
    return rng.lognormal(np.log(mean) - sigma2 / 2, np.sqrt(sigma2), n)


def orientation_concentration(order: float) -> float:
    """Von Mises concentration ``kappa`` of the doubled in-plane angle ``2φ`` whose in-plane
    order parameter ``<cos 2φ>`` equals ``order`` (0 isotropic, 1 all fibres along x)."""
    if order <= 0.0:
        return 0.0
    return float(brentq(lambda kappa: i1e(kappa) / i0e(kappa) - order, 1e-9, 1e6))


@dataclass(frozen=True)
class Fibres:
    """Fibre centrelines in voxel units of the compressed box, ``n`` of them.

    Centreline ``c(t) = point + t * direction + sin(wavenumber * t + phase) * wave``.
    point: ``n x 3``; direction: ``n x 3`` unit axis; wave: ``n x 3`` undulation amplitude
    vector (voxels); wavenumber: ``(n,)`` rad/voxel; phase: ``(n,)`` rad; radius: ``(n,)`` voxels.
    """

    point: np.ndarray
    direction: np.ndarray
    wave: np.ndarray
    wavenumber: np.ndarray
    phase: np.ndarray
    radius: np.ndarray


@dataclass(frozen=True)
class Laydown:
    """How fibres are drawn. diameter: mean fibre diameter, voxels; diameter_cv: sd / mean;
    kappa: von Mises concentration of the doubled in-plane angle; tilt_sd: sd of the
    out-of-plane inclination before compression, rad; waviness: undulation amplitude in fibre
    diameters; compression: thickness reduction (1 - compressed / free thickness)."""

    diameter: float
    diameter_cv: float
    kappa: float
    tilt_sd: float
    waviness: float
    compression: float


def draw_layer_round(
    shape: Shape, laydown: Laydown, n_layers: int, rng: np.random.Generator
) -> Fibres:
    """One fibre per through-plane layer, in random layer order: a round of the stacking.

    Lines hitting the ``nx x ny`` footprint form a stationary line process: each direction is
    drawn with weight ∝ the footprint's width across it, the offset uniform over that width.
    """
    nx, ny, nz = shape
    n = n_layers
    radius = sample_fibre_diameters(laydown.diameter, laydown.diameter_cv, n, rng) / 2
    reach = laydown.diameter * (0.5 + laydown.waviness) + 1.0
    phi = _in_plane_angles(n, laydown.kappa, nx, ny, reach, rng)
    theta = np.clip(
        rng.normal(0.0, laydown.tilt_sd, n),
        -MAX_TILT_SD * laydown.tilt_sd,
        MAX_TILT_SD * laydown.tilt_sd,
    )
    psi = rng.uniform(0.0, 2 * np.pi, n)
    phase = rng.uniform(0.0, 2 * np.pi, n)
    wavelength = rng.uniform(*WAVELENGTH_DIAMETERS, n) * 2 * radius
    width = nx * np.abs(np.sin(phi)) + ny * np.abs(np.cos(phi))
    offset = rng.uniform(-1.0, 1.0, n) * (width / 2 + reach)
    margin = laydown.diameter / 2
    layer = (rng.permutation(n) + rng.random(n)) * (nz + 2 * margin) / n - margin

    cos_p, sin_p, cos_t, sin_t = np.cos(phi), np.sin(phi), np.cos(theta), np.sin(theta)
    axis = np.stack([cos_t * cos_p, cos_t * sin_p, sin_t], axis=1)
    normal = np.stack([-sin_p, cos_p, np.zeros(n)], axis=1)
    up = np.stack([-sin_t * cos_p, -sin_t * sin_p, cos_t], axis=1)
    bend = np.cos(psi)[:, None] * normal + np.sin(psi)[:, None] * up

    squeeze = np.array([1.0, 1.0, 1.0 - laydown.compression])
    stretch = np.linalg.norm(axis * squeeze, axis=1)
    point = np.stack([nx / 2 + offset * normal[:, 0], ny / 2 + offset * normal[:, 1], layer], 1)
    return Fibres(
        point=point,
        direction=axis * squeeze / stretch[:, None],
        wave=(laydown.waviness * 2 * radius)[:, None] * bend * squeeze,
        wavenumber=2 * np.pi / (wavelength * stretch),
        phase=phase,
        radius=radius,
    )


def _in_plane_angles(
    n: int, kappa: float, nx: float, ny: float, reach: float, rng: np.random.Generator
) -> np.ndarray:
    """``(n,)`` in-plane angles (rad) of lines passing within ``reach`` of an ``nx x ny``
    rectangle: axial von Mises, accepted with probability ∝ the width swept across the line."""
    widest = np.hypot(nx, ny) + 2 * reach
    angles = np.empty(0)
    while angles.size < n:
        phi = 0.5 * rng.vonmises(0.0, kappa, 2 * n)
        width = nx * np.abs(np.sin(phi)) + ny * np.abs(np.cos(phi)) + 2 * reach
        angles = np.concatenate([angles, phi[rng.random(2 * n) * widest < width]])
    return angles[:n]


def fibre_voxels(fibres: Fibres, shape: Shape) -> list[np.ndarray]:
    """Per fibre, the flat indices (C order of ``shape``) of the voxels whose centres lie
    inside it.

    Each fibre is swept along its dominant in-plane axis ``a``; in each plane ``a = const``
    only a window around the centreline crossing is tested, as wide as the elliptic section of
    the fibre there. Fibres of similar window size are swept together in one array
    ``fibres x planes x window``. The distance of a voxel centre to a fibre is its distance to
    the tangent line of the centreline at the voxel's projection onto the axis: exact for
    straight fibres, close for wavy ones (slope ≤ 0.42, bend radius ≥ 11 fibre radii).
    """
    dominant = (np.abs(fibres.direction[:, 1]) > np.abs(fibres.direction[:, 0])).astype(int)
    voxels: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(fibres.radius)
    for a in (0, 1):
        ids = np.flatnonzero(dominant == a)
        if ids.size == 0:
            continue
        plane = np.arange(shape[a]) + 0.5
        centre, tangent = _crossings(fibres, ids, a, plane)
        # half-extents (along b, z) of the elliptic section, +0.5 for the voxel grid
        section = fibres.radius[ids, None, None] / np.abs(tangent[:, :, a, None])
        extent = section * np.hypot(tangent[:, :, a, None], tangent[:, :, [1 - a, 2]])
        half = np.ceil(extent.max(axis=1) + 0.5).astype(np.int64)
        for chunk in _similar_chunks((2 * half[:, 0] + 1) * (2 * half[:, 1] + 1) * shape[a]):
            found = _sweep(fibres, ids[chunk], a, plane, centre[chunk], half[chunk].max(0), shape)
            for fibre, flat in zip(ids[chunk], found, strict=True):
                voxels[fibre] = flat
    return voxels


def _crossings(
    fibres: Fibres, ids: np.ndarray, a: int, plane: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where the centrelines of fibres ``ids`` cross the planes ``a = plane`` and their
    tangents there, both ``len(ids) x len(plane) x 3`` (one Newton step along the tangent)."""
    point, direction, wave = fibres.point[ids], fibres.direction[ids], fibres.wave[ids]
    t = (plane - point[:, a, None]) / direction[:, a, None]
    angle = fibres.wavenumber[ids, None] * t + fibres.phase[ids, None]
    centre = (
        point[:, None]
        + t[..., None] * direction[:, None]
        + np.sin(angle)[..., None] * wave[:, None]
    )
    slope = fibres.wavenumber[ids, None] * np.cos(angle)
    tangent = direction[:, None] + slope[..., None] * wave[:, None]
    centre += ((plane - centre[:, :, a]) / tangent[:, :, a])[..., None] * tangent
    return centre, tangent


def _similar_chunks(cost: np.ndarray) -> Iterator[np.ndarray]:
    """Fibres grouped so that padding every window to the largest in its group wastes at most
    a third, and a group's sweep holds at most ``_SWEEP_ELEMENTS`` voxels. cost: ``(n,)``."""
    order = np.argsort(cost, kind="stable")
    start = 0
    for end in range(1, order.size + 1):
        if end == order.size or (
            cost[order[end]] > 1.5 * cost[order[start]]
            or (end + 1 - start) * cost[order[end]] > _SWEEP_ELEMENTS
        ):
            yield order[start:end]
            start = end


def _sweep(
    fibres: Fibres,
    ids: np.ndarray,
    a: int,
    plane: np.ndarray,
    centre: np.ndarray,
    half: np.ndarray,
    shape: Shape,
) -> list[np.ndarray]:
    """Flat voxel indices inside each of fibres ``ids``, testing ``2 * half + 1`` voxels
    (along b, z) around each crossing ``centre`` (``len(ids) x len(plane) x 3``)."""
    b = 1 - a
    n_b, n_z = shape[b], shape[2]
    low = np.floor(centre[:, :, [b, 2]]).astype(np.int64) - half
    idx_b = low[:, :, 0, None] + np.arange(2 * half[0] + 1)
    idx_z = low[:, :, 1, None] + np.arange(2 * half[1] + 1)

    def per_fibre(values: np.ndarray) -> np.ndarray:
        return values.astype(np.float32)[:, None, None, None]

    # Offsets Δ are taken from the axis point in each plane (so Δ_a = 0 and stays small);
    # r = Δ - tq u - sin w is the offset from the centreline point at the projection tq and
    # T = u + slope w the tangent there, expanded in Δ·u and Δ·w (|u| = 1) to save passes.
    point, direction, wave = fibres.point[ids], fibres.direction[ids], fibres.wave[ids]
    t_plane = (plane - point[:, a, None]) / direction[:, a, None]
    origin = point[:, None, :] + t_plane[..., None] * direction[:, None, :]
    db = (idx_b + 0.5 - origin[:, :, b, None]).astype(np.float32)[:, :, :, None]
    dz = (idx_z + 0.5 - origin[:, :, 2, None]).astype(np.float32)[:, :, None, :]
    ub, uz = per_fibre(direction[:, b]), per_fibre(direction[:, 2])
    wb, wz = per_fibre(wave[:, b]), per_fibre(wave[:, 2])
    uw = per_fibre(np.einsum("ij,ij->i", direction, wave))
    ww = per_fibre(np.einsum("ij,ij->i", wave, wave))
    k = per_fibre(fibres.wavenumber[ids])
    plane_phase = np.mod(
        fibres.wavenumber[ids, None] * t_plane + fibres.phase[ids, None], 2 * np.pi
    )
    tq = db * ub + dz * uz
    across = db * wb + dz * wz - tq * uw
    angle = k * tq + plane_phase.astype(np.float32)[:, :, None, None]
    sin_q, slope = np.sin(angle), k * np.cos(angle)
    along = slope * (across - sin_q * ww) - sin_q * uw
    r2 = db * db + dz * dz - tq * tq + sin_q * (sin_q * ww - 2 * across)
    d2 = r2 - along * along / (1 + slope * (2 * uw + slope * ww))

    inside = (
        (d2 <= per_fibre(fibres.radius[ids]) ** 2)
        & ((idx_b >= 0) & (idx_b < n_b))[:, :, :, None]
        & ((idx_z >= 0) & (idx_z < n_z))[:, :, None, :]
    )
    fibre, ia, ib, iz = np.nonzero(inside)
    along_b = idx_b[fibre, ia, ib]
    x, y = (ia, along_b) if a == 0 else (along_b, ia)
    flat = (x * shape[1] + y) * n_z + idx_z[fibre, ia, iz]
    return np.split(flat, np.cumsum(np.bincount(fibre, minlength=ids.size))[:-1])


def stack_fibres(
    shape: Shape, fraction: float, laydown: Laydown, rng: np.random.Generator
) -> np.ndarray:
    """``shape`` bool fibre mask whose volume fraction is ``fraction`` within half a fibre.

    Fibres are stacked round by round (one per layer of the uncompressed paper, layers one
    mean diameter thick, mapped into the compressed box) until the rasterised fraction reaches
    the target, which absorbs the overlaps. Near the end a fibre that would overshoot the
    target by more than the fraction still missing is passed over; stacking stops when the
    target is reached or a whole round of fibres was passed over.
    """
    nx, ny, nz = shape
    solid = np.zeros(shape, dtype=bool)
    flat = solid.reshape(-1)
    missing = round(fraction * solid.size)
    margin = laydown.diameter / 2
    n_layers = max(1, round((nz + 2 * margin) / (laydown.diameter * (1 - laydown.compression))))
    mean_chord = np.pi * nx * ny / (2 * (nx + ny))
    boolean_estimate = (
        -np.log1p(-fraction) * solid.size / (np.pi / 4 * laydown.diameter**2 * mean_chord)
    )
    max_fibres = _MAX_FIBRE_FACTOR * boolean_estimate + 4 * n_layers
    drawn = passed = 0
    while drawn < max_fibres:
        fibres = draw_layer_round(shape, laydown, n_layers, rng)
        drawn += n_layers
        for voxels in fibre_voxels(fibres, shape):
            new = voxels[~flat[voxels]]
            if new.size > 2 * missing:
                passed += 1
                if passed >= n_layers:
                    return solid
            elif new.size:
                flat[new] = True
                missing -= new.size
                passed = 0
                if missing <= 0:
                    return solid
    raise TwinError(
        f"stacked {drawn} fibres of {laydown.diameter:.1f} voxels but reached a fibre fraction of "
        f"only {flat.mean():.3f} of the {fraction:.3f} wanted in a {shape} box; "
        "expected fibres much thinner than the box — enlarge the box or the voxel size"
    )


def place_binder(solid: np.ndarray, fraction: float, smoothing: float) -> np.ndarray:
    """``solid.shape`` bool mask of binder: the ``fraction`` of the box, taken from the pore
    voxels with the most fibre within ``smoothing`` voxels (crossings and necks first)."""
    if fraction <= 0.0:
        return np.zeros(solid.shape, dtype=bool)
    crowding = ndimage.gaussian_filter(solid.astype(np.float32), smoothing, truncate=3.0)
    crowding[solid] = -np.inf
    return threshold_to_fraction(-crowding, fraction)


def coat_ptfe(solid: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``solid.shape`` bool mask of a PTFE sheath: the ``fraction`` of the box, taken from the
    pore voxels nearest the solid surface by Euclidean distance (ties broken at random).

    A thin sheath is grown shell by shell (all integer offsets of one length at a time), which
    costs a few shells; a sheath thicker than ``sqrt(SHELL_LENGTH2)`` voxels takes the rest
    from the full distance transform.
    """
    count = round(fraction * solid.size)
    free = ~solid
    if count > np.count_nonzero(free):
        raise TwinError(
            f"a PTFE fraction of {fraction:.3f} needs more voxels than the pore space of the "
            f"{solid.shape} box holds; expected fibre + binder + PTFE below 1 — lower ptfe_loading"
        )
    coat = np.zeros(solid.shape, dtype=bool)
    if count == 0:
        return coat
    for offsets in _offset_shells(SHELL_LENGTH2):
        shell = np.zeros(solid.shape, dtype=bool)
        for offset in offsets:
            source, target = _shift_slices(offset)
            shell[target] |= solid[source]
        shell &= free
        new = np.flatnonzero(shell)
        if new.size >= count:
            coat.reshape(-1)[rng.choice(new, count, replace=False)] = True
            return coat
        coat |= shell
        free &= ~shell
        count -= new.size
    length2 = np.rint(ndimage.distance_transform_edt(~solid) ** 2)
    key = np.where(free, length2 + rng.random(solid.shape), np.inf).reshape(-1)
    coat.reshape(-1)[np.argpartition(key, count - 1)[:count]] = True
    return coat


def _offset_shells(max_length2: int) -> Iterator[np.ndarray]:
    """Integer offsets ``m x 3`` grouped by squared length ``1 .. max_length2``, shortest first."""
    reach = math.isqrt(max_length2)
    grid = np.arange(-reach, reach + 1)
    i, j, k = (axis.ravel() for axis in np.meshgrid(grid, grid, grid, indexing="ij"))
    length2 = i * i + j * j + k * k
    for shell in range(1, max_length2 + 1):
        on_shell = length2 == shell
        if on_shell.any():
            yield np.stack([i[on_shell], j[on_shell], k[on_shell]], axis=1)


def _shift_slices(offset: np.ndarray) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices ``(source, target)`` with ``target = source + offset``, both inside the box."""
    source = tuple(slice(max(-d, 0), -d if d > 0 else None) for d in offset.tolist())
    target = tuple(slice(max(d, 0), d if d < 0 else None) for d in offset.tolist())
    return source, target


class GDLTwin(Twin):
    """Carbon-paper gas diffusion layer (pore, fibre, binder, PTFE) from a process recipe."""

    name = "gdl"
    phases: ClassVar[dict[int, str]] = {
        PORE: "pore",
        FIBRE: "fibre",
        BINDER: "binder",
        PTFE: "ptfe",
    }
    space = ParameterSpace(
        parameters=(
            Continuous(
                name="fibre_diameter_um",
                unit="um",
                low=3.0,
                high=20.0,
                default=7.5,
                description="mean carbon-fibre diameter (lognormal number distribution)",
            ),
            Continuous(
                name="fibre_diameter_cv",
                low=0.0,
                high=0.5,
                default=0.1,
                description="coefficient of variation (sd / mean) of the fibre diameter",
            ),
            Continuous(
                name="fibre_fraction",
                low=0.05,
                high=0.45,
                default=0.18,
                description="carbon-fibre volume fraction of the uncompressed paper",
            ),
            Continuous(
                name="orientation_anisotropy",
                low=0.0,
                high=0.95,
                default=0.1,
                description="in-plane fibre alignment <cos 2φ> along x (machine direction): "
                "0 isotropic in-plane, 1 all fibres along x",
            ),
            Continuous(
                name="tilt_deg",
                unit="deg",
                low=0.0,
                high=15.0,
                default=3.0,
                description="standard deviation of the fibres' out-of-plane inclination "
                "before compression",
            ),
            Continuous(
                name="waviness",
                low=0.0,
                high=1.0,
                default=0.2,
                description="amplitude of the fibre undulation in fibre diameters "
                "(wavelength 15-30 diameters); 0 is straight",
            ),
            Continuous(
                name="binder_fraction",
                low=0.0,
                high=0.25,
                default=0.05,
                description="carbonised-resin binder volume fraction of the uncompressed paper",
            ),
            Continuous(
                name="ptfe_loading",
                low=0.0,
                high=0.15,
                default=0.02,
                description="PTFE volume fraction of the uncompressed paper "
                "(10 wt% PTFE on a 0.44 g/cm3 paper is about 0.02)",
            ),
            Continuous(
                name="compression",
                low=0.0,
                high=0.5,
                default=0.2,
                description="thickness reduction of the paper in cell assembly "
                "(1 - compressed / free thickness)",
            ),
            Continuous(
                name="voxel_size_um",
                unit="um",
                low=0.25,
                high=5.0,
                default=1.0,
                description="edge length of a voxel",
            ),
        ),
        constraints=(
            LinearConstraint(
                coefficients={
                    "fibre_fraction": 1.0,
                    "binder_fraction": 1.0,
                    "ptfe_loading": 1.0,
                    "compression": MAX_SOLID_FRACTION,
                },
                bound=MAX_SOLID_FRACTION,
            ),
            LinearConstraint(
                coefficients={"voxel_size_um": MIN_FIBRE_VOXELS, "fibre_diameter_um": -1.0},
                bound=0.0,
            ),
        ),
    )

    def _generate(self, recipe: Recipe, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        voxel = float(recipe["voxel_size_um"])
        squeeze = 1.0 - float(recipe["compression"])
        laydown = Laydown(
            diameter=float(recipe["fibre_diameter_um"]) / voxel,
            diameter_cv=float(recipe["fibre_diameter_cv"]),
            kappa=orientation_concentration(float(recipe["orientation_anisotropy"])),
            tilt_sd=np.deg2rad(float(recipe["tilt_deg"])),
            waviness=float(recipe["waviness"]),
            compression=float(recipe["compression"]),
        )
        if min(shape) < MIN_BOX_DIAMETERS * laydown.diameter:
            raise TwinError(
                f"fibres of {recipe['fibre_diameter_um']} um are {laydown.diameter:.1f} voxels at "
                f"voxel_size_um={voxel}; expected every box edge to span at least "
                f"{MIN_BOX_DIAMETERS:g} fibre diameters ({math.ceil(MIN_BOX_DIAMETERS * laydown.diameter)} "
                f"voxels), got {shape} — enlarge the box or the voxel size"
            )
        fibre = stack_fibres(shape, float(recipe["fibre_fraction"]) / squeeze, laydown, rng)
        binder = place_binder(
            fibre,
            float(recipe["binder_fraction"]) / squeeze,
            BINDER_SMOOTHING_RADII * laydown.diameter / 2,
        )
        ptfe = coat_ptfe(fibre | binder, float(recipe["ptfe_loading"]) / squeeze, rng)
        labels = np.full(shape, PORE, dtype=np.uint8)
        labels[fibre] = FIBRE
        labels[binder] = BINDER
        labels[ptfe] = PTFE
        return labels
