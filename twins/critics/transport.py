"""Steady diffusion and conduction through a voxel image by finite volumes.

One solver gives the pore phase's tortuosity factor and the effective electronic
conductivity of a solid whose phases conduct differently (active material, carbon-binder).
The definitions are TauFactor's (Cooper et al. 2016, SoftwareX 5:203; ``taufactor.Solver``),
so the two agree to the convergence tolerance:

- one unknown potential per voxel of the percolating cluster: conducting voxels, joined
  through faces (6 neighbours: edges and corners carry nothing in finite volumes), in a
  cluster that touches both the inlet and the outlet face. Isolated clusters and clusters
  that touch one face only carry no steady flux and are left out; dead ends hanging on the
  backbone stay in (they carry no net flux);
- the conductance of the face between voxels a and b is the harmonic mean
  ``2 σa σb / (σa + σb)`` (voxel edge 1); a face to an insulating voxel carries nothing;
- potential 1 on the inlet face and 0 on the outlet face of ``axis``, half a voxel from the
  first and last voxel centres (conductance ``2 σ``); no flux through the four other faces;
- ``σ_eff = F L / (A ΔΦ)``: F the steady flux through a cross-section, L the number of
  voxels along ``axis``, A the number of voxels in a cross-section, ΔΦ = 1;
- ``τ = Σ_p ε_p σ_p / σ_eff``, ε_p the volume fraction of phase p in the whole box
  (percolating or not). For one phase of σ = 1 (``tortuosity``) that is TauFactor's
  ``τ = ε D0 / D_eff``. TauFactor's ``MultiPhaseSolver`` puts the boundary a whole voxel
  away and uses L + 1 instead: its values differ from ours by O(1/L).

The linear system is symmetric positive definite; it is solved by flexible conjugate gradients
preconditioned with an aggregation algebraic multigrid K-cycle (robust to the
jumps of σ between phases and to the ragged pore geometry). Convergence is judged
physically: the flux through every cross-section (inlet face, the faces between voxel
slices, outlet face) must agree to ``rtol`` relative to the largest, and τ must change by
less than ``rtol`` (relative) between iterations. TauFactor's ``conv_crit`` is the same
spread over the interior cross-sections only, with an absolute τ change below 2e-3 per 100
sweeps, so ``rtol = conv_crit`` is at least as strict as TauFactor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict
from scipy import ndimage

from poreloop.twins.critics.multigrid import Aggregation
from poreloop.twins.errors import CriticError


class TransportResult(BaseModel):
    """Steady transport along one axis of a voxel image; definitions in the module docstring.

    A structure without a percolating path is a result, not an error: ``sigma_eff = 0``,
    ``tau = inf``, ``percolating = False``, ``converged = True``, ``iterations = 0``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    axis: int
    shape: tuple[int, int, int]
    sigma_eff: float
    """Effective conductivity, in the units of the phase conductivities (D_eff/D0 for
    ``tortuosity``)."""
    sigma_mean: float
    """Volume-weighted mean conductivity ``Σ ε_p σ_p`` of the box, the parallel bound."""
    tau: float
    """Tortuosity factor ``sigma_mean / sigma_eff`` (≥ 1 for one phase); inf without a path."""
    volume_fraction: float
    """Fraction of the box in conducting phases (the porosity for ``tortuosity``)."""
    percolating_fraction: float
    """Fraction of the box in the cluster that joins inlet and outlet."""
    flux_fraction: dict[int, float]
    """Share of the axial flux carried by each conducting phase (voxel-averaged, sums to 1)."""
    percolating: bool
    converged: bool
    iterations: int
    residual: float
    """Final spread of the cross-section fluxes, (max - min) / max."""
    tau_change: float
    """Relative change of τ in the last iteration."""

    @property
    def d_eff(self) -> float:
        """Relative effective diffusivity D_eff / D0 (``tortuosity``)."""
        return self.sigma_eff

    @property
    def porosity(self) -> float:
        """Volume fraction of the conducting phase (``tortuosity``)."""
        return self.volume_fraction


def tortuosity(
    volume: np.ndarray, axis: int = 0, *, rtol: float = 1e-3, max_iterations: int = 500
) -> TransportResult:
    """Tortuosity factor ``τ = ε D0 / D_eff`` of the True phase along ``axis``.

    volume: ``(nx, ny, nz)`` bool, True where the phase conducts (the pore phase for
    diffusion). ``.d_eff`` is D_eff / D0, ``.porosity`` the True fraction of the box.
    """
    if not isinstance(volume, np.ndarray) or volume.dtype != np.bool_:
        got = volume.dtype if isinstance(volume, np.ndarray) else type(volume).__name__
        raise CriticError(
            f"tortuosity needs a boolean array (True = conducting phase), got {got}; "
            "pass e.g. labels == pore_id, or use conductivity() for labelled phases"
        )
    return conductivity(volume, {True: 1.0}, axis, rtol=rtol, max_iterations=max_iterations)


def conductivity(
    labels: np.ndarray,
    sigmas: Mapping[int, float],
    axis: int = 0,
    *,
    rtol: float = 1e-3,
    max_iterations: int = 500,
) -> TransportResult:
    """Effective conductivity of a labelled image along ``axis``.

    labels: ``(nx, ny, nz)`` integer (or bool) phase ids. sigmas: phase id → conductivity
    (any one unit, ≥ 0); phases not in ``sigmas`` insulate. ``rtol`` is the relative flux
    spread and τ change to converge to; after ``max_iterations`` CG iterations the result
    comes back with ``converged = False``.
    """
    _check(labels, sigmas, axis, rtol, max_iterations)
    axis = int(axis)
    sigma = np.zeros(labels.shape)
    for phase, value in sigmas.items():
        sigma[labels == phase] = value
    fractions = {int(p): float(np.mean(labels == p)) for p, s in sigmas.items() if s > 0}
    sigma_mean = float(sum(fractions[int(p)] * s for p, s in sigmas.items() if s > 0))
    common = {
        "axis": axis,
        "shape": labels.shape,
        "sigma_mean": sigma_mean,
        "volume_fraction": float(sum(fractions.values())),
    }
    system = _System.assemble(np.moveaxis(sigma, axis, 0))
    if system is None:
        return TransportResult(
            **common,
            sigma_eff=0.0,
            tau=float("inf"),
            percolating_fraction=0.0,
            flux_fraction=dict.fromkeys(fractions, 0.0),
            percolating=False,
            converged=True,
            iterations=0,
            residual=0.0,
            tau_change=0.0,
        )
    solution = _pcg(system, Aggregation(system.A), rtol, max_iterations)
    voxel_flux = system.voxel_flux(solution.x)
    phase = np.moveaxis(labels, axis, 0)[system.cluster]
    flux_fraction = {p: float(voxel_flux[phase == p].sum() / voxel_flux.sum()) for p in fractions}
    return TransportResult(
        **common,
        sigma_eff=solution.sigma_eff,
        tau=sigma_mean / solution.sigma_eff if solution.sigma_eff > 0 else float("inf"),
        percolating_fraction=float(system.x0.size / labels.size),
        flux_fraction=flux_fraction,
        percolating=True,
        converged=solution.converged,
        iterations=solution.iterations,
        residual=solution.residual,
        tau_change=solution.tau_change,
    )


def _check(
    labels: np.ndarray, sigmas: Mapping[int, float], axis: int, rtol: float, max_iterations: int
) -> None:
    """Raise ``CriticError`` for input the solver cannot take, naming what was expected."""
    if not isinstance(labels, np.ndarray) or not (
        np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_
    ):
        got = labels.dtype if isinstance(labels, np.ndarray) else type(labels).__name__
        raise CriticError(f"labels must be an integer array of phase ids, got {got}")
    if labels.ndim != 3 or labels.size == 0:
        raise CriticError(
            f"labels must be a non-empty 3D array (nx, ny, nz), got shape {labels.shape}; "
            "add an axis of length 1 for a 2D image"
        )
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer) or axis not in (0, 1, 2):
        raise CriticError(f"axis must be 0, 1 or 2, got {axis!r}")
    if not isinstance(sigmas, Mapping) or not sigmas:
        raise CriticError(
            f"sigmas must map phase ids to conductivities, e.g. {{1: 1.0}}, got {sigmas!r}"
        )
    for phase, value in sigmas.items():
        if not isinstance(phase, int | np.integer):
            raise CriticError(f"phase ids in sigmas must be integers, got {phase!r}")
        if not isinstance(value, int | float | np.number) or not (
            np.isfinite(value) and value >= 0
        ):
            raise CriticError(
                f"conductivity of phase {phase} must be a finite number ≥ 0, got {value!r}"
            )
    if not 0 < rtol < 1:
        raise CriticError(f"rtol must lie in (0, 1), got {rtol!r}")
    if max_iterations < 1:
        raise CriticError(f"max_iterations must be at least 1, got {max_iterations!r}")


@dataclass(frozen=True)
class _System:
    """The finite-volume system on the percolating cluster, flow along the first axis.

    ``A x = b`` (n unknowns, SPD); ``faces`` are the (a, b, g) voxel pairs across the slices,
    a upstream; ``layers @ x`` is the flux through each cross-section k between slices k - 1
    and k, but for the inlet (0) and outlet (L) faces, which ``section_flux`` adds.
    """

    cluster: np.ndarray  # (L, ny, nz) bool: the voxels that carry unknowns
    A: sp.csr_matrix  # (n, n)
    b: np.ndarray  # (n,)
    x0: np.ndarray  # (n,) linear initial guess
    faces: tuple[np.ndarray, np.ndarray, np.ndarray]
    layers: sp.csr_matrix  # (L + 1, n)
    inlet: tuple[np.ndarray, np.ndarray]  # unknown index, conductance to the face
    outlet: tuple[np.ndarray, np.ndarray]

    @classmethod
    def assemble(cls, sigma: np.ndarray) -> _System | None:
        """System for the conductivity map ``sigma`` (L, ny, nz); None if nothing percolates."""
        clusters, count = ndimage.label(sigma > 0)
        through = np.intersect1d(clusters[0], clusters[-1])
        through = through[through > 0]
        if through.size == 0:
            return None
        keep = np.zeros(count + 1, dtype=bool)
        keep[through] = True
        cluster = keep[clusters]
        n = int(cluster.sum())
        index = np.full(sigma.shape, -1, dtype=np.int32)
        index[cluster] = np.arange(n, dtype=np.int32)
        s = sigma[cluster]

        # The faces between unknowns along each axis d, a the lower voxel and b the upper one;
        # both come out increasing (unknowns are numbered in C order).
        pairs = []
        for d in range(3):
            lower, upper = [slice(None)] * 3, [slice(None)] * 3
            lower[d], upper[d] = slice(None, -1), slice(1, None)
            below, above = index[tuple(lower)], index[tuple(upper)]
            inside = (below >= 0) & (above >= 0)
            a, b = below[inside], above[inside]
            pairs.append((a, b, 2 * s[a] * s[b] / (s[a] + s[b])))
        inlet = index[0][index[0] >= 0]
        outlet = index[-1][index[-1] >= 0]
        g_in, g_out = 2 * s[inlet], 2 * s[outlet]
        diagonal = np.zeros(n)
        for a, b, g in pairs:
            diagonal += np.bincount(a, g, n) + np.bincount(b, g, n)
        diagonal[inlet] += g_in
        diagonal[outlet] += g_out
        A = _csr_by_columns(
            n,
            # every row's entries in column order: -x, -y, -z neighbours, itself, +z, +y, +x
            [(b, a, -g) for a, b, g in pairs]
            + [(np.arange(n, dtype=np.int32), np.arange(n, dtype=np.int32), diagonal)]
            + [(a, b, -g) for a, b, g in reversed(pairs)],
        )
        rhs = np.zeros(n)
        rhs[inlet] = g_in
        length = sigma.shape[0]
        slice_of = np.repeat(np.arange(length), cluster.sum(axis=(1, 2)))  # (n,) along the flow
        x0 = 1 - (slice_of + 0.5) / length
        faces = pairs[0]
        return cls(
            cluster,
            A,
            rhs,
            x0,
            faces,
            _layers(faces, slice_of, length),
            (inlet, g_in),
            (outlet, g_out),
        )

    def section_flux(self, x: np.ndarray) -> np.ndarray:
        """The flux through each of the L + 1 cross-sections, inlet face first, (L + 1,)."""
        q = self.layers @ x
        (inlet, g_in), (outlet, g_out) = self.inlet, self.outlet
        q[0] = g_in @ (1 - x[inlet])
        q[-1] = g_out @ x[outlet]
        return q

    def voxel_flux(self, x: np.ndarray) -> np.ndarray:
        """Axial flux through each unknown's voxel, the mean over its two axial faces, (n,)."""
        a, b, g = self.faces
        f = g * (x[a] - x[b])
        n = x.size
        q = np.bincount(a, f, n) + np.bincount(b, f, n)
        inlet, g_in = self.inlet
        outlet, g_out = self.outlet
        q[inlet] += g_in * (1 - x[inlet])
        q[outlet] += g_out * x[outlet]
        return q / 2


def _layers(
    faces: tuple[np.ndarray, np.ndarray, np.ndarray], slice_of: np.ndarray, length: int
) -> sp.csr_matrix:
    """(L + 1, n): row k sums g (x_a - x_b) over the faces between slices k - 1 and k. The
    faces come ordered by their upstream voxel, so by section: each row's entries are one run
    of faces, its a-terms then its b-terms, placed without a sort."""
    a, b, g = faces
    section = slice_of[a] + 1
    counts = np.bincount(section, minlength=length + 1)
    indptr = np.zeros(length + 2, dtype=np.int64)
    np.cumsum(2 * counts, out=indptr[1:])
    first = np.cumsum(counts) - counts  # the first face of each section
    f = np.arange(a.size)
    at_a = indptr[section] + (f - first[section])
    indices = np.empty(2 * a.size, dtype=np.int32)
    data = np.empty(2 * a.size)
    indices[at_a], data[at_a] = a, g
    indices[at_a + counts[section]], data[at_a + counts[section]] = b, -g
    return sp.csr_matrix((data, indices, indptr), shape=(length + 1, slice_of.size))


def _csr_by_columns(
    n: int, groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> sp.csr_matrix:
    """An (n, n) CSR matrix from groups of (rows, columns, values), each row at most once per
    group and the groups in the column order every row's entries take: the entries go straight
    to their place, without the sort a COO conversion pays for."""
    counts = np.zeros(n + 1, dtype=np.int64)
    for rows, _, _ in groups:
        counts[1:] += np.bincount(rows, minlength=n)
    indptr = np.cumsum(counts)
    nnz = int(indptr[-1])
    indices = np.empty(nnz, dtype=np.int32)
    data = np.empty(nnz)
    filled = indptr[:-1].copy()
    for rows, columns, values in groups:
        at = filled[rows]
        indices[at], data[at] = columns, values
        filled[rows] += 1
    matrix = sp.csr_matrix((data, indices, indptr), shape=(n, n))
    matrix.has_canonical_format = True
    return matrix


@dataclass(frozen=True)
class _Solution:
    x: np.ndarray
    sigma_eff: float
    iterations: int
    residual: float
    tau_change: float
    converged: bool


def _pcg(
    system: _System,
    precondition: Callable[[np.ndarray], np.ndarray],
    rtol: float,
    max_iterations: int,
) -> _Solution:
    """Flexible preconditioned conjugate gradients (Polak-Ribière β, so a K-cycle, which is
    not a fixed linear operator, may precondition it), stopped by the physical criterion of
    the module."""
    length, section = system.cluster.shape[0], system.cluster[0].size

    def measure(x: np.ndarray) -> tuple[float, float]:
        """Cross-section flux spread and σ_eff of the iterate."""
        q = system.section_flux(x)
        spread = (q.max() - q.min()) / q.max() if q.max() > 0 else np.inf
        return float(spread), float(q.mean()) * length / section

    A, x = system.A, system.x0.copy()
    r = system.b - A @ x
    z = precondition(r)
    p = z.copy()
    rz = r @ z
    spread, sigma_eff = measure(x)
    change = np.inf
    for iteration in range(1, max_iterations + 1):
        Ap = A @ p
        pAp = p @ Ap
        if not pAp > 0:  # the residual is at round-off: x cannot change any more
            return _Solution(x, sigma_eff, iteration - 1, spread, 0.0, spread < rtol)
        x += (rz / pAp) * p
        r_old = r.copy()
        r -= (rz / pAp) * Ap
        spread, new_sigma = measure(x)
        change = abs(sigma_eff / new_sigma - 1) if new_sigma > 0 else np.inf
        sigma_eff = new_sigma
        if spread < rtol and change < rtol:
            return _Solution(x, sigma_eff, iteration, spread, change, True)
        z = precondition(r)
        beta = (z @ (r - r_old)) / rz
        rz = r @ z
        p = z + beta * p
    return _Solution(x, sigma_eff, max_iterations, spread, change, False)
