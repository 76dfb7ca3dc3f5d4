"""Pictures of microstructures: orthogonal mid-slices, phase legend and a scale bar in µm.

matplotlib is imported here and nowhere in the package roots, so importing ``twins`` stays
light; figures are drawn on an Agg canvas without pyplot (no global state, no display).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from poreloop.twins.errors import TwinError
from poreloop.twins.microstructure import Microstructure

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


def mid_slices(micro: Microstructure) -> list[Panel]:
    """``(title, horizontal axis, vertical axis, image)`` per panel; image ``(n_vertical, n_horizontal)``.

    A 3D box ``(nx, ny, nz)`` gives the xy, xz and yz planes through its centre; a 2D image
    ``(nx, ny)`` gives itself. Images are transposed so that the first named axis runs
    horizontally.
    """
    labels, size = micro.labels, micro.voxel_size_um
    if labels.ndim == 2:
        return [("xy", "x", "y", labels.T)]
    i, j, k = (n // 2 for n in labels.shape)
    return [
        (f"xy at z = {k} ({k * size:.4g} µm)", "x", "y", labels[:, :, k].T),
        (f"xz at y = {j} ({j * size:.4g} µm)", "x", "z", labels[:, j, :].T),
        (f"yz at x = {i} ({i * size:.4g} µm)", "y", "z", labels[i, :, :].T),
    ]


def plot_slices(micro: Microstructure, path: str | Path) -> Path:
    """Write the orthogonal mid-slices of ``micro`` to ``path`` (format from the suffix)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    path = Path(path)
    panels = mid_slices(micro)
    fig = Figure(figsize=(4.2 * len(panels), 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    formats = fig.canvas.get_supported_filetypes()
    if path.suffix.lower().lstrip(".") not in formats:
        raise TwinError(
            f"cannot write a picture to '{path}': expected one of the suffixes "
            f"{', '.join('.' + f for f in sorted(formats))}"
        )

    ids = sorted(micro.phases)
    colours = phase_colours(len(ids))
    index = np.zeros(256, dtype=np.intp)
    index[ids] = np.arange(len(ids))
    cmap = ListedColormap(colours)
    size = micro.voxel_size_um
    bar_um = scale_bar_um(min(image.shape[1] for *_, image in panels) * size)

    for ax, (title, horizontal, vertical, image) in zip(
        fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
    ):
        ax.imshow(
            index[image],
            cmap=cmap,
            vmin=-0.5,
            vmax=len(ids) - 0.5,
            interpolation="nearest",
            origin="lower",
        )
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
    shape = " × ".join(str(n) for n in micro.shape)
    source = micro.provenance.twin
    if source == "unknown":
        source = Path(micro.provenance.source).name or "microstructure"
    fig.suptitle(f"{source}: {shape} voxels of {size:g} µm")
    fig.savefig(path, dpi=120)
    return path
