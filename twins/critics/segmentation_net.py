"""A learned segmentation method: a small 3D U-Net trained on twin structures and their
simulated scans, where the true labels are known.

Thresholds see one voxel's grey value; the CT blurs every interface over a few voxels and mixes
thin binder films with their neighbours (partial volume), so a voxel's class is better read
from its neighbourhood. The network learns that from pairs the project makes itself: a twin
generates structures, the tomograph's forward model (``instruments.tomography.render``) scans
them at several noise levels, and the labels are the structure's own. No weights are
downloaded: ``train`` makes them, ``save`` writes them with what they were trained on, and
``load`` refuses a file it cannot stand by.

``segmentation.segment`` takes a saved model's path as its ``method``.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poreloop.twins.critics import weights
from poreloop.twins.errors import TwinError
from poreloop.twins.microstructure import Microstructure

FORMAT = 2
"""Version of the saved model file; ``load`` refuses other versions."""
WHAT = "segmentation model"
MAX_RECIPES = 256
"""Recipes ``twin_structures`` tries before it gives up."""
DEPTH = 2
"""Poolings in the U-Net: a voxel sees a 28-voxel neighbourhood, and boxes are padded to a
multiple of 2**DEPTH."""
CHANNELS = 16
"""Feature maps at the U-Net's finest level (doubling at each pooling). On the benchmark's
held-out electrodes at the default noise (24 training structures, 3000 steps, greys then
scaled by each scan's percentiles) 16 found the pore at IoU 0.933 where 8 found 0.928; a third
pooling added 0.001. In the calibrated greys 24 found 0.943 where 16 found 0.939, for twice
the training time."""
TILE = 192
"""Edge of the boxes a larger scan is classified in, one at a time: the network's feature maps
take about 430 bytes per voxel, so a box takes about 3 GB where a whole 1000^3 scan would take
430 GB (and a 256^3 one 7 GB)."""
MARGIN = 24
"""How far each box reaches beyond the voxels it classifies: a voxel's scores depend on none
more than 23 voxels away, so boxed scores are those of one pass over the whole scan. A multiple
of 2**DEPTH, so every box pools on the scan's own grid."""
LEARNING_RATE = 3e-3
"""Adam's peak step size (one-cycle schedule: the step shrinks to nothing by the last one, so
the weights settle instead of ending wherever a noisy step left them)."""


@dataclass(frozen=True)
class Trained:
    """What a model was trained on, saved beside its weights."""

    phases: list[str]
    """Phase names, darkest first: class i of the network is phases[i]."""
    grey_levels: list[float]
    """Mean grey of each phase in the training scans (as ``phases``): the scanner's calibration,
    which the network reads scans in."""
    voxel_size_um: float
    """Median voxel size of the training structures (the network sees voxels, not µm)."""
    twin: str
    exposures_s: list[float]
    channels: int
    steps: int
    seed: int
    data_hash: str
    """SHA-256 over the training scans and labels: the same hash, the same training data."""
    format: int = FORMAT


def _network(channels: int, n_classes: int) -> Any:
    import torch
    from torch import nn

    def block(inputs: int, outputs: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv3d(inputs, outputs, 3, padding=1),
            nn.BatchNorm3d(outputs),
            nn.ReLU(inplace=True),
            nn.Conv3d(outputs, outputs, 3, padding=1),
            nn.BatchNorm3d(outputs),
            nn.ReLU(inplace=True),
        )

    class UNet(nn.Module):
        """Encoder-decoder with skip connections (Ronneberger et al. 2015, in 3D)."""

        def __init__(self) -> None:
            super().__init__()
            widths = [channels * 2**level for level in range(DEPTH + 1)]
            steps = list(zip(widths[:-1], widths[1:], strict=True))
            self.down = nn.ModuleList([block(1, widths[0])] + [block(a, b) for a, b in steps])
            self.up = nn.ModuleList(nn.ConvTranspose3d(b, a, 2, stride=2) for a, b in steps)
            self.merge = nn.ModuleList(block(2 * a, a) for a in widths[:-1])
            self.classify = nn.Conv3d(widths[0], n_classes, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skips = []
            for level, encode in enumerate(self.down):
                x = encode(x if level == 0 else nn.functional.max_pool3d(x, 2))
                skips.append(x)
            for level in reversed(range(DEPTH)):
                x = self.merge[level](torch.cat([skips[level], self.up[level](x)], dim=1))
            return self.classify(x)

    return UNet()


def calibrated(grey: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Grey values scaled so the darkest and brightest phases' ``levels`` read 0 and 1
    (float32).

    Scaled by the scanner's calibration, not by each scan's own spread: a scan's percentiles
    move with its phase fractions and its noise (at 1 s the 1st percentile of a 17 % porous
    electrode lies a sixth of the pore-NMC contrast above those of 34-55 % porous ones), and a
    network fed such scans reads the same grey as different phases.
    """
    low, high = np.float32(levels[0]), np.float32(levels[-1])
    return (grey.astype(np.float32) - low) / (high - low)


class SegmentationNet:
    """A trained U-Net and what it was trained on; call it as a segmentation method:
    ``(grey, n_classes) → classes`` (uint8, darkest first)."""

    def __init__(self, trained: Trained, state: dict[str, Any] | None = None) -> None:
        import torch

        self.trained = trained
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = _network(trained.channels, len(trained.phases)).to(self.device)
        if state is not None:
            self.model.load_state_dict(state)

    @property
    def phases(self) -> list[str]:
        """The phase names it tells apart, darkest first."""
        return self.trained.phases

    def __call__(self, grey: np.ndarray, n_classes: int) -> np.ndarray:
        import torch

        if n_classes != len(self.trained.phases):
            raise TwinError(
                f"this segmentation model tells {len(self.trained.phases)} phases apart "
                f"({', '.join(self.trained.phases)}), not {n_classes}"
            )
        self._check_calibration(grey)
        volume = grey if grey.ndim == 3 else grey[:, :, None]
        multiple = 2**DEPTH
        padded = np.pad(volume, [(0, -n % multiple) for n in volume.shape], mode="reflect")
        classes = np.empty(padded.shape, dtype=np.uint8)
        self.model.eval()
        with torch.no_grad():
            for box, inner in boxes(padded.shape):
                x = torch.from_numpy(calibrated(padded[box], self.trained.grey_levels))
                scores = self.model(x[None, None].to(self.device))[0]
                classes[box][inner] = scores[(slice(None), *inner)].argmax(0).cpu().numpy()
        classes = classes[tuple(slice(0, n) for n in volume.shape)]
        return classes if grey.ndim == 3 else classes[:, :, 0]

    def _check_calibration(self, grey: np.ndarray) -> None:
        """Refuse a scan whose median grey lies far outside the training scans' phase greys:
        a scan of another calibration (8-bit, attenuation units, another scanner), which the
        network would misread without a sign.

        Any scan of these phases has its median between the darkest and brightest phase's
        grey, give or take blur and noise; half the contrast either side is left for those.
        """
        levels = self.trained.grey_levels
        low, high = levels[0], levels[-1]
        middle = float(np.median(grey))
        if not low - (high - low) / 2 <= middle <= high + (high - low) / 2:
            raise TwinError(
                f"the scan's median grey {middle:.6g} is far outside the greys of "
                f"{self.phases[0]} ({low:.6g}) and {self.phases[-1]} ({high:.6g}) in the scans "
                "this model was trained on: a scan of another grey calibration; rescale it to "
                "those greys or segment it with 'tomograph'"
            )

    def save(self, path: str | Path) -> None:
        weights.save(path, WHAT, self.trained, self.model)

    @classmethod
    def load(cls, path: str | Path) -> SegmentationNet:
        return weights.load(path, WHAT, Trained, FORMAT, cls)


def boxes(shape: Sequence[int]) -> Iterator[tuple[tuple[slice, ...], tuple[slice, ...]]]:
    """``(box, inner)`` pairs that tile a scan of ``shape`` (each edge a multiple of 2**DEPTH):
    the network reads ``box``, at most ``TILE`` voxels along an axis the scan is longer than,
    and classifies ``box``'s ``inner`` part, at least ``MARGIN`` from any cut through the
    scan; the inner parts cover the scan once."""
    axes = []
    for n in shape:
        step = TILE - 2 * MARGIN if n > TILE else n
        spans = []
        for start in range(0, n, step):
            stop = min(start + step, n)
            low, high = max(start - MARGIN, 0), min(stop + MARGIN, n)
            spans.append((slice(low, high), slice(start - low, stop - low)))
        axes.append(spans)
    for parts in itertools.product(*axes):
        yield tuple(box for box, _ in parts), tuple(inner for _, inner in parts)


def train(
    structures: Sequence[Microstructure],
    scan: Callable[[Microstructure, float, np.random.Generator], np.ndarray],
    exposures_s: Sequence[float],
    *,
    twin: str,
    steps: int = 300,
    crop: int = 32,
    batch: int = 4,
    channels: int = CHANNELS,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> SegmentationNet:
    """A U-Net trained on ``structures`` (one twin's, one phase set) scanned by
    ``scan(micro, exposure_s, rng) → grey`` at each of ``exposures_s``: ``steps`` Adam steps on
    random ``crop``³ boxes, cross-entropy against the true phases."""
    import torch

    from poreloop.twins.critics.segmentation import grey_order

    if steps < 1:
        raise TwinError(f"a segmentation model trains for at least one step, not {steps}")
    first = structures[0]
    if any(m.phases != first.phases for m in structures):
        raise TwinError("train a segmentation model on structures of one phase set")
    order = grey_order(first.phases)
    to_class = np.zeros(256, dtype=np.int64)
    to_class[order] = np.arange(len(order))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    digest = hashlib.sha256()
    scans = []
    for micro in structures:
        if min(micro.shape) < crop:
            raise TwinError(f"training structures must be at least {crop}^3, got {micro.shape}")
        for exposure in exposures_s:
            grey = scan(micro, exposure, rng)
            if grey.shape != micro.shape:
                raise TwinError("train on scans at the structure's own voxel size")
            if not np.isfinite(grey).all():
                raise TwinError(f"a training scan at {exposure:g} s holds NaN or infinite greys")
            digest.update(grey.tobytes())
            digest.update(micro.labels.tobytes())
            scans.append((grey, to_class[micro.labels]))
    names = [first.phases[p] for p in order]
    levels = phase_greys(scans, names)
    pairs = [(calibrated(grey, levels), label) for grey, label in scans]
    trained = Trained(
        names,
        levels,
        float(np.median([m.voxel_size_um for m in structures])),
        twin,
        [float(e) for e in exposures_s],
        channels,
        steps,
        seed,
        digest.hexdigest(),
    )
    net = SegmentationNet(trained)
    optimiser = torch.optim.Adam(net.model.parameters(), lr=LEARNING_RATE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, LEARNING_RATE, total_steps=steps)
    net.model.train()
    for step in range(steps):
        greys, labels = [], []
        for _ in range(batch):
            grey, label = pairs[rng.integers(len(pairs))]
            corner = [rng.integers(n - crop + 1) for n in grey.shape]
            box = tuple(slice(c, c + crop) for c in corner)
            greys.append(grey[box])
            labels.append(label[box])
        x = torch.from_numpy(np.stack(greys)[:, None]).to(net.device)
        y = torch.from_numpy(np.stack(labels)).to(net.device)
        loss = torch.nn.functional.cross_entropy(net.model(x), y)
        if not torch.isfinite(loss):
            raise TwinError(f"training diverged at step {step + 1} (loss {loss.item()})")
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if log is not None and (step + 1) % 50 == 0:
            log(f"step {step + 1}/{steps}: loss {loss.item():.4f}")
    return net


def phase_greys(scans: Sequence[tuple[np.ndarray, np.ndarray]], names: list[str]) -> list[float]:
    """The mean grey of each class in ``scans`` (grey, class) pairs: the scanner's calibration as
    the training scans show it."""
    levels = []
    for k, name in enumerate(names):
        greys = np.concatenate([grey[label == k] for grey, label in scans])
        if greys.size == 0:
            raise TwinError(f"the training structures hold no {name}")
        levels.append(float(np.mean(greys)))
    if not levels[-1] > levels[0]:
        raise TwinError(
            f"the training scans show {names[-1]} (grey {levels[-1]:.6g}) no brighter than "
            f"{names[0]} ({levels[0]:.6g})"
        )
    return levels


def twin_structures(twin: Any, count: int, edge: int, seed: int) -> list[Microstructure]:
    """``count`` structures of ``edge``³ voxels from recipes spread over ``twin``'s space
    (scrambled Sobol); recipes whose particles the box cannot hold are passed over."""
    structures: list[Microstructure] = []
    for index, recipe in enumerate(twin.space.sample(MAX_RECIPES, seed=seed)):
        try:
            structures.append(twin.generate(recipe, shape=(edge,) * 3, seed=seed + index))
        except TwinError:
            continue
        if len(structures) == count:
            return structures
    raise TwinError(
        f"only {len(structures)} of {MAX_RECIPES} recipes of {twin.name} fit a {edge}^3 box; "
        "enlarge --edge"
    )


def phase_iou(classes: np.ndarray, micro: Microstructure) -> dict[str, float]:
    """Intersection over union of each phase between ``classes`` (darkest first, as a
    segmentation method returns them) and the true ``micro``."""
    from poreloop.twins.critics.segmentation import grey_order

    order = grey_order(micro.phases)
    scores = {}
    for k, pid in enumerate(order):
        mine, truth = classes == k, micro.labels == pid
        union = np.count_nonzero(mine | truth)
        scores[micro.phases[pid]] = np.count_nonzero(mine & truth) / union if union else 1.0
    return scores
