"""Multigrid preconditioners for the SPD systems of the voxel critics.

``VoxelMultigrid`` is geometric and matrix-free, for the 7-point conduction operator on a box
(``Stencil``), written against the array API so it runs on torch (CUDA or CPU) or NumPy;
``Aggregation`` is algebraic, for the sparse matrices of the Stokes solver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from array_api_compat import device
from pyamg.aggregation import standard_aggregation
from pyamg.relaxation.relaxation import gauss_seidel
from pyamg.strength import symmetric_strength_of_connection
from scipy.sparse.linalg import factorized

from poreloop.twins.critics.arrays import to_numpy

MAX_COARSE = 500
"""Unknowns below which a multigrid hierarchy ends in a direct solve."""
OVER_CORRECTION = 1.8
"""Scale of a V-cycle's coarse-grid correction. Piecewise-constant prolongation undershoots
smooth errors; scaling its correction by 1.8 (Braess 1995) took CG on 128³ PoreSpy blobs from
34-48 iterations to 20-26."""
JACOBI_WEIGHT = 0.9
"""Damping of the Jacobi smoother on an ``Aggregation``'s finest level: below 1, where a
Laplacian's ``D⁻¹A`` (eigenvalues up to 2) keeps the V-cycle positive definite; 1.1 lost that
(MINRES stopped on a wrong permeability). 0.67, 0.8, 0.9 and 1.0 took 72-80 iterations on a
96³ GDL."""


class Aggregation:
    """Aggregation AMG for SPD ``A`` (n, n), a preconditioner for Krylov solvers.

    Aggregates from pyamg's standard aggregation on the strength graph (so phases of very
    different conductivity aggregate apart), piecewise-constant prolongation, Galerkin coarse
    operators, and a sparse direct solve on the coarsest level.

    Unsmoothed rather than smoothed aggregation: its Galerkin products only sum entries, where
    smoothed prolongators made the setup (sparse matrix products) cost more than the whole
    solve. The hierarchy is built and cycled in single precision: a preconditioner need only
    be roughly right, the outer Krylov method in double precision converges to the same
    answer, and every cycle moves half the bytes.

    Smoothing, one step before the coarse correction and one after it: damped Jacobi on the
    finest level, where it is one sparse product against a serial Gauss-Seidel sweep's two
    products' worth of time, and forward then backward Gauss-Seidel below. On a 128³ GDL's
    Stokes system Jacobi on the finest level took the same 92 MINRES iterations as
    Gauss-Seidel in three quarters of the time; on every level it took 132.

    Cycled as a V-cycle with the coarse correction scaled by ``OVER_CORRECTION``: a fixed
    linear operator, which MINRES needs.
    """

    def __init__(self, A: sp.csr_matrix) -> None:
        A = A.astype(np.float32)
        self.jacobi = (JACOBI_WEIGHT / A.diagonal()).astype(np.float32)
        self.levels: list[tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]] = []
        while A.shape[0] > MAX_COARSE:
            P = standard_aggregation(symmetric_strength_of_connection(A, 0.0))[0]
            if not 0 < P.shape[1] < A.shape[0]:
                break
            P = P.astype(np.float32).tocsr()
            R = P.T.tocsr()
            self.levels.append((A, P, R))
            A = (R @ A @ P).tocsr()
        self.coarse: Callable[[np.ndarray], np.ndarray] = factorized(A.tocsc())

    def __call__(self, r: np.ndarray) -> np.ndarray:
        return self._cycle(r.astype(np.float32, copy=False), 0).astype(r.dtype, copy=False)

    def _cycle(self, b: np.ndarray, level: int) -> np.ndarray:
        if level == len(self.levels):
            return self.coarse(b)
        A, P, R = self.levels[level]
        if level == 0:
            x = self.jacobi * b  # a Jacobi step from zero
        else:
            x = np.zeros_like(b)
            gauss_seidel(A, x, b, iterations=1, sweep="forward")
        residual = R @ (b - A @ x)
        x += OVER_CORRECTION * (P @ self._cycle(residual, level + 1))
        if level == 0:
            x += self.jacobi * (b - A @ x)
        else:
            gauss_seidel(A, x, b, iterations=1, sweep="backward")
        return x


Array = Any
"""An array of the backend's namespace (``twins.critics.arrays``)."""


def even_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` with every side longer than one rounded up to even, so 2x2x2 blocks tile it."""
    return tuple(n + n % 2 if n > 1 else n for n in shape)


def sides(axis: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Index of the lower and of the upper voxel of every face across ``axis``."""
    lower, upper = [slice(None)] * 3, [slice(None)] * 3
    lower[axis], upper[axis] = slice(None, -1), slice(1, None)
    return tuple(lower), tuple(upper)


def _zeros(xp: Any, like: Array, shape: tuple[int, ...]) -> Array:
    return xp.zeros(shape, dtype=like.dtype, device=device(like))


def dot(xp: Any, a: Array, b: Array) -> float:
    return float(xp.tensordot(a, b, axes=a.ndim))


class Stencil:
    """Steady conduction through a box of voxels, matrix-free: the SPD operator
    ``(A x)_i = Σ_j g_ij (x_i - x_j) + (inlet_i + outlet_i) x_i`` over the faces ij.

    ``faces`` are the conductances between neighbours across each axis, shaped (L - 1, ny, nz),
    (L, ny - 1, nz) and (L, ny, nz - 1); ``inlet`` and ``outlet`` (ny, nz) join the first slice
    and slice ``outlet_slice`` to fixed potentials outside. ``wraps`` maps an axis along which
    the box is periodic to the conductances joining its slice ``last`` to its first one
    (shaped like a slice) and ``last``. A voxel with no conductance at all (an insulator, a
    voxel off the percolating cluster, padding) has an all-zero row and column: whatever it
    holds never reaches another voxel, so no mask is needed anywhere.
    """

    def __init__(
        self,
        xp: Any,
        faces: tuple[Array, Array, Array],
        inlet: Array,
        outlet: Array,
        outlet_slice: int,
        wraps: dict[int, tuple[Array, int]] | None = None,
    ) -> None:
        self.xp, self.faces = xp, faces
        self.inlet, self.outlet, self.outlet_slice = inlet, outlet, outlet_slice
        self.wraps = {axis: wrap for axis, wrap in (wraps or {}).items() if wrap[1] > 0}
        """A slice wrapped onto itself (a side of one voxel or block) joins nothing."""
        self.shape = (faces[0].shape[0] + 1, faces[1].shape[1] + 1, faces[2].shape[2] + 1)
        self.work = _zeros(xp, faces[0], self.shape)
        """Room for one face flux per voxel: the products run without box-sized temporaries,
        whose page faults cost more than the arithmetic once a box outgrows the cache."""

    def subtract_product(self, x: Array, out: Array) -> Array:
        """``out -= A x``, in place."""
        out[0] -= self.inlet * x[0]
        out[self.outlet_slice] -= self.outlet * x[self.outlet_slice]
        for axis, g in enumerate(self.faces):
            lower, upper = sides(axis)
            flux = self.work[lower]
            flux[...] = x[lower]
            flux -= x[upper]
            flux *= g
            out[lower] -= flux
            out[upper] += flux
        for axis, (g, last) in self.wraps.items():
            first, end = layer(axis, 0), layer(axis, last)
            flux = g * (x[end] - x[first])
            out[end] -= flux
            out[first] += flux
        return out

    def product(self, x: Array, out: Array) -> Array:
        """``out = A x``."""
        out[...] = 0
        self.subtract_product(x, out)
        out *= -1
        return out

    def residual(self, b: Array, x: Array, out: Array) -> Array:
        """``out = b - A x``."""
        out[...] = b
        return self.subtract_product(x, out)

    def diagonal(self) -> Array:
        d = self.xp.zeros_like(self.work)
        for axis, g in enumerate(self.faces):
            lower, upper = sides(axis)
            d[lower] += g
            d[upper] += g
        d[0] += self.inlet
        d[self.outlet_slice] += self.outlet
        for axis, (g, last) in self.wraps.items():
            d[layer(axis, 0)] += g
            d[layer(axis, last)] += g
        return d

    def coarsened(self) -> Stencil:
        """The Galerkin operator ``Pᵀ A P`` for P constant on 2x2x2 blocks (sides of one stay
        whole): a coarse face conducts the sum of the fine faces it covers, so the coarse
        operator is again a conduction stencil, built in one pass over the faces."""
        xp = self.xp
        blocks = _blocks(self.shape)
        coarse = even_shape(tuple(n // b for n, b in zip(self.shape, blocks, strict=True)))
        faces = []
        for axis, g in enumerate(self.faces):
            across = [slice(None)] * 3
            across[axis] = slice(blocks[axis] - 1, None, blocks[axis])  # faces between blocks
            within = list(blocks)
            within[axis] = 1
            face_shape = list(coarse)
            face_shape[axis] -= 1
            faces.append(_padded(xp, _block_sum(xp, g[tuple(across)], tuple(within)), face_shape))
        inlet, outlet = (
            _padded(xp, _block_sum(xp, side[None], (1, *blocks[1:]))[0], coarse[1:])
            for side in (self.inlet, self.outlet)
        )
        outlet_slice = self.outlet_slice // blocks[0]
        wraps = {}
        for axis, (g, last) in self.wraps.items():
            in_plane = tuple(b for a, b in enumerate(blocks) if a != axis)
            section = tuple(n for a, n in enumerate(coarse) if a != axis)
            wraps[axis] = (_padded(xp, _block_sum(xp, g, in_plane), section), last // blocks[axis])
        return Stencil(xp, (faces[0], faces[1], faces[2]), inlet, outlet, outlet_slice, wraps)


def layer(axis: int, index: int) -> tuple[slice | int, ...]:
    """Index of slice ``index`` across ``axis``."""
    return (slice(None),) * axis + (index,)


def _block_sum(xp: Any, a: Array, blocks: tuple[int, ...]) -> Array:
    """Sums of ``a`` over blocks of ``blocks`` entries (each side of ``a`` a multiple)."""
    split: list[int] = []
    for n, b in zip(a.shape, blocks, strict=True):
        split += [n // b, b]
    return xp.sum(xp.reshape(a, tuple(split)), axis=tuple(range(1, 2 * a.ndim, 2)))


def _padded(xp: Any, a: Array, shape: list[int] | tuple[int, ...]) -> Array:
    """``a`` in the corner of zeros of ``shape``."""
    if tuple(a.shape) == tuple(shape):
        return a
    out = _zeros(xp, a, tuple(shape))
    out[tuple(slice(0, n) for n in a.shape)] = a
    return out


class VoxelMultigrid:
    """Geometric aggregation multigrid for a ``Stencil``: ``M(r, out)`` sets ``out`` to an
    approximate ``A⁻¹ r``, a preconditioner for flexible CG (``transport._pcg``).

    Aggregates are 2x2x2 blocks of voxels, so the hierarchy costs one pass over the faces per
    level (no strength graph, no sparse products) and everything is slicing and reductions
    that torch runs on a GPU or on every CPU thread. Each level smooths with one red-black
    Gauss-Seidel sweep before the coarse correction and one in reverse order after it; the
    coarsest (at most ``MAX_COARSE`` voxels) is solved by a dense inverse.

    A block can join pore voxels that meet only far away, which piecewise-constant aggregation
    punishes; Notay's K-cycle restores the convergence: every coarse correction is two steps
    of flexible CG preconditioned by the next level. CG on 128³ PoreSpy blobs and the twins'
    pore space: 5-9 iterations. The preconditioner is then not a fixed linear operator, hence
    the flexible outer method.
    """

    def __init__(self, stencil: Stencil) -> None:
        xp = self.xp = stencil.xp
        self.levels = [stencil]
        while np.prod(self.levels[-1].shape) > MAX_COARSE and max(self.levels[-1].shape) > 1:
            self.levels.append(self.levels[-1].coarsened())
        self.colours = [_red_black(xp, level) for level in self.levels[:-1]]
        self.scratch = [xp.zeros_like(level.work) for level in self.levels[:-1]]
        self.coarsest = _dense_inverse(xp, self.levels[-1])

    def __call__(self, r: Array, out: Array) -> Array:
        return self._cycle(r, 0, out)

    def _cycle(self, b: Array, level: int, x: Array) -> Array:
        xp, stencil = self.xp, self.levels[level]
        if level == len(self.levels) - 1:
            x[...] = xp.reshape(xp.matmul(self.coarsest, xp.reshape(b, (-1,))), b.shape)
            return x
        red, black = self.colours[level]
        r = self.scratch[level]
        x[...] = b  # red half-sweep from zero
        x *= red
        self._half_sweep(level, b, x, black)
        restricted = _block_sum(xp, stencil.residual(b, x, r), _blocks(stencil.shape))
        coarse = _padded(xp, restricted, self.levels[level + 1].shape)
        if level + 1 < len(self.levels) - 1:
            correction = self._two_steps(coarse, level + 1)
        else:
            correction = self._cycle(coarse, level + 1, xp.zeros_like(coarse))
        _add_prolonged(xp, correction[tuple(slice(0, n) for n in restricted.shape)], x)
        self._half_sweep(level, b, x, black)
        self._half_sweep(level, b, x, red)
        return x

    def _half_sweep(self, level: int, b: Array, x: Array, colour: Array) -> None:
        """Gauss-Seidel on the voxels of one colour, whose neighbours all have the other:
        ``x += colour * (b - A x)``, ``colour`` the inverse diagonal on them, 0 elsewhere."""
        r = self.levels[level].residual(b, x, self.scratch[level])
        r *= colour
        x += r

    def _two_steps(self, r: Array, level: int) -> Array:
        """Approximately solve ``A_level e = r`` by two flexible-CG steps preconditioned by the
        cycle at ``level`` (one when the first already cuts the residual to a quarter)."""
        xp, stencil = self.xp, self.levels[level]
        c = self._cycle(r, level, xp.zeros_like(r))
        v = stencil.product(c, xp.zeros_like(r))
        rho1, alpha1 = dot(xp, c, v), dot(xp, c, r)
        if not rho1 > 0:  # r is zero (or at round-off): so is the correction
            return c
        r2 = r - (alpha1 / rho1) * v
        if dot(xp, r2, r2) <= 0.0625 * dot(xp, r, r):
            return (alpha1 / rho1) * c
        d = self._cycle(r2, level, xp.zeros_like(r))
        w = stencil.product(d, xp.zeros_like(r))
        gamma, beta, alpha2 = dot(xp, d, v), dot(xp, d, w), dot(xp, d, r2)
        rho2 = beta - gamma * gamma / rho1
        if not rho2 > 0:  # d adds no new direction
            return (alpha1 / rho1) * c
        return (alpha1 / rho1 - gamma * alpha2 / (rho1 * rho2)) * c + (alpha2 / rho2) * d


def _blocks(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(2 if n > 1 else 1 for n in shape)


def _add_prolonged(xp: Any, coarse: Array, x: Array) -> None:
    """``x += P coarse``: each coarse value added to the voxels of its block, in place."""
    split: list[int] = []
    for n, b in zip(x.shape, _blocks(x.shape), strict=True):
        split += [n // b, b]
    xp.reshape(x, tuple(split))[...] += coarse[:, None, :, None, :, None]


def _red_black(xp: Any, stencil: Stencil) -> tuple[Array, Array]:
    """The inverse diagonal on the red voxels (even index sum) and on the black ones.

    Across a periodic axis of odd length the first and last slices share a colour: a half-sweep
    updates both sides of those faces at once (a Jacobi step there), which the K-cycle's
    flexible CG absorbs."""
    d = stencil.diagonal()
    inverse = xp.where(d > 0, 1 / xp.where(d > 0, d, xp.ones_like(d)), xp.zeros_like(d))
    odd = [xp.arange(n, device=device(d)) % 2 == 1 for n in stencil.shape]
    black = odd[0][:, None, None] ^ odd[1][None, :, None] ^ odd[2][None, None, :]
    zero = xp.zeros_like(d)
    return xp.where(black, zero, inverse), xp.where(black, inverse, zero)


def _dense_inverse(xp: Any, stencil: Stencil) -> Array:
    """The inverse of the coarsest operator, computed on the host in double precision (an
    all-zero row becomes the identity's)."""
    n = int(np.prod(stencil.shape))
    index = np.arange(n).reshape(stencil.shape)
    host = [np.asarray(to_numpy(g), dtype=np.float64) for g in stencil.faces]
    matrix = np.zeros((n, n))
    diagonal = np.asarray(to_numpy(stencil.diagonal()), dtype=np.float64).ravel()
    matrix[np.arange(n), np.arange(n)] = np.where(diagonal > 0, diagonal, 1.0)
    for axis, g in enumerate(host):
        lower, upper = sides(axis)
        a, b = index[lower].ravel(), index[upper].ravel()
        matrix[a, b] -= g.ravel()
        matrix[b, a] -= g.ravel()
    for axis, (g, last) in stencil.wraps.items():
        a, b = index[layer(axis, last)].ravel(), index[layer(axis, 0)].ravel()
        g = np.asarray(to_numpy(g), dtype=np.float64).ravel()
        matrix[a, b] -= g
        matrix[b, a] -= g
    inverse = xp.asarray(np.linalg.inv(matrix), device=device(stencil.work))
    return xp.astype(inverse, stencil.work.dtype)
