"""Statistical reconstruction of a segmented micrograph (Yeong & Torquato, Phys. Rev. E 57, 1998).

A user brings a real segmented image or stack; the twin makes new binary structures of any
box shape with exactly the reference's porosity and its two-point correlation ``S2(r)``
along the axes. A 2D micrograph can seed a 3D volume (the original Yeong–Torquato use):
the medium is assumed isotropic and the image's ``S2`` is matched along all three axes.

The search is simulated annealing over pore/solid swaps, which keep the porosity exact.
A swap changes only the lines through its two voxels, so its change of ``S2`` is gathered
from ``2 r_max`` neighbours per axis instead of re-correlating the image. A batch of swaps
whose voxels share no line is evaluated at once in numpy (their changes add up exactly)
and accepted by sequential Metropolis, made exact by the dot products of their changes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from poreloop.twins.critics.morphology import two_point_correlation
from poreloop.twins.errors import TwinError
from poreloop.twins.manufacturing.base import Shape, Twin
from poreloop.twins.microstructure import Microstructure
from poreloop.twins.space import Continuous, Integer, ParameterSpace, Recipe

_HOW = (
    "get_twin('reconstruct', reference=Microstructure.load('image.tif')) "
    "(on the command line: --reference image.tif)"
)
# voxels drawn per batch of swaps in 3D: bounds the (swaps x accepted) work of a batch
_BATCH_VOXELS = 2048
# the reconstruction's voxel may be this much finer or coarser than the reference's
_RESAMPLING = 4.0


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

    def neighbour_counts(self, image: np.ndarray, voxels: np.ndarray) -> np.ndarray:
        """Phase voxels at r = 1..r_max on both sides of each voxel: ``voxels.shape + (r_max,)``."""
        values = image[voxels[..., None] + self.shift[self.coordinate(voxels)]]
        r_max = self.shift.shape[1] // 2
        return values[..., :r_max].astype(np.int32) + values[..., r_max:]


def _disjoint_voxels(shape: Shape, rng: np.random.Generator) -> np.ndarray:
    """Random flat voxel indices of which no two share a lattice line along any axis.

    2D: a random permutation set, one voxel per row and column, ``(m,)`` with ``m`` the
    shortest edge. 3D: rows of a randomly relabelled Latin square ``z = (i + j) mod m``, so
    each ``(x, y)``, ``(x, z)`` and ``(y, z)`` pair occurs at most once, about
    ``_BATCH_VOXELS`` of them. Swapping voxels of such a set changes S2 by the sum of their
    single changes, whatever the others do.
    """
    m = min(shape)
    picks = [rng.permutation(n)[:m] for n in shape]
    if len(shape) == 2:
        return np.ravel_multi_index((picks[0], picks[1]), shape)
    i, j = np.divmod(np.arange(m * max(1, min(m, _BATCH_VOXELS // m))), m)
    return np.ravel_multi_index((picks[0][i], picks[1][j], picks[2][(i + j) % m]), shape)


def _swap_change(image: np.ndarray, swaps: np.ndarray, lines: list[_Lines]) -> np.ndarray:
    """Change of S2 per axis if each swap alone were made, ``(b, ndim, r_max + 1)``.

    image: the flat 0/1 box; swaps: ``(b, 2)`` flat indices of (pore, solid) voxels. Only
    the lines through the two voxels change: turning a voxel with ``c(r)`` phase neighbours
    at distance r on its line removes ``c(r)`` pairs, so the change is
    ``(c_solid(r) - c_pore(r)) / size``, exact when the two voxels share no line.
    """
    change = np.zeros((len(swaps), len(lines), lines[0].shift.shape[1] // 2 + 1))
    for axis, axis_lines in enumerate(lines):
        counts = axis_lines.neighbour_counts(image, swaps)
        change[:, axis, 1:] = (counts[:, 1] - counts[:, 0]) / image.size
    return change


def _metropolis(gain: np.ndarray, change: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Indices accepted by sequential Metropolis over a batch of swaps, in order.

    gain: ``(b,)`` energy change of each swap alone; change: ``(b, d)`` their S2 changes, so
    that once the swaps before k with summed change ``S`` are made, swap k changes the
    energy by ``gain[k] + 2 change[k] . S``; threshold: ``(b,)`` ``-T ln u``, a swap is
    accepted when its energy change is at most that. Speculates that the swaps accepted
    alone are all accepted, corrects every gain with the running sum of their changes, and
    keeps the decisions up to the first one the correction flips; repeats from there, so it
    loops once per flip. ``O(b d)`` per loop, no matrix products (small BLAS calls thrash
    threads).
    """
    gain = gain.copy()
    accepted: list[np.ndarray] = []
    start = 0
    while start < gain.size:
        rest = change[start:]
        guess = gain[start:] <= threshold[start:]
        if not guess.any():
            break
        guessed = rest * guess[:, None]
        before = np.cumsum(guessed, axis=0) - guessed
        final = gain[start:] + 2 * np.einsum("kd,kd->k", rest, before) <= threshold[start:]
        flips = np.flatnonzero(final != guess)
        if flips.size == 0:
            accepted.append(start + np.flatnonzero(guess))
            break
        f = flips[0]
        accepted.append(start + np.flatnonzero(guess[:f]))
        made = before[f] + rest[f] if final[f] else before[f]
        if final[f]:
            accepted.append(np.array([start + f]))
        gain[start + f + 1 :] += 2 * np.einsum("kd,d->k", rest[f + 1 :], made)
        start += f + 1
    return np.concatenate(accepted) if accepted else np.zeros(0, dtype=np.intp)


def anneal(
    target: np.ndarray,
    shape: Shape,
    porosity: float,
    rng: np.random.Generator,
    max_sweeps: int,
    initial_acceptance: float,
    cooling_rate: float,
    tolerance: float,
    on_sweep: Callable[[int, float], None] | None = None,
) -> tuple[np.ndarray, ReconstructionReport]:
    """A periodic binary box whose S2 along every axis matches ``target``.

    target: ``(len(shape), r_max + 1)`` S2 per axis of the box; porosity: fraction of True
    voxels, met to the nearest voxel. A sweep offers one swap per voxel (a batch of disjoint
    voxels offers half its count; the pairs of a pore with a solid are tried); the
    temperature starts where a median uphill swap is accepted with probability
    ``initial_acceptance`` and falls by ``cooling_rate`` per sweep. Stops once the
    correlation error is below ``tolerance`` or after ``max_sweeps``. ``on_sweep(sweep, error)``
    hears each whole sweep done and the correlation error then (a progress display).
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
    image[rng.choice(size, n_pore, replace=False)] = 1
    residual = two_point_correlation(image.reshape(shape), r_max) - target
    lines = [_Lines(shape, axis, r_max) for axis in range(len(shape))]
    temperature = -1.0
    offered = tried = accepted = sweeps_told = 0
    error = correlation_error(residual + target, target)
    while error > tolerance and offered < max_sweeps * size:
        voxels = _disjoint_voxels(shape, rng)
        offered += voxels.size // 2
        is_pore = image[voxels].astype(bool)
        pairs = min(int(is_pore.sum()), voxels.size - int(is_pore.sum()))
        if pairs == 0:
            continue
        swaps = np.stack([voxels[is_pore][:pairs], voxels[~is_pore][:pairs]], axis=1)
        change = _swap_change(image, swaps, lines).reshape(pairs, -1)
        gain = np.einsum("kd,kd->k", change, 2 * residual.ravel() + change)
        if temperature < 0:
            uphill = gain[gain > 0]
            typical = np.median(uphill) if uphill.size else 0.0
            temperature = -typical / math.log(initial_acceptance)
        current = temperature * cooling_rate ** (offered / size)
        threshold = -current * np.log1p(-rng.random(pairs))
        take = _metropolis(gain, change, threshold)
        tried += pairs
        if take.size:
            image[swaps[take, 0]], image[swaps[take, 1]] = 0, 1
            residual += change[take].sum(axis=0).reshape(residual.shape)
            accepted += take.size
            error = correlation_error(residual + target, target)
        if on_sweep is not None and offered // size > sweeps_told:
            sweeps_told = offered // size
            on_sweep(sweeps_told, error)
    binary = image.reshape(shape).astype(bool)
    achieved = two_point_correlation(binary, r_max)
    error = correlation_error(achieved, target)
    report = ReconstructionReport(
        energy=float(np.sum((achieved - target) ** 2)),
        correlation_error=error,
        porosity=n_pore / size,
        r_max=r_max,
        sweeps=offered / size,
        swaps_tried=tried,
        swaps_accepted=accepted,
        final_temperature=max(temperature, 0.0) * cooling_rate ** (offered / size),
        converged=error <= tolerance,
        seconds=time.perf_counter() - start_time,
        target=target,
        achieved=achieved,
    )
    return binary, report


def _space(voxel_size_um: float) -> ParameterSpace:
    """The annealing parameters; the voxel size is centred on the reference's."""
    return ParameterSpace(
        parameters=(
            Continuous(
                name="voxel_size_um",
                unit="um",
                low=voxel_size_um / _RESAMPLING,
                high=voxel_size_um * _RESAMPLING,
                default=voxel_size_um,
                description="edge of a reconstructed voxel; the reference's S2 is resampled "
                "to it (linear in distance), the default keeps the reference's voxel",
            ),
            Integer(
                name="max_sweeps",
                unit="sweep",
                low=1,
                high=10_000,
                default=100,
                description="annealing budget; a sweep offers one pore/solid swap per voxel "
                "of the box",
            ),
            Continuous(
                name="initial_acceptance",
                unit="1",
                low=1e-4,
                high=0.9,
                default=0.1,
                description="probability that a median uphill swap is accepted at the start; "
                "sets the initial temperature from the spread of the first energy changes",
            ),
            Continuous(
                name="cooling_rate",
                unit="1/sweep",
                low=0.5,
                high=0.999,
                default=0.8,
                description="factor by which the temperature falls per sweep (geometric cooling)",
            ),
            Continuous(
                name="tolerance",
                unit="1",
                low=1e-4,
                high=0.5,
                default=0.01,
                description="correlation error max|S2_recon - S2_target| / porosity at which "
                "the annealing stops",
            ),
            Integer(
                name="max_distance_voxels",
                unit="voxel",
                low=1,
                high=512,
                default=32,
                description="largest separation at which S2 is matched, in reconstructed "
                "voxels; capped at half the shortest edge of the box and of the reference",
            ),
        )
    )


class ReconstructionTwin(Twin):
    """Binary structures statistically equivalent to a segmented micrograph.

    reference: a 2D image or 3D stack; its phase ``phase`` becomes pore (0), every other
    phase solid (1). Same dimension in and out: S2 is matched axis by axis. 2D reference,
    3D box: the medium is taken as isotropic and the image's axis-averaged S2 is matched
    along all three axes. 3D reference, 2D box: a section parallel to the reference's
    first two axes. The class ``space`` lists the parameters; an instance's ``space``
    centres ``voxel_size_um`` on its reference's voxel, so by default the reconstruction
    keeps the reference's resolution. ``last_report`` holds the report of the latest
    ``generate``. ``on_sweep(sweep, error)``, when set, hears each annealing sweep of a
    ``generate`` with its correlation error (``anneal``), so a long one can show its progress.
    """

    name = "reconstruct"
    phases = {0: "pore", 1: "solid"}
    space = _space(1.0)
    dims = (2, 3)
    periodic = (0, 1, 2)

    def __init__(self, reference: Microstructure | None = None, phase: int = 0) -> None:
        self.reference = reference
        self.phase = phase
        self.last_report: ReconstructionReport | None = None
        self.on_sweep: Callable[[int, float], None] | None = None
        if reference is None:
            return
        if not isinstance(reference, Microstructure):
            raise TwinError(
                f"reference must be a twins.Microstructure, got {type(reference).__name__}; "
                f"load it with {_HOW}"
            )
        porosity = float(np.mean(reference.labels == phase))
        if not 0 < porosity < 1:
            raise TwinError(
                f"reference phase {phase} fills {porosity:.0%} of the image; expected a phase "
                f"that is present but not everywhere; choose phase= one of {reference.phases}"
            )
        self.space = _space(reference.voxel_size_um)  # type: ignore[misc]  # per reference
        self._porosity = porosity
        self._edge = min(reference.shape) // 2
        self._reference_s2 = two_point_correlation(
            reference.labels == phase, self._edge, periodic=False
        )

    def summary(self) -> str:
        report = self.last_report
        if report is None:
            return ""
        verdict = "converged" if report.converged else "NOT converged (raise max_sweeps)"
        return (
            f"reconstruction: S2 correlation error {report.correlation_error:.4f} "
            f"(r_max {report.r_max} voxels), {report.sweeps:.0f} sweeps, "
            f"{report.seconds:.1f} s, {verdict}"
        )

    def target(self, shape: Shape, voxel_size_um: float, max_distance_voxels: int) -> np.ndarray:
        """The S2 to match along each axis of a box, ``(len(shape), r_max + 1)``.

        r counts voxels of size ``voxel_size_um``; r_max is capped by half the box's shortest
        edge and by the distance the reference resolves.
        """
        if self.reference is None:
            raise TwinError(f"the reconstruct twin needs a reference micrograph: {_HOW}")
        scale = voxel_size_um / self.reference.voxel_size_um
        r_max = min(max_distance_voxels, min(shape) // 2, int(self._edge / scale))
        if r_max < 1:
            raise TwinError(
                f"a box of shape {shape} at {voxel_size_um} um cannot resolve the reference's "
                "correlation; use a larger box or a finer voxel_size_um"
            )
        reference = self._reference_s2
        if self.reference.labels.ndim < len(shape):
            reference = np.repeat(reference.mean(axis=0, keepdims=True), len(shape), axis=0)
        distance = np.arange(r_max + 1) * scale
        grid = np.arange(self._edge + 1)
        return np.stack([np.interp(distance, grid, s2) for s2 in reference[: len(shape)]])

    def _generate(self, recipe: Recipe, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        target = self.target(
            shape, float(recipe["voxel_size_um"]), int(recipe["max_distance_voxels"])
        )
        binary, self.last_report = anneal(
            target,
            shape,
            self._porosity,
            rng,
            max_sweeps=int(recipe["max_sweeps"]),
            initial_acceptance=float(recipe["initial_acceptance"]),
            cooling_rate=float(recipe["cooling_rate"]),
            tolerance=float(recipe["tolerance"]),
            on_sweep=self.on_sweep,
        )
        return np.where(binary, 0, 1).astype(np.uint8)
