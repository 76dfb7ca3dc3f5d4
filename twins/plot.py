"""Pictures of microstructures: orthogonal mid-slices, phase legend and a scale bar in µm.

matplotlib is imported here and nowhere in the package roots, so importing ``twins`` stays
light; figures are drawn on an Agg canvas without pyplot (no global state, no display).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from poreloop.twins.errors import TwinError
from poreloop.twins.microstructure import Microstructure

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

# Okabe–Ito (colour-blind safe), pore first; tab20 extends it for label images with many phases.
_PHASE_COLOURS = (
    "#000000",
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#F0E442",
    "#0072B2",
    "#D55E00",
    "#CC79A7",
)

Panel = tuple[str, str, str, np.ndarray]


def phase_colours(n: int) -> list[str]:
    """The first ``n`` colours of the fixed categorical map (phases in order of their id)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    tab20 = colormaps["tab20"]
    palette = list(_PHASE_COLOURS) + [to_hex(tab20(i)) for i in range(tab20.N)]
    return [palette[i % len(palette)] for i in range(n)]


def scale_bar_um(width_um: float) -> float:
    """A round length (1, 2 or 5 × 10^k µm) of at most a fifth of a field ``width_um`` wide."""
    if not (math.isfinite(width_um) and width_um > 0):
        raise TwinError(f"a scale bar needs a positive field width in µm, got {width_um}")
    target = width_um / 5
    exponent = math.floor(math.log10(target))
    return max(m * 10.0**exponent for m in (1, 2, 5) if m * 10.0**exponent <= target * 1.000001)


def mid_slices(volume: np.ndarray, voxel_size_um: float) -> list[Panel]:
    """``(title, horizontal axis, vertical axis, image)`` per panel; image ``(n_vertical, n_horizontal)``.

    A 3D box ``(nx, ny, nz)`` gives the xy, xz and yz planes through its centre; a 2D image
    ``(nx, ny)`` gives itself. Images are transposed so that the first named axis runs
    horizontally.
    """
    size = voxel_size_um
    if volume.ndim == 2:
        return [("xy", "x", "y", volume.T)]
    i, j, k = (n // 2 for n in volume.shape)
    return [
        (f"xy at z = {k} ({k * size:.4g} µm)", "x", "y", volume[:, :, k].T),
        (f"xz at y = {j} ({j * size:.4g} µm)", "x", "z", volume[:, j, :].T),
        (f"yz at x = {i} ({i * size:.4g} µm)", "y", "z", volume[i, :, :].T),
    ]


def plot_slices(micro: Microstructure, path: str | Path) -> Path:
    """Write the orthogonal mid-slices of ``micro`` to ``path`` (format from the suffix)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    ids = sorted(micro.phases)
    colours = phase_colours(len(ids))
    index = np.zeros(256, dtype=np.intp)
    index[ids] = np.arange(len(ids))
    panels: list[Panel] = [
        (title, horizontal, vertical, index[image])
        for title, horizontal, vertical, image in mid_slices(micro.labels, micro.voxel_size_um)
    ]
    fig, _ = _slices_figure(
        panels,
        micro.voxel_size_um,
        path,
        cmap=ListedColormap(colours),
        vmin=-0.5,
        vmax=len(ids) - 0.5,
    )
    fractions = micro.phase_fractions()
    fig.legend(
        handles=[
            Patch(
                facecolor=c,
                edgecolor="0.4",
                label=f"{micro.phases[pid]} ({fractions[micro.phases[pid]]:.1%})",
            )
            for pid, c in zip(ids, colours, strict=True)
        ],
        loc="outside lower center",
        ncols=min(len(ids), 6),
        frameon=False,
    )
    source = micro.provenance.twin
    if source == "unknown":
        source = Path(micro.provenance.source).name or "microstructure"
    return _save(fig, path, source, micro.shape, micro.voxel_size_um)


def plot_grey_slices(grey: np.ndarray, voxel_size_um: float, path: str | Path, source: str) -> Path:
    """Write the orthogonal mid-slices of a grey-value scan to ``path``, 1st–99th percentile
    of its grey values black to white."""
    low, high = np.percentile(grey, [1, 99])
    fig, images = _slices_figure(
        mid_slices(grey, voxel_size_um), voxel_size_um, path, cmap="gray", vmin=low, vmax=high
    )
    fig.colorbar(images[-1], ax=fig.axes, location="bottom", shrink=0.5, label="grey value")
    return _save(fig, path, source, grey.shape, voxel_size_um)


def _slices_figure(
    panels: list[Panel], voxel_size_um: float, path: str | Path, **imshow: Any
) -> tuple[Figure, list[AxesImage]]:
    """A figure of ``panels`` side by side, each with its scale bar; refuses a ``path`` whose
    suffix matplotlib cannot write before drawing anything."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    path = Path(path)
    fig = Figure(figsize=(4.2 * len(panels), 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    formats = fig.canvas.get_supported_filetypes()
    if path.suffix.lower().lstrip(".") not in formats:
        raise TwinError(
            f"cannot write a picture to '{path}': expected one of the suffixes "
            f"{', '.join('.' + f for f in sorted(formats))}"
        )
    size = voxel_size_um
    bar_um = scale_bar_um(min(image.shape[1] for *_, image in panels) * size)
    images = []
    for ax, (title, horizontal, vertical, image) in zip(
        fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
    ):
        images.append(ax.imshow(image, interpolation="nearest", origin="lower", **imshow))
        ax.set_title(title)
        ax.set_xlabel(f"{horizontal} (voxel)")
        ax.set_ylabel(f"{vertical} (voxel)")
        ax.add_artist(
            AnchoredSizeBar(
                ax.transData,
                bar_um / size,
                f"{bar_um:g} µm",
                loc="lower right",
                pad=0.3,
                borderpad=0.5,
                sep=3,
                size_vertical=max(image.shape[0] / 100, 0.5),
                frameon=True,
            )
        )
    return fig, images


def _save(
    fig: Figure, path: str | Path, source: str, shape: tuple[int, ...], voxel_size_um: float
) -> Path:
    fig.suptitle(f"{source}: {' × '.join(map(str, shape))} voxels of {voxel_size_um:g} µm")
    fig.savefig(path, dpi=120)
    return Path(path)
