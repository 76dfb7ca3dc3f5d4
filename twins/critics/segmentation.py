"""Segmentation: a grey-value scan → a labelled ``Microstructure`` the critics can score.

It belongs to the digital side: the campaign segments the lab's scans, a user segments their
own (``poreloop segment``), and the calibration segments virtual scans the same way, so that
segmentation bias cancels when a twin is compared with the lab.

Classes come out darkest first; the phases' names put them in that order by their X-ray
attenuation (``ATTENUATION``), so ``pore,active,cbd`` is right whatever order it is listed in.
Phases of other materials are named in grey order instead (``in_grey_order``).

Methods (``METHODS``), each ``(grey, n_classes) → classes``:

- ``tomograph``: what the lab's tomograph pipeline does, a 3³ median filter for the
  reconstruction noise, then multi-level Otsu (the default);
- ``multiotsu``: multi-level Otsu on the raw grey values (no denoising);
- the path of a trained model file (``.pt``): a 3D U-Net (``segmentation_net``), trained on
  simulated scans of twin structures (``poreloop segmenter train``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from scipy.ndimage import median_filter
from skimage.filters import threshold_multiotsu

from poreloop.twins.errors import TwinError
from poreloop.twins.microstructure import (
    GreyImageError,
    Microstructure,
    Provenance,
    as_labels,
    read_tiff,
    voxel_size,
)

ATTENUATION: dict[str, float] = {
    "pore": 0.05,
    "cbd": 0.35,
    "binder": 0.35,
    "ptfe": 0.45,
    "fibre": 0.30,
    "active": 0.90,
    "ysz": 0.75,
    "ni": 0.95,
}
"""Relative linear attenuation of each phase name at a lab-source energy: NMC (Ni, Mn, Co) and
nickel absorb most, carbon/PVDF and carbon fibre little, air nothing (a small offset remains
from beam hardening). Carbon-binder domain = ``cbd``."""

DENOISE_SIZE = 3
"""Median filter edge, voxels, of the ``tomograph`` method."""


def multi_otsu(grey: np.ndarray, n_classes: int) -> np.ndarray:
    """Classes 0..n_classes-1 (uint8, darkest first) by multi-level Otsu thresholds.

    Thresholded as floats: on integers skimage bins every grey value, and the multi-level
    search over 65536 uint16 bins takes minutes.
    """
    values = grey.astype(np.float32, copy=False)
    try:
        thresholds = threshold_multiotsu(values.ravel(), classes=n_classes)
    except ValueError:  # skimage: fewer distinct grey values than classes
        raise TwinError(
            f"the scan holds {len(np.unique(values))} distinct grey values, too few to tell "
            f"{n_classes} phases apart"
        ) from None
    return np.digitize(values, thresholds).astype(np.uint8)


def tomograph_pipeline(grey: np.ndarray, n_classes: int) -> np.ndarray:
    """Median denoise (``DENOISE_SIZE``, periodic edges), then multi-level Otsu."""
    return multi_otsu(median_filter(grey, size=DENOISE_SIZE, mode="wrap"), n_classes)


METHODS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "tomograph": tomograph_pipeline,
    "multiotsu": multi_otsu,
}
"""Segmentation methods by name; a learned one is named by its model file instead."""


def method_named(method: str) -> Callable[[np.ndarray, int], np.ndarray]:
    """The method called ``method``: one of ``METHODS``, or a trained model's file."""
    if method in METHODS:
        return METHODS[method]
    from poreloop.twins.critics.weights import SUFFIX

    if method.endswith(SUFFIX):
        return _load_model(method)
    raise TwinError(
        f"unknown segmentation method '{method}'; known: {', '.join(METHODS)}, or a trained "
        f"model file (*{SUFFIX}, from `poreloop segmenter train`)"
    )


@functools.lru_cache(maxsize=4)
def _load_model(path: str) -> Callable[[np.ndarray, int], np.ndarray]:
    """A model file loaded once per process: a campaign segments every scan with it."""
    from poreloop.twins.critics.segmentation_net import SegmentationNet

    return SegmentationNet.load(path)


def grey_order(phases: Mapping[int, str], in_grey_order: bool = False) -> list[int]:
    """The phase ids darkest first: by ``ATTENUATION``, or as listed when ``in_grey_order``."""
    if in_grey_order:
        return list(phases)
    unknown = [name for name in phases.values() if name not in ATTENUATION]
    if unknown:
        raise TwinError(
            f"no X-ray attenuation known for phase {', '.join(map(repr, unknown))} (known: "
            f"{', '.join(sorted(ATTENUATION))}); list the phases darkest first and say so "
            "(--in-grey-order)"
        )
    return sorted(phases, key=lambda pid: ATTENUATION[phases[pid]])


def segment(
    grey: np.ndarray,
    phases: Mapping[int, str],
    voxel_size_um: float,
    method: str = "tomograph",
    in_grey_order: bool = False,
    provenance: Provenance | None = None,
) -> Microstructure:
    """A grey stack ``(nx, ny, nz)`` (or an image ``(nx, ny)``) as a Microstructure of ``phases``
    (id → name; at least two)."""
    segment_classes = method_named(method)
    if len(phases) < 2:
        raise TwinError(f"segmentation needs at least two phases, got {dict(phases)}")
    if not np.issubdtype(grey.dtype, np.number) or grey.dtype == np.bool_:
        raise TwinError(f"expected a numeric grey-value image, got dtype {grey.dtype}")
    if not np.isfinite(grey).all():
        raise TwinError("the scan holds NaN or infinite grey values")
    order = np.array(grey_order(phases, in_grey_order), dtype=np.uint8)
    names = [phases[int(p)] for p in order]
    learned = getattr(segment_classes, "phases", names)  # a trained model knows its phases
    if learned != names:
        raise TwinError(
            f"the model '{method}' segments {', '.join(learned)} (darkest first), not "
            f"{', '.join(names)}"
        )
    classes = segment_classes(grey, len(order))
    return Microstructure(order[classes], voxel_size_um, dict(phases), provenance or Provenance())


def segment_file(
    path: str | Path,
    phases: Mapping[int, str],
    voxel_size_um: float | None = None,
    method: str = "tomograph",
    in_grey_order: bool = False,
) -> Microstructure:
    """A grey-value TIFF stack segmented; the voxel size is ``voxel_size_um``, else the file's,
    else assumed (and recorded in ``provenance.assumed``). A label image is refused."""
    grey, size, assumed = read_grey(path, voxel_size_um)
    try:
        as_labels(grey, Path(path))
    except GreyImageError:
        provenance = Provenance(source=str(path), assumed=assumed)
        return segment(grey, phases, size, method, in_grey_order, provenance)
    # segmented again, phase ids would come out as other phases (ids are not attenuations)
    raise TwinError(
        f"'{path}' holds phase ids, not grey values: it is segmented already; the critics "
        f"read it as it is (poreloop critic evaluate {path})"
    )


def read_grey(
    path: str | Path, voxel_size_um: float | None = None
) -> tuple[np.ndarray, float, dict[str, float]]:
    """The grey values of a TIFF stack (an image ``(nx, ny)`` or a stack ``(nx, ny, nz)``), its
    voxel size (``voxel_size_um``, else the file's, else assumed) and what had to be assumed."""
    path = Path(path)
    if not path.is_file():
        raise TwinError(f"no such file: '{path}'")
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise TwinError(f"cannot read '{path}': expected a .tif or .tiff grey-value stack")
    grey, _, stored_size = read_tiff(path)
    grey = np.squeeze(grey)
    if grey.ndim not in (2, 3):
        raise TwinError(
            f"'{path}' holds an array of shape {grey.shape}; expected an image or a stack"
        )
    size, assumed = voxel_size(voxel_size_um, stored_size, {})
    return grey, size, assumed
