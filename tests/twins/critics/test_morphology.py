"""Morphology critics: exact on analytic geometries, equal to PoreSpy where it does the same
thing, explicit zeros for absent phases and a CriticError for what they cannot read."""

import numpy as np
import porespy
import pytest
from scipy import ndimage

from poreloop.twins.critics.morphology import (
    ball_dilation,
    connectivity,
    interface_areas_um2,
    local_thickness,
    morphology,
    percolating_mask,
    pore_size_distribution,
    triple_phase_boundary_density,
)
from poreloop.twins.errors import CriticError
from poreloop.twins.manufacturing.electrode import ElectrodeTwin
from poreloop.twins.microstructure import Microstructure

PORE, NI, YSZ = 0, 1, 2


def sphere(shape: tuple[int, int, int], radius: float, centre: np.ndarray) -> np.ndarray:
    """Voxels whose centres lie within ``radius`` of ``centre`` (voxel coordinates)."""
    grid = np.indices(shape, dtype=float)
    return ((grid - np.reshape(centre, (3, 1, 1, 1))) ** 2).sum(axis=0) <= radius**2


def random_field(shape: tuple[int, int, int], fraction: float, sigma: float, seed: int):
    """A Gaussian random field smoothed over ``sigma`` voxels, the top ``fraction`` kept."""
    field = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma)
    return field > np.quantile(field, 1 - fraction)


def three_blocks(shape: tuple[int, int, int], a: int, b: int) -> np.ndarray:
    """Pore for x < a; Ni for x >= a, y < b; YSZ for x >= a, y >= b: one TPB line along z."""
    labels = np.full(shape, YSZ, dtype=np.uint8)
    labels[:a] = PORE
    labels[a:, :b] = NI
    return labels


# Specific surface


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("thickness", [1, 7])
def test_slab_interface_is_exactly_its_plane_and_box_walls_do_not_count(axis, thickness):
    shape = (20, 24, 28)
    labels = np.zeros(shape, np.uint8)
    labels[(slice(None),) * axis + (slice(5, 5 + thickness),)] = 1
    plane = np.prod(shape) / shape[axis] * 0.5**2
    assert interface_areas_um2(labels, 0.5) == {(0, 1): pytest.approx(2 * plane)}
    # A slab against a wall has one face inside the box.
    labels[(slice(None),) * axis + (slice(0, 5),)] = 1
    assert interface_areas_um2(labels, 0.5) == {(0, 1): pytest.approx(plane)}


@pytest.mark.parametrize("radius", [3.0, 10.0, 14.0])
def test_sphere_surface_is_four_pi_r_squared(radius):
    """Within 3 %, where marching cubes on the binary image reads 9 % high and on a smoothed
    image loses small features (a 3-voxel sphere reads 13 % low)."""
    centre = np.array([17.5, 17.3, 17.8])
    labels = sphere((36, 36, 36), radius, centre).astype(np.uint8)
    area = interface_areas_um2(labels, 0.2)[(0, 1)]
    assert area == pytest.approx(4 * np.pi * (radius * 0.2) ** 2, rel=0.03)


def test_sphere_surface_agrees_with_porespy_marching_cubes():
    """PoreSpy meshes a lightly blurred sphere with skimage's marching cubes: within 2 %."""
    labels = sphere((32, 32, 32), 11.0, np.array([15.6, 15.2, 15.9])).astype(np.uint8)
    ours = interface_areas_um2(labels, 1.0)[(0, 1)]
    theirs = porespy.metrics.region_surface_areas(labels)[0]
    assert ours == pytest.approx(theirs, rel=0.02)


def test_half_buried_sphere_splits_its_surface_between_its_neighbours():
    """A Ni sphere centred on the YSZ|pore plane: half its surface on each, the plane loses a
    disc. Each interface is estimated with its own normal, within 3 %."""
    shape, radius = (36, 36, 36), 11.0
    labels = np.full(shape, PORE, np.uint8)
    labels[:, :, :18] = YSZ
    labels[sphere(shape, radius, np.array([17.3, 17.6, 17.5]))] = NI
    areas = interface_areas_um2(labels, 1.0)
    assert areas[(PORE, NI)] == pytest.approx(2 * np.pi * radius**2, rel=0.03)
    assert areas[(NI, YSZ)] == pytest.approx(2 * np.pi * radius**2, rel=0.03)
    assert areas[(PORE, YSZ)] == pytest.approx(36 * 36 - np.pi * radius**2, rel=0.03)


@pytest.mark.parametrize("shell", [1.5, 3.0])
def test_coated_sphere_has_both_shell_surfaces(shell):
    """A particle under a film of binder 1.5-3 voxels thick: the particle|film and film|pore
    interfaces are concentric spheres, each within 3 %; particle and pore never touch."""
    radius, centre = 12.0, np.array([23.6, 23.3, 23.8])
    labels = sphere((48, 48, 48), radius + shell, centre).astype(np.uint8) * 2
    labels[sphere((48, 48, 48), radius, centre)] = 1
    areas = interface_areas_um2(labels, 1.0)
    assert set(areas) == {(0, 2), (1, 2)}
    assert areas[(1, 2)] == pytest.approx(4 * np.pi * radius**2, rel=0.03)
    assert areas[(0, 2)] == pytest.approx(4 * np.pi * (radius + shell) ** 2, rel=0.03)


# Pore sizes


def test_local_thickness_of_a_sphere_is_its_radius():
    """Centred on a voxel, the one open ball of radius R covers the sphere but for the six
    pole voxels and their rims, exactly R away (PoreSpy's smoothing): over 99 % read R. Off
    the lattice the deepest centre lies up to a voxel short of R and the rim voxels take
    smaller balls: the mean stays within 1.5 voxels below R."""
    shape = (32, 32, 32)
    on_lattice = sphere(shape, 10, np.array([16, 16, 16]))
    assert np.mean(local_thickness(on_lattice)[on_lattice] == 10) > 0.99
    off_lattice = sphere(shape, 10, np.array([15.6, 16.3, 15.8]))
    mean = local_thickness(off_lattice)[off_lattice].mean()
    assert 8.5 < mean <= 10


@pytest.mark.parametrize(("fraction", "sigma"), [(0.4, 2.0), (0.6, 3.0), (0.3, 1.5)])
def test_local_thickness_equals_porespy_for_the_same_radii(fraction, sigma):
    """Same algorithm (erosion by the distance transform, dilation by radius) and the same
    radii: the images agree voxel for voxel, so the means agree to rounding."""
    mask = random_field((40, 40, 40), fraction, sigma, seed=1)
    ours = local_thickness(mask)
    radii = np.unique(ours[mask]).astype(int)
    theirs = porespy.filters.local_thickness(mask, method="dt", sizes=radii)
    assert np.array_equal(ours, theirs)


def test_local_thickness_uses_fewer_radii_for_large_pores():
    """Beyond PSD_BINS voxels of radius the radii are spaced geometrically: fewer dilations."""
    mask = sphere((48, 48, 48), 21, np.array([24, 24, 24]))
    radii = np.unique(local_thickness(mask, bins=8)[mask])
    assert len(radii) <= 8
    assert radii.max() == 21


@pytest.mark.parametrize("r", [1, 2, 5])
def test_ball_dilation_is_the_euclidean_distance_threshold(r):
    seeds = np.random.default_rng(r).uniform(size=(20, 24, 28)) < 0.01
    expected = ndimage.distance_transform_edt(~seeds) < r
    assert np.array_equal(ball_dilation(seeds, r), expected)


def test_pore_size_distribution_is_a_volume_distribution():
    labels = (~random_field((40, 40, 40), 0.4, 2.0, seed=2)).astype(np.uint8)
    radii_um, share = pore_size_distribution(labels, 0.5)
    assert np.all(np.diff(radii_um) > 0)
    assert share.sum() == pytest.approx(1.0)
    assert radii_um.min() == 0.5  # the one-voxel radius at 0.5 µm
    empty_radii, empty_share = pore_size_distribution(np.ones((8, 8, 8), np.uint8), 0.5)
    assert empty_radii.size == 0 and empty_share.size == 0


def test_finer_pores_read_smaller():
    coarse = (~random_field((40, 40, 40), 0.6, 3.0, seed=3)).astype(np.uint8)
    fine = (~random_field((40, 40, 40), 0.6, 1.5, seed=3)).astype(np.uint8)
    mean = [r @ s for r, s in (pore_size_distribution(x, 1.0) for x in (coarse, fine))]
    assert mean[1] < 0.75 * mean[0]


# Connectivity


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_channel_percolates_along_its_axis_only(axis):
    mask = np.zeros((16, 20, 24), bool)
    across = [slice(6, 10)] * 3
    across[axis] = slice(None)
    mask[tuple(across)] = True
    shares = connectivity(mask)
    assert shares["connected"] == 1.0
    assert [shares[a] for a in "xyz"] == [float(a == axis) for a in range(3)]
    assert np.array_equal(percolating_mask(mask, axis), mask)
    assert not percolating_mask(mask, (axis + 1) % 3).any()


def test_isolated_blob_neither_connects_nor_percolates_and_shares_are_by_volume():
    mask = sphere((24, 24, 24), 5, np.array([12, 12, 12]))
    assert connectivity(mask) == {"connected": 0.0, "x": 0.0, "y": 0.0, "z": 0.0}
    blob = int(mask.sum())
    mask[:, :2, :2] = True  # a rod along x, 24 x 2 x 2 voxels
    shares = connectivity(mask)
    assert shares["connected"] == pytest.approx(96 / (96 + blob))
    assert shares["x"] == shares["connected"]
    assert shares["y"] == shares["z"] == 0.0


def test_diagonal_contact_does_not_connect():
    """6-neighbour connectivity: voxels touching at an edge are separate clusters."""
    mask = np.zeros((8, 8, 8), bool)
    mask[:4, :4, :] = True
    mask[4:, 4:, :] = True
    assert connectivity(mask)["z"] == 1.0
    assert connectivity(mask)["x"] == connectivity(mask)["y"] == 0.0


# Triple-phase boundary (moved from the SOFC twin's tests)


@pytest.mark.parametrize("axes", [(0, 1, 2), (1, 2, 0), (2, 0, 1)])
def test_tpb_of_three_blocks_is_their_straight_line(axes):
    """The line has length nz·voxel in a box of nx·ny·nz voxels: density 1 / (nx·ny·voxel²)."""
    nx, ny, nz = 10, 12, 14
    labels = np.transpose(three_blocks((nx, ny, nz), 4, 7), axes)
    assert triple_phase_boundary_density(labels, 0.5) == pytest.approx(1 / (nx * ny * 0.5**2))


def test_tpb_is_zero_without_one_of_the_phases():
    labels = three_blocks((10, 12, 14), 4, 7)
    labels[labels == NI] = YSZ
    assert triple_phase_boundary_density(labels, 0.5) == 0.0


def test_tpb_refuses_unknown_phase_ids():
    labels = three_blocks((10, 12, 14), 4, 7)
    labels[0, 0, 0] = 3
    with pytest.raises(CriticError, match="relabel"):
        triple_phase_boundary_density(labels, 0.5)


def test_tpb_of_any_three_phase_ids():
    labels = three_blocks((10, 12, 14), 4, 7)
    relabelled = np.choose(labels, [np.uint8(3), np.uint8(7), np.uint8(9)]).astype(np.uint8)
    assert triple_phase_boundary_density(relabelled, 0.5, (3, 7, 9)) == pytest.approx(
        triple_phase_boundary_density(labels, 0.5)
    )


def test_active_tpb_needs_all_three_phases_to_span_the_box():
    """The blocks' line runs along z where all three phases span z; the pore spans neither x
    nor y. A Ni grain enclosed at the pore|YSZ plane adds TPB that cannot be active."""
    nx, ny, nz = 10, 12, 14
    labels = three_blocks((nx, ny, nz), 4, 7)
    line = triple_phase_boundary_density(labels, 0.5)
    assert triple_phase_boundary_density(labels, 0.5, percolating_along=2) == line
    assert triple_phase_boundary_density(labels, 0.5, percolating_along=0) == 0.0
    labels[3:5, 9:11, 5:7] = NI  # 2 x 2 x 2 grain half in the pore, half in YSZ
    assert triple_phase_boundary_density(labels, 0.5) > line
    assert triple_phase_boundary_density(labels, 0.5, percolating_along=2) == line


# The morphology critic


def micro(labels: np.ndarray, phases: dict[int, str], voxel_size_um: float = 0.5):
    return Microstructure(labels, voxel_size_um, phases)


def test_electrode_twin_gives_a_sensible_morphology():
    structure = ElectrodeTwin().generate({"voxel_size_um": 0.5}, shape=(48, 48, 48), seed=0)
    result = morphology(structure)
    assert all(np.isfinite(v) for v in result.values())
    assert result["porosity"] == np.mean(structure.labels == 0) == result["fraction_pore"]
    assert sum(result[f"fraction_{p}"] for p in ("pore", "active", "cbd")) == pytest.approx(1)
    # Particles of a few µm at 30-60 % solid: 0.1-5 µm² of surface per µm³.
    assert 0.1 < result["ssa_per_um"] < 5.0
    assert result["ssa_pore_per_um"] == pytest.approx(
        result["ssa_pore_active_per_um"] + result["ssa_pore_cbd_per_um"]
    )
    assert 0.5 <= result["mean_pore_radius_um"] < 12.0
    assert result["d50_pore_diameter_um"] >= 1.0  # at least a voxel of radius
    assert result["percolating_pore_z"] > 0.9
    assert result["tpb_active_per_um2"] <= result["tpb_per_um2"]


def test_keys_are_stable_lower_case_with_units():
    labels = three_blocks((10, 12, 14), 4, 7)
    result = morphology(micro(labels, {0: "pore", 1: "Ni", 2: "YSZ grain"}))
    assert list(result) == [
        "porosity",
        "fraction_pore",
        "fraction_ni",
        "fraction_ysz_grain",
        "ssa_per_um",
        "ssa_pore_per_um",
        "ssa_ni_per_um",
        "ssa_ysz_grain_per_um",
        "ssa_pore_ni_per_um",
        "ssa_pore_ysz_grain_per_um",
        "ssa_ni_ysz_grain_per_um",
        "mean_pore_radius_um",
        "d50_pore_diameter_um",
        "connected_pore",
        "percolating_pore_x",
        "percolating_pore_y",
        "percolating_pore_z",
        "connected_ni",
        "percolating_ni_x",
        "percolating_ni_y",
        "percolating_ni_z",
        "connected_ysz_grain",
        "percolating_ysz_grain_x",
        "percolating_ysz_grain_y",
        "percolating_ysz_grain_z",
        "tpb_per_um2",
        "tpb_active_per_um2",
    ]
    assert result["tpb_per_um2"] == pytest.approx(1 / (10 * 12 * 0.5**2))
    # The pore's plane, its normal blended with the Ni|YSZ plane's near the triple line.
    assert result["ssa_pore_per_um"] == pytest.approx(12 * 14 / (10 * 12 * 14 * 0.5), rel=0.02)


def test_absent_phase_scores_zero_explicitly():
    labels = np.zeros((16, 16, 16), np.uint8)
    labels[:, :, 8:] = 1
    result = morphology(micro(labels, {0: "pore", 1: "solid", 2: "binder"}))
    assert all(np.isfinite(v) for v in result.values())
    for key in ("fraction_binder", "ssa_binder_per_um", "ssa_pore_binder_per_um"):
        assert result[key] == 0.0
    assert result["connected_binder"] == result["percolating_binder_z"] == 0.0
    assert result["tpb_per_um2"] == result["tpb_active_per_um2"] == 0.0
    assert result["percolating_pore_x"] == 1.0 and result["percolating_pore_z"] == 0.0
    # No pore at all: zero porosity and zero pore size, not NaN.
    solid = morphology(micro(np.ones((8, 8, 8), np.uint8), {0: "pore", 1: "solid"}))
    assert solid["porosity"] == solid["mean_pore_radius_um"] == solid["d50_pore_diameter_um"] == 0
    assert "tpb_per_um2" not in solid


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: interface_areas_um2(np.zeros((8, 8), np.uint8), 1.0), "expected a 3D label"),
        (lambda: interface_areas_um2(np.zeros((8, 8, 8)), 1.0), "expected uint8 phase ids"),
        (lambda: interface_areas_um2(np.zeros((8, 8, 8), np.uint8), 0.0), "positive number"),
        (lambda: local_thickness(np.zeros((8, 8, 8), np.uint8)), "expected a 3D bool"),
        (lambda: local_thickness(np.ones((8, 8, 8), bool)), "fills the whole box"),
        (lambda: percolating_mask(np.ones((8, 8, 8), bool), 3), "axis 0, 1 or 2"),
        (
            lambda: triple_phase_boundary_density(np.zeros((8, 8, 8), np.uint8), 1.0, (0, 1, 1)),
            "three distinct",
        ),
        (lambda: morphology(np.zeros((8, 8, 8), np.uint8)), "expected a Microstructure"),
        (
            lambda: morphology(micro(np.zeros((8, 8), np.uint8), {0: "pore"})),
            "expected a 3D label",
        ),
        (
            lambda: morphology(micro(np.zeros((8, 8, 8), np.uint8), {0: "pore", 1: "Pore"})),
            "clash",
        ),
        (
            lambda: morphology(micro(np.zeros((8, 8, 8), np.uint8), {0: "pore", 1: "s"})),
            "fills the whole box",
        ),
    ],
)
def test_bad_input_is_refused_with_a_critic_error(call, message):
    with pytest.raises(CriticError, match=message):
        call()


def test_the_pore_is_found_by_its_name_not_its_id():
    """A scan's grey levels become ids in any order: the same structure with the pore at id 2
    scores the same porosity, surface and pore sizes."""
    labels = three_blocks((10, 12, 14), 4, 7)
    at_zero = morphology(micro(labels, {0: "pore", 1: "active", 2: "cbd"}))
    moved = np.choose(labels, [2, 0, 1]).astype(np.uint8)  # pore 0 -> 2, active 1 -> 0, cbd 2 -> 1
    at_two = morphology(micro(moved, {2: "pore", 0: "active", 1: "cbd"}))
    for key in ("porosity", "ssa_per_um", "mean_pore_radius_um", "d50_pore_diameter_um"):
        assert at_two[key] == pytest.approx(at_zero[key]), key
    assert at_two["porosity"] == pytest.approx(np.mean(labels == 0))
