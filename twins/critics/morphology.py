"""Morphology critics: phase fractions, specific surface, pore sizes, connectivity and TPB.

Plain functions on label images ``labels: (nx, ny, nz)`` uint8 phase ids with
``voxel_size_um``; ``morphology`` gathers them into flat keys with units for a
``Microstructure``. Axes 0, 1, 2 are x, y, z; z is the through-thickness axis of every twin.
The box walls are cuts through a larger material, not surfaces: no measure counts them.
"""

from __future__ import annotations

import math
import re
from itertools import combinations

import numpy as np
from scipy import ndimage

from poreloop.twins.errors import CriticError
from poreloop.twins.microstructure import Microstructure

AXES = ("x", "y", "z")

NORMAL_SMOOTHING_VOXELS = 1.0
"""Gaussian length that sets the interface normal for the surface estimate: long enough to
average out the voxel staircase, short enough to follow features a few voxels across."""

PSD_BINS = 16
"""Most local-thickness radii evaluated; every integer radius while the largest pore has
fewer voxels of radius than this, else geometrically spaced (same relative resolution)."""

PORE = 0
"""Phase id of the pore space where no phase is named ``pore`` (a foreign file's ``phase_0``)."""

_FAR16 = np.iinfo(np.int16).max // 2
"""'No seed in reach' in the int16 parabola sweeps; -_FAR16 - r**2 must not wrap."""


def _check_labels(labels: np.ndarray, voxel_size_um: float) -> None:
    """Refuse anything but a non-empty 3D uint8 label image and a positive voxel size."""
    if not isinstance(labels, np.ndarray) or labels.ndim != 3 or labels.size == 0:
        raise CriticError(
            f"expected a 3D label image (nx, ny, nz), got shape {getattr(labels, 'shape', labels)}"
            " — morphology critics measure volumes, pass a stack"
        )
    if labels.dtype != np.uint8:
        raise CriticError(
            f"expected uint8 phase ids, got dtype {labels.dtype} — segment the image first"
        )
    if not (np.isfinite(voxel_size_um) and voxel_size_um > 0):
        raise CriticError(f"voxel_size_um must be a positive number, got {voxel_size_um}")


def _check_axis(axis: int) -> None:
    if axis not in (0, 1, 2):
        raise CriticError(f"expected an axis 0, 1 or 2 (x, y, z), got {axis!r}")


def _check_mask(mask: np.ndarray) -> None:
    if not isinstance(mask, np.ndarray) or mask.ndim != 3 or mask.dtype != np.bool_:
        raise CriticError(
            f"expected a 3D bool phase mask, got {getattr(mask, 'dtype', type(mask).__name__)} "
            f"of shape {getattr(mask, 'shape', None)} — pass labels == phase_id"
        )


def interface_areas_um2(labels: np.ndarray, voxel_size_um: float) -> dict[tuple[int, int], float]:
    """Area (µm²) of the interface between every pair of phases ``(a, b)``, ``a < b``, in contact.

    Each voxel face between phase a and phase b is projected onto the local interface plane,
    i.e. weighted by ``|n · e|`` for its axis ``e``, with the normal ``n`` the gradient of the
    Gaussian-smoothed ``χ_a - χ_b``. A staircase projects exactly onto the plane it
    digitises, so this removes the voxel bias of face counting (+50 % on average) and of
    marching cubes on a binary image (+9 %, ``skimage.measure.marching_cubes``), and unlike
    marching cubes on a smoothed image it keeps features one or two voxels across (a
    smoothed isolated voxel never reaches the 0.5 level). Planes are exact, spheres from a
    radius of 3 voxels up within 3 %, thin shells too. Only faces between two voxels of the box count: no box-wall surface.
    labels: ``(nx, ny, nz)`` uint8.
    """
    _check_labels(labels, voxel_size_um)
    flat = labels.ravel()
    strides = [int(np.prod(labels.shape[axis + 1 :])) for axis in range(3)]
    faces = []  # per axis: flat index of the lower voxel of every face, and its phase pair
    for axis in range(3):
        lower = np.ravel_multi_index(
            np.nonzero(np.diff(labels, axis=axis) != 0), labels.shape
        ).astype(np.int64)
        a, b = flat[lower], flat[lower + strides[axis]]
        faces.append((lower, np.minimum(a, b).astype(np.int32) * 256 + np.maximum(a, b)))
    positions = np.concatenate(
        [np.concatenate([lo, lo + s]) for (lo, _), s in zip(faces, strides, strict=True)]
    )
    if positions.size == 0:
        return {}
    phases = np.flatnonzero(np.bincount(flat, minlength=256))
    # Gradients of the smoothed indicators, only where faces are: (3, n_positions) per phase.
    gradient = {}
    for phase in phases:
        smooth = ndimage.gaussian_filter(
            (labels == phase).astype(np.float32), NORMAL_SMOOTHING_VOXELS, mode="nearest"
        )
        gradient[int(phase)] = np.stack([g.ravel()[positions] for g in np.gradient(smooth)])
    areas: dict[tuple[int, int], float] = {}
    offset = 0
    for axis, (lower, pair) in enumerate(faces):
        n = lower.size
        for code in np.unique(pair):
            low_id, high_id = divmod(int(code), 256)
            lo = np.flatnonzero(pair == code) + offset
            ga, gb = gradient[low_id], gradient[high_id]
            normal = ga[:, lo] + ga[:, lo + n] - gb[:, lo] - gb[:, lo + n]  # both voxels
            norm = np.sqrt((normal**2).sum(axis=0))
            weight = np.divide(np.abs(normal[axis]), norm, out=np.ones_like(norm), where=norm > 0)
            key = (low_id, high_id)
            areas[key] = areas.get(key, 0.0) + float(weight.sum()) * voxel_size_um**2
        offset += 2 * n
    return dict(sorted(areas.items()))


def local_thickness(mask: np.ndarray, bins: int = PSD_BINS) -> np.ndarray:
    """Radius (voxels) of the largest ball inside ``mask`` that covers each voxel; 0 outside.

    Hildebrand–Rüegsegger local thickness on radii r from large to small: the balls of
    radius r fit around every voxel whose Euclidean distance to the other phase is at least
    r (erosion), and cover the voxels within r of such a centre (dilation). A voxel takes
    the first r that covers it. Distances run between voxel centres as in
    ``porespy.filters.local_thickness(method="dt")``, which gives the same image for the
    same radii. mask: ``(nx, ny, nz)`` bool; returns ``(nx, ny, nz)`` float32.
    """
    _check_mask(mask)
    if bins < 1:
        raise CriticError(f"bins must be a positive number of radii, got {bins}")
    if not mask.any():
        return np.zeros(mask.shape, np.float32)
    if mask.all():
        raise CriticError(
            "the phase fills the whole box: no wall bounds its balls, so its local thickness "
            "is undefined — image a box that holds some of the other phase"
        )
    distance = ndimage.distance_transform_edt(mask)
    largest = int(distance.max())
    if largest <= bins:
        radii = np.arange(largest, 0, -1)
    else:
        radii = np.unique(np.round(np.geomspace(1, largest, bins)).astype(int))[::-1]
    # Shell k holds the centres first used at radii[k - 1]: deeper ones already covered a
    # larger ball around themselves. find_objects boxes every shell in one pass.
    shell = np.searchsorted(-radii, -distance, side="left").astype(np.int32) + 1
    shell[~mask] = 0
    boxes = ndimage.find_objects(shell, max_label=len(radii))
    thickness = np.zeros(mask.shape, np.float32)
    for k, (r, box) in enumerate(zip(radii, boxes, strict=True), start=1):
        if box is None:
            continue
        box = tuple(slice(max(b.start - r + 1, 0), b.stop + r - 1) for b in box)
        covered = ball_dilation(shell[box] == k, int(r))
        sub = thickness[box]
        sub[covered & (sub == 0)] = r
    return thickness


def ball_dilation(seeds: np.ndarray, r: int) -> np.ndarray:
    """Voxels closer than ``r`` voxels (Euclidean, centre to centre) to a seed.

    Exact and separable: ``max_c(-|x - c|²)`` over seeds c is swept along one axis at a
    time with the parabola ``-d²`` over offsets ``|d| < r``, the way a Euclidean distance
    transform is, but only ``2(r - 1)`` shifts per axis since farther seeds cannot cover.
    seeds: ``(nx, ny, nz)`` bool; returns ``(nx, ny, nz)`` bool.
    """
    dtype = np.int16 if r * r < _FAR16 else np.int32
    far = dtype(_FAR16 if dtype is np.int16 else np.iinfo(np.int32).max // 2)
    field = np.where(seeds, dtype(0), -far)
    lowered = np.empty_like(field)
    for axis in range(field.ndim):
        swept = field.copy()
        for d in range(1, min(r, field.shape[axis])):
            lo = tuple(slice(None, -d) if a == axis else slice(None) for a in range(3))
            hi = tuple(slice(d, None) if a == axis else slice(None) for a in range(3))
            np.subtract(field, dtype(d * d), out=lowered)
            np.maximum(swept[hi], lowered[lo], out=swept[hi])
            np.maximum(swept[lo], lowered[hi], out=swept[lo])
        field = swept
    return field > -r * r


def pore_size_distribution(
    labels: np.ndarray, voxel_size_um: float, phase: int = PORE, bins: int = PSD_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """Volume-weighted local-thickness distribution of ``phase``.

    Returns ``radii_um`` ``(k,)`` ascending and ``volume_fraction`` ``(k,)``: the share of the
    phase volume whose local thickness is that radius (sums to 1; empty for an absent phase).
    labels: ``(nx, ny, nz)`` uint8.
    """
    _check_labels(labels, voxel_size_um)
    thickness = local_thickness(labels == phase, bins)
    radii, counts = np.unique(thickness[thickness > 0], return_counts=True)
    return radii.astype(np.float64) * voxel_size_um, counts / max(counts.sum(), 1)


def _clusters(mask: np.ndarray) -> np.ndarray:
    """Face-connected (6-neighbour) cluster ids of ``mask``, 0 outside."""
    return ndimage.label(mask)[0]


def _on_face(clusters: np.ndarray, axis: int, side: int) -> np.ndarray:
    """Bool per cluster id: the cluster has a voxel on the box face ``side`` (0 or -1) of axis."""
    touching = np.zeros(int(clusters.max()) + 1, bool)
    touching[np.take(clusters, side, axis=axis)] = True
    touching[0] = False
    return touching


def percolating_mask(mask: np.ndarray, axis: int) -> np.ndarray:
    """Voxels of ``mask`` in face-connected clusters that touch both box faces normal to axis.

    These carry transport across the box along ``axis``. mask: ``(nx, ny, nz)`` bool.
    """
    _check_mask(mask)
    _check_axis(axis)
    clusters = _clusters(mask)
    return (_on_face(clusters, axis, 0) & _on_face(clusters, axis, -1))[clusters]


def connectivity(mask: np.ndarray) -> dict[str, float]:
    """Shares of the ``mask`` volume that are connected and that percolate (0 for an empty mask).

    ``connected``: in face-connected clusters touching any box face (the rest is isolated,
    enclosed in the other phases); ``x``, ``y``, ``z``: in clusters touching both faces
    normal to that axis. mask: ``(nx, ny, nz)`` bool.
    """
    _check_mask(mask)
    clusters = _clusters(mask)
    sizes = np.bincount(clusters.ravel())
    sizes[0] = 0
    total = max(int(sizes.sum()), 1)
    faces = [(_on_face(clusters, axis, 0), _on_face(clusters, axis, -1)) for axis in range(3)]
    any_face = np.logical_or.reduce([lo | hi for lo, hi in faces])
    shares = {"connected": float(sizes[any_face].sum() / total)}
    for name, (lo, hi) in zip(AXES, faces, strict=True):
        shares[name] = float(sizes[lo & hi].sum() / total)
    return shares


def triple_phase_boundary_density(
    labels: np.ndarray,
    voxel_size_um: float,
    phases: tuple[int, int, int] = (0, 1, 2),
    percolating_along: int | None = None,
) -> float:
    """Triple-phase-boundary length per volume (µm/µm³ = µm⁻²) of a three-phase image.

    Edge counting: a voxel edge is TPB when the four voxels around it hold all three
    ``phases`` (default pore 0, Ni 1, YSZ 2). Counted over the edges inside the box and
    divided by the box volume. Raw edge length: a straight line of random orientation reads
    about 1.5x long on the voxel grid (its staircase follows the axes).
    ``percolating_along`` = an axis counts only the active TPB, where each of the three
    phases around the edge belongs to a cluster spanning the box along that axis (gas,
    electrons and ions can all reach it). labels: ``(nx, ny, nz)`` uint8.
    """
    _check_labels(labels, voxel_size_um)
    if len(set(phases)) != 3:
        raise CriticError(f"expected three distinct phase ids, got {phases}")
    lookup = np.zeros(256, np.uint8)
    lookup[list(phases)] = (1, 2, 4)
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256))
    unknown = sorted(set(present.tolist()) - set(phases))
    if unknown:
        raise CriticError(
            f"expected only phase ids {phases}, got ids {unknown} — relabel the image to three "
            "phases (e.g. pore, ni, ysz)"
        )
    bits = lookup[labels]
    if percolating_along is not None:
        _check_axis(percolating_along)
        for phase in phases:
            mask = labels == phase
            bits[mask & ~percolating_mask(mask, percolating_along)] = 0
    edges = 0
    for axis in range(3):
        a, b = (d for d in range(3) if d != axis)
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[a], hi[a] = slice(None, -1), slice(1, None)
        lo_b, hi_b = list(lo), list(hi)
        lo[b] = hi[b] = slice(None, -1)
        lo_b[b] = hi_b[b] = slice(1, None)
        around = bits[tuple(lo)] | bits[tuple(hi)] | bits[tuple(lo_b)] | bits[tuple(hi_b)]
        edges += int(np.count_nonzero(around == 0b111))
    return edges * voxel_size_um / (labels.size * voxel_size_um**3)


def two_point_correlation(binary: np.ndarray, r_max: int, periodic: bool = True) -> np.ndarray:
    """Two-point correlation of the True phase along each axis, ``(ndim, r_max + 1)``.

    ``S2[a, r]`` is the probability that two voxels ``r`` voxels apart along axis ``a`` both
    lie in the phase; ``S2[:, 0]`` is its volume fraction. binary: ``(nx, ny)`` or
    ``(nx, ny, nz)`` bool or 0/1. Periodic boundaries suit a reconstruction (itself periodic);
    ``periodic=False`` counts only pairs inside the box, the unbiased estimate for a micrograph.
    """
    f = np.asarray(binary, dtype=np.float64)
    if f.ndim not in (2, 3):
        raise CriticError(f"expected a 2D or 3D binary image, got shape {f.shape}")
    if not 0 <= r_max < min(f.shape):
        raise CriticError(
            f"r_max must lie in 0..{min(f.shape) - 1} for an image of shape {f.shape}, got {r_max}"
        )
    r = np.arange(r_max + 1)
    s2 = np.empty((f.ndim, r_max + 1))
    for axis, n in enumerate(f.shape):
        size = n if periodic else 2 * n
        spectrum = np.fft.rfft(f, n=size, axis=axis)
        lags = np.fft.irfft(np.abs(spectrum) ** 2, n=size, axis=axis)
        other = tuple(a for a in range(f.ndim) if a != axis)
        pairs = np.moveaxis(lags, axis, 0)[: r_max + 1].sum(axis=tuple(range(1, f.ndim)))
        lines = math.prod(f.shape[a] for a in other)
        s2[axis] = pairs / (lines * (n if periodic else n - r))
    return s2


def phase_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def morphology(micro: Microstructure) -> dict[str, float]:
    """Voxel metrics of a 3D microstructure, flat keys with units, phases by their names.

    - ``porosity``, ``fraction_<phase>``: volume fractions.
    - ``ssa_per_um``: pore surface per box volume (µm²/µm³ = 1/µm); ``ssa_<phase>_per_um``
      each phase's surface; ``ssa_<a>_<b>_per_um`` the a|b interface, for every pair.
    - ``mean_pore_radius_um``, ``d50_pore_diameter_um``: volume-weighted mean local-thickness
      radius and median diameter of the pores (half the pore volume is in smaller pores).
    - ``connected_<phase>``: share of the phase connected to a box face;
      ``percolating_<phase>_<x|y|z>``: share in clusters spanning the box along that axis.
    - three-phase structures: ``tpb_per_um2``, and ``tpb_active_per_um2`` with all three
      phases spanning the box along z (through the thickness).
    A phase absent from the image scores 0 everywhere, never NaN.
    """
    if not isinstance(micro, Microstructure):
        raise CriticError(f"expected a Microstructure, got {type(micro).__name__}")
    labels, voxel = micro.labels, micro.voxel_size_um
    _check_labels(labels, voxel)
    names = {pid: phase_key(name) for pid, name in sorted(micro.phases.items())}
    if len(set(names.values())) != len(names):
        raise CriticError(
            f"phase names {micro.phases} clash once lower-cased as keys — rename the phases"
        )
    pore = next((pid for pid, name in micro.phases.items() if name == "pore"), PORE)
    volume = labels.size * voxel**3
    fractions = np.bincount(labels.ravel(), minlength=256) / labels.size
    result = {"porosity": float(fractions[pore])}
    result |= {f"fraction_{name}": float(fractions[pid]) for pid, name in names.items()}

    interfaces = interface_areas_um2(labels, voxel)
    surface = {pid: 0.0 for pid in names}
    for (a, b), area in interfaces.items():
        surface[a] += area
        surface[b] += area
    result["ssa_per_um"] = surface.get(pore, 0.0) / volume
    result |= {f"ssa_{name}_per_um": surface[pid] / volume for pid, name in names.items()}
    for a, b in combinations(names, 2):
        result[f"ssa_{names[a]}_{names[b]}_per_um"] = interfaces.get((a, b), 0.0) / volume

    radii_um, share = pore_size_distribution(labels, voxel, pore)
    result["mean_pore_radius_um"] = float(radii_um @ share)
    median = radii_um[np.searchsorted(np.cumsum(share), 0.5)] if share.size else 0.0
    result["d50_pore_diameter_um"] = 2 * float(median)

    for pid, name in names.items():
        shares = connectivity(labels == pid)
        result[f"connected_{name}"] = shares["connected"]
        result |= {f"percolating_{name}_{axis}": shares[axis] for axis in AXES}

    if len(names) == 3:
        first, second, third = names
        phases = (first, second, third)
        result["tpb_per_um2"] = triple_phase_boundary_density(labels, voxel, phases)
        result["tpb_active_per_um2"] = triple_phase_boundary_density(
            labels, voxel, phases, percolating_along=AXES.index("z")
        )
    return result
