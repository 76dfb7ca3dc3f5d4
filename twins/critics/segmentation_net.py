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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poreloop.twins.critics import weights
from poreloop.twins.errors import TwinError
from poreloop.twins.microstructure import Microstructure

FORMAT = 1
"""Version of the saved model file; ``load`` refuses other versions."""
WHAT = "segmentation model"
MAX_RECIPES = 256
"""Recipes ``twin_structures`` tries before it gives up."""
DEPTH = 2
"""Poolings in the U-Net: a voxel sees a 28-voxel neighbourhood, and boxes are padded to a
multiple of 2**DEPTH."""
CHANNELS = 16
"""Feature maps at the U-Net's finest level (doubling at each pooling). On the benchmark's
held-out electrodes at the default noise (24 training structures, 3000 steps) 16 found the pore
at IoU 0.933 where 8 found 0.928; a third pooling added 0.001."""
LEARNING_RATE = 3e-3
"""Adam's peak step size (one-cycle schedule: the step shrinks to nothing by the last one, so
the weights settle instead of ending wherever a noisy step left them)."""


@dataclass(frozen=True)
class Trained:
    """What a model was trained on, saved beside its weights."""

    phases: list[str]
    """Phase names, darkest first: class i of the network is phases[i]."""
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


def normalise(grey: np.ndarray) -> np.ndarray:
    """Grey values scaled so the 1st and 99th percentiles map to 0 and 1 (float32): the network
    then reads a scan whatever its grey calibration."""
    low, high = np.percentile(grey, [1, 99])
    return ((grey.astype(np.float32) - low) / max(float(high - low), 1e-12)).astype(np.float32)


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
        volume = grey if grey.ndim == 3 else grey[:, :, None]
        multiple = 2**DEPTH
        pad = [(0, -n % multiple) for n in volume.shape]
        x = torch.from_numpy(np.pad(normalise(volume), pad, mode="reflect"))
        self.model.eval()
        with torch.no_grad():
            scores = self.model(x[None, None].to(self.device))[0]
        classes = scores.argmax(0).cpu().numpy().astype(np.uint8)
        classes = classes[tuple(slice(0, n) for n in volume.shape)]
        return classes if grey.ndim == 3 else classes[:, :, 0]

    def save(self, path: str | Path) -> None:
        weights.save(path, WHAT, self.trained, self.model)

    @classmethod
    def load(cls, path: str | Path) -> SegmentationNet:
        return weights.load(path, WHAT, Trained, FORMAT, cls)


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
    pairs = []
    for micro in structures:
        if min(micro.shape) < crop:
            raise TwinError(f"training structures must be at least {crop}^3, got {micro.shape}")
        for exposure in exposures_s:
            grey = scan(micro, exposure, rng)
            if grey.shape != micro.shape:
                raise TwinError("train on scans at the structure's own voxel size")
            digest.update(grey.tobytes())
            digest.update(micro.labels.tobytes())
            pairs.append((normalise(grey), to_class[micro.labels]))
    trained = Trained(
        [first.phases[p] for p in order],
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
