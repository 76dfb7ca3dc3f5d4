"""The Li-ion electrode twin: each process parameter moves the structure the way the process does."""

import numpy as np
import pytest
from scipy import ndimage

from poreloop.twins import TwinError
from poreloop.twins.manufacturing.electrode import (
    ACTIVE,
    CBD,
    PORE,
    ElectrodeTwin,
    migration_profile,
)

SHAPE = (48, 48, 48)
BASE = {"voxel_size_um": 0.5}


def generate(seed: int = 0, shape=SHAPE, **recipe):
    return ElectrodeTwin().generate({**BASE, **recipe}, shape=shape, seed=seed).labels


def mean_run_length(mask: np.ndarray, axis: int) -> float:
    """Mean length (voxels) of the runs of ``mask`` along ``axis`` (a mean intercept length)."""
    starts = np.diff(mask.astype(np.int8), axis=axis, prepend=0) == 1
    return mask.sum() / starts.sum()


def interface_density(mask: np.ndarray) -> float:
    """Faces between ``mask`` and the rest, per voxel: proportional to specific surface."""
    return sum(np.count_nonzero(np.diff(mask, axis=a)) for a in range(mask.ndim)) / mask.size


def test_same_seed_same_structure_other_seed_other_structure():
    assert np.array_equal(generate(seed=3), generate(seed=3))
    assert not np.array_equal(generate(seed=3), generate(seed=4))


def test_any_box_shape_and_provenance():
    micro = ElectrodeTwin().generate(BASE, shape=(40, 56, 72), seed=1)
    assert micro.shape == (40, 56, 72)
    assert micro.labels.dtype == np.uint8
    assert micro.phases[PORE] == "pore"
    assert micro.provenance.twin == "li_ion_electrode"
    assert micro.provenance.recipe["compression"] == ElectrodeTwin.space["compression"].default
    assert micro.voxel_size_um == 0.5


@pytest.mark.parametrize(
    ("active", "cbd", "compression"), [(0.48, 0.08, 0.15), (0.35, 0.15, 0.3), (0.55, 0.02, 0.0)]
)
def test_calendering_conserves_solid_volume(active, cbd, compression):
    """Phase fractions after calendering are the coated fractions / (1 - compression), to one
    voxel slice of rounding (CBD quotas are whole voxels per slice)."""
    labels = generate(active_fraction=active, cbd_fraction=cbd, compression=compression)
    squeeze = 1 - compression
    assert np.mean(labels == ACTIVE) == pytest.approx(active / squeeze, abs=1e-4)
    assert np.mean(labels == CBD) == pytest.approx(cbd / squeeze, abs=SHAPE[2] / labels.size + 1e-4)


def test_more_compression_lower_porosity_and_flatter_particles():
    porosity, flatness = [], []
    for compression in (0.0, 0.2, 0.35):
        labels = generate(compression=compression, active_fraction=0.45, cbd_fraction=0.05)
        porosity.append(np.mean(labels == PORE))
        active = labels == ACTIVE
        flatness.append(mean_run_length(active, 2) / mean_run_length(active, 0))
    assert porosity[0] > porosity[1] > porosity[2]
    # Particles flatten through the thickness: runs along z shorten relative to runs in-plane.
    assert flatness[0] > flatness[1] > flatness[2]
    assert flatness[2] < 0.85 * flatness[0]


def test_more_cbd_more_cbd():
    amounts = [np.mean(generate(cbd_fraction=f) == CBD) for f in (0.02, 0.08, 0.16)]
    assert amounts[0] < amounts[1] < amounts[2]


def test_larger_particles_lower_specific_surface():
    surface = [
        interface_density(generate(particle_radius_um=r, shape=(64, 64, 48)) == ACTIVE)
        for r in (2.0, 3.5, 6.0)
    ]
    assert surface[0] > surface[1] > surface[2]
    # Surface per volume of spheres scales as 1/r: a 3x larger radius gives far less surface.
    assert surface[0] / surface[2] > 2.0


def test_wider_radius_distribution_is_polydisperse():
    def radii_spread(spread: float) -> float:
        labels = generate(particle_radius_spread=spread, shape=(64, 64, 64), cbd_fraction=0.0)
        # Largest inscribed-sphere radius per particle core: EDT maxima of the active phase.
        dist = ndimage.distance_transform_edt(labels == ACTIVE)
        peaks = dist[(dist == ndimage.maximum_filter(dist, size=5)) & (dist > 2)]
        return float(np.std(np.log(peaks)))

    assert radii_spread(0.5) > radii_spread(0.05)


def test_faster_drying_drives_binder_to_the_top():
    def top_to_bottom(rate: float) -> float:
        labels = generate(drying_rate_um_s=rate)
        per_slice = np.mean(labels == CBD, axis=(0, 1))
        third = SHAPE[2] // 3
        return per_slice[-third:].mean() / per_slice[:third].mean()

    slow, fast = top_to_bottom(0.05), top_to_bottom(4.0)
    assert slow == pytest.approx(1.0, abs=0.15)
    assert fast > 2.0


def test_a_thicker_coating_drives_more_binder_up_whatever_the_voxel_size():
    """Pe grows with the wet film the recipe lays, not with the box: the box's z spans the
    coating at any resolution."""

    def top_to_bottom(**recipe) -> float:
        labels = generate(drying_rate_um_s=0.5, particle_radius_um=2.0, **recipe)
        per_slice = np.mean(labels == CBD, axis=(0, 1))
        third = SHAPE[2] // 3
        return per_slice[-third:].mean() / per_slice[:third].mean()

    assert top_to_bottom(thickness_um=120.0) > 2 * top_to_bottom(thickness_um=40.0)
    assert top_to_bottom(voxel_size_um=0.4) == pytest.approx(
        top_to_bottom(voxel_size_um=0.8), rel=0.05
    )


def test_migration_profile_uniform_at_zero_peclet_and_rising_with_it():
    assert np.allclose(migration_profile(10, 0.0), 1.0)
    profile = migration_profile(10, 3.0)
    assert profile.mean() == pytest.approx(1.0)
    assert np.all(np.diff(profile) > 0)


def test_binder_sits_at_necks_and_on_surfaces():
    labels = generate()
    to_active = ndimage.distance_transform_edt(labels != ACTIVE)
    cbd_distance = to_active[labels == CBD].mean()
    pore_distance = to_active[labels == PORE].mean()
    assert cbd_distance < 0.5 * pore_distance
    # Necks: CBD voxels see more solid around them than pore voxels on average.
    solid_nearby = ndimage.uniform_filter((labels == ACTIVE).astype(float), size=5, mode="wrap")
    assert solid_nearby[labels == CBD].mean() > solid_nearby[labels == PORE].mean() + 0.1


def test_solid_network_spans_the_electrode():
    labels = generate()
    solid, _ = ndimage.label(labels != PORE)
    spanning = np.intersect1d(solid[:, :, 0], solid[:, :, -1])
    spanning = spanning[spanning > 0]
    assert np.isin(solid, spanning).sum() / np.count_nonzero(labels != PORE) > 0.95


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"compression": 0.6}, "'compression' = 0.6 is above its upper bound 0.4"),
        ({"active_fraction": 0.6, "cbd_fraction": 0.25}, "breaks the constraint"),
        (
            {"voxel_size_um": 2.0, "particle_radius_um": 1.0},
            r"1.5\*voxel_size_um - 1\*particle_radius_um",
        ),
        ({"cbd_fracton": 0.1}, "did you mean 'cbd_fraction'"),
    ],
)
def test_bad_recipes_are_refused_with_a_clear_message(recipe, message):
    with pytest.raises(TwinError, match=message):
        ElectrodeTwin().generate(recipe, shape=(32, 32, 32))


def test_box_too_small_for_particles_is_refused():
    with pytest.raises(TwinError, match="enlarge the box"):
        ElectrodeTwin().generate({"particle_radius_um": 8.0, "voxel_size_um": 0.4}, shape=(32,) * 3)


def test_describe_lists_every_parameter_with_the_same_keys() -> None:
    from poreloop.twins.manufacturing.base import PARAMETER_KEYS

    entry = ElectrodeTwin.describe()
    assert entry["name"] == "li_ion_electrode" and entry["phases"] == {
        "0": "pore",
        "1": "active",
        "2": "cbd",
    }
    assert [p["name"] for p in entry["parameters"]] == ElectrodeTwin.space.names
    assert all(tuple(p) == PARAMETER_KEYS for p in entry["parameters"])
    assert len(entry["constraints"]) == len(ElectrodeTwin.space.constraints)
