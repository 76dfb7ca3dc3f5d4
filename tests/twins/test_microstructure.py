"""Microstructure: invariants, phase fractions and the TIFF / NPZ round trips, own and foreign."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from poreloop.twins.errors import TwinError
from poreloop.twins.microstructure import MAX_PHASES, GreyImageError, Microstructure, Provenance

ELECTRODE = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "taufactor" / "electrode.tiff"
)
PHASES = {0: "pore", 1: "active", 2: "cbd"}


@pytest.fixture
def micro() -> Microstructure:
    """A 3-phase (20, 12, 16) box with a full provenance (int, float and str recipe values)."""
    labels = np.random.default_rng(0).integers(0, 3, (20, 12, 16), dtype=np.uint8)
    provenance = Provenance(
        twin="li_ion_electrode",
        recipe={"active_fraction": 0.5, "n_layers": 3, "mode": "slot_die", "compression": 1.0},
        seed=7,
        version="0.1.0",
    )
    return Microstructure(labels, 0.37, dict(PHASES), provenance, periodic=(0, 1))


def assert_same(a: Microstructure, b: Microstructure) -> None:
    assert b.labels.dtype == np.uint8
    np.testing.assert_array_equal(a.labels, b.labels)
    assert b.voxel_size_um == a.voxel_size_um
    assert b.phases == a.phases
    assert b.provenance == a.provenance
    assert b.periodic == a.periodic


# --- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".tif", ".tiff", ".TIF", ".npz"])
def test_round_trip_3d(micro: Microstructure, tmp_path: Path, suffix: str) -> None:
    path = micro.save(tmp_path / f"m{suffix}")
    again = Microstructure.load(path)
    assert_same(micro, again)
    assert isinstance(again.provenance.recipe["n_layers"], int)
    assert isinstance(again.provenance.recipe["compression"], float)


@pytest.mark.parametrize("suffix", [".tif", ".npz"])
def test_round_trip_2d(micro: Microstructure, tmp_path: Path, suffix: str) -> None:
    image = Microstructure(micro.labels[:, :, 5].copy(), 2.5, {0: "pore", 1: "solid", 2: "cbd"})
    assert_same(image, Microstructure.load(image.save(tmp_path / f"m{suffix}")))


def test_tiff_is_an_imagej_stack(micro: Microstructure, tmp_path: Path) -> None:
    path = micro.save(tmp_path / "m.tif")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        ij = tif.imagej_metadata
        assert ij["spacing"] == pytest.approx(0.37)
        assert ij["unit"] == "um"
        assert ij["images"] == micro.shape[0]
        assert len(tif.pages) == micro.shape[0]
        assert tif.pages[0].shape == micro.shape[1:]
        numerator, denominator = tif.pages[0].tags["XResolution"].value
        assert numerator / denominator == pytest.approx(1 / 0.37, rel=1e-3)  # pixels per µm


def test_load_overrides_the_voxel_size(micro: Microstructure, tmp_path: Path) -> None:
    path = micro.save(tmp_path / "m.npz")
    assert Microstructure.load(path, voxel_size_um=1.5).voxel_size_um == 1.5


# --- foreign files ----------------------------------------------------------------------


@pytest.mark.skipif(not ELECTRODE.is_file(), reason=f"reference data absent: {ELECTRODE}")
def test_foreign_electrode_tiff() -> None:
    electrode = Microstructure.load(ELECTRODE)
    assert electrode.shape == (256, 256, 256)
    assert electrode.phases == {0: "phase_0", 85: "phase_85", 170: "phase_170"}
    assert electrode.voxel_size_um == 1.0  # the file carries none
    assert electrode.provenance.source == str(ELECTRODE)
    fractions = electrode.phase_fractions()
    assert sum(fractions.values()) == pytest.approx(1.0)
    # pore ≈ 45 %, NMC ≈ 40 %, carbon-binder ≈ 15 % (a typical calendered cathode)
    assert fractions["phase_0"] == pytest.approx(0.45, abs=0.01)
    assert fractions["phase_85"] == pytest.approx(0.40, abs=0.01)
    assert fractions["phase_170"] == pytest.approx(0.15, abs=0.01)


def test_foreign_plain_tiff_of_integer_labels(tmp_path: Path) -> None:
    labels = np.zeros((10, 9, 8), dtype=np.int16)
    labels[:, :4] = 3
    tifffile.imwrite(tmp_path / "plain.tif", labels)
    foreign = Microstructure.load(tmp_path / "plain.tif")
    assert foreign.phases == {0: "phase_0", 3: "phase_3"}
    assert foreign.labels.dtype == np.uint8
    np.testing.assert_array_equal(foreign.labels, labels)
    assert foreign.phase_fractions() == pytest.approx({"phase_0": 5 / 9, "phase_3": 4 / 9})


# --- corrupt and unsupported files ------------------------------------------------------


def test_random_bytes_with_a_tif_suffix(tmp_path: Path) -> None:
    path = tmp_path / "noise.tif"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(TwinError, match=r"cannot read '.*noise.tif': TiffFileError"):
        Microstructure.load(path)


@pytest.mark.parametrize("keep", [0.1, 0.3, 0.5])
def test_truncated_tiff(micro: Microstructure, tmp_path: Path, keep: float) -> None:
    data = micro.save(tmp_path / "m.tif").read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(TwinError, match=r"'.*cut.tif'(: | is truncated.*only \d+ could be read$)"):
        Microstructure.load(cut)


def test_npz_that_is_not_ours(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", image=np.zeros((4, 4)))
    with pytest.raises(TwinError, match=r"cannot read '.*other.npz': KeyError"):
        Microstructure.load(tmp_path / "other.npz")
    (tmp_path / "noise.npz").write_bytes(b"not a zip archive at all")
    with pytest.raises(TwinError, match=r"cannot read '.*noise.npz'"):
        Microstructure.load(tmp_path / "noise.npz")


def test_float_grey_value_tiff(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "grey.tif", np.random.default_rng(2).random((6, 8, 8), np.float32))
    with pytest.raises(GreyImageError, match=r"float32 grey values, not phase ids; segment it"):
        Microstructure.load(tmp_path / "grey.tif")


def test_labels_outside_a_byte(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "wide.tif", np.full((6, 8, 8), 1000, dtype=np.uint16))
    with pytest.raises(GreyImageError, match=r"values 1000..1000, grey values rather than"):
        Microstructure.load(tmp_path / "wide.tif")


def test_an_8_bit_grey_image_is_not_taken_as_256_phases(tmp_path: Path) -> None:
    grey = np.random.default_rng(3).integers(0, 256, (6, 8, 8), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "grey8.tif", grey)
    with pytest.raises(GreyImageError, match=r"\d+ distinct values, more than the 16 phases"):
        Microstructure.load(tmp_path / "grey8.tif")
    tifffile.imwrite(tmp_path / "many.tif", grey % MAX_PHASES)
    assert len(Microstructure.load(tmp_path / "many.tif").phases) == MAX_PHASES


def test_unknown_suffix_and_missing_path(micro: Microstructure, tmp_path: Path) -> None:
    (tmp_path / "m.png").write_bytes(b"\x89PNG")
    with pytest.raises(TwinError, match=r"expected a .tif, .tiff or .npz file"):
        Microstructure.load(tmp_path / "m.png")
    with pytest.raises(TwinError, match=r"no such file: '.*absent.tif'"):
        Microstructure.load(tmp_path / "absent.tif")
    with pytest.raises(TwinError, match=r"cannot save to '.*m.h5': expected a .tif, .tiff or .npz"):
        micro.save(tmp_path / "m.h5")


# --- invariants -------------------------------------------------------------------------


def test_labels_with_an_unnamed_phase_are_rejected() -> None:
    labels = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    with pytest.raises(TwinError, match=r"phase ids \[3\] that have no name"):
        Microstructure(labels, 1.0, dict(PHASES))


@pytest.mark.parametrize(
    ("labels", "size", "message"),
    [
        (np.zeros((4, 4), dtype=np.int64), 1.0, "labels must be uint8 phase ids, got dtype int64"),
        (np.zeros(8, dtype=np.uint8), 1.0, "labels must be a 2D or 3D array"),
        (np.zeros((2, 2, 2, 2), dtype=np.uint8), 1.0, "labels must be a 2D or 3D array"),
        (np.zeros((4, 4), dtype=np.uint8), 0.0, "voxel_size_um must be a positive number"),
        (np.zeros((4, 4), dtype=np.uint8), float("nan"), "voxel_size_um must be a positive"),
    ],
)
def test_invalid_microstructures(labels: np.ndarray, size: float, message: str) -> None:
    with pytest.raises(TwinError, match=message):
        Microstructure(labels, size, dict(PHASES))


@pytest.mark.parametrize("periodic", [(2,), (1, 0), (0, 0), (-1,), [0]])
def test_periodic_axes_must_be_axes_of_the_image(periodic: tuple[int, ...]) -> None:
    with pytest.raises(TwinError, match="periodic must be a sorted tuple of distinct axes"):
        Microstructure(np.zeros((4, 4), dtype=np.uint8), 1.0, dict(PHASES), periodic=periodic)


def test_phase_fractions(micro: Microstructure) -> None:
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[:3] = 1
    fractions = Microstructure(labels, 1.0, dict(PHASES)).phase_fractions()
    assert fractions == {"pore": 0.7, "active": 0.3, "cbd": 0.0}  # an absent phase gives 0
    assert sum(micro.phase_fractions().values()) == pytest.approx(1.0)
    assert list(micro.phase_fractions()) == ["pore", "active", "cbd"]  # in phase-id order


def test_phase_id(micro: Microstructure) -> None:
    assert micro.phase_id("cbd") == 2
    with pytest.raises(TwinError, match="no phase named 'binder'"):
        micro.phase_id("binder")


def test_a_voxel_size_given_as_zero_is_refused_not_taken_as_none(tmp_path: Path) -> None:
    labels = np.zeros((8, 8, 8), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "foreign.tif", labels)
    assert Microstructure.load(tmp_path / "foreign.tif").provenance.assumed == {
        "voxel_size_um": 1.0
    }
    with pytest.raises(TwinError, match="positive"):
        Microstructure.load(tmp_path / "foreign.tif", voxel_size_um=0.0)


def test_repr_says_what_it_is_not_its_voxels(micro: Microstructure) -> None:
    text = repr(micro)
    assert text.startswith(f"<Microstructure {'x'.join(map(str, micro.shape))} voxels of")
    assert "array" not in text and len(text) < 200
