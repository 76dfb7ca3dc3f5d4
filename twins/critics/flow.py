"""Absolute permeability of the pore space: Stokes flow by finite volumes on the voxels.

What a GDL or electrode designer needs for the through-plane and in-plane gas flow: the
Darcy permeability ``k = μ ⟨u⟩ L / ΔP`` of a sample held in a permeameter.

- Staggered (MAC) grid: pressure at the centres of the pore voxels, each velocity component
  on the voxel faces normal to it, voxel edge h = ``voxel_size_um``. Unknowns only on the pore
  cluster that joins the inlet and outlet faces (face-connected); pockets and clusters that
  touch one face only carry no flow and are left out.
- No slip on the solid: a face between pore and solid is closed (no normal flow); a
  tangential velocity next to solid sees the wall on the voxel boundary, half a cell away
  (mirror ghost ``-u``), or zero at the edge it shares with a closed face. Second order: a
  slit of H voxels gives ``(H² + 2) h² / 12`` for ``H² h² / 12``.
- Pressure ``ΔP`` on the inlet face and 0 on the outlet face of ``axis`` (reservoirs); the
  axial velocity on those faces carries a half control volume and no axial stress, the
  other components no axial gradient, so fully developed flow is exact there and L is the
  box length. The four side faces are impermeable; ``sides='slip'`` makes them symmetry
  planes (no shear: the sample stands for more of the same material), ``sides='wall'`` no-slip
  (a sample in a sleeve; a box full of pore is then a square duct).
- ``⟨u⟩`` is the superficial velocity, the axial velocity averaged over the whole box
  (solid included), so ``k`` is the Darcy permeability of the material, not of its pores.
- Resolution: the error is second order in the voxels across a pore (2/H² for a slit, about
  4/a² for a square duct), but throats 1–2 voxels wide come out too permeable (a one-voxel
  duct 3.5×). Random sphere packs give Carman's k (1 - ε)² / (ε³ d²) = 1/145 at 8 voxels a
  diameter and 1/165 at 12, for 1/180 in the continuum.
- Stokes flow is linear: the system is solved once with μ = h = ΔP = 1 and scaled,
  ``k = k_vox h²``. ``viscosity_pa_s`` and ``pressure_drop_pa`` only set the reported
  superficial velocity (creeping flow assumed).

The saddle-point system ``[[A, G], [Gᵀ, 0]]`` is symmetric and indefinite. It is solved by
MINRES with a block-diagonal SPD preconditioner: an aggregation AMG V-cycle for the
vector Laplacian ``A``, and for the pressure Schur complement the Cahouet–Chabard form
``(Gᵀ W⁻¹ G)⁻¹ + I``, where ``W`` is the wall (Brinkman-like) part of ``A``'s diagonal: in
narrow pores ``A`` is dominated by its walls and the Schur complement is Darcy-like, in open
pores it is the identity. The iteration count grows slowly with the box: 36–40 on a GDL
at 32³, 52–60 at 64³, 60–68 at 96³, 92 at 128³; 40–56 on sphere packs at 32³, 64–76 at
64³. Convergence is judged physically: the unbalanced force relative to the driving force
(momentum residual) and the spread of the volumetric flux over the cross-sections, both
below ``rtol``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage
from scipy.linalg import get_blas_funcs

from poreloop.twins.critics.arrays import SINGLE_PRECISION_RTOL
from poreloop.twins.critics.multigrid import Aggregation
from poreloop.twins.errors import CriticError

DARCY_M2 = 9.869233e-13
"""One darcy in m²."""

CHECK_EVERY = 4
"""MINRES iterations between convergence checks: a check costs a product with the whole
saddle-point matrix, as much as the iteration itself, and MINRES gets there at most three
iterations late."""
_WALL_FLOOR = 0.7
"""Smallest wall term of a face in the Schur preconditioner (1/h² units): keeps ``W`` invertible
away from walls, where the identity term takes over. MINRES iterations at 96³ for floors 0.1 /
0.3 / 0.7 / 1.5: GDL through-plane 68 / 56 / 56 / 60, in-plane 80 / 64 / 60 / 60, electrode 124
/ 88 / 76 / 80, PoreSpy blobs 128 / 92 / 84 / 84, polydisperse spheres 108 / 80 / 76 / 76; the
GDL at 128³ took 104 at 0.1 and 72 from 0.5 to 0.8."""

_STENCIL = ((0, -1), (1, -1), (2, -1), (0, 0), (2, 1), (1, 1), (0, 1))
"""A face's neighbours as (axis, step), in the order of their flat offsets, so that a row's
columns come out ascending; (0, 0) is the face itself."""
_DIFFERENCE = np.array([-1.0, 1.0], dtype=np.float32)
"""A gradient row: the cell below the face, then the one above it (in ascending order)."""

Sides = Literal["slip", "wall"]


class PermeabilityResult(BaseModel):
    """Darcy permeability of the pore space along one axis; definitions in the module docstring.

    A pore space that does not join the inlet to the outlet is a result, not an error:
    ``k_m2 = 0``, ``percolating = False``, ``converged = True``, ``iterations = 0``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    axis: int = Field(description="Axis of the box the flow runs along.")
    shape: tuple[int, int, int] = Field(description="Box shape, voxels.")
    voxel_size_um: float = Field(description="Voxel edge, µm.")
    k_m2: float = Field(description="Absolute (Darcy) permeability, m².")
    mean_velocity_m_s: float = Field(
        description="Superficial (Darcy) velocity at pressure_drop_pa and viscosity_pa_s, m/s."
    )
    pressure_drop_pa: float = Field(description="Pressure drop across the box, Pa.")
    viscosity_pa_s: float = Field(description="Dynamic viscosity of the fluid, Pa·s.")
    porosity: float = Field(description="Pore fraction of the box, 1.")
    percolating_porosity: float = Field(
        description="Fraction of the box in the pore cluster that joins inlet and outlet, 1."
    )
    percolating: bool = Field(description="Whether a pore path joins the inlet and outlet faces.")
    converged: bool = Field(description="Whether residual and flux_spread fell below rtol.")
    iterations: int = Field(description="MINRES iterations.")
    residual: float = Field(
        description="Unbalanced viscous and pressure force relative to the driving force, 1."
    )
    flux_spread: float = Field(
        description="(max - min) / max of the volumetric flux through the cross-sections, 1."
    )
    seconds: float = Field(description="Wall-clock time of the calculation, s.")

    @property
    def k_darcy(self) -> float:
        """Permeability in darcy (1 D = 9.869233e-13 m²)."""
        return self.k_m2 / DARCY_M2

    @property
    def k_um2(self) -> float:
        """Permeability in µm²."""
        return self.k_m2 * 1e12


def permeability(
    pore: np.ndarray,
    voxel_size_um: float,
    axis: int = 0,
    *,
    sides: Sides = "slip",
    viscosity_pa_s: float = 1.8e-5,
    pressure_drop_pa: float = 1.0,
    rtol: float = 1e-3,
    max_iterations: int = 1000,
) -> PermeabilityResult:
    """Darcy permeability of the True voxels of ``pore`` for flow along ``axis``.

    pore: ``(nx, ny, nz)`` bool, True where fluid flows (e.g. ``labels == 0``).
    voxel_size_um: voxel edge, µm. The default fluid is air at 20 °C; it only sets
    ``mean_velocity_m_s``. After ``max_iterations`` the result comes back with
    ``converged = False``.
    """
    start = time.perf_counter()
    _check(pore, voxel_size_um, axis, sides, viscosity_pa_s, pressure_drop_pa, rtol, max_iterations)
    cluster = _spanning_cluster(np.moveaxis(pore, axis, 0))
    common = {
        "axis": int(axis),
        "shape": pore.shape,
        "voxel_size_um": float(voxel_size_um),
        "pressure_drop_pa": float(pressure_drop_pa),
        "viscosity_pa_s": float(viscosity_pa_s),
        "porosity": float(pore.mean()),
        "percolating_porosity": float(cluster.mean()),
    }
    if not cluster.any():
        return PermeabilityResult(
            **common,
            k_m2=0.0,
            mean_velocity_m_s=0.0,
            percolating=False,
            converged=True,
            iterations=0,
            residual=0.0,
            flux_spread=0.0,
            seconds=time.perf_counter() - start,
        )
    if sides == "slip" and cluster.all():
        raise CriticError(
            "the pore phase fills the box, so with slip sides nothing resists the flow and the "
            "permeability is unbounded; include the solid, or use sides='wall' for a duct"
        )
    system = _Stokes.assemble(cluster, sides)
    solution = system.solve(rtol, max_iterations)
    h_m = voxel_size_um * 1e-6
    k_m2 = solution.k_vox * h_m**2
    length_m = cluster.shape[0] * h_m
    return PermeabilityResult(
        **common,
        k_m2=k_m2,
        mean_velocity_m_s=k_m2 * pressure_drop_pa / (viscosity_pa_s * length_m),
        percolating=True,
        converged=solution.converged,
        iterations=solution.iterations,
        residual=solution.residual,
        flux_spread=solution.flux_spread,
        seconds=time.perf_counter() - start,
    )


def _check(
    pore: np.ndarray,
    voxel_size_um: float,
    axis: int,
    sides: str,
    viscosity_pa_s: float,
    pressure_drop_pa: float,
    rtol: float,
    max_iterations: int,
) -> None:
    """Raise ``CriticError`` for input the solver cannot take, naming what was expected."""
    if not isinstance(pore, np.ndarray) or pore.dtype != np.bool_:
        got = pore.dtype if isinstance(pore, np.ndarray) else type(pore).__name__
        raise CriticError(
            f"pore must be a boolean array (True = pore), got {got}; pass e.g. labels == 0"
        )
    if pore.ndim != 3 or pore.size == 0:
        raise CriticError(
            f"pore must be a non-empty 3D array (nx, ny, nz), got shape {pore.shape}; "
            "add an axis of length 1 for a 2D image"
        )
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer) or axis not in (0, 1, 2):
        raise CriticError(f"axis must be 0, 1 or 2, got {axis!r}")
    if sides not in ("slip", "wall"):
        raise CriticError(f"sides must be 'slip' or 'wall', got {sides!r}")
    for name, value in (
        ("voxel_size_um", voxel_size_um),
        ("viscosity_pa_s", viscosity_pa_s),
        ("pressure_drop_pa", pressure_drop_pa),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise CriticError(f"{name} must be a positive number, got {value!r}")
        if not (np.isfinite(value) and value > 0):
            raise CriticError(f"{name} must be a positive finite number, got {value!r}")
    if not (isinstance(rtol, float | int) and 0 < rtol < 1):
        raise CriticError(f"rtol must lie in (0, 1), got {rtol!r}")
    if isinstance(max_iterations, bool) or not (
        isinstance(max_iterations, int | np.integer) and max_iterations >= 1
    ):
        raise CriticError(f"max_iterations must be an integer ≥ 1, got {max_iterations!r}")


def _spanning_cluster(pore: np.ndarray) -> np.ndarray:
    """Pore voxels face-connected to both the first and the last slice, ``(L, ny, nz)`` bool."""
    clusters, count = ndimage.label(pore)
    through = np.intersect1d(clusters[0], clusters[-1])
    keep = np.zeros(count + 1, dtype=bool)
    keep[through[through > 0]] = True
    return keep[clusters]


@dataclass(frozen=True)
class _Solution:
    k_vox: float
    iterations: int
    residual: float
    flux_spread: float
    converged: bool


@dataclass(frozen=True)
class _Stokes:
    """The MAC system ``K [u; p] = [b; 0]`` on the spanning cluster, flow along the first axis.

    A: (m, m) vector Laplacian of the m open faces, the a axial faces first; G: (m, n)
    gradient to the n pore cells, Gᵀ the (negated) divergence; b: (m,) the inlet pressure
    ΔP = 1. ``sections`` (a,) is the cross-section (0 … L) of each axial face, ``weight`` (a,)
    its share of the box volume: ``weight @ u[:a]`` is the superficial velocity.
    """

    shape: tuple[int, int, int]
    A: sp.csr_matrix
    G: sp.csr_matrix
    b: np.ndarray
    sections: np.ndarray
    weight: np.ndarray

    @classmethod
    def assemble(cls, cluster: np.ndarray, sides: Sides) -> _Stokes:
        """System for the spanning cluster ``cluster`` (L, ny, nz) bool."""
        shape = cluster.shape
        # One cell around the box: the inlet and outlet reservoirs repeat the first and last
        # slice, so a face there sees the walls of its own slice. The side padding only keeps
        # the indices aligned; the side condition enters through ``side_term``.
        cells = np.pad(cluster, [(1, 1), (0, 0), (0, 0)], mode="edge")
        cells = np.pad(cells, [(0, 0), (1, 1), (1, 1)])
        cell_id = np.full(shape, -1, dtype=np.int64)
        cell_id[cluster] = np.arange(int(cluster.sum()))
        cell_id = np.pad(cell_id, 1, constant_values=-1)
        side_term = 2.0 if sides == "wall" else 0.0

        columns_of, values_of, gradient = [], [], []
        offset = 0
        for c in range(3):
            ids, term, pos = _faces(cells, shape, c, side_term, offset)
            me = np.arange(offset, offset + pos.size)
            offset += me.size
            strides = np.array([ids.shape[1] * ids.shape[2], ids.shape[2], 1])
            index = np.stack(np.unravel_index(pos, ids.shape)) - 1  # (3, m_c) face indices
            # the half control volume of an inlet or outlet face has half its side area
            half = np.where((c == 0) & ((index[0] == 0) | (index[0] == shape[0])), 0.5, 1.0)
            # what a neighbour adds to the diagonal: 1 if it is open, else its closed term
            reach = np.where(ids >= 0, 1.0, term).ravel()
            columns = np.empty((me.size, len(_STENCIL)), dtype=np.int64)
            values = np.empty((me.size, len(_STENCIL)), dtype=np.float32)
            diagonal = np.zeros(me.size, dtype=np.float32)
            for slot, (d, step) in enumerate(_STENCIL):
                if step == 0:
                    continue
                q = pos + step * strides[d]
                w = half if d != 0 else 1.0
                columns[:, slot] = ids.ravel()[q]
                values[:, slot] = -w
                diagonal += w * reach[q]
            centre = _STENCIL.index((0, 0))
            columns[:, centre], values[:, centre] = me, diagonal
            columns_of.append(columns)
            values_of.append(values)
            # gradient: the pressure of the cell above the face minus the one below it
            up = np.ravel_multi_index(tuple(index + 1), cell_id.shape)
            down = up - np.ravel_multi_index(tuple(np.eye(3, dtype=int)[c]), cell_id.shape)
            cell = cell_id.ravel()
            gradient.append(np.stack([cell[down], cell[up]], axis=1))
            if c == 0:  # axial faces are unknowns 0 … a - 1
                sections, weight = index[0], half / cluster.size
        m, n = offset, int(cluster.sum())
        A = _csr(np.concatenate(columns_of), np.concatenate(values_of), width=m)
        G = _csr(np.concatenate(gradient), np.broadcast_to(_DIFFERENCE, (m, 2)), width=n)
        b = np.zeros(m)
        b[np.flatnonzero(sections == 0)] = 1.0  # p = 1 on the inlet face, 0 on the outlet
        return cls(shape, A, G, b, sections, weight)

    def solve(self, rtol: float, max_iterations: int) -> _Solution:
        """MINRES on the saddle-point system, stopped by the physical criterion."""
        precision = np.float32 if rtol >= SINGLE_PRECISION_RTOL else np.float64
        A, G, b = self.A, self.G, self.b
        m = A.shape[0]
        K = sp.bmat([[A, G], [G.T, None]], format="csr", dtype=precision)
        rhs = np.concatenate([b, np.zeros(G.shape[1])]).astype(precision)
        wall = np.maximum(2 * A.diagonal() - np.asarray(abs(A).sum(axis=1)).ravel(), _WALL_FLOOR)
        # MINRES needs a fixed linear preconditioner: V-cycles, not K-cycles
        velocity = Aggregation(A)
        pressure = Aggregation((G.T @ sp.diags(1 / wall) @ G).tocsr())

        def precondition(r: np.ndarray) -> np.ndarray:
            return np.concatenate([velocity(r[:m]), pressure(r[m:]) + r[m:]])

        axial = self.sections.size
        b_norm = float(np.linalg.norm(b))
        measured: dict[str, float] = {}

        def done(x: np.ndarray) -> bool:
            flux = np.bincount(self.sections, x[:axial], self.shape[0] + 1)
            top = flux.max()
            measured["flux_spread"] = float((top - flux.min()) / top) if top > 0 else np.inf
            force = (K @ x)[:m]
            force -= b
            measured["residual"] = float(np.linalg.norm(force) / b_norm)
            return measured["residual"] < rtol and measured["flux_spread"] < rtol

        x, iterations, converged = _minres(K, rhs, precondition, done, max_iterations)
        k_vox = float(self.weight @ x[:axial].astype(np.float64)) * self.shape[0]
        return _Solution(
            k_vox, iterations, measured["residual"], measured["flux_spread"], converged
        )


def _faces(
    cells: np.ndarray, shape: tuple[int, int, int], c: int, side_term: float, offset: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faces normal to axis ``c`` on a grid padded by one face all round.

    Returns ``ids`` (unknown number from ``offset``, -1 for a closed or outside face),
    ``term`` (what a closed neighbour adds to the diagonal: 1 if it is the edge of a wall
    (one of its cells is pore), 2 if it lies inside the solid (mirror ghost, wall half a
    cell away), ``side_term`` outside the sides, 0 beyond the inlet and outlet where the
    flow is fully developed) and ``pos``, the flat positions of the open faces in ``ids``.
    """
    below = [slice(1, -1)] * 3
    above = [slice(1, -1)] * 3
    below[c] = slice(0, shape[c] + 1)
    above[c] = slice(1, shape[c] + 2)
    lower, upper = cells[tuple(below)], cells[tuple(above)]
    is_open = lower & upper
    if c != 0:  # the sides are impermeable
        ends: list[slice | list[int]] = [slice(None)] * 3
        ends[c] = [0, -1]
        is_open[tuple(ends)] = False
    term = np.pad(2.0 - lower.astype(float) - upper, 1, constant_values=side_term)
    term[[0, -1]] = 0.0
    ids = np.full(is_open.shape, -1, dtype=np.int64)
    ids[is_open] = np.arange(offset, offset + int(is_open.sum()))
    ids = np.pad(ids, 1, constant_values=-1)
    return ids, term, np.flatnonzero(ids >= 0)


def _csr(columns: np.ndarray, values: np.ndarray, width: int) -> sp.csr_matrix:
    """CSR matrix with ``values[i, j]`` at ``(i, columns[i, j])``, skipping negative columns.

    Built straight from the rows, each already ascending: a COO detour sorts tens of millions
    of entries.
    """
    keep = columns >= 0
    indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
    return sp.csr_matrix((values[keep], columns[keep], indptr), shape=(len(columns), width))


def _minres(
    K: sp.csr_matrix,
    b: np.ndarray,
    precondition: Callable[[np.ndarray], np.ndarray],
    done: Callable[[np.ndarray], bool],
    max_iterations: int,
) -> tuple[np.ndarray, int, bool]:
    """Preconditioned MINRES (Paige & Saunders 1975; Elman, Silvester & Wathen, Alg. 4.1).

    K: (N, N) symmetric; precondition: an SPD approximation of K⁻¹. Stops when ``done(x)``
    (checked every ``CHECK_EVERY`` iterations and at the last) and returns
    ``(x, iterations, done)``. The vector updates are in place (BLAS axpy): temporaries the size
    of the system cost page faults that showed as a sixth of the time at 128³.
    """
    axpy = get_blas_funcs("axpy", (b,))
    x = np.zeros_like(b)
    v_old, v = np.zeros_like(b), b.copy()
    w_old, w = np.zeros_like(b), np.zeros_like(b)
    z = precondition(v)
    gamma_old, gamma = 1.0, float(np.sqrt(z @ v))
    eta = gamma
    s_old, s, c_old, c = 0.0, 0.0, 1.0, 1.0
    for iteration in range(1, max_iterations + 1):
        z /= gamma
        v_new = K @ z
        delta = float(v_new @ z)
        axpy(v, v_new, a=-delta / gamma)
        axpy(v_old, v_new, a=-gamma / gamma_old)
        z_new = precondition(v_new)
        gamma_new = float(np.sqrt(max(z_new @ v_new, 0.0)))
        alpha0 = c * delta - c_old * s * gamma
        alpha1 = float(np.hypot(alpha0, gamma_new))
        alpha2 = s * delta + c_old * c * gamma
        alpha3 = s_old * gamma
        c_old, s_old = c, s
        c, s = alpha0 / alpha1, gamma_new / alpha1
        # w_new = (z - alpha3 w_old - alpha2 w) / alpha1, built in w_old's storage
        w_old *= -alpha3 / alpha1
        axpy(w, w_old, a=-alpha2 / alpha1)
        axpy(z, w_old, a=1 / alpha1)
        w_old, w = w, w_old
        axpy(w, x, a=c * eta)
        eta = -s * eta
        last = iteration == max_iterations or gamma_new == 0.0
        if (iteration % CHECK_EVERY == 0 or last) and done(x):
            return x, iteration, True
        if gamma_new == 0.0:  # the Krylov space is exhausted: x is the exact solution
            return x, iteration, False
        v_old, v, z = v, v_new, z_new
        gamma_old, gamma = gamma, gamma_new
    return x, max_iterations, False
