"""The SOFC anode twin: powders, pressing and sintering move the Ni–YSZ cermet the way the
process does: porosity, surface, connectivity and triple-phase boundary move as they should."""

import numpy as np
import pytest
from scipy import ndimage

from poreloop.twins import TwinError
from poreloop.twins.critics.morphology import triple_phase_boundary_density
from poreloop.twins.manufacturing.sofc import NI, PORE, YSZ, SOFCAnodeTwin

SHAPE = (64, 64, 64)
VOXEL_UM = 0.1


def generate(seed: int = 0, shape=SHAPE, **recipe) -> np.ndarray:
    return SOFCAnodeTwin().generate(recipe, shape=shape, seed=seed).labels


def tpb(labels: np.ndarray) -> float:
    return triple_phase_boundary_density(labels, VOXEL_UM)


def interface_density(mask: np.ndarray) -> float:
    """Faces between ``mask`` and the rest, per voxel: proportional to specific surface."""
    return sum(np.count_nonzero(np.diff(mask, axis=a)) for a in range(mask.ndim)) / mask.size


def largest_cluster_share(mask: np.ndarray) -> float:
    """Share of ``mask`` in its largest face-connected cluster (1 = fully connected)."""
    clusters, _ = ndimage.label(mask)
    return np.bincount(clusters.ravel())[1:].max() / np.count_nonzero(mask)


def test_same_seed_same_structure_other_seed_other_structure():
    shape = (48, 48, 48)
    assert np.array_equal(generate(3, shape), generate(3, shape))
    assert not np.array_equal(generate(3, shape), generate(4, shape))


def test_any_box_shape_and_provenance():
    micro = SOFCAnodeTwin().generate({}, shape=(40, 56, 72), seed=1)
    assert micro.shape == (40, 56, 72)
    assert micro.labels.dtype == np.uint8
    assert micro.phases == {PORE: "pore", NI: "ni", YSZ: "ysz"}
    assert micro.provenance.twin == "sofc_anode"
    assert micro.voxel_size_um == SOFCAnodeTwin.space["voxel_size_um"].default
    assert set(np.unique(micro.labels)) == {PORE, NI, YSZ}


@pytest.mark.parametrize(
    ("solid", "shrinkage", "ni_share", "coarsening"),
    [(0.55, 0.2, 0.5, 0.0), (0.45, 0.0, 0.3, 0.5), (0.65, 0.23, 0.7, 1.0)],
)
def test_sintering_conserves_solid_volume_and_ni_share(solid, shrinkage, ni_share, coarsening):
    """Pore = 1 - green solid / (1 - volumetric shrinkage), Ni = its share of that, to one voxel."""
    labels = generate(
        solid_fraction=solid,
        sintering_shrinkage=shrinkage,
        ni_volume_fraction_of_solid=ni_share,
        ni_coarsening=coarsening,
    )
    dense = solid / (1 - shrinkage)
    voxel = 1 / labels.size
    assert np.mean(labels == PORE) == pytest.approx(1 - dense, abs=voxel)
    assert np.mean(labels == NI) == pytest.approx(ni_share * dense, abs=2 * voxel)


def test_more_shrinkage_lower_porosity_and_less_surface():
    structures = [generate(solid_fraction=0.5, sintering_shrinkage=s) for s in (0.0, 0.2, 0.35)]
    porosity = [np.mean(labels == PORE) for labels in structures]
    surface = [interface_density(labels != PORE) for labels in structures]
    assert porosity[0] > porosity[1] > porosity[2]
    assert surface[0] > surface[1] > surface[2]


def test_neck_growth_smooths_the_surface_and_connects_the_solid():
    surface = [interface_density(generate(neck_growth=g) != PORE) for g in (0.0, 0.3, 0.6)]
    assert surface[0] > surface[1] > surface[2]
    # A loose body (55 % pores): necks join grains that only touched.
    loose = {"solid_fraction": 0.45, "sintering_shrinkage": 0.0}
    early, late = generate(neck_growth=0.0, **loose), generate(neck_growth=0.6, **loose)
    assert largest_cluster_share(late != PORE) > largest_cluster_share(early != PORE)
    for phase in (NI, YSZ):
        assert largest_cluster_share(late == phase) > largest_cluster_share(early == phase) + 0.05


def test_larger_grains_less_surface_and_shorter_tpb():
    structures = [generate(ni_radius_um=r, ysz_radius_um=r) for r in (0.3, 0.5, 0.8)]
    surface = [interface_density(labels != PORE) for labels in structures]
    density = [tpb(labels) for labels in structures]
    assert surface[0] > surface[1] > surface[2]
    assert density[0] > density[1] > density[2]
    # TPB length per volume scales as 1 / r**2 for geometrically similar structures.
    assert density[0] / density[2] == pytest.approx((0.8 / 0.3) ** 2, rel=0.3)


def test_tpb_peaks_at_balanced_ni_ratio_where_both_solids_percolate():
    grains = {"ni_radius_um": 0.45, "ysz_radius_um": 0.45}
    structures = {f: generate(ni_volume_fraction_of_solid=f, **grains) for f in (0.3, 0.5, 0.7)}
    density = {f: tpb(labels) for f, labels in structures.items()}
    assert density[0.5] > 1.05 * max(density[0.3], density[0.7])
    ni_connected = [largest_cluster_share(labels == NI) for labels in structures.values()]
    ysz_connected = [largest_cluster_share(labels == YSZ) for labels in structures.values()]
    assert ni_connected[0] < ni_connected[1] < ni_connected[2]
    assert ysz_connected[0] > ysz_connected[1] > ysz_connected[2]


def test_default_anode_tpb_in_the_measured_range():
    """Ni–YSZ anodes measure about 1–10 µm of TPB per µm³ (FIB-SEM reconstructions)."""
    assert 1.0 < tpb(generate()) < 10.0


def test_ni_coarsening_shortens_tpb_on_a_fixed_ysz_backbone():
    fired, coarsened = generate(ni_coarsening=0.0), generate(ni_coarsening=1.0)
    assert tpb(coarsened) < 0.75 * tpb(fired)
    assert np.array_equal(coarsened == YSZ, fired == YSZ)
    assert largest_cluster_share(coarsened == NI) > largest_cluster_share(fired == NI)


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"neck_growth": 0.9}, "'neck_growth' = 0.9 is above its upper bound 0.6"),
        ({"solid_fraction": 0.65, "sintering_shrinkage": 0.3}, "breaks the constraint"),
        ({"voxel_size_um": 0.3, "ni_radius_um": 0.4}, r"1.5\*voxel_size_um - 1\*ni_radius_um"),
        ({"ysz_radius_um": 2.0}, "'ysz_radius_um' = 2.0 um is 20.0 voxels.*enlarge the box"),
        ({"ni_radius": 0.5}, "did you mean 'ni_radius_um'"),
    ],
)
def test_bad_recipes_are_refused_naming_the_parameter(recipe, message):
    with pytest.raises(TwinError, match=message):
        SOFCAnodeTwin().generate(recipe, shape=(48, 48, 48))
