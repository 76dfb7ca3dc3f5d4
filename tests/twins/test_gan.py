"""The gan twin: a SliceGAN generator learns one labelled image and makes larger realisations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from poreloop.twins.errors import TwinError
from poreloop.twins.manufacturing import get_twin
from poreloop.twins.manufacturing.gan import StructureGenerator, train
from poreloop.twins.microstructure import Microstructure

POROSITY = 0.25


def rng() -> np.random.Generator:
    return np.random.default_rng(1)


@pytest.fixture(scope="module")
def image() -> Microstructure:
    """Smoothed noise thresholded to a quarter pore: 40³, pore (0) and solid (1)."""
    field = ndimage.gaussian_filter(np.random.default_rng(0).standard_normal((40, 40, 40)), 2.0)
    labels = np.where(field < np.quantile(field, POROSITY), 0, 1).astype(np.uint8)
    return Microstructure(labels, 0.5, {0: "pore", 1: "solid"})


@pytest.fixture(scope="module")
def trained(image: Microstructure, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gan") / "gan.pt"
    train(image, steps=60, seed=0).save(path)
    return path


def test_training_moves_the_generator_s_own_mix_to_the_images(
    image: Microstructure, trained: Path
) -> None:
    """An untrained generator makes each phase about equally often (pore 0.5 here); 60 steps
    bring the pore fraction of its own most probable phases within 0.15 of the image's quarter
    (0.38; it takes 1500 steps to come within 0.05)."""

    def own_porosity(generator: StructureGenerator) -> float:
        return float(np.mean(generator.log_probabilities((48, 48, 48), rng()).argmax(0) == 0))

    before = abs(own_porosity(train(image, steps=1, seed=0)) - POROSITY)
    after = abs(own_porosity(StructureGenerator.load(trained)) - POROSITY)
    assert after < 0.15 and after < before / 1.5


def test_a_realisation_takes_the_image_s_phase_fractions(
    image: Microstructure, trained: Path
) -> None:
    """Whatever the generator's own mix (above), a realisation has the image's fractions."""
    for generator in (train(image, steps=1, seed=0), StructureGenerator.load(trained)):
        for shape in ((48, 48, 48), (17, 40, 9)):
            made = generator.realise(shape, rng())
            assert abs(np.mean(made == 0) - POROSITY) < 0.01


def test_the_twin_makes_larger_boxes_of_the_images_phases(trained: Path) -> None:
    twin = get_twin("gan", model=trained)
    micro = twin.generate(shape=(80, 64, 72), seed=3)
    again = twin.generate(shape=(80, 64, 72), seed=3)
    assert micro.shape == (80, 64, 72) and micro.phases == {0: "pore", 1: "solid"}
    assert micro.voxel_size_um == 0.5 and np.array_equal(micro.labels, again.labels)
    native = twin.generate(shape=(32, 32, 32), seed=3)
    fine = twin.generate({"voxel_size_um": 0.25}, shape=(64, 64, 64), seed=3)
    assert fine.voxel_size_um == 0.25  # the native realisation, each voxel split in eight
    assert np.array_equal(fine.labels[::2, ::2, ::2], native.labels)
    assert np.array_equal(fine.labels[1::2, 1::2, 1::2], native.labels)


def test_what_the_gan_twin_cannot_use_is_one_line(tmp_path: Path, image: Microstructure) -> None:
    with pytest.raises(TwinError, match="needs a trained generator"):
        get_twin("gan").generate(shape=(32, 32, 32))
    with pytest.raises(TwinError, match="no structure generator at"):
        get_twin("gan", model=tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(TwinError, match="is not a poreloop structure generator"):
        get_twin("gan", model=tmp_path / "junk.pt")
    with pytest.raises(TwinError, match="twin 'li_ion_electrode' takes no model"):
        get_twin("li_ion_electrode", model=tmp_path / "absent.pt")
    small = Microstructure(image.labels[:20], 0.5, image.phases)
    with pytest.raises(TwinError, match="patches of 32 voxels a side"):
        train(small, steps=1)
    with pytest.raises(TwinError, match="patches of 64 voxels a side"):
        train(image, steps=1, patch=64)
    for patch in (16, 48):
        with pytest.raises(TwinError, match=f"a power of two of 32 or more, got {patch}"):
            train(image, steps=1, patch=patch)


def test_a_2d_image_trains_a_3d_generator() -> None:
    """One critic judges slices across every axis against the image's plane (isotropy)."""
    plane = np.where(
        ndimage.gaussian_filter(np.random.default_rng(0).random((40, 48)), 2) < 0.5, 0, 1
    )
    image = Microstructure(plane.astype(np.uint8), 0.5, {0: "pore", 1: "solid"})
    made = train(image, steps=2, seed=0).realise((40, 40, 40), np.random.default_rng(0))
    assert made.shape == (40, 40, 40) and set(np.unique(made)) <= {0, 1}


def test_a_generator_trained_on_larger_patches_covers_any_box(image: Microstructure) -> None:
    """64³ patches take a generator of one more layer; its realisations still come out in the
    shape asked for, however far that is from a multiple of the patch."""
    big = Microstructure(np.tile(image.labels, (2, 2, 2)), 0.5, image.phases)
    generator = train(big, steps=1, patch=64, seed=0)
    for shape in ((64, 64, 64), (33, 70, 101)):
        assert generator.realise(shape, np.random.default_rng(0)).shape == shape
