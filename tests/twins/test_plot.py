"""Slice pictures: panel geometry, the fixed phase colours and the round scale bar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from poreloop.twins.errors import TwinError
from poreloop.twins.microstructure import Microstructure
from poreloop.twins.plot import mid_slices, phase_colours, plot_slices, scale_bar_um


@pytest.mark.parametrize(
    ("width_um", "bar_um"),
    [(48.0, 5.0), (102.4, 20.0), (256.0, 50.0), (1.0, 0.2), (8.88, 1.0), (0.05, 0.01)],
)
def test_scale_bar_examples(width_um: float, bar_um: float) -> None:
    assert scale_bar_um(width_um) == pytest.approx(bar_um)


@given(st.floats(1e-3, 1e6))
def test_scale_bar_is_round_and_a_fifth_of_the_field_at_most(width_um: float) -> None:
    bar = scale_bar_um(width_um)
    mantissa = bar / 10 ** np.floor(np.log10(bar) + 1e-9)
    assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-6
    assert width_um / 12.5 < bar <= width_um / 5 * (1 + 1e-6)


@pytest.mark.parametrize("width_um", [0.0, -1.0, float("nan"), float("inf")])
def test_scale_bar_rejects_a_bad_width(width_um: float) -> None:
    with pytest.raises(TwinError, match="positive field width"):
        scale_bar_um(width_um)


def test_phase_colours_are_fixed_and_distinct() -> None:
    colours = phase_colours(28)
    assert colours[0] == "#000000"  # pore, the lowest id, is always black
    assert len(set(colours)) == 28
    assert phase_colours(3) == colours[:3]


def test_mid_slices_of_a_box(toy_micro: Microstructure) -> None:
    labels = toy_micro.labels  # (24, 20, 16), voxel 1 µm
    panels = mid_slices(toy_micro.labels, toy_micro.voxel_size_um)
    assert [p[:3] for p in panels] == [
        ("xy at z = 8 (8 µm)", "x", "y"),
        ("xz at y = 10 (10 µm)", "x", "z"),
        ("yz at x = 12 (12 µm)", "y", "z"),
    ]
    xy, xz, yz = (p[3] for p in panels)
    np.testing.assert_array_equal(xy, labels[:, :, 8].T)  # (ny, nx): x runs horizontally
    np.testing.assert_array_equal(xz, labels[:, 10, :].T)
    np.testing.assert_array_equal(yz, labels[12, :, :].T)
    assert [xy.shape, xz.shape, yz.shape] == [(20, 24), (16, 24), (16, 20)]


def test_mid_slices_of_an_image(toy_micro: Microstructure) -> None:
    image = Microstructure(toy_micro.labels[:, :, 0].copy(), 0.5, toy_micro.phases)
    [(title, horizontal, vertical, panel)] = mid_slices(image.labels, image.voxel_size_um)
    assert (title, horizontal, vertical) == ("xy", "x", "y")
    assert panel.shape == (20, 24)


def present_colours(png: Path, colours: list[str]) -> list[bool]:
    """Whether each colour covers at least 1 % of the picture."""
    rgb = imread(png)[..., :3]
    return [bool(np.mean(np.all(np.abs(rgb - to_rgb(c)) < 0.02, axis=-1)) > 0.01) for c in colours]


def test_plot_slices_of_a_box(toy_micro: Microstructure, tmp_path: Path) -> None:
    png = plot_slices(toy_micro, tmp_path / "box.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = imread(png).shape[:2]
    assert width > 2.5 * height  # three panels side by side
    # pore black and solid orange, and no third phase colour
    assert present_colours(png, phase_colours(3)) == [True, True, False]


def test_plot_slices_of_an_image_with_sparse_phase_ids(tmp_path: Path) -> None:
    labels = (np.arange(24 * 16).reshape(24, 16) % 5 * 50).astype(np.uint8)
    micro = Microstructure(labels, 0.2, {i * 50: f"phase_{i * 50}" for i in range(5)})
    png = plot_slices(micro, tmp_path / "image.png")
    height, width = imread(png).shape[:2]
    assert width < 1.5 * height  # one panel
    assert all(present_colours(png, phase_colours(5)))


def test_plot_slices_rejects_an_unknown_format(toy_micro: Microstructure, tmp_path: Path) -> None:
    with pytest.raises(TwinError, match=r"cannot write a picture to '.*\.xyz'.*\.png"):
        plot_slices(toy_micro, tmp_path / "slices.xyz")
