"""The voxel transport solver: analytic laminates, channels, percolation, TauFactor, a foreign electrode."""

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import ndimage
from scipy.sparse.linalg import splu

from poreloop.twins.critics import arrays, conductivity, tortuosity
from poreloop.twins.errors import CriticError, TwinError
from poreloop.twins.microstructure import Microstructure

SHAPE = (12, 10, 8)
FLOAT32 = 1e-6
"""Round-off of a single-precision solve (tolerances from ``SINGLE_PRECISION_RTOL`` up)."""
ELECTRODE = (
    Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "taufactor" / "electrode.tiff"
)


def layered(shape: tuple[int, int, int], axis: int, rng: np.random.Generator) -> np.ndarray:
    """Labels 1 and 2 in random layers stacked along ``axis`` (each layer one voxel thick)."""
    layers = rng.integers(1, 3, shape[axis]).astype(np.uint8)
    layers[:2] = (1, 2)  # both phases present
    view = [1, 1, 1]
    view[axis] = shape[axis]
    return np.broadcast_to(layers.reshape(view), shape).copy()


def blobs(shape: tuple[int, int, int], porosity: float, seed: int) -> np.ndarray:
    """A seeded random pore space, True = pore (PoreSpy's blobs, the TauFactor test structure)."""
    porespy = pytest.importorskip("porespy")
    return porespy.generators.blobs(list(shape), porosity=porosity, blobiness=1, seed=seed)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_series_laminate_is_the_harmonic_mean(axis):
    labels = layered(SHAPE, axis, np.random.default_rng(axis))
    sigmas = {1: 1.0, 2: 7.5}
    result = conductivity(labels, sigmas, axis=axis, rtol=1e-9)
    per_layer = np.array([sigmas[p] for p in np.moveaxis(labels, axis, 0)[:, 0, 0]])
    harmonic = per_layer.size / np.sum(1 / per_layer)
    assert result.converged and result.percolating
    assert result.sigma_eff == pytest.approx(harmonic, rel=1e-6)
    mean = np.mean(per_layer)
    assert result.sigma_mean == pytest.approx(mean)
    assert result.tau == pytest.approx(mean / harmonic, rel=1e-6)
    assert result.residual < 1e-9


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_parallel_laminate_is_the_arithmetic_mean_and_splits_the_flux_by_conductance(axis):
    across = (axis + 1) % 3
    labels = layered(SHAPE, across, np.random.default_rng(10 + axis))
    sigmas = {1: 0.2, 2: 3.0}
    result = conductivity(labels, sigmas, axis=axis)
    fractions = {p: float(np.mean(labels == p)) for p in sigmas}
    arithmetic = sum(fractions[p] * s for p, s in sigmas.items())
    # the linear guess is the solution; the default tolerance solves in single precision
    assert result.sigma_eff == pytest.approx(arithmetic, rel=FLOAT32)
    assert result.tau == pytest.approx(1.0)
    for p, s in sigmas.items():
        assert result.flux_fraction[p] == pytest.approx(fractions[p] * s / arithmetic)


def test_insulating_phase_dropped_from_sigmas_is_the_same_as_a_zero_conductivity():
    labels = layered(SHAPE, 1, np.random.default_rng(3))
    left_out = conductivity(labels, {2: 4.0})
    zero = conductivity(labels, {1: 0.0, 2: 4.0})
    assert left_out.sigma_eff == pytest.approx(zero.sigma_eff)
    assert left_out.sigma_eff == pytest.approx(4.0 * np.mean(labels == 2))
    assert left_out.flux_fraction == {2: pytest.approx(1.0)}


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_straight_channel_has_tau_one_along_it_and_does_not_percolate_across(axis):
    volume = np.zeros((10, 12, 14), dtype=bool)
    channel = [slice(3, 6)] * 3
    channel[axis] = slice(None)
    volume[tuple(channel)] = True
    along = tortuosity(volume, axis)
    area = 9 / (volume.size / volume.shape[axis])
    assert along.tau == pytest.approx(1.0, rel=FLOAT32)
    assert along.d_eff == pytest.approx(area, rel=FLOAT32)
    assert along.porosity == pytest.approx(area)
    across = tortuosity(volume, (axis + 1) % 3)
    assert not across.percolating and across.d_eff == 0 and across.tau == math.inf


@pytest.mark.parametrize("across", [1, 2])
def test_a_path_through_the_wrap_of_a_periodic_box_is_one_chain_of_voxels(across):
    """A one-voxel path up the box's first column, one step back across the wrap, up the last
    column: its N voxels join in series (unit faces, half faces to the potentials), so
    σ_eff = L / (N A) and τ = ε / σ_eff = (N / L)², the squared length ratio. With walls
    the two columns never meet."""
    shape, middle = (12, 6, 5), 5
    volume = np.zeros(shape, dtype=bool)
    first, last = [slice(0, middle + 1), 0, 0], [slice(middle, None), 0, 0]
    last[across] = shape[across] - 1
    volume[tuple(first)] = volume[tuple(last)] = True
    walls, periodic = tortuosity(volume), tortuosity(volume, periodic=(0, 1, 2))
    assert not walls.percolating
    assert periodic.periodic == (1, 2)
    assert periodic.tau == pytest.approx((volume.sum() / shape[0]) ** 2, rel=1e-5)
    assert periodic.percolating_fraction == pytest.approx(volume.mean())


def test_dead_end_and_isolated_pores_add_porosity_but_no_flux():
    channel = np.zeros((16, 12, 12), dtype=bool)
    channel[:, 5:7, 5:7] = True
    decorated = channel.copy()
    decorated[6, 7:11, 5:7] = True  # a dead-end branch, one slice thick, on the channel
    decorated[2:4, 1:3, 1:3] = True  # an isolated pore
    plain, result = tortuosity(channel), tortuosity(decorated)
    assert result.d_eff == pytest.approx(plain.d_eff, rel=1e-6)
    assert result.porosity > plain.porosity
    assert result.tau == pytest.approx(result.porosity / result.d_eff, rel=1e-9)
    assert result.percolating_fraction == pytest.approx((channel.sum() + 4 * 2) / channel.size)


@pytest.mark.parametrize(
    "case",
    ["dead end from the inlet", "channel blocked by a wall", "no pore at all"],
)
def test_a_phase_that_does_not_percolate_gives_an_explicit_result(case):
    volume = np.zeros((16, 10, 10), dtype=bool)
    if case == "dead end from the inlet":
        volume[:9, 4:6, 4:6] = True
    elif case == "channel blocked by a wall":
        volume[:, 2:8, 2:8] = True
        volume[7] = False
    result = tortuosity(volume)
    assert not result.percolating
    assert result.d_eff == 0.0 and result.tau == math.inf
    assert result.converged and result.iterations == 0
    assert result.porosity == pytest.approx(volume.mean())
    assert not any(math.isnan(v) for v in result.model_dump().values() if isinstance(v, float))


def test_result_does_not_depend_on_which_axis_the_flow_is_along():
    volume = blobs((24, 20, 16), 0.45, seed=4)
    along_1 = tortuosity(volume, axis=1, rtol=1e-6)
    moved = tortuosity(np.moveaxis(volume, 1, 0), axis=0, rtol=1e-6)
    assert along_1.tau == pytest.approx(moved.tau, rel=1e-5)
    assert along_1.shape == (24, 20, 16) and along_1.axis == 1


def test_conductivity_is_linear_in_the_phase_conductivities_and_monotonic():
    rng = np.random.default_rng(5)
    labels = rng.choice(np.array([0, 1, 2], dtype=np.uint8), size=(20, 20, 20), p=[0.3, 0.5, 0.2])
    base = conductivity(labels, {1: 1.0, 2: 10.0})
    scaled = conductivity(labels, {1: 3.0, 2: 30.0})
    better_cbd = conductivity(labels, {1: 1.0, 2: 100.0})
    assert base.percolating
    assert scaled.sigma_eff == pytest.approx(3 * base.sigma_eff, rel=3e-3)
    assert scaled.tau == pytest.approx(base.tau, rel=3e-3)
    assert better_cbd.sigma_eff > base.sigma_eff
    assert better_cbd.flux_fraction[2] > base.flux_fraction[2]
    assert sum(base.flux_fraction.values()) == pytest.approx(1.0)
    union = tortuosity(labels > 0)
    same = conductivity(labels, {1: 2.0, 2: 2.0})
    assert same.sigma_eff == pytest.approx(2 * union.d_eff, rel=3e-3)
    assert same.tau == pytest.approx(union.tau, rel=3e-3)


def test_convergence_is_physical_and_an_iteration_cap_is_reported_not_hung():
    volume = blobs((32, 32, 32), 0.35, seed=2)
    loose, tight = tortuosity(volume, rtol=1e-2), tortuosity(volume, rtol=1e-7)
    assert loose.converged and tight.converged
    assert loose.residual < 1e-2 and tight.residual < 1e-7 and tight.tau_change < 1e-7
    assert loose.iterations < tight.iterations
    assert loose.tau == pytest.approx(tight.tau, rel=1e-2)
    capped = tortuosity(volume, rtol=1e-12, max_iterations=2)
    assert not capped.converged and capped.iterations == 2
    assert math.isfinite(capped.tau) and capped.tau > 1


@pytest.mark.parametrize(("solver", "periodic"), [("Solver", ()), ("PeriodicSolver", (0, 1, 2))])
@pytest.mark.parametrize(
    ("seed", "porosity", "axis"), [(1, 0.5, 0), (2, 0.35, 1), (3, 0.6, 2), (4, 0.3, 0)]
)
def test_random_structures_agree_with_taufactor_within_one_percent(
    seed, porosity, axis, solver, periodic
):
    """With walls on the four sides, and with the box wrapping across them (TauFactor's
    periodic solver; periodic τ of these blobs is 4-17 % lower, so the wrap must show)."""
    taufactor = pytest.importorskip("taufactor")
    volume = blobs((40, 40, 40), porosity, seed)
    peer = getattr(taufactor, solver)(np.moveaxis(volume, axis, 0).astype(np.uint8), device="cpu")
    peer_tau = float(peer.solve(verbose=False, conv_crit=1e-3)[0])
    result = tortuosity(volume, axis, periodic=periodic)
    assert result.converged
    assert result.tau == pytest.approx(peer_tau, rel=1e-2)
    assert result.d_eff == pytest.approx(float(peer.D_eff[0]), rel=1e-2)


def direct_sigma_eff(sigma: np.ndarray, axis: int, periodic: bool = False) -> float:
    """σ_eff of the module's finite-volume system, assembled independently over every voxel
    and solved directly in double precision (a 1e-12 diagonal keeps floating clusters, which
    carry no flux, from making it singular); ``periodic``: the box wraps across the two other
    axes (faces between the last and the first voxel of every row, sides of one excepted)."""
    s = np.moveaxis(sigma, axis, 0).astype(float)
    index = np.arange(s.size).reshape(s.shape)
    diagonal = np.full(s.size, 1e-12)
    rows, columns, values = [], [], []
    for d in range(3):
        lower, upper = [slice(None)] * 3, [slice(None)] * 3
        lower[d], upper[d] = slice(None, -1), slice(1, None)
        if periodic and d > 0 and s.shape[d] > 1:  # the neighbour of the last is the first
            lower[d], upper[d] = slice(None), np.roll(np.arange(s.shape[d]), -1)
        a, b = s[tuple(lower)].ravel(), s[tuple(upper)].ravel()
        g = np.divide(2 * a * b, a + b, out=np.zeros_like(a), where=a + b > 0)
        i, j = index[tuple(lower)].ravel(), index[tuple(upper)].ravel()
        rows += [i, j]
        columns += [j, i]
        values += [-g, -g]
        diagonal += np.bincount(i, g, s.size) + np.bincount(j, g, s.size)
    inlet, outlet = index[0].ravel(), index[-1].ravel()
    diagonal[inlet] += 2 * s[0].ravel()
    diagonal[outlet] += 2 * s[-1].ravel()
    A = sp.csr_matrix(
        (
            np.concatenate([*values, diagonal]),
            (np.concatenate([*rows, index.ravel()]), np.concatenate([*columns, index.ravel()])),
        ),
        shape=(s.size, s.size),
    )
    b = np.zeros(s.size)
    b[inlet] = 2 * s[0].ravel()
    # LU in a symmetric ordering: the matrix is symmetric; 3x faster than spsolve's, same x
    x = splu(A.tocsc(), permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True}).solve(b)
    return float(2 * s[0].ravel() @ (1 - x[inlet])) * s.shape[0] / s[0].size


@pytest.mark.parametrize("contrast", [50, 5000])  # solved in single and in double precision
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((37, 30, 25), 0),
        ((37, 30, 25), 2),
        ((33, 17, 1), 1),
        ((5, 48, 40), 0),
        ((70, 4, 4), 0),
        ((1, 12, 10), 0),
    ],
)
def test_every_backend_solves_any_box_like_a_direct_solve(backend, shape, axis, contrast):
    """Odd sides, a flat image, a thin slab, a rod and a single slice, an insulator and two
    phases of different conductivity: the multigrid's padding and blocks must not show."""
    rng = np.random.default_rng(sum(shape) + axis)
    field = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    labels = np.digitize(field, np.quantile(field, [0.12, 0.6])).astype(np.uint8)
    sigmas = {1: 5.0, 2: 5.0 / contrast}  # phase 0 insulates
    result = conductivity(labels, sigmas, axis=axis, rtol=1e-4, backend=backend)
    sigma = np.select([labels == p for p in sigmas], list(sigmas.values()), 0.0)
    assert result.converged and result.percolating
    assert result.sigma_eff == pytest.approx(direct_sigma_eff(sigma, axis), rel=3e-4)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize(
    ("shape", "axis"), [((37, 30, 25), 0), ((37, 30, 25), 2), ((33, 17, 1), 1), ((5, 48, 40), 0)]
)
def test_a_periodic_box_solves_like_a_direct_solve(backend, shape, axis):
    """Odd sides wrap through the multigrid's padding and blocks, a side of one does not wrap,
    clusters that meet only across the wrap carry flux."""
    rng = np.random.default_rng(sum(shape) + axis)
    field = ndimage.gaussian_filter(rng.normal(size=shape), 1.5, mode="wrap")
    labels = np.digitize(field, np.quantile(field, [0.35, 0.7])).astype(np.uint8)
    sigmas = {1: 5.0, 2: 0.1}  # phase 0 insulates
    result = conductivity(labels, sigmas, axis, periodic=(0, 1, 2), rtol=1e-4, backend=backend)
    sigma = np.select([labels == p for p in sigmas], list(sigmas.values()), 0.0)
    assert result.converged and result.percolating
    assert result.sigma_eff == pytest.approx(direct_sigma_eff(sigma, axis, True), rel=3e-4)
    assert result.sigma_eff != pytest.approx(direct_sigma_eff(sigma, axis), rel=2e-3)


def test_the_backend_is_chosen_by_argument_then_environment_then_hardware(monkeypatch):
    monkeypatch.delenv(arrays.ENVIRONMENT, raising=False)
    torch = pytest.importorskip("torch")
    assert arrays.backend().name == ("cuda" if torch.cuda.is_available() else "torch")
    monkeypatch.setenv(arrays.ENVIRONMENT, "numpy")
    assert arrays.backend().name == "numpy"
    assert arrays.backend("torch").name == "torch"
    monkeypatch.setenv(arrays.ENVIRONMENT, "tpu")
    with pytest.raises(CriticError, match=f"{arrays.ENVIRONMENT} must be one of auto, torch"):
        tortuosity(np.ones((4, 4, 4), dtype=bool))
    if not torch.cuda.is_available():
        with pytest.raises(CriticError, match="needs a GPU"):
            arrays.backend("cuda")


def test_foreign_electrode_matches_its_published_tortuosity():
    """TauFactor's 256³ NMC cathode: pore τ = 2.0776 along the first index (its README).

    The full volume (7.5 M unknowns) takes 45-95 s on the 2-core machine; τ depends on
    resolution, so it is not cropped.
    """
    if not ELECTRODE.is_file():
        pytest.skip(f"reference data not found at {ELECTRODE}")
    result = tortuosity(Microstructure.load(ELECTRODE).labels == 0, axis=0)
    assert result.converged
    assert result.tau == pytest.approx(2.0776, rel=5e-3)
    assert result.d_eff == pytest.approx(0.2166, rel=5e-3)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: tortuosity(np.ones((4, 4, 4))), "boolean array"),
        (lambda: tortuosity(np.ones((4, 4), dtype=bool)), "3D array"),
        (lambda: tortuosity(np.ones((4, 4, 4), dtype=bool), axis=3), "axis must be"),
        (lambda: conductivity(np.ones((4, 4, 4), dtype=np.uint8), {1: -1.0}), "finite number"),
        (lambda: conductivity(np.ones((4, 4, 4), dtype=np.uint8), {1: float("nan")}), "finite"),
        (lambda: conductivity(np.ones((4, 4, 4), dtype=np.uint8), {}), "sigmas must map"),
        (lambda: conductivity(np.full((4, 4, 4), 0.5), {1: 1.0}), "integer array"),
        (lambda: tortuosity(np.ones((4, 4, 4), dtype=bool), rtol=0), "rtol"),
        (lambda: tortuosity(np.ones((4, 4, 4), dtype=bool), periodic=(3,)), "periodic must"),
        (lambda: tortuosity(np.ones((4, 4, 4), dtype=bool), periodic="xy"), "periodic must"),
        (lambda: tortuosity(np.ones((4, 4, 4), dtype=bool), periodic=1), "periodic must"),
        (lambda: tortuosity(np.ones((4, 4, 4), dtype=bool), backend="gpu"), "backend must be"),
    ],
)
def test_bad_input_is_a_one_line_twin_error(call, message):
    with pytest.raises(CriticError, match=message) as info:
        call()
    assert isinstance(info.value, TwinError)
    assert "\n" not in str(info.value)
