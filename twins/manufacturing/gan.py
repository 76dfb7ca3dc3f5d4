"""A learned structure generator: SliceGAN (Kench & Cooper, Nat. Mach. Intell. 3, 2021) trained
on one labelled image, registered as the ``gan`` twin.

A 3D generator of transposed convolutions turns a box of latent noise into per-voxel phase
probabilities; 2D critics, one per axis, judge its slices against slices of the training
image (for a 2D image one critic judges all three axes: the medium is taken as isotropic).
Slices do not pin down how the phases connect in 3D, so where the image is 3D a 3D critic
also judges whole generated patches against patches of the image (as the 3D GAN of Mosser et
al., Phys. Rev. E 96, 2017 does). On two 128³ electrode images, 1500 steps, the pore
tortuosity of 128³ realisations came out 36 % and 82 % above the image's from slices alone,
-3 % and 51 % with the 3D critic, +2 % and +27 % once they also took the image's phase
fractions (below); after 3000 steps, +4 % and +3 % (at 256³ 0 % and +8 %).
Training is Wasserstein with gradient penalty (Gulrajani et al. 2017), as in SliceGAN. The
generator is fully convolutional, so a larger latent box gives a larger realisation with the
same statistics: ``poreloop twin generate gan --model gan.pt --size 128`` after training on
32³ (or, with ``--patch``, larger) patches. A realisation is the most probable phase of each
voxel after per-phase offsets to the log-probabilities that give it the image's phase fractions,
as a twin's box has its recipe's: the generator's own mix varies by ±0.01 between realisations
and drifts by a few hundredths with training (pore 0.29-0.31 against the image's 0.34 on seed 1's
electrode after 1500 steps), and the pore's τ moves steeply with its fraction.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from poreloop.twins.errors import TwinError
from poreloop.twins.manufacturing.base import Shape, Twin
from poreloop.twins.microstructure import Microstructure
from poreloop.twins.space import Continuous, ParameterSpace, Recipe

FORMAT = 2
WHAT = "structure generator"
LATENT = 16
"""Latent channels."""
LATENT_EDGE = 4
"""Latent voxels along each edge while training."""
PATCH = 32
"""Edge of the training patches and of each critic's slices, unless told. A slice should hold
several particles and pores for the critics to judge how they connect; SliceGAN's own is 64,
whose generator has one more layer and trains ~3 times slower a step and needs more steps (at
1500 steps on an electrode of ~15-voxel pore and particle chords it made a less connected pore
than 32 did)."""
SLICES = 32
"""Slices per axis each critic judges per step, drawn from the generated batch and the image."""
GRADIENT_PENALTY = 10.0
CRITIC_STEPS = 5
"""Critic updates per generator update (WGAN-GP's)."""
LEARNING_RATE = 1e-4
STEPS = 3000
"""Generator updates unless told: on the benchmark's two 128³ electrode images 1500 left one
image's pore τ 27 % above the image's, 3000 brought both within 10 %."""
OFFSET_SWEEPS = 10
"""Rounds of the phase offsets' fit (``_phase_offsets``) where there are more than two phases."""
FIT_VOXELS = 128**3
"""Boxes up to this many voxels fit their phase offsets on every voxel."""
RESAMPLING = 2.0
"""A realisation's voxel may be up to this much finer or coarser than the training image's
(nearest-neighbour resampling of the generated phases)."""


@dataclass(frozen=True)
class Trained:
    """What a generator was trained on and how (saved beside its weights)."""

    phases: dict[str, str]
    voxel_size_um: float
    image_shape: list[int]
    fractions: list[float]
    width: int
    patch: int
    steps: int
    batch: int
    seed: int
    seconds: float
    format: int = FORMAT


def _layers(patch: int) -> int:
    """Transposed convolutions (kernel 4, stride 2, padding 2) of a generator trained on
    ``patch``³: each turns an edge of n voxels into 2 n - 2, so ``LATENT_EDGE`` latent voxels
    become ``patch + 2``."""
    return patch.bit_length() - 2


def _generator(phases: int, width: int, patch: int) -> Any:
    import torch.nn as nn

    layers = _layers(patch)
    channels = [LATENT, *(width * 2**i for i in reversed(range(layers - 1))), phases]
    modules: list[Any] = []
    for i, (a, b) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
        modules.append(nn.ConvTranspose3d(a, b, 4, 2, 2, bias=False))
        modules += [nn.BatchNorm3d(b), nn.ReLU()] if i < layers - 1 else [nn.Softmax(dim=1)]
    return nn.Sequential(*modules)


def _critic(phases: int, width: int, patch: int, dims: int) -> Any:
    """Halves a ``patch``² slice (``dims`` 2) or ``patch``³ box (3) down to 4 voxels an
    edge, then one score."""
    import torch.nn as nn

    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    channels = [phases, *(width * 2**i for i in range(_layers(patch) - 1))]
    modules: list[Any] = []
    for a, b in zip(channels[:-1], channels[1:], strict=True):
        modules += [conv(a, b, 4, 2, 1), nn.LeakyReLU(0.2)]
    return nn.Sequential(*modules, conv(channels[-1], 1, 4, 1, 0))


def latent_edge(edge: int, patch: int) -> int:
    """Latent voxels whose output covers ``edge`` voxels, for a generator trained on
    ``patch``³."""
    scale = 2 ** _layers(patch)
    return max(math.ceil((edge - 2) / scale) + 2, 3)


@dataclass
class StructureGenerator:
    """A trained generator and what it learnt from."""

    trained: Trained
    network: Any = field(repr=False)

    def realise(self, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        """Phase indices (0 … phases - 1, in the training image's order) of a ``shape`` box
        with the image's phase fractions. A box of more than ``FIT_VOXELS`` voxels is fitted
        on every third voxel each way: an odd step, because the generator's transposed
        convolutions of stride 2 leave patterns of period 2, 4, … that every second voxel
        would see one phase of (pore 0.346 where the image and the whole box had 0.341)."""
        log_probabilities = self.log_probabilities(shape, rng)
        step = 3 if np.prod(shape) > FIT_VOXELS else 1
        seen = log_probabilities[:, ::step, ::step, ::step]
        return _most_probable(log_probabilities, _phase_offsets(seen, self.trained.fractions))

    def log_probabilities(self, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        """(phases, *shape) log-probabilities of each voxel's phase in a new realisation, as
        the network gives them."""
        import torch

        edges = [latent_edge(n, self.trained.patch) for n in shape]
        noise = torch.from_numpy(rng.standard_normal((1, LATENT, *edges)).astype(np.float32))
        self.network.eval()
        with torch.no_grad():
            probabilities = self.network(noise)[0]
        corner = [(p - n) // 2 for p, n in zip(probabilities.shape[1:], shape, strict=True)]
        box = tuple(slice(c, c + n) for c, n in zip(corner, shape, strict=True))
        return probabilities[(slice(None), *box)].clamp_min(1e-12).log().numpy()

    def save(self, path: str | Path) -> None:
        from poreloop.twins.critics import weights

        weights.save(path, WHAT, self.trained, self.network)

    @classmethod
    def load(cls, path: str | Path) -> StructureGenerator:
        from poreloop.twins.critics import weights

        def build(trained: Trained, state: dict[str, Any]) -> StructureGenerator:
            network = _generator(len(trained.phases), trained.width, trained.patch)
            network.load_state_dict(state)
            return cls(trained, network)

        return weights.load(path, WHAT, Trained, FORMAT, build)


def train(
    image: Microstructure,
    steps: int = STEPS,
    batch: int = 4,
    width: int = 16,
    patch: int = PATCH,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> StructureGenerator:
    """A generator trained on ``patch``³ patches (a power of two, 32 or more) of ``image`` (2D
    or 3D, every edge at least ``patch`` voxels)."""
    import torch

    labels = image.labels if image.labels.ndim == 3 else image.labels[..., None]
    flat = image.labels.ndim == 2
    if patch < 32 or patch & (patch - 1):
        raise TwinError(f"the training patch must be a power of two of 32 or more, got {patch}")
    if min(image.shape) < patch:
        raise TwinError(
            f"a structure generator learns from patches of {patch} voxels a side; the training "
            f"image is {image.shape}"
        )
    ids = sorted(image.phases)
    index = np.searchsorted(ids, labels)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    one_hot = torch.from_numpy(np.eye(len(ids), dtype=np.float32)[index]).permute(3, 0, 1, 2)
    generator = _generator(len(ids), width, patch)
    slice_critics = [_critic(len(ids), width, patch, 2) for _ in range(1 if flat else 3)]
    box_critics = [] if flat else [_critic(len(ids), width, patch, 3)]
    critics = slice_critics + box_critics
    betas = (0.5, 0.9)
    g_optimiser = torch.optim.Adam(generator.parameters(), LEARNING_RATE, betas=betas)
    c_optimisers = [torch.optim.Adam(c.parameters(), LEARNING_RATE, betas=betas) for c in critics]
    fractions = [float(np.mean(index == i)) for i in range(len(ids))]
    start = time.perf_counter()

    def real_slices(axis: int, count: int) -> Any:
        """``count`` random ``patch``² slices of the image across ``axis`` (of a 2D image: its
        plane)."""
        volume = one_hot.movedim(3, 1) if flat else one_hot.movedim(axis + 1, 1)
        out = []
        for _ in range(count):
            i = int(rng.integers(volume.shape[1]))
            a, b = (int(rng.integers(n - patch + 1)) for n in volume.shape[2:])
            out.append(volume[:, i, a : a + patch, b : b + patch])
        return torch.stack(out)

    def real_boxes() -> Any:
        """``batch`` random ``patch``³ boxes of the (3D) image."""
        corners = [
            [int(rng.integers(n - patch + 1)) for n in one_hot.shape[1:]] for _ in range(batch)
        ]
        return torch.stack(
            [one_hot[:, a : a + patch, b : b + patch, c : c + patch] for a, b, c in corners]
        )

    def judged(volumes: Any) -> list[tuple[Any, Any, Callable[[], Any]]]:
        """(critic, what it judges of the generated ``volumes``, what it draws of the image to
        compare) for every critic: ``SLICES`` random slices across each axis, and the patches
        themselves."""
        cropped = volumes[:, :, 1 : 1 + patch, 1 : 1 + patch, 1 : 1 + patch]
        judgements = []
        for axis in range(3):
            every = cropped.movedim(axis + 2, 1).reshape(-1, len(ids), patch, patch)
            chosen = torch.from_numpy(rng.choice(len(every), SLICES, replace=False))
            critic = slice_critics[axis % len(slice_critics)]
            judgements.append((critic, every[chosen], partial(real_slices, axis, SLICES)))
        return judgements + [(critic, cropped, real_boxes) for critic in box_critics]

    def noise() -> Any:
        return torch.randn(batch, LATENT, LATENT_EDGE, LATENT_EDGE, LATENT_EDGE)

    for step in range(1, steps + 1):
        for _ in range(CRITIC_STEPS):
            with torch.no_grad():
                fake = generator(noise())
            losses = []
            for critic, made, draw in judged(fake):
                truth = draw()
                losses.append(
                    critic(made).mean() - critic(truth).mean() + _penalty(critic, truth, made)
                )
            loss = torch.stack(losses).sum()
            for optimiser in c_optimisers:
                optimiser.zero_grad()
            loss.backward()
            for optimiser in c_optimisers:
                optimiser.step()
        fake = generator(noise())
        loss = -sum(critic(made).mean() for critic, made, _ in judged(fake))
        g_optimiser.zero_grad()
        loss.backward()
        g_optimiser.step()
        if log is not None and (step % 50 == 0 or step == steps):
            made_fractions = fake.detach().mean(dim=(0, 2, 3, 4)).tolist()
            log(
                f"step {step}/{steps}: phase fractions "
                + " ".join(f"{f:.3f}" for f in made_fractions)
                + f" (image {' '.join(f'{f:.3f}' for f in fractions)})"
            )
    trained = Trained(
        phases={str(i): image.phases[i] for i in ids},
        voxel_size_um=image.voxel_size_um,
        image_shape=list(image.shape),
        fractions=fractions,
        width=width,
        patch=patch,
        steps=steps,
        batch=batch,
        seed=seed,
        seconds=time.perf_counter() - start,
    )
    return StructureGenerator(trained, generator)


def _most_probable(log_probabilities: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    shifted = log_probabilities + offsets.reshape(-1, 1, 1, 1)
    return shifted.argmax(axis=0).astype(np.uint8)


def _phase_offsets(log_probabilities: np.ndarray, fractions: list[float]) -> np.ndarray:
    """Offsets to the phases' log-probabilities under which the most probable phases take
    ``fractions``. Each phase after the first in turn takes exactly its fraction: the quantile
    of how far it falls short of the best other phase (for two phases, the threshold that keeps
    the volume fraction); ``OFFSET_SWEEPS`` rounds settle what each took from the others."""
    offsets = np.zeros(len(fractions), dtype=np.float32)
    for _ in range(OFFSET_SWEEPS if len(fractions) > 2 else 1):
        for k in range(1, len(fractions)):
            shifted = log_probabilities + offsets.reshape(-1, 1, 1, 1)
            best_other = np.delete(shifted, k, axis=0).max(axis=0)
            offsets[k] = np.quantile(best_other - log_probabilities[k], fractions[k])
    return offsets


def _penalty(critic: Any, real: Any, fake: Any) -> Any:
    """WGAN-GP's penalty on the critic's gradient norm between real and generated samples."""
    import torch

    mix = torch.rand(len(real), *[1] * (real.ndim - 1))
    between = (mix * real + (1 - mix) * fake.detach()).requires_grad_(True)
    [gradient] = torch.autograd.grad(critic(between).sum(), between, create_graph=True)
    return GRADIENT_PENALTY * ((gradient.flatten(1).norm(dim=1) - 1) ** 2).mean()


def _space(voxel_size_um: float) -> ParameterSpace:
    return ParameterSpace(
        parameters=(
            Continuous(
                name="voxel_size_um",
                unit="um",
                low=voxel_size_um / RESAMPLING,
                high=voxel_size_um * RESAMPLING,
                default=voxel_size_um,
                description="edge of a generated voxel; the generator works at its training "
                "image's voxel (the default) and its phases are resampled to this one",
            ),
        )
    )


class GanTwin(Twin):
    """New, larger realisations of one labelled image by a trained SliceGAN generator.

    model: a generator file (``poreloop twin train-gan IMAGE --out gan.pt``). The class
    ``space`` lists the parameters; an instance's centres ``voxel_size_um`` on its training
    image's voxel and takes that image's phases.
    """

    name = "gan"
    phases = {0: "pore", 1: "solid"}
    space = _space(1.0)

    def __init__(self, model: str | Path | None = None) -> None:
        self.generator: StructureGenerator | None = None
        if model is None:
            return
        self.generator = StructureGenerator.load(model)
        trained = self.generator.trained
        self.phases = {int(k): v for k, v in trained.phases.items()}  # type: ignore[misc]
        self.space = _space(trained.voxel_size_um)  # type: ignore[misc]  # per generator

    def _generate(self, recipe: Recipe, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        if self.generator is None:
            raise TwinError(
                "the gan twin needs a trained generator: poreloop twin train-gan IMAGE --out "
                "gan.pt, then --model gan.pt"
            )
        scale = self.generator.trained.voxel_size_um / float(recipe["voxel_size_um"])
        native = tuple(max(round(n / scale), 1) for n in shape)
        phases = self.generator.realise(native, rng)
        if native != tuple(shape):
            zoom = [n / m for n, m in zip(shape, native, strict=True)]
            phases = ndimage.zoom(phases, zoom, order=0, grid_mode=True, mode="nearest")
        ids = np.array(sorted(self.phases), dtype=np.uint8)
        return ids[phases[tuple(slice(0, n) for n in shape)]]
