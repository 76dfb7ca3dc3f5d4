"""Yeong–Torquato reconstruction: S2 estimator, exact incremental updates, annealing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import porespy as ps
import pytest

from poreloop.twins.critics.morphology import two_point_correlation
from poreloop.twins.errors import TwinError
from poreloop.twins.manufacturing.reconstruct import (
    ReconstructionTwin,
    _disjoint_voxels,
    _Lines,
    _metropolis,
    _swap_change,
    correlation_error,
)
from poreloop.twins.microstructure import Microstructure

PHASES = {0: "pore", 1: "solid"}


def blobs(
    shape: list[int], porosity: float = 0.5, blobiness: float | list[float] = 2
) -> np.ndarray:
    """A PoreSpy blobs image, True = pore."""
    return ps.generators.blobs(shape=shape, porosity=porosity, blobiness=blobiness, seed=0)


def as_reference(pore: np.ndarray, voxel_size_um: float = 1.0) -> Microstructure:
    return Microstructure(np.where(pore, 0, 1).astype(np.uint8), voxel_size_um, PHASES)


@pytest.fixture(scope="module")
def reference() -> Microstructure:
    return as_reference(blobs([64, 64]), voxel_size_um=0.5)


def test_s2_of_iid_field_is_porosity_then_its_square() -> None:
    rng = np.random.default_rng(0)
    field = rng.random((256, 256)) < 0.3
    s2 = two_point_correlation(field, 10)
    assert s2.shape == (2, 11)
    np.testing.assert_allclose(s2[:, 0], field.mean())
    np.testing.assert_allclose(s2[:, 1:], field.mean() ** 2, atol=0.005)


def test_s2_of_laminate_is_a_triangle_wave_across_and_flat_along() -> None:
    period, width = 16, 5
    x = np.arange(64) % period < width
    laminate = np.broadcast_to(x[:, None], (64, 32))
    s2 = two_point_correlation(laminate, 31)
    d = np.arange(32) % period
    triangle = (np.maximum(width - d, 0) + np.maximum(width - (period - d), 0)) / period
    np.testing.assert_allclose(s2[0], triangle, atol=1e-12)
    np.testing.assert_allclose(s2[1], width / period, atol=1e-12)


def test_s2_matches_brute_force_pair_counts_in_3d() -> None:
    field = np.random.default_rng(1).random((12, 10, 14)) < 0.4
    s2 = two_point_correlation(field, 4)
    s2_open = two_point_correlation(field, 4, periodic=False)
    for axis in range(3):
        for r in range(5):
            periodic = np.mean(field & np.roll(field, -r, axis=axis))
            n = field.shape[axis]
            head = np.take(field, range(n - r), axis=axis)
            tail = np.take(field, range(r, n), axis=axis)
            assert s2[axis, r] == pytest.approx(periodic, abs=1e-12)
            assert s2_open[axis, r] == pytest.approx(np.mean(head & tail), abs=1e-12)


def test_s2_agrees_with_porespy_on_an_isotropic_image() -> None:
    image = blobs([128, 128], porosity=0.4, blobiness=1)
    ours = two_point_correlation(image, 20, periodic=False).mean(axis=0)
    peer = ps.metrics.two_point_correlation(image, bins=np.arange(-0.5, 21)).probability_scaled
    assert ours[0] == pytest.approx(peer[0])
    # PoreSpy averages over every direction in [r - 1/2, r + 1/2), we along the axes
    np.testing.assert_allclose(ours, peer[:21], atol=0.01)


@pytest.mark.parametrize("shape", [(24, 40), (10, 12, 16)])
def test_disjoint_swaps_change_s2_by_the_sum_of_their_single_changes(shape: tuple) -> None:
    """The incremental update is exact: only the lines through swapped voxels change."""
    rng = np.random.default_rng(2)
    r_max = min(shape) // 2
    image = (rng.random(shape) < 0.45).astype(np.uint8).ravel()
    voxels = _disjoint_voxels(shape, rng)
    pore = voxels[image[voxels] == 1]
    solid = voxels[image[voxels] == 0]
    pairs = min(pore.size, solid.size)
    swaps = np.stack([pore[:pairs], solid[:pairs]], axis=1)
    lines = [_Lines(shape, axis, r_max) for axis in range(len(shape))]
    change = _swap_change(image, swaps, lines)
    before = two_point_correlation(image.reshape(shape), r_max)
    image[swaps[:, 0]], image[swaps[:, 1]] = 0, 1
    after = two_point_correlation(image.reshape(shape), r_max)
    assert pairs > 1
    np.testing.assert_allclose(after - before, change.sum(axis=0), atol=1e-12)


def test_batched_metropolis_equals_one_swap_at_a_time() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        b, d = rng.integers(1, 50), rng.integers(1, 8)
        change = rng.normal(size=(b, d))
        gain = rng.normal(size=b) * rng.uniform(0.1, 5)
        threshold = np.abs(rng.normal(size=b)) * rng.uniform(0, 2)
        expected, running = [], gain.copy()
        for k in range(b):
            if running[k] <= threshold[k]:
                expected.append(k)
                running[k + 1 :] += 2 * change[k + 1 :] @ change[k]
        np.testing.assert_array_equal(_metropolis(gain, change, threshold), expected)


def test_reconstruction_keeps_porosity_and_reaches_tolerance(reference: Microstructure) -> None:
    twin = ReconstructionTwin(reference)
    recon = twin.generate({"tolerance": 0.02}, shape=(64, 64), seed=0)
    report = twin.last_report
    assert recon.labels.dtype == np.uint8 and recon.shape == (64, 64)
    assert recon.voxel_size_um == reference.voxel_size_um
    assert np.sum(recon.labels == 0) == np.sum(reference.labels == 0)
    assert report is not None and report.converged
    target = twin.target((64, 64), reference.voxel_size_um, 32)
    achieved = two_point_correlation(recon.labels == 0, report.r_max)
    assert report.correlation_error == pytest.approx(correlation_error(achieved, target))
    assert report.correlation_error < 0.02
    random = np.random.default_rng(0).permutation(recon.labels.ravel()).reshape(64, 64)
    random_error = correlation_error(two_point_correlation(random == 0, report.r_max), target)
    assert random_error > 10 * report.correlation_error


def test_anisotropic_reference_is_matched_axis_by_axis() -> None:
    reference = as_reference(blobs([64, 64], blobiness=[0.5, 3]))
    twin = ReconstructionTwin(reference)
    recon = twin.generate({"tolerance": 0.02, "max_distance_voxels": 16}, shape=(48, 48), seed=1)
    s2 = two_point_correlation(recon.labels == 0, 16)
    assert twin.last_report is not None and twin.last_report.correlation_error < 0.02
    # elongated pores: correlation decays slower along x than along y, as in the reference
    assert s2[0, 3] > s2[1, 3] + 0.1


def test_2d_micrograph_seeds_a_3d_volume(reference: Microstructure) -> None:
    twin = ReconstructionTwin(reference)
    recon = twin.generate({"tolerance": 0.02}, shape=(20, 24, 28), seed=0)
    report = twin.last_report
    assert recon.shape == (20, 24, 28)
    assert np.sum(recon.labels == 0) == round(0.5 * recon.labels.size)
    assert report is not None and report.r_max == 10 and report.correlation_error < 0.02
    isotropic = two_point_correlation(reference.labels == 0, 10, periodic=False).mean(axis=0)
    achieved = two_point_correlation(recon.labels == 0, 10)
    np.testing.assert_allclose(achieved, np.broadcast_to(isotropic, (3, 11)), atol=0.01)


def test_3d_stack_reconstructs_3d() -> None:
    reference = as_reference(blobs([32, 32, 32], porosity=0.35, blobiness=1.5))
    twin = ReconstructionTwin(reference)
    recon = twin.generate({"tolerance": 0.02}, shape=(24, 24, 24), seed=0)
    assert twin.last_report is not None and twin.last_report.correlation_error < 0.02
    porosity = np.mean(reference.labels == 0)
    assert np.sum(recon.labels == 0) == round(porosity * 24**3)
    section = twin.target((32, 32), 1.0, 8)
    np.testing.assert_allclose(
        section, two_point_correlation(reference.labels == 0, 8, periodic=False)[:2]
    )


def test_coarser_voxels_sample_the_reference_s2_at_the_same_distance(
    reference: Microstructure,
) -> None:
    twin = ReconstructionTwin(reference)
    fine = two_point_correlation(reference.labels == 0, 32, periodic=False)
    coarse = twin.target((32, 32), 2 * reference.voxel_size_um, 32)
    assert coarse.shape == (2, 17)
    np.testing.assert_allclose(coarse, fine[:, ::2])
    assert twin.generate({"voxel_size_um": 1.0, "max_sweeps": 1}, (16, 16)).voxel_size_um == 1.0


def test_same_seed_same_structure(reference: Microstructure) -> None:
    twin = ReconstructionTwin(reference)
    a = twin.generate({"max_sweeps": 3}, shape=(32, 32), seed=7).labels
    b = twin.generate({"max_sweeps": 3}, shape=(32, 32), seed=7).labels
    c = twin.generate({"max_sweeps": 3}, shape=(32, 32), seed=8).labels
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_without_reference_says_how_to_give_one() -> None:
    with pytest.raises(TwinError, match=r"reference=Microstructure\.load"):
        ReconstructionTwin().generate(shape=(16, 16))


@pytest.mark.parametrize("phase", [2, 1])
def test_reference_without_the_phase_or_all_of_it_is_refused(phase: int) -> None:
    labels = np.ones((16, 16), dtype=np.uint8)
    with pytest.raises(TwinError, match=f"phase {phase}"):
        ReconstructionTwin(Microstructure(labels, 1.0, {1: "solid"}), phase=phase)


def test_get_twin_takes_a_reference_only_where_the_twin_reproduces_one(
    reference: Microstructure, tmp_path: Path
) -> None:
    from poreloop.twins import get_twin
    from poreloop.twins.errors import TwinError

    path = reference.save(tmp_path / "micrograph.npz")
    assert get_twin("reconstruct", reference=path).reference.shape == reference.shape
    assert get_twin("reconstruct", reference=reference).reference.shape == reference.shape
    with pytest.raises(TwinError, match="takes no --reference"):
        get_twin("gdl", reference=path)
