"""X-ray tomography of electrodes: how a structure becomes a grey-value stack.

The image formation is the CT's own physics, which a lab characterises with phantoms (point
spread, noise per exposure, grey calibration), so both the simulated tomograph and the
campaign use it: the tomograph to render its scans, the campaign to compare a twin's structure
with a scan like with like (a virtual scan), where segmentation bias cancels.

1. each phase gets its linear attenuation (``ATTENUATION``: pore dark, carbon-binder
   intermediate, NMC bright), on the sample's own voxel grid;
2. partial volume: the attenuation is box-averaged over each scan voxel (``voxel_size_um``
   no finer than the sample's), so interfaces and thin binder films come out as mixed greys;
3. detector and reconstruction blur: a Gaussian PSF of ``PSF_SIGMA_VOXELS`` scan voxels;
4. noise: filtered back-projection of Poisson photon counts is near-Gaussian in the volume, with
   σ ∝ 1/√(exposure), ``NOISE_AT_1S`` at one second per projection;
5. optionally ring artefacts: miscalibrated detector columns give rings of fixed radius about the
   rotation axis (axis 2, through the electrode thickness) in every slice.

Stacks are ImageJ uint16 TIFFs (``write_scan``); ``twins.critics.segmentation`` turns one back
into phase labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile
from scipy.ndimage import gaussian_filter, uniform_filter, zoom

from poreloop.twins.critics.segmentation import ATTENUATION
from poreloop.twins.microstructure import Microstructure

PSF_SIGMA_VOXELS = 0.8
NOISE_AT_1S = 0.12
"""Reconstructed noise σ (attenuation units) at 1 s per projection; NMC/pore contrast is 0.85."""
RING_AMPLITUDE = 0.05
RING_COUNT = 4
RING_WIDTH_VOXELS = 0.6
GREY_RANGE = (-0.3, 1.3)
"""Attenuation mapped to uint16 0..65535 (fixed calibration, so greys compare across scans)."""


def noise_sigma(exposure_s: float) -> float:
    """Reconstructed noise σ (attenuation units) for ``exposure_s`` per projection."""
    return NOISE_AT_1S / np.sqrt(exposure_s)


def render(
    micro: Microstructure,
    voxel_size_um: float,
    exposure_s: float,
    rng: np.random.Generator,
    rings: bool = False,
) -> np.ndarray:
    """The uint16 grey stack of a scan of ``micro`` at ``voxel_size_um``.

    Returns ``(round(nx·s), round(ny·s), round(nz·s))`` with s = sample / scan voxel size.
    """
    lookup = np.zeros(256, dtype=np.float32)
    for pid, name in micro.phases.items():
        lookup[pid] = ATTENUATION[name]
    attenuation = lookup[micro.labels]
    factor = voxel_size_um / micro.voxel_size_um
    if factor > 1 + 1e-6:
        attenuation = zoom(
            uniform_filter(attenuation, size=round(factor), mode="wrap"),
            1 / factor,
            order=1,
            mode="grid-wrap",
            grid_mode=True,
        )
    blurred = gaussian_filter(attenuation, PSF_SIGMA_VOXELS, mode="wrap")
    noisy = blurred + rng.normal(0.0, noise_sigma(exposure_s), blurred.shape)
    if rings:
        noisy += ring_offsets(blurred.shape, rng)[:, :, None]
    low, high = GREY_RANGE
    scaled = np.clip((noisy - low) / (high - low), 0.0, 1.0) * np.iinfo(np.uint16).max
    return np.round(scaled).astype(np.uint16)


def ring_offsets(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Grey offsets ``(nx, ny)`` of rings about the rotation axis (the slice centre)."""
    x, y = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in shape[:2]), indexing="ij")
    radius = np.hypot(x, y)
    radii = rng.uniform(1.0, radius.max(), RING_COUNT)
    signs = rng.choice([-1.0, 1.0], RING_COUNT)
    rings = np.exp(-((radius[..., None] - radii) ** 2) / (2 * RING_WIDTH_VOXELS**2))
    return RING_AMPLITUDE * (rings * signs).sum(axis=-1)


def write_scan(path: Path, grey: np.ndarray, voxel_size_um: float, sample_id: str) -> None:
    """An ImageJ uint16 stack with its voxel size, readable by Fiji and ``read_scan``."""
    tifffile.imwrite(
        path,
        grey,
        imagej=True,
        resolution=(1 / voxel_size_um, 1 / voxel_size_um),
        metadata={"spacing": voxel_size_um, "unit": "um", "axes": "ZYX", "Info": sample_id},
    )
