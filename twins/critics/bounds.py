"""A lower bound on a phase's tortuosity factor, read from its voxels in a few ms at 48³.

Rayleigh's monotonicity law: joining points of a resistor network by perfect conductors can
only lower its resistance. Cut every slice across the transport axis into squares of
``TILE`` voxels a side and join the voxels of each cluster within a square (voxels of the
phase face-connected inside the square) into one node. What is left is a network of a few
hundred to a few thousand nodes: nodes that share voxel faces are joined by as many unit
conductances as they share faces (between neighbouring slices, across the squares' sides
within a slice and across the wrapped sides of the box), the first slice's nodes to the
inlet and the last's to the outlet by half voxels (conductance 2 a voxel), as in
``transport``. Its conductance, one sparse solve, bounds σ_eff from above and so
τ = ε/σ_eff from below, for ``transport``'s own definitions; the bound is infinite where no
path crosses. Slices alone give the weaker bound ε·mean(1/φ) (each slice shorted whole).

Why: near the pore's percolation τ rises through narrow throats between particles and paths
that wind sideways, which slices alone do not see. On the electrode twin's 48³ boxes the log
of this bound explains 96 % of the variance of log τ of the pore with squares of 8 voxels
(a straight line), 91 % with whole slices, 65-70 % for the slices' bound.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.linalg import solveh_banded
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import spsolve
from threadpoolctl import ThreadpoolController

from poreloop.twins.errors import CriticError

TILE = 8
"""Edge of the squares, in voxels, within which a slice's voxels are joined (the last of a
side may be shorter). Smaller squares bound τ more tightly at more nodes to solve for; one
larger than the box joins whole slices."""

BAND = 256
"""The widest band (in nodes) that ``_potential`` solves by banded Cholesky: at 48³ it took
0.36 ms against the sparse LU's 2.1 ms in squares of 8 (band ~40), 15 ms against 18 in
squares of 3 (~250), 80 against 57 in squares of 2 (~530)."""

_BLAS = ThreadpoolController()
"""The BLAS libraries loaded (scipy.linalg's among them): the banded Cholesky runs on one of
their threads. A second gains nothing on a band ~40 wide and spins on after each solve, ~2 ms
of a core a call, taken from whatever runs beside (the neural critic's network)."""

IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
"""Face neighbours within a slice across the first axis."""
IN_PLANE[1, :, 1] = IN_PLANE[1, 1, :] = True


def tau_lower_bound(
    volume: np.ndarray, axis: int, periodic: Sequence[int] = (), tile: int | None = TILE
) -> float:
    """The least tortuosity factor ``τ = ε D0 / D_eff`` of the True voxels of ``volume`` along
    ``axis`` (as ``transport.tortuosity`` defines it, wrapped along the other ``periodic``
    axes) that the network of squares of ``tile`` voxels (None: whole slices) allows; ``inf``
    where no path crosses. With ``tile=1`` it is the solver's τ itself."""
    if not isinstance(volume, np.ndarray) or volume.dtype != np.bool_ or volume.ndim != 3:
        got = (
            f"{volume.dtype} {volume.ndim}D"
            if isinstance(volume, np.ndarray)
            else type(volume).__name__
        )
        raise CriticError(f"a τ bound needs a 3D boolean array (True = the phase), got {got}")
    if tile is not None and tile < 1:
        raise CriticError(f"a τ bound's squares need at least one voxel a side, got {tile}")
    slices = np.moveaxis(volume, axis, 0)
    tile = tile or max(slices.shape[1:])
    across = [a for a in range(3) if a != axis]
    node, count = _clusters(slices, tile)
    pairs, faces = _faces(node, count, tile, [1 + across.index(a) for a in periodic if a != axis])
    a, b = pairs // (count + 1), pairs % (count + 1)
    inlet, outlet = (_per_node(node[end], count) for end in (0, -1))
    # the pairs come sorted: they are CSR's rows as they are (0.06 ms at 48³ where a COO matrix
    # took 0.1, most of it Python that holds the GIL the neural critic's trunk waits on)
    rows = np.r_[0, np.cumsum(np.bincount(a, minlength=count + 1))]
    _, component = connected_components(csr_matrix((faces, b, rows), (count + 1,) * 2))
    reached = [
        np.bincount(component[end > 0], minlength=component.max() + 1) > 0
        for end in (inlet, outlet)
    ]
    crossing = (reached[0] & reached[1])[component]
    if not crossing.any():
        return float("inf")
    index, used = np.cumsum(crossing) - 1, crossing[a]
    inlet = inlet[crossing]
    potential = _potential(index[a[used]], index[b[used]], faces[used], inlet, outlet[crossing])
    flux = float(inlet @ (1 - potential))  # the inlet at 1, the outlet at 0
    sigma_eff = flux * slices.shape[0] / (slices.shape[1] * slices.shape[2])
    return float(volume.mean() / sigma_eff)


def _clusters(slices: np.ndarray, tile: int) -> tuple[np.ndarray, int]:
    """Each voxel's cluster (0 outside the phase; numbered slice by slice) and their count:
    voxels face-connected within one square of one slice."""
    if tile >= max(slices.shape[1:]):  # whole slices: no gaps to make between squares
        clusters, count = ndimage.label(slices, structure=IN_PLANE)
        return clusters, int(count)
    shift = [np.arange(n) + np.arange(n) // tile for n in slices.shape[1:]]  # a gap per square
    gapped = np.zeros((slices.shape[0], shift[0][-1] + 1, shift[1][-1] + 1), dtype=bool)
    gapped[:, shift[0][:, None], shift[1]] = slices
    clusters, count = ndimage.label(gapped, structure=IN_PLANE)
    return clusters[:, shift[0][:, None], shift[1]], int(count)


def _faces(
    node: np.ndarray, count: int, tile: int, wraps: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of different clusters that share voxel faces (as ``here · (count + 1) +
    there``) and how many faces each shares: between neighbouring slices, across the sides of
    the squares, and across the wrapped sides ``wraps`` (a square's side at 0 meets the last)."""
    pairs = [(node[:-1], node[1:])]
    for side in (1, 2):
        starts = np.arange(0 if side in wraps else tile, node.shape[side], tile)
        planes = np.moveaxis(node, side, 0)
        pairs.append((planes[starts - 1], planes[starts]))
    codes = []
    for here, there in pairs:
        shared = (here > 0) & (there > 0) & (here != there)
        codes.append(here[shared].astype(np.int64) * (count + 1) + there[shared])
    return _tally(np.concatenate(codes))


def _tally(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct codes, sorted, and how often each occurs. Read in raster order, a pair of
    clusters shares faces side by side, so the codes come in runs: collapsing them first leaves
    3-100× fewer to sort (at 48³, 0.7 ms where ``np.unique`` took 2 ms on an AMD EPYC)."""
    new = np.ones(codes.size, dtype=bool)
    new[1:] = codes[1:] != codes[:-1]
    starts = np.flatnonzero(new)
    distinct, which = np.unique(codes[starts], return_inverse=True)
    return distinct, np.bincount(which, np.diff(np.r_[starts, codes.size]), distinct.size)


def _potential(
    a: np.ndarray, b: np.ndarray, faces: np.ndarray, inlet: np.ndarray, outlet: np.ndarray
) -> np.ndarray:
    """Each node's potential with the inlet at 1 and the outlet at 0, nodes ``a[i]`` and
    ``b[i]`` joined by ``faces[i]`` unit conductances (the faces they share). Numbered slice
    by slice, the nodes couple only to their own and the neighbouring slices': the Laplacian
    is banded, and a banded Cholesky solves it where the band is narrow (``BAND``), a sparse
    LU elsewhere (the voxels' own network, ``tile=1``)."""
    n = inlet.size
    degree = np.bincount(a, faces, n) + np.bincount(b, faces, n) + inlet + outlet
    low, high = np.minimum(a, b), np.maximum(a, b)
    band = int((high - low).max(initial=0))
    if band <= BAND:
        lower = -np.bincount((high - low) * n + low, faces, (band + 1) * n).reshape(band + 1, n)
        lower[0] = degree
        with _BLAS.limit(limits=1, user_api="blas"):
            return solveh_banded(lower, inlet, lower=True, check_finite=False)
    diagonal = np.arange(n)
    laplacian = coo_matrix(
        (np.r_[-faces, -faces, degree], (np.r_[a, b, diagonal], np.r_[b, a, diagonal])), (n, n)
    )
    return spsolve(laplacian.tocsc(), inlet)


def _per_node(end: np.ndarray, count: int) -> np.ndarray:
    """The conductance from an end slice's voxels to each cluster: 2 a voxel (half a voxel)."""
    voxels = 2.0 * np.bincount(end.ravel(), minlength=count + 1)
    voxels[0] = 0  # outside
    return voxels
