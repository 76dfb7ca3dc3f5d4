"""Segmentation of grey-value scans: the tomograph's own forward model, segmented back."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from poreloop.instruments.tomography import render, write_scan
from poreloop.twins import Microstructure
from poreloop.twins.critics.segmentation import grey_order, segment, segment_file
from poreloop.twins.errors import TwinError
from poreloop.twins.manufacturing.electrode import ElectrodeTwin


@pytest.fixture(scope="module")
def electrode() -> Microstructure:
    return ElectrodeTwin().generate({}, shape=(40, 40, 40), seed=3)


def scan_of(micro: Microstructure, exposure_s: float, seed: int = 0) -> np.ndarray:
    return render(micro, micro.voxel_size_um, exposure_s, np.random.default_rng(seed))


def agreement(a: Microstructure, b: Microstructure) -> float:
    return float(np.mean(a.labels == b.labels))


def test_a_scan_segments_back_to_its_structure(electrode: Microstructure) -> None:
    measured = segment(scan_of(electrode, 1.0), electrode.phases, electrode.voxel_size_um)
    # a quarter of the voxels touch an interface, which the 0.8-voxel blur smears; the
    # thresholds put 93 % of them right on this seed, 90 % leaves room for others
    assert agreement(measured, electrode) > 0.9
    true, found = electrode.phase_fractions(), measured.phase_fractions()
    assert abs(found["pore"] - true["pore"]) < 0.03
    assert measured.phases == electrode.phases


def test_the_listing_order_of_phases_does_not_matter(electrode: Microstructure) -> None:
    grey = scan_of(electrode, 1.0)
    listed = segment(grey, {0: "cbd", 1: "pore", 2: "active"}, electrode.voxel_size_um)
    usual = segment(grey, electrode.phases, electrode.voxel_size_um)
    assert listed.phase_fractions() == pytest.approx(
        {name: usual.phase_fractions()[name] for name in listed.phases.values()}
    )


def test_denoising_pays_off_on_a_noisy_scan(electrode: Microstructure) -> None:
    grey = scan_of(electrode, 0.1)  # σ 0.38 against a pore/NMC contrast of 0.85
    size = electrode.voxel_size_um
    raw = segment(grey, electrode.phases, size, method="multiotsu")
    denoised = segment(grey, electrode.phases, size, method="tomograph")
    assert agreement(denoised, electrode) > agreement(raw, electrode) + 0.2  # 0.88 vs 0.58


def test_two_grey_levels_are_split_exactly() -> None:
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[:, :, 5:] = 1
    grey = np.where(labels == 1, 50_000, 3_000).astype(np.uint16)
    micro = segment(grey, {0: "pore", 1: "active"}, 1.0, method="multiotsu")
    np.testing.assert_array_equal(micro.labels, labels)


def test_phases_of_unknown_materials_are_named_in_grey_order() -> None:
    with pytest.raises(TwinError, match=r"no X-ray attenuation known for phase 'glass'.*grey"):
        grey_order({0: "pore", 1: "glass"})
    assert grey_order({3: "bright", 1: "dark"}, in_grey_order=True) == [3, 1]
    assert grey_order({0: "active", 1: "pore", 2: "cbd"}) == [1, 2, 0]


@pytest.mark.parametrize(
    ("grey", "phases", "method", "message"),
    [
        (np.zeros((4, 4, 4)), {0: "pore", 1: "active"}, "tomograph", "1 distinct grey values"),
        (np.zeros((4, 4, 4)), {0: "pore"}, "tomograph", "at least two phases"),
        (np.full((4, 4, 4), np.nan), {0: "pore", 1: "active"}, "multiotsu", "NaN"),
        (np.zeros((4, 4, 4)), {0: "pore", 1: "active"}, "unet", "unknown segmentation method"),
    ],
)
def test_what_cannot_be_segmented_says_why(grey, phases, method, message) -> None:
    with pytest.raises(TwinError, match=message):
        segment(grey, phases, 1.0, method=method)


def test_a_scan_file_keeps_its_voxel_size_or_says_it_assumed_one(
    electrode: Microstructure, tmp_path: Path
) -> None:
    grey = scan_of(electrode, 1.0)
    write_scan(tmp_path / "scan.tif", grey, 0.4, "S00001")
    tifffile.imwrite(tmp_path / "bare.tif", grey)
    scanned = segment_file(tmp_path / "scan.tif", electrode.phases)
    assert (scanned.voxel_size_um, scanned.provenance.assumed) == (0.4, {})
    bare = segment_file(tmp_path / "bare.tif", electrode.phases)
    assert (bare.voxel_size_um, bare.provenance.assumed) == (1.0, {"voxel_size_um": 1.0})
    given = segment_file(tmp_path / "bare.tif", electrode.phases, voxel_size_um=0.5)
    assert (given.voxel_size_um, given.provenance.assumed) == (0.5, {})


def test_a_label_image_is_not_segmented_again(electrode: Microstructure, tmp_path: Path) -> None:
    """Its phase ids read as grey values would swap phases silently (active 1 is darker than
    cbd 2 as ids, brighter in a scan)."""
    electrode.save(tmp_path / "labels.tif")
    with pytest.raises(TwinError, match="holds phase ids, not grey values: it is segmented"):
        segment_file(tmp_path / "labels.tif", electrode.phases)
