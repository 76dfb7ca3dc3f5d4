"""The lower bound on τ of squares joined slice by slice: exact where no current runs within a
square, rising from the slices' series bound to the solver's τ as the squares shrink to one
voxel, infinite where nothing crosses."""

import math

import numpy as np
import pytest

from poreloop.twins.critics import tortuosity
from poreloop.twins.critics.bounds import tau_lower_bound
from poreloop.twins.errors import CriticError
from poreloop.twins.manufacturing.electrode import ElectrodeTwin

SOLVER_RTOL = 1e-3
"""The solver's default tolerance on τ."""


def series_bound(volume: np.ndarray, axis: int) -> float:
    """ε·mean(1/φ) over the slices across ``axis`` (each slice shorted whole)."""
    shares = volume.mean(axis=tuple(a for a in range(3) if a != axis))
    return float(volume.mean() * np.mean(1 / shares)) if shares.all() else math.inf


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_straight_channels_are_exact(axis):
    """No current crosses within a slice, so joining its clusters changes nothing: τ = 1."""
    volume = np.zeros((10, 12, 14), dtype=bool)
    for corner in (2, 7):
        channel = [slice(corner, corner + 3)] * 3
        channel[axis] = slice(None)
        volume[tuple(channel)] = True
    assert tau_lower_bound(volume, axis) == pytest.approx(1.0, rel=1e-12)
    assert tau_lower_bound(volume, (axis + 1) % 3) == math.inf


def test_a_small_box_is_its_hand_sum():
    """Slices across axis 0 of two, two and one voxels, each slice one cluster: inlet 2·2,
    faces 2 and 1, outlet 2·1 in series, R = 1/4 + 1/2 + 1 + 1/2 = 2.25, σ_eff = L / (A R)
    = 3 / 4.5, τ ≥ ε / σ_eff = (5/6) / (2/3) = 1.25."""
    volume = np.ones((3, 2, 1), dtype=bool)
    volume[2, 1, 0] = False
    assert tau_lower_bound(volume, 0) == pytest.approx(1.25, rel=1e-12)
    assert tortuosity(volume, 0).tau >= 1.25


def test_a_path_through_the_wrap_is_bounded_only_where_the_box_wraps():
    """Up the first column, across the wrap, up the last: the two voxels of the crossing
    slice share a face only where the box wraps, and one path is its own network (the bound
    is τ); with walls nothing crosses."""
    shape, middle = (12, 6, 5), 5
    volume = np.zeros(shape, dtype=bool)
    volume[: middle + 1, 0, 0] = volume[middle:, -1, 0] = True
    bound = tau_lower_bound(volume, 0, periodic=(0, 1, 2))
    assert bound == pytest.approx(tortuosity(volume, 0, periodic=(0, 1, 2)).tau, rel=SOLVER_RTOL)
    assert bound > series_bound(volume, 0)
    assert tau_lower_bound(volume, 0) == math.inf


def electrodes() -> list[tuple[np.ndarray, tuple[int, ...]]]:
    """Pore and solid of electrode twin boxes over porosity, periodic in-plane as made."""
    twin, rng, found = ElectrodeTwin(), np.random.default_rng(0), []
    for seed in range(4):
        recipe = {
            "active_fraction": rng.uniform(0.35, 0.6),
            "cbd_fraction": rng.uniform(0.04, 0.15),
            "particle_radius_um": 2.0,
            "thickness_um": 60.0,
            "voxel_size_um": 0.5,
        }
        micro = twin.generate(recipe, shape=(24, 24, 24), seed=seed)
        pore = micro.labels == micro.phase_id("pore")
        found += [(pore, micro.periodic), (~pore, micro.periodic)]
    return found


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_it_rises_from_the_slices_bound_to_the_solver_s_tau_as_the_squares_shrink(axis):
    """On electrode boxes and PoreSpy blobs, with walls and wrapped, along every axis: whole
    slices, squares of 8, of 4 (each inside one of 8: less is joined) and of 1 voxel (the
    solver's own network)."""
    porespy = pytest.importorskip("porespy")
    cases = electrodes() + [
        (porespy.generators.blobs([20, 22, 24], porosity=p, blobiness=1, seed=s), periodic)
        for s, p in enumerate((0.3, 0.45, 0.6))
        for periodic in ((), (0, 1, 2))
    ]
    finite = 0
    for volume, periodic in cases:
        bounds = [tau_lower_bound(volume, axis, periodic, tile) for tile in (None, 8, 4, 1)]
        tau = tortuosity(volume, axis, periodic=periodic).tau
        assert series_bound(volume, axis) <= bounds[0] * (1 + 1e-12)
        assert all(
            low <= high * (1 + 1e-12) for low, high in zip(bounds[:2], bounds[1:3], strict=True)
        )
        assert bounds[2] <= tau * (1 + SOLVER_RTOL)
        assert bounds[3] == pytest.approx(tau, rel=SOLVER_RTOL)
        assert math.isinf(bounds[0]) <= math.isinf(tau)
        finite += math.isfinite(tau)
    assert finite >= len(cases) // 2


def test_the_banded_and_the_sparse_solve_agree(monkeypatch):
    """The network's band decides how it is solved (``BAND``): the sparse LU, forced, gives
    every bound the banded Cholesky gives."""
    from poreloop.twins.critics import bounds

    cases = [(volume, periodic, tile) for volume, periodic in electrodes() for tile in (8, None)]
    banded = [tau_lower_bound(volume, 2, periodic, tile) for volume, periodic, tile in cases]
    monkeypatch.setattr(bounds, "BAND", -1)
    sparse = [tau_lower_bound(volume, 2, periodic, tile) for volume, periodic, tile in cases]
    assert sum(map(math.isfinite, banded)) >= len(cases) // 2
    assert banded == pytest.approx(sparse, rel=1e-9)


def test_nothing_crosses_an_empty_or_blocked_phase():
    volume = np.zeros((6, 6, 6), dtype=bool)
    assert tau_lower_bound(volume, 2) == math.inf
    volume[:, :, :3] = True  # fills half the box, touches the inlet only
    assert tau_lower_bound(volume, 2) == math.inf
    assert tau_lower_bound(volume, 0) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        (np.ones((4, 4, 4), dtype=np.uint8), "3D boolean array .* got uint8 3D"),
        (np.ones((4, 4), dtype=bool), "got bool 2D"),
        ([[[True]]], "got list"),
    ],
)
def test_anything_but_a_3d_boolean_volume_is_refused_in_one_line(volume, message):
    with pytest.raises(CriticError, match=message):
        tau_lower_bound(volume, 0)


def test_squares_of_no_voxels_are_refused_in_one_line():
    with pytest.raises(CriticError, match="at least one voxel a side, got 0"):
        tau_lower_bound(np.ones((4, 4, 4), dtype=bool), 0, tile=0)
