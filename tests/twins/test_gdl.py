"""The carbon-paper GDL twin: fibre stacking, compression, binder and PTFE placement."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.stats import vonmises

from poreloop.twins.errors import TwinError
from poreloop.twins.manufacturing.gdl import (
    BINDER,
    FIBRE,
    PORE,
    PTFE,
    GDLTwin,
    Laydown,
    coat_ptfe,
    draw_layer_round,
    fibre_voxels,
    orientation_concentration,
    sample_fibre_diameters,
)

BOX = (48, 48, 48)


def labels(recipe: dict[str, float] | None = None, shape=BOX, seed: int = 0) -> np.ndarray:
    return GDLTwin().generate(recipe, shape=shape, seed=seed).labels


def interfaces(mask: np.ndarray, axis: int) -> int:
    """Phase changes between neighbouring voxels along ``axis`` (∝ surface seen along it)."""
    return int(np.count_nonzero(np.diff(mask.astype(np.int8), axis=axis)))


def test_same_seed_same_structure_other_seed_another() -> None:
    first, again, other = labels(seed=5), labels(seed=5), labels(seed=6)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_non_cubic_box_keeps_its_shape_and_phases() -> None:
    micro = GDLTwin().generate(shape=(40, 64, 96), seed=1)
    assert micro.shape == (40, 64, 96)
    assert micro.labels.dtype == np.uint8
    assert set(np.unique(micro.labels)) == {PORE, FIBRE, BINDER, PTFE}
    assert micro.phases == {0: "pore", 1: "fibre", 2: "binder", 3: "ptfe"}


@pytest.mark.parametrize(
    ("fibre_fraction", "compression", "diameter_um"),
    [(0.08, 0.0, 7.5), (0.3, 0.0, 5.0), (0.2, 0.3, 10.0), (0.35, 0.5, 7.5)],
)
def test_fibre_fraction_is_the_mass_conserving_target(
    fibre_fraction: float, compression: float, diameter_um: float
) -> None:
    """Compressed fibre fraction = fibre_fraction / (1 - compression), ±0.01 at 64^3."""
    recipe = {
        "fibre_fraction": fibre_fraction,
        "compression": compression,
        "fibre_diameter_um": diameter_um,
        "binder_fraction": 0.02,
        "ptfe_loading": 0.02,
    }
    achieved = np.mean(labels(recipe, shape=(64, 64, 64)) == FIBRE)
    assert achieved == pytest.approx(fibre_fraction / (1 - compression), abs=0.01)


def test_binder_and_ptfe_volumes_are_exact() -> None:
    recipe = {"binder_fraction": 0.06, "ptfe_loading": 0.04, "compression": 0.25}
    fractions = GDLTwin().generate(recipe, shape=BOX, seed=2).phase_fractions()
    voxel = 1 / np.prod(BOX)
    assert fractions["binder"] == pytest.approx(0.06 / 0.75, abs=voxel)
    assert fractions["ptfe"] == pytest.approx(0.04 / 0.75, abs=voxel)


def test_compression_lowers_porosity_as_mass_conservation_says() -> None:
    recipe = {"fibre_fraction": 0.2, "binder_fraction": 0.05, "ptfe_loading": 0.03}
    porosity = [np.mean(labels({**recipe, "compression": c}) == PORE) for c in (0.0, 0.2, 0.4)]
    assert porosity[0] > porosity[1] > porosity[2]
    expected = [1 - 0.28 / (1 - c) for c in (0.0, 0.2, 0.4)]
    np.testing.assert_allclose(porosity, expected, atol=0.01)


@pytest.mark.parametrize(
    ("parameter", "phase"), [("ptfe_loading", PTFE), ("binder_fraction", BINDER)]
)
def test_more_loading_puts_more_of_that_phase(parameter: str, phase: int) -> None:
    amounts = [np.mean(labels({parameter: x}) == phase) for x in (0.0, 0.03, 0.1)]
    assert amounts[0] == 0.0
    assert amounts[0] < amounts[1] < amounts[2]


def test_ptfe_is_a_sheath_on_fibre_and_binder() -> None:
    """Every PTFE voxel is at least as close to the solid as every pore voxel left over."""
    micro = labels({"ptfe_loading": 0.08, "binder_fraction": 0.05})
    distance = ndimage.distance_transform_edt((micro == PORE) | (micro == PTFE))
    assert distance[micro == PTFE].max() <= distance[micro == PORE].min()


@pytest.mark.parametrize("fraction", [0.05, 0.5])
def test_coat_ptfe_matches_the_euclidean_distance_transform(fraction: float) -> None:
    """Thin sheaths (grown shell by shell) and thick ones (from the full transform) alike."""
    rng = np.random.default_rng(3)
    solid = ndimage.gaussian_filter(rng.random((24, 20, 16)), 2) > 0.54
    coat = coat_ptfe(solid, fraction, rng)
    distance = ndimage.distance_transform_edt(~solid)
    assert coat.sum() == round(fraction * solid.size)
    assert not (coat & solid).any()
    assert distance[coat].max() <= distance[~solid & ~coat].min()


def test_binder_sits_on_fibres_at_crossings() -> None:
    """Binder grows from where fibres crowd: every binder blob touches a fibre, and binder
    voxels see far more fibre around them than the pore does."""
    micro = labels({"binder_fraction": 0.08, "ptfe_loading": 0.0})
    blobs, n = ndimage.label(micro == BINDER)
    touching = np.unique(blobs[ndimage.binary_dilation(micro == FIBRE) & (blobs > 0)])
    assert n > 0
    assert touching.size == n
    crowding = ndimage.uniform_filter((micro == FIBRE).astype(float), 5)
    assert crowding[micro == BINDER].mean() > 2 * crowding[micro == PORE].mean()


def test_thicker_fibres_have_less_surface() -> None:
    """Specific surface of cylinders ∝ 1 / diameter at a fixed solid fraction."""
    recipe = {"binder_fraction": 0.0, "ptfe_loading": 0.0}

    def surface(diameter_um: float) -> int:
        solid = labels({**recipe, "fibre_diameter_um": diameter_um}) != PORE
        return sum(interfaces(solid, axis) for axis in range(3))

    assert surface(12.0) < 0.7 * surface(5.0)


def test_alignment_makes_the_plane_directional() -> None:
    """Fibres aligned along x cut x-lines rarely and y-lines often; isotropic ones alike."""

    def y_over_x(anisotropy: float) -> float:
        fibre = [
            labels({"orientation_anisotropy": anisotropy}, (64, 64, 64), s) == FIBRE
            for s in range(2)
        ]
        return sum(interfaces(f, 1) for f in fibre) / sum(interfaces(f, 0) for f in fibre)

    assert 0.75 < y_over_x(0.0) < 1.33
    assert y_over_x(0.9) > 2.5


def test_fibres_lie_in_plane() -> None:
    """In-plane fibres are short through the thickness: more phase changes along z."""
    fibre = labels({"orientation_anisotropy": 0.0, "tilt_deg": 3.0}, (64, 64, 64)) == FIBRE
    assert interfaces(fibre, 2) > 1.15 * max(interfaces(fibre, 0), interfaces(fibre, 1))


def test_waviness_bends_the_fibres() -> None:
    """Aligned straight fibres make long chords along x; undulating ones break them up."""
    recipe = {"orientation_anisotropy": 0.95, "tilt_deg": 0.0}
    straight, wavy = (
        sum(interfaces(labels({**recipe, "waviness": w}, seed=s) == FIBRE, 0) for s in range(2))
        for w in (0.0, 1.0)
    )
    assert wavy > 1.15 * straight


def voxel_centres(shape: tuple[int, int, int]) -> np.ndarray:
    """``(n, 3)`` centres of every voxel of the box, C order."""
    axes = [np.arange(n) + 0.5 for n in shape]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


@pytest.mark.parametrize("waviness", [0.0, 1.0])
def test_windowed_sweep_finds_every_voxel_of_the_fibre(waviness: float) -> None:
    """The sheared window misses nothing: same voxels as testing every voxel of the box with
    the distance to the local tangent line (for a straight fibre, to the axis: a cylinder),
    up to float32 rounding on the fibre surface."""
    shape = (40, 32, 28)
    laydown = Laydown(
        diameter=8.0,
        diameter_cv=0.5,
        kappa=0.0,
        tilt_sd=np.deg2rad(15.0),
        waviness=waviness,
        compression=0.4,
    )
    fibres = draw_layer_round(shape, laydown, 12, np.random.default_rng(4))
    centres = voxel_centres(shape)
    every = fibre_voxels(fibres, shape)
    hits = 0
    for i in range(12):
        offset = centres - fibres.point[i]
        along = offset @ fibres.direction[i]
        angle = fibres.wavenumber[i] * along + fibres.phase[i]
        off_axis = offset - along[:, None] * fibres.direction[i]
        off_axis -= np.sin(angle)[:, None] * fibres.wave[i]
        tangent = (
            fibres.direction[i] + (fibres.wavenumber[i] * np.cos(angle))[:, None] * fibres.wave[i]
        )
        d2 = (off_axis**2).sum(1) - (off_axis * tangent).sum(1) ** 2 / (tangent**2).sum(1)
        found = every[i]
        surely_in = np.flatnonzero(d2 <= fibres.radius[i] ** 2 - 1e-3)
        maybe_in = np.flatnonzero(d2 <= fibres.radius[i] ** 2 + 1e-3)
        assert np.isin(surely_in, found).all()
        assert np.isin(found, maybe_in).all()
        hits += found.size
    assert hits > 0


def test_fibre_diameters_spread_as_asked() -> None:
    rng = np.random.default_rng(0)
    spread = sample_fibre_diameters(7.5, 0.3, 20_000, rng)
    assert spread.mean() == pytest.approx(7.5, rel=0.02)
    assert spread.std() / spread.mean() == pytest.approx(0.3, abs=0.02)
    assert spread.min() > 0
    assert np.ptp(sample_fibre_diameters(7.5, 0.0, 100, rng)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("order", [0.05, 0.3, 0.9])
def test_orientation_concentration_gives_the_order_parameter(order: float) -> None:
    """<cos 2φ> of the axial von Mises law equals the requested alignment; 0 is uniform."""
    kappa = orientation_concentration(order)
    assert vonmises.expect(np.cos, args=(kappa,)) == pytest.approx(order, abs=1e-6)
    assert orientation_concentration(0.0) == 0.0


@pytest.mark.parametrize(
    ("recipe", "named"),
    [
        ({"fibre_fraction": 0.9}, "fibre_fraction"),
        ({"fibre_diameter_cv": -0.1}, "fibre_diameter_cv"),
        ({"fibre_fraction": 0.4, "compression": 0.5}, "compression"),
        ({"voxel_size_um": 5.0, "fibre_diameter_um": 5.0}, "voxel_size_um"),
    ],
)
def test_bad_recipe_names_the_parameter(recipe: dict[str, float], named: str) -> None:
    with pytest.raises(TwinError, match=named):
        GDLTwin().generate(recipe, shape=(16, 16, 16))


def test_box_too_small_for_the_fibres_is_refused() -> None:
    with pytest.raises(TwinError, match="box edge"):
        GDLTwin().generate({"fibre_diameter_um": 20.0, "voxel_size_um": 0.5}, shape=(32, 32, 32))


def test_every_parameter_is_documented_and_defaults_are_feasible() -> None:
    space = GDLTwin.space
    assert "voxel_size_um" in space.names
    for parameter in space.parameters:
        assert parameter.description
        assert parameter.default is not None
    assert space.is_feasible(space.defaults())
