"""Particle packings on voxel grids, shared by the particle-based twins.

Boxes are periodic in-plane (array axes 0 and 1) and bounded by walls through the
thickness (axis 2: z = 0 is the substrate or current collector). Lengths are in voxels.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

SKIN_RADII = 0.5
"""Verlet-list skin in mean radii: thinner lists cost less per pass, more rebuilds."""


def lognormal_radii(
    rng: np.random.Generator, mean: float, spread: float, total_volume: float, r_min: float = 1.0
) -> np.ndarray:
    """Sphere radii (voxels) with a lognormal number distribution of ``mean`` and log-sd
    ``spread`` (sphere volume to ``total_volume`` voxels), largest first. shape: ``(n,)``."""
    mu = np.log(mean) - spread**2 / 2
    mean_volume = 4 / 3 * np.pi * np.exp(3 * mu + 4.5 * spread**2)
    n_guess = int(1.3 * total_volume / mean_volume) + 16
    radii = np.maximum(rng.lognormal(mu, spread, n_guess), r_min)
    while (4 / 3 * np.pi * radii**3).sum() < total_volume:
        radii = np.concatenate([radii, np.maximum(rng.lognormal(mu, spread, n_guess), r_min)])
    volumes = 4 / 3 * np.pi * radii**3
    n = int(np.searchsorted(np.cumsum(volumes), total_volume)) + 1
    return np.sort(radii[:n])[::-1]


def relax_packing(
    centres: np.ndarray,
    radii: np.ndarray,
    box: tuple[float, float, float],
    iterations: int = 100,
    overlap: float = 0.02,
) -> np.ndarray:
    """Push overlapping spheres apart until no pair overlaps by more than ``overlap`` of
    its contact distance (a force-biased collective rearrangement, as in Bezrukov et al.).

    Periodic in x and y, walls at z = 0 and z = box[2]. centres: ``(n, 3)`` voxels.
    Spheres move in inverse proportion to their volume, so big particles anchor small ones.
    Candidate pairs come from a Verlet list (contact distance plus a skin of half a mean radius),
    rebuilt once a sphere has moved half the skin, so no overlapping pair is ever missed.
    """
    centres = centres.copy()
    box_arr = np.asarray(box, dtype=float)
    mobility = 1 / radii**3
    skin = SKIN_RADII * float(radii.mean())
    listed_at = np.full_like(centres, np.inf)
    for _ in range(iterations):
        _confine(centres, radii, box_arr)
        if _distance(listed_at, centres, box_arr).max() > skin / 2:
            i, j = _candidate_pairs(centres, radii, box_arr, skin)
            listed_at = centres.copy()
        if len(i) == 0:
            break
        delta = _separation(centres[i], centres[j], box_arr)
        distance = np.sqrt(np.einsum("ij,ij->i", delta, delta))
        contact = radii[i] + radii[j]
        depth = contact - distance
        hit = depth > overlap * contact
        if not hit.any():
            break
        hi, hj, delta, distance, depth = i[hit], j[hit], delta[hit], distance[hit], depth[hit]
        normal = delta / np.maximum(distance, 1e-9)[:, None]
        share = mobility[hi] / (mobility[hi] + mobility[hj])
        push_i = -(share * depth)[:, None] * normal * 0.55
        push_j = ((1 - share) * depth)[:, None] * normal * 0.55
        for d in range(3):
            centres[:, d] += np.bincount(hi, push_i[:, d], len(radii))
            centres[:, d] += np.bincount(hj, push_j[:, d], len(radii))
    _confine(centres, radii, box_arr)
    return centres


def _separation(a: np.ndarray, b: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Vectors from ``a`` to ``b`` (both ``(m, 3)``), minimum image in x and y."""
    delta = b - a
    delta[:, :2] -= box[:2] * np.round(delta[:, :2] / box[:2])
    return delta


def _distance(a: np.ndarray, b: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Minimum-image distances between rows of ``a`` and ``b``; inf where ``a`` is inf."""
    with np.errstate(invalid="ignore"):
        delta = _separation(a, b, box)
    return np.nan_to_num(np.sqrt(np.einsum("ij,ij->i", delta, delta)), nan=np.inf)


def _candidate_pairs(
    centres: np.ndarray, radii: np.ndarray, box: np.ndarray, skin: float
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)`` closer than their contact distance plus ``skin``."""
    tree = cKDTree(centres, boxsize=[box[0], box[1], 1e12])
    pairs = tree.query_pairs(2 * radii.max() + skin, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    near = _distance(centres[i], centres[j], box) < radii[i] + radii[j] + skin
    return i[near], j[near]


def _confine(centres: np.ndarray, radii: np.ndarray, box: np.ndarray) -> None:
    """Wrap in-plane coordinates into the box and keep spheres between the z walls."""
    centres[:, :2] %= box[:2]
    centres[:, 2] = np.clip(
        centres[:, 2], np.minimum(radii, box[2] / 2), box[2] - np.minimum(radii, box[2] / 2)
    )


def ellipsoid_field(
    shape: tuple[int, ...],
    centres: np.ndarray,
    semi_axes: np.ndarray,
    reach: float = 1.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised distance to the nearest particle and which particle that is.

    Particle k is the axis-aligned ellipsoid ``sum(((x - c_k) / a_k)**2) <= 1``;
    the field is ``min_k sqrt(sum(((x - c_k) / a_k)**2))`` at voxel centres, computed
    within ``reach`` of each particle (inf beyond). Thresholding the field at 1 gives the
    particles; at another level it grows or shrinks them all in proportion.
    centres, semi_axes: ``(n, 3)`` voxels. Returns field ``shape`` float32, owner ``shape`` int32
    (-1 where no particle reaches).
    """
    extent = np.ceil(semi_axes * reach).astype(int) + 1
    pad = int(extent.max())
    padded = tuple(n + 2 * pad for n in shape)
    field = np.full(padded, np.inf, dtype=np.float32)
    owner = np.full(padded, -1, dtype=np.int32)
    lows = np.floor(centres).astype(int) - extent
    highs = lows + 2 * extent + 1
    for k in range(len(centres)):
        lo, hi = lows[k], highs[k]
        grids = [
            (((np.arange(lo[d], hi[d]) + 0.5 - centres[k, d]) / semi_axes[k, d]) ** 2).astype(
                np.float32
            )
            for d in range(3)
        ]
        dist = np.sqrt(grids[0][:, None, None] + grids[1][None, :, None] + grids[2][None, None, :])
        view = tuple(slice(lo[d] + pad, hi[d] + pad) for d in range(3))
        closer = dist < field[view]
        np.copyto(field[view], dist, where=closer)
        np.copyto(owner[view], k, where=closer)
    return _fold(field, owner, shape, pad)


def _fold(
    field: np.ndarray, owner: np.ndarray, shape: tuple[int, ...], pad: int
) -> tuple[np.ndarray, np.ndarray]:
    """Wrap the in-plane margins of a padded field onto the box (periodic x, y) and cut the
    z margins (walls), keeping the nearer particle where two overlap."""
    for axis in (0, 1):
        n = shape[axis]
        core = [slice(None)] * 3
        for src, dst in (
            (slice(0, pad), slice(n, n + pad)),
            (slice(n + pad, n + 2 * pad), slice(pad, 2 * pad)),
        ):
            source, target = list(core), list(core)
            source[axis], target[axis] = src, dst
            s, d = tuple(source), tuple(target)
            closer = field[s] < field[d]
            field[d][closer] = field[s][closer]
            owner[d][closer] = owner[s][closer]
        cut = list(core)
        cut[axis] = slice(pad, n + pad)
        field, owner = field[tuple(cut)], owner[tuple(cut)]
    inner = (slice(None), slice(None), slice(pad, shape[2] + pad))
    return np.ascontiguousarray(field[inner]), np.ascontiguousarray(owner[inner])


def threshold_to_fraction(field: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the ``fraction`` of voxels with the smallest field values."""
    n = int(round(fraction * field.size))
    mask = np.zeros(field.shape, dtype=bool)
    if n > 0:
        flat = field.ravel()
        chosen = np.argpartition(flat, n - 1)[:n]
        mask.ravel()[chosen] = True
    return mask
