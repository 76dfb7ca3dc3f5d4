"""Stokes permeability: Poiseuille in a slit and a square duct, Kozeny–Carman on sphere packs."""

import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from poreloop.twins.critics.flow import DARCY_M2, permeability
from poreloop.twins.errors import CriticError
from poreloop.twins.manufacturing.gdl import GDLTwin
from poreloop.twins.manufacturing.packing import relax_packing


def slit(gap: int) -> np.ndarray:
    """Pore between two one-voxel plates normal to axis 1: ``(8, gap + 2, 4)`` bool."""
    pore = np.zeros((8, gap + 2, 4), dtype=bool)
    pore[:, 1:-1] = True
    return pore


def duct_permeability(side: float) -> float:
    """Mean-velocity permeability of a square duct, µ ū / G (Shah & London 1978, series)."""
    series = sum(math.tanh(n * math.pi / 2) / n**5 for n in range(1, 400, 2))
    return side**2 / 12 * (1 - 192 / math.pi**5 * series)


def sphere_pack(n: int, diameter: float, solid: float, seed: int) -> np.ndarray:
    """A random pack of equal non-overlapping spheres, ``(n, n, n)`` bool pore.

    Packed by ``relax_packing`` in a box 2 diameters taller than the cube, periodic in x and
    y, and cropped one diameter from each wall so the wall layering is left out.
    """
    rng = np.random.default_rng(seed)
    box = (n, n, n + 2 * diameter)
    radius = diameter / 2
    count = round(solid * np.prod(box) / (4 / 3 * math.pi * radius**3))
    centres = relax_packing(rng.uniform(0, 1, (count, 3)) * box, np.full(count, radius), box, 500)
    images = [(i * n, j * n, 0) for i in (-1, 0, 1) for j in (-1, 0, 1)]
    tree = cKDTree((centres[None] + np.array(images)[:, None]).reshape(-1, 3))
    g = np.arange(n) + 0.5
    points = np.stack(np.meshgrid(g, g, g + diameter, indexing="ij"), -1).reshape(-1, 3)
    return tree.query(points)[0].reshape(n, n, n) > radius


def kozeny_carman(
    k_voxels: float | np.ndarray, porosity: float | np.ndarray, diameter: float
) -> float | np.ndarray:
    """``k (1 - ε)² / (ε³ d²)``, k and d in voxels: 1/180 for beds of spheres (Carman 1937)."""
    return k_voxels * (1 - porosity) ** 2 / (porosity**3 * diameter**2)


@pytest.mark.parametrize("gap", [8, 16])
def test_slit_is_plane_poiseuille_to_second_order(gap):
    """k = ε H² / 12; walls half a voxel from the last velocity give (H² + 2) / 12: error 2/H²."""
    h_um, dp, mu = 2.0, 50.0, 1e-3
    result = permeability(slit(gap), h_um, axis=0, pressure_drop_pa=dp, viscosity_pa_s=mu)
    porosity = gap / (gap + 2)
    exact = porosity * (gap * h_um * 1e-6) ** 2 / 12
    assert result.converged and result.percolating
    assert result.porosity == pytest.approx(porosity)
    assert 0 < result.k_m2 / exact - 1 < 2.5 / gap**2
    length = 8 * h_um * 1e-6
    assert result.mean_velocity_m_s == pytest.approx(result.k_m2 * dp / (mu * length))
    assert result.mean_velocity_m_s == pytest.approx(exact * dp / (mu * length), rel=2.5 / gap**2)
    assert result.k_darcy == pytest.approx(result.k_m2 / DARCY_M2)
    assert result.k_um2 == pytest.approx(result.k_m2 * 1e12)
    along_z = permeability(slit(gap), h_um, axis=2)
    assert along_z.k_m2 == pytest.approx(result.k_m2, rel=2e-3)
    across = permeability(slit(gap), h_um, axis=1)
    assert across.k_m2 == 0 and not across.percolating


def test_slit_error_falls_as_the_square_of_the_resolution():
    errors = [
        permeability(slit(g), 1.0, rtol=1e-6).k_um2 / (g**3 / (g + 2) / 12) - 1 for g in (4, 8)
    ]
    assert errors[0] / errors[1] == pytest.approx(4, rel=0.02)


@pytest.mark.parametrize("side", [8, 16])
def test_square_duct_matches_the_series_solution(side):
    """A box full of pore in a no-slip sleeve is a square duct; second order, error ≈ 4/a²."""
    duct = permeability(np.ones((6, side, side), dtype=bool), 1.0, sides="wall")
    exact = duct_permeability(side)
    assert duct.converged and duct.porosity == 1
    assert 0 < duct.k_um2 / exact - 1 < 4.5 / side**2
    # the same duct drawn with solid walls inside a slip box: the same flow over a bigger area
    framed = np.zeros((6, side + 2, side + 2), dtype=bool)
    framed[:, 1:-1, 1:-1] = True
    slip = permeability(framed, 1.0, sides="slip")
    assert slip.k_um2 == pytest.approx(duct.k_um2 * side**2 / (side + 2) ** 2, rel=2e-3)


def test_kozeny_carman_on_random_sphere_packs():
    """k grows with porosity, and k (1 - ε)² / (ε³ d²) stays near Carman's 1/180.

    At 8 voxels a diameter the 1–2 voxel throats make k ~20 % high (constant ~1/145; 1/165
    at 12 voxels); asserted: within a factor 2 of 1/180 and within 30 % of each other.
    """
    diameter = 8
    results = [
        permeability(sphere_pack(32, diameter, solid, seed=1), 1.0, axis=2)
        for solid in (0.3, 0.45, 0.55)
    ]
    porosity = np.array([r.porosity for r in results])
    k = np.array([r.k_um2 for r in results])
    assert np.all(np.diff(porosity) < 0) and np.all(np.diff(k) < 0)
    constants = kozeny_carman(k, porosity, diameter)
    assert np.all((constants > 1 / 360) & (constants < 1 / 90))
    assert constants.max() / constants.min() < 1.3


def test_permeability_scales_with_particle_size_squared():
    """Packs of 6- and 10-voxel spheres at one packing fraction share the Kozeny–Carman
    constant, i.e. k ∝ d² (k ∝ d would put the ratio at 0.6, k ∝ d³ at 1.7)."""
    small = permeability(sphere_pack(24, 6, 0.45, seed=2), 1.0, axis=2)
    large = permeability(sphere_pack(40, 10, 0.45, seed=2), 1.0, axis=2)
    assert large.porosity == pytest.approx(small.porosity, abs=0.01)
    ratio = kozeny_carman(large.k_um2, large.porosity, 10) / kozeny_carman(
        small.k_um2, small.porosity, 6
    )
    assert ratio == pytest.approx(1, abs=0.2)


def test_pore_space_that_does_not_percolate_gives_zero_flagged():
    cavities = np.zeros((12, 12, 12), dtype=bool)
    cavities[2:5, 2:5, 2:5] = True  # a closed pocket
    cavities[:6, 7:10, 7:10] = True  # a blind hole open to the inlet only
    for pore in (cavities, np.zeros((8, 8, 8), dtype=bool)):
        result = permeability(pore, 1.5, axis=0)
        assert result.k_m2 == 0 and result.mean_velocity_m_s == 0
        assert not result.percolating and result.converged
        assert result.iterations == 0 and result.residual == 0
        assert result.percolating_porosity == 0
    assert permeability(cavities, 1.5, axis=0).porosity == pytest.approx(cavities.mean())


def test_channels_along_x_conduct_along_x_only():
    """Four 6×6 square channels along x: each is a framed duct; nothing flows along y or z."""
    pore = np.zeros((10, 16, 16), dtype=bool)
    for y in (1, 9):
        for z in (1, 9):
            pore[:, y : y + 6, z : z + 6] = True
    along = permeability(pore, 1.0, axis=0)
    duct = permeability(np.ones((10, 6, 6), dtype=bool), 1.0, sides="wall")
    assert along.k_um2 == pytest.approx(duct.k_um2 * 4 * 36 / 256, rel=2e-3)
    for axis in (1, 2):
        across = permeability(pore, 1.0, axis=axis)
        assert across.k_m2 == 0 and not across.percolating


def test_gdl_is_more_permeable_in_plane_than_through_plane():
    """Carbon-paper fibres lie in-plane, so gas crosses the paper less easily than along it."""
    gdl = GDLTwin().generate(shape=(32, 32, 32), seed=0)
    pore = gdl.labels == 0
    through = permeability(pore, gdl.voxel_size_um, axis=2)
    in_plane = [permeability(pore, gdl.voxel_size_um, axis=a) for a in (0, 1)]
    for result in (through, *in_plane):
        assert result.converged and result.iterations > 0
        assert result.residual < 1e-3 and result.flux_spread < 1e-3
        assert 1e-13 < result.k_m2 < 1e-10  # carbon papers: ~1e-12 to 1e-11 m²
    assert min(r.k_m2 for r in in_plane) > through.k_m2


def test_convergence_is_judged_and_reported():
    pore = sphere_pack(24, 8, 0.4, seed=3)
    loose = permeability(pore, 1.0, axis=1)
    tight = permeability(pore, 1.0, axis=1, rtol=1e-7)
    assert loose.converged and tight.converged and tight.iterations > loose.iterations
    assert tight.residual < 1e-7 and tight.flux_spread < 1e-7
    assert loose.k_m2 == pytest.approx(tight.k_m2, rel=1e-3)
    stopped = permeability(pore, 1.0, axis=1, max_iterations=3)
    assert not stopped.converged and stopped.iterations == 3
    assert math.isfinite(stopped.k_m2) and stopped.residual > 1e-3


@pytest.mark.parametrize(
    ("pore", "kwargs", "match"),
    [
        (np.ones((4, 4, 4), dtype=np.uint8), {}, "boolean"),
        (np.ones((4, 4), dtype=bool), {}, "3D"),
        (slit(4), {"axis": 3}, "axis"),
        (slit(4), {"voxel_size_um": -1.0}, "voxel_size_um"),
        (slit(4), {"voxel_size_um": float("nan")}, "voxel_size_um"),
        (slit(4), {"viscosity_pa_s": 0.0}, "viscosity_pa_s"),
        (slit(4), {"sides": "periodic"}, "sides"),
        (slit(4), {"rtol": 2.0}, "rtol"),
        (slit(4), {"max_iterations": 0}, "max_iterations"),
        (np.ones((4, 4, 4), dtype=bool), {}, "unbounded"),
    ],
)
def test_bad_input_raises_a_one_line_critic_error(pore, kwargs, match):
    kwargs = {"voxel_size_um": 1.0, **kwargs}
    with pytest.raises(CriticError, match=match) as error:
        permeability(pore, **kwargs)
    assert "\n" not in str(error.value)
