"""Statistical reconstruction of a segmented micrograph (Yeong & Torquato, Phys. Rev. E 57, 1998).

A user brings a real segmented image or stack; the twin makes new binary structures of any
box shape with exactly the reference's porosity and its two-point correlation ``S2(r)``
along the axes. A 2D micrograph can seed a 3D volume (the original Yeong–Torquato use):
the medium is assumed isotropic and the image's ``S2`` is matched along all three axes.

The search is simulated annealing over pore/solid swaps, which keep the porosity exact.
A swap changes only the lines through its two voxels, so its change of ``S2`` is gathered
from ``2 r_max`` neighbours per axis instead of re-correlating the image; a batch of swaps
that touch pairwise-disjoint lines is evaluated at once in numpy and accepted by exact
sequential Metropolis through the Gram matrix of their ``S2`` changes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from twins.errors import TwinError
from twins.manufacturing.base import DEFAULT_SHAPE, Shape, Twin
from twins.microstructure import Microstructure
from twins.space import Continuous, Integer, ParameterSpace, Recipe

_HOW = "get_twin('reconstruct', reference=Microstructure.load('image.tif'))"
_RESAMPLING = 4.0  # the reconstruction's voxel may be this much finer or coarser than the reference's


def two_point_correlation(binary: np.ndarray, r_max: int, periodic: bool = True) -> np.ndarray:
    """Two-point correlation of the True phase along each axis, ``(ndim, r_max + 1)``.

    ``S2[a, r]`` is the probability that two voxels ``r`` voxels apart along axis ``a`` both
    lie in the phase; ``S2[:, 0]`` is its volume fraction. binary: ``(nx, ny)`` or
    ``(nx, ny, nz)`` bool or 0/1. Periodic boundaries suit a reconstruction (itself periodic);
    ``periodic=False`` counts only pairs inside the box, the unbiased estimate for a micrograph.
    """
    f = np.asarray(binary, dtype=np.float64)
    if f.ndim not in (2, 3):
        raise TwinError(f"expected a 2D or 3D binary image, got shape {f.shape}")
    if not 0 <= r_max < min(f.shape):
        raise TwinError(
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


@dataclass(frozen=True)
class ReconstructionReport:
    """How close one reconstruction came to its target, and what it cost.

    ``correlation_error`` is ``max over axes and r of |S2_recon(r) - S2_target(r)| / porosity``
    (the largest deviation of the correlation, as a fraction of the reference porosity),
    computed afresh from the final structure. ``energy`` is the annealing objective
    ``sum over axes and r of (S2_recon - S2_target)^2``. target, achieved: ``(ndim, r_max + 1)``.
    """

    energy: float
    correlation_error: float
    porosity: float
    r_max: int
    sweeps: float
    swaps_tried: int
    swaps_accepted: int
    final_temperature: float
    converged: bool
    seconds: float
    target: np.ndarray
    achieved: np.ndarray


def correlation_error(achieved: np.ndarray, target: np.ndarray) -> float:
    """``max |achieved - target| / target[0, 0]``: the worst S2 deviation per unit porosity."""
    return float(np.max(np.abs(achieved - target)) / target[0, 0])


class _Lines:
    """Flat-index geometry of the lattice lines along one axis of a C-ordered box."""

    def __init__(self, shape: Shape, axis: int, r_max: int) -> None:
        self.n = shape[axis]
        self.stride = math.prod(shape[axis + 1 :])
        coord = np.arange(self.n)[:, None]
        offsets = np.concatenate([np.arange(1, r_max + 1), -np.arange(1, r_max + 1)])
        # (n, 2 r_max) flat-index shift from a voxel at this coordinate to its periodic neighbours
        self.shift = ((coord + offsets) % self.n - coord) * self.stride

    def coordinate(self, voxels: np.ndarray) -> np.ndarray:
        return (voxels // self.stride) % self.n

    def key(self, voxels: np.ndarray) -> np.ndarray:
        """An id of the line along this axis through each voxel (its flat index at coordinate 0)."""
        return voxels - self.coordinate(voxels) * self.stride

    def neighbour_counts(self, image: np.ndarray, voxels: np.ndarray) -> np.ndarray:
        """Phase voxels at distance r = 1..r_max on either side, summed: ``voxels.shape + (r_max,)``."""
        values = image[voxels[..., None] + self.shift[self.coordinate(voxels)]]
        r_max = self.shift.shape[1] // 2
        return values[..., :r_max].astype(np.int32) + values[..., r_max:]


def _disjoint(swaps: np.ndarray, lines: list[_Lines]) -> np.ndarray:
    """Mask of the swaps ``(m, 2)`` kept so that no two kept voxels share a line along any axis.

    A swap is kept when each of its voxels is the first to use its lines; the change of S2
    of every kept swap is then exact whatever the others do.
    """
    keep = np.ones(len(swaps), dtype=bool)
    for axis_lines in lines:
        keys = axis_lines.key(swaps)
        first = np.zeros(keys.size, dtype=bool)
        first[np.unique(keys.ravel(), return_index=True)[1]] = True
        keep &= first.reshape(keys.shape).all(axis=1) & (keys[:, 0] != keys[:, 1])
    return keep


def _metropolis(gain: np.ndarray, gram: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Indices accepted by sequential Metropolis over a batch of swaps.

    gain: ``(b,)`` energy change of each swap alone; gram: ``(b, b)`` dot products of their
    S2 changes, so that accepting swap k shifts the energy change of swap j by
    ``2 gram[j, k]``; threshold: ``(b,)`` ``-T ln u``, a swap is accepted when its change is
    below it. Loops over accepted swaps only.
    """
    gain = gain.copy()
    accepted = []
    start = 0
    while True:
        hits = np.flatnonzero(gain[start:] <= threshold[start:])
        if hits.size == 0:
            return np.asarray(accepted, dtype=np.intp)
        k = start + hits[0]
        accepted.append(k)
        gain[k + 1 :] += 2 * gram[k + 1 :, k]
        start = k + 1


def anneal(
    target: np.ndarray,
    shape: Shape,
    porosity: float,
    rng: np.random.Generator,
    max_sweeps: int,
    initial_acceptance: float,
    cooling_rate: float,
    tolerance: float,
) -> tuple[np.ndarray, ReconstructionReport]:
    """A periodic binary box whose S2 along every axis matches ``target``.

    target: ``(len(shape), r_max + 1)`` S2 per axis of the box; porosity: fraction of True
    voxels, met to the nearest voxel. A sweep is one attempted swap per voxel; the
    temperature starts where a median uphill swap is accepted with probability
    ``initial_acceptance`` and falls by ``cooling_rate`` per sweep. Stops once the
    correlation error is below ``tolerance`` or after ``max_sweeps``.
    Returns the bool box ``shape`` and its report.
    """
    start_time = time.perf_counter()
    r_max = target.shape[1] - 1
    size = math.prod(shape)
    n_pore = int(round(porosity * size))
    if not 0 < n_pore < size:
        raise TwinError(
            f"a box of {size} voxels at porosity {porosity:.4g} holds no pore or no solid voxel; "
            "use a larger box"
        )
    image = np.zeros(size, dtype=np.uint8)
    pore = rng.choice(size, n_pore, replace=False)
    image[pore] = 1
    solid = np.flatnonzero(image == 0)
    residual = two_point_correlation(image.reshape(shape), r_max) - target
    lines = [_Lines(shape, axis, r_max) for axis in range(len(shape))]
    # disjoint swaps need distinct lines: about (lines per axis) / (4 ndim) survive the filter
    batch = max(8, min(size // max(shape) // len(shape), 4096))
    temperature = -1.0
    tried = accepted = 0
    error = correlation_error(residual + target, target)
    while error > tolerance and tried < max_sweeps * size:
        swaps_index = np.stack(
            [rng.integers(n_pore, size=batch), rng.integers(size - n_pore, size=batch)], axis=1
        )
        swaps = np.stack([pore[swaps_index[:, 0]], solid[swaps_index[:, 1]]], axis=1)
        keep = _disjoint(swaps, lines)
        swaps, swaps_index = swaps[keep], swaps_index[keep]
        change = np.zeros((len(swaps), len(shape), r_max + 1))
        for axis, axis_lines in enumerate(lines):
            counts = axis_lines.neighbour_counts(image, swaps)
            change[:, axis, 1:] = (counts[:, 1] - counts[:, 0]) / size
        change = change.reshape(len(swaps), -1)
        gram = change @ change.T
        gain = 2 * change @ residual.ravel() + np.diag(gram)
        if temperature < 0:
            uphill = gain[gain > 0]
            typical = np.median(uphill) if uphill.size else 0.0
            temperature = -typical / math.log(initial_acceptance)
        current = temperature * cooling_rate ** (tried / size)
        threshold = -current * np.log1p(-rng.random(len(swaps)))
        take = _metropolis(gain, gram, threshold)
        tried += len(swaps)
        if take.size:
            pores, solids = swaps[take, 0], swaps[take, 1]
            image[pores], image[solids] = 0, 1
            pore[swaps_index[take, 0]] = solids
            solid[swaps_index[take, 1]] = pores
            residual += change[take].sum(axis=0).reshape(residual.shape)
            accepted += take.size
            error = correlation_error(residual + target, target)
    binary = image.reshape(shape).astype(bool)
    achieved = two_point_correlation(binary, r_max)
    error = correlation_error(achieved, target)
    report = ReconstructionReport(
        energy=float(np.sum((achieved - target) ** 2)),
        correlation_error=error,
        porosity=n_pore / size,
        r_max=r_max,
        sweeps=tried / size,
        swaps_tried=tried,
        swaps_accepted=accepted,
        final_temperature=max(temperature, 0.0) * cooling_rate ** (tried / size),
        converged=error <= tolerance,
        seconds=time.perf_counter() - start_time,
        target=target,
        achieved=achieved,
    )
    return binary, report
