"""The neural critic: a deep ensemble of small 3D CNNs that predicts a chain's properties from
the voxels, with 90 % intervals calibrated on structures it was not trained on.

Physics chains take 0.2-3 s a structure; the ensemble takes milliseconds, so a campaign can
screen thousands of recipes, and call the physics chain only where the ensemble is unsure
(``SurrogateChain``). Its training data are (structure, chain result) pairs that the twins and
chains make on Ray (``TrainingSet``); no weights are downloaded.

How the uncertainty is made trustworthy:

- Each member predicts a mean and a variance per property (a Gaussian likelihood, Nix and
  Weigend 1994), trained on its own online-bootstrap weights of the data; the ensemble's
  mixture mean and variance combine what each member is unsure of with where the members
  disagree (Lakshminarayanan et al. 2017).
- A third of the data is held out of training, and the interval half-widths are scaled per
  property so that 90 % of the held-out errors fall inside (split conformal calibration,
  Angelopoulos and Bates 2021): the coverage holds on new structures from the same twin
  without assuming the network's variances are right.
- A head predicts whether the physics chain would score the structure at all (it fails where
  the pore or solid does not percolate): the chain only trusts the ensemble where that is sure.

Targets are learnt in log space where they are positive and span decades (τ, D_eff, σ_eff, k)
and standardised. Every flip of the box is a structure with the same properties, and swapping
its in-plane axes x and y swaps only the x and y properties: training flips and swaps each batch
at random, sixteen exact copies of every structure. Where the box is periodic (the twins'
coatings are in-plane, and the chain's transport wraps there) so are the convolutions, and
every roll of the box along those axes is one more copy: 40 × 40 of a 40³ screening box. With
them, learning the wrapped transport, R² of log τ_pore on 200 held-out electrode boxes went
from 0.86 (walls, zero padding) to 0.90 (``benchmarks.surrogates``).

The heads also read exact lower bounds on τ, cheap to read from the voxels. Each phase's and
its complement's series bound per axis (``_series_bounds``): spheres touch the current
collector at a few points, one sparse slice that strided convolutions cannot resolve, and it
alone can make τ of the solid 10-100 (R² of log τ_solid on the benchmark's 200 boxes went from
0.71 to 0.90, of σ_eff from 0.70 to 0.90). And the pore's and the solid's layered bounds along
the axes whose transport it learns (``bounds.tau_lower_bound``): near the pore's percolation τ
rises through narrow throats between particles, which the layered network sees and slices do
not; 58 % of the squared error of log τ_pore had come from the 18 of 182 test boxes with
τ > 16. With them (whole slices joined) R² of log τ_pore went from 0.89 to 0.94, of log
τ_solid from 0.90 to 0.94, of σ_eff from 0.90 to 0.95, of Wh/L at 1C from 0.83 to 0.91 and at
0.5C from 0.62 to 0.80. The pore's bound now joins each slice's voxels only within squares of
``bounds.TILE`` voxels, which also sees paths that wind sideways; with it and 1440 training
structures for 70 epochs (the time of 480 for 200), R² of log τ_pore was 0.975, of log
τ_solid 0.953, of Wh/L at 1C 0.96. The layered bounds (~4.6 ms at 48³) are computed on a
second thread while the trunk runs (~4 ms): a structure takes 6-8 ms on 2 cores of an AMD EPYC,
82-106× less than the electrode chain (103× before any layered bound, on another machine).

The energy densities come from the chain's cell model, a smooth function of seven properties
(``chain.CELL_INPUTS``). Learnt from the voxels directly, their knee (a thick, tortuous
electrode that cannot carry 1C) rested on the few training structures near it. So the critic
learns the cell model itself, from the training results' inputs and outputs (an MLP per
member; R² 0.99 at 1C on the true inputs of 200 new structures), and composes it with its own
predictions of the inputs: each member's Gaussian over them, drawn ``DRAWS`` times, through its
cell model. R² at 1C went from 0.80 to 0.83, at 3C from 0.88 to 0.97, at 0.5C (whose few
failing electrodes need τ_pore near the pore's percolation) from 0.72 to 0.62.

Each member's mean and variance learn from separate terms (as Stirn et al. 2023 advise): the
mean from its squared error weighed by the variance to the power ``BETA - 1`` (β-NLL, Seitzer
et al. 2022; the plain likelihood's weight 1/variance let a member explain a hard property by a
wide variance instead of learning its mean), the variance from the Gaussian likelihood of the
mean's error (β-NLL's own weight slowed it, and a campaign's refined critic stayed unsure where
the planner looked).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
from scipy.special import expit

from poreloop.threads import torch_threads
from poreloop.twins.critics import weights
from poreloop.twins.critics.bounds import TILE, tau_lower_bound
from poreloop.twins.critics.chain import AXES, CELL_INPUTS, Chain, ChainResult
from poreloop.twins.errors import CriticError
from poreloop.twins.microstructure import Microstructure, Provenance

FORMAT = 6
"""Version of the saved model file; ``load`` refuses other versions. Format 6 reads the pore's
bound in squares of ``bounds.TILE`` where format 5 read whole slices; format 5's heads read the
layered bounds (``bounds``), which format 4's lack; format 4's heads read the series bounds
(``_series_bounds``), which format 3's lack; format 3 held out a third
(``HELD_OUT``) where format 2 held out a fifth."""
WHAT = "neural critic"
COVERAGE = 0.9
"""What the intervals promise: 90 % of true values inside."""
Z90 = 1.6448536269514722
"""The standard normal's 95th percentile: a Gaussian's central 90 % is mean ± Z90·σ."""
PREDICTED = ("porosity", "tau_", "deff_", "sigma_eff_", "k_", "ssa_per_um", "tpb_per_um2")
"""Prefixes of the properties learnt by default, besides the chain's objectives and
``energy_density_wh_l_*`` (every C-rate)."""
LOG_SCALED = ("tau_", "deff_", "sigma_eff_", "k_")
"""Positive properties spanning decades: learnt as logarithms."""
VOXEL_SIZE_RTOL = 0.01
"""A structure whose voxels differ more than this from the training voxels is refused."""
SURE_OK = 0.9
"""The least probability that the chain scores a structure for ``SurrogateChain`` to answer."""
LEARNING_RATE = 5e-3
"""Adam's peak step size (one-cycle schedule)."""
LOG_VARIANCE = (-12.0, 6.0)
"""Bounds on a member's predicted log-variance (standardised units), in training and use."""
HELD_OUT = 3
"""One structure in this many calibrates instead of training. Over n held-out structures the
coverage the conformal quantile gives spreads by about ±√(0.09/n): ±0.036 with the 64 of a fifth
of 320 structures (each benchmark run then had one or two of ten properties outside 0.85-0.95),
±0.023 with the 160 of a third of 480."""
GRADIENT_CLIP = 5.0
"""Largest gradient norm an optimiser step takes. Steps' norms are typically 1-3, with rare
spikes of hundreds near the peak step size; one such step sent a whole ensemble off for good
(R² below 0 on every property)."""
BETA = 0.5
"""β of the mean's loss: 0 weighs its squared error by 1/variance, as the Gaussian likelihood
does; 1 leaves it unweighed (a plain squared error)."""
COMPOSED = "energy_density_"
"""Prefix of the properties that the chain's cell model derives from ``CELL_INPUTS``: the critic
composes its learnt cell model with its predictions of those inputs."""
DRAWS = 64
"""Draws from each member's Gaussian over the cell model's inputs: how sure it is of them
reaches the composed properties through the cell model, knee and all."""
CELL_WIDTH = 32
"""Hidden units of each member's learnt cell model (two layers)."""
CELL_STEPS = 3000
"""Full-batch Adam steps that fit the learnt cell models (seconds on a CPU)."""
THICKNESS = "thickness_um"
"""The one cell-model input that the critic is given with the structure, not predicted."""

CHUNK = 2
"""Structures a prediction runs through the network together. The second thread computes the
layered bounds of the chunk's structures one after the other while the trunk runs: at 48³ on
2 cores a structure took 5.3 ms in pairs, 5.4 alone, 8.4 in fours and 10 in 48s (measured
when that thread also read the fractions and series bounds)."""
KEPT_MB = 32
"""Freed memory the process keeps for reuse (``_keep_freed_memory``): blocks up to this size
come from the heap, and the heap keeps this much free at its top."""
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""glibc's ``mallopt`` parameters (malloc.h)."""

_beside: ThreadPoolExecutor


def _start_beside() -> None:
    """This process's second thread, which computes the layered bounds for the heads while the
    trunk runs (kept: a new thread a call cost 0.6 ms more, its memory cold); a forked child
    starts its own, as the parent's thread does not follow it."""
    global _beside
    _beside = ThreadPoolExecutor(1, thread_name_prefix="critic-voxels")


_start_beside()
os.register_at_fork(after_in_child=_start_beside)


def _keep_freed_memory() -> None:
    """Ask the C library to keep freed blocks of up to ``KEPT_MB`` for reuse. glibc's default
    returned a prediction's few MB of activations to the system after each call and took them
    back page by page: in some processes ~2700 page faults a structure at 48³, both threads
    waiting on the kernel, 6 → 9 ms a call. C libraries without ``mallopt`` are left alone."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        for parameter in (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD):
            mallopt(parameter, KEPT_MB << 20)


# --- training data ---------------------------------------------------------------------------


@dataclass
class TrainingSet:
    """(structure, chain result) pairs of one twin, chain, box and phase set, as arrays.

    ``values`` holds every property of every result (NaN where a result lacks it);
    ``ok`` whether the chain scored the structure cleanly; ``periodic`` the axes along which
    every structure wraps (the first one's). Saved as ``.npz``.
    """

    twin: str
    chain: str
    phases: dict[int, str]
    labels: list[np.ndarray] = field(default_factory=list)
    voxel_size_um: list[float] = field(default_factory=list)
    values: list[dict[str, float]] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)
    periodic: tuple[int, ...] = ()

    def add(self, micro: Microstructure, result: ChainResult) -> None:
        if micro.phases != self.phases:
            raise CriticError(f"training structures have phases {self.phases}, not {micro.phases}")
        if self.labels and micro.shape != self.labels[0].shape:
            raise CriticError(
                f"training structures are {self.labels[0].shape}, not {micro.shape}: one box size"
            )
        if self.labels and micro.periodic != self.periodic:
            raise CriticError(
                f"training structures wrap along {_axes(self.periodic)}, this one along "
                f"{_axes(micro.periodic)}: the chain scores them differently"
            )
        self.periodic = micro.periodic
        self.labels.append(np.ascontiguousarray(micro.labels))
        self.voxel_size_um.append(micro.voxel_size_um)
        self.values.append(dict(result.properties))
        self.ok.append(result.ok and result.converged)

    def __len__(self) -> int:
        return len(self.labels)

    def structure(self, index: int) -> Microstructure:
        return Microstructure(
            self.labels[index],
            self.voxel_size_um[index],
            self.phases,
            Provenance(twin=self.twin),
            self.periodic,
        )

    def column(self, key: str) -> np.ndarray:
        return np.array([v.get(key, math.nan) for v in self.values])

    def property_keys(self) -> list[str]:
        return sorted({key for values in self.values for key in values})

    def digest(self) -> str:
        """SHA-256 over structures and results: the same hash, the same training data."""
        digest = hashlib.sha256()
        for labels, values in zip(self.labels, self.values, strict=True):
            digest.update(labels.tobytes())
            digest.update(json.dumps(values, sort_keys=True).encode())
        return digest.hexdigest()

    def save(self, path: str | Path) -> None:
        keys = self.property_keys()
        np.savez_compressed(
            path,
            meta=json.dumps(
                {
                    "twin": self.twin,
                    "chain": self.chain,
                    "phases": self.phases,
                    "periodic": self.periodic,
                }
            ),
            keys=np.array(keys),
            labels=np.stack(self.labels),
            voxel_size_um=np.array(self.voxel_size_um),
            values=np.array([[v.get(k, math.nan) for k in keys] for v in self.values]),
            ok=np.array(self.ok),
        )

    @classmethod
    def load(cls, path: str | Path) -> TrainingSet:
        path = Path(path)
        if not path.is_file():
            raise CriticError(f"no training set at '{path}'")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                keys = [str(k) for k in data["keys"]]
                rows = data["values"]
                return cls(
                    meta["twin"],
                    meta["chain"],
                    {int(k): v for k, v in meta["phases"].items()},
                    list(data["labels"]),
                    [float(v) for v in data["voxel_size_um"]],
                    [
                        {k: float(v) for k, v in zip(keys, row, strict=True) if not math.isnan(v)}
                        for row in rows
                    ],
                    [bool(v) for v in data["ok"]],
                    tuple(meta.get("periodic", ())),
                )
        except (OSError, ValueError, KeyError) as error:
            raise CriticError(f"'{path}' is not a poreloop training set ({error})") from None


# --- the model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trained:
    """What an ensemble was trained on, saved beside its weights."""

    twin: str
    chain: str
    shape: list[int]
    voxel_size_um: float
    phases: dict[str, str]
    """Phase id (as a string, JSON's keys) → name; input channel i is the i-th id."""
    periodic: list[int]
    """The axes along which the training boxes wrapped (and the chain's transport with them)."""
    properties: list[str]
    composed: list[str]
    """The properties that the learnt cell model gives (the last ones); the CNNs learn the rest."""
    cell_inputs: list[str]
    """What the learnt cell model reads, in order: predicted properties and the thickness."""
    log_scaled: list[str]
    center: list[float]
    scale: list[float]
    """Standardisation of each (log-)property: z = (y - center) / scale."""
    thickness_um: list[float]
    """The range of coating thicknesses trained on; outside it the ensemble extrapolates."""
    bound_axes: list[int]
    """The axes along which the heads read the pore's and the solid's layered bound on τ
    (``bounds.tau_lower_bound``): those the transport properties name."""
    interval_scale: list[float]
    """Per property, the factor on the ensemble's σ that makes 90 % of held-out errors fall
    inside ±Z90·σ."""
    members: int
    width: int
    epochs: int
    seed: int
    examples: int
    held_out: int
    data_hash: str
    format: int = FORMAT


def _network(
    members: int,
    inputs: int,
    width: int,
    outputs: int,
    periodic: Sequence[int],
    layered: int = 0,
    cell: tuple[int, int] = (0, 0),
) -> Any:
    """``members`` CNNs side by side as one grouped network: each sees the one-hot phases, and
    its head the pooled features, the phase fractions (exact, so porosity need not be learnt
    from pooled features) and the coating thickness; each gives ``outputs`` numbers. Every
    convolution sees the box wrap along the ``periodic`` axes, as the chain's transport did,
    and zeros beyond the other sides. ``layered``: how many layered bounds the heads also read
    (given to ``forward``). ``cell``: inputs and outputs of each member's learnt cell model
    (``compose``), none where both are 0.

    Features are pooled two ways: the mean over the box, and per axis the harmonic mean along
    it of each slice's mean, as resistances add in series (the slowest slice limits transport
    along an axis; a plain mean cannot see that). The head also reads each phase's and its
    complement's series bound per axis, from the voxels themselves (``_series_bounds``): the
    strided convolutions cannot resolve one sparse slice, such as the few points where
    spheres touch the current collector, which alone can make τ of the solid 10-100."""
    import torch
    from torch import nn

    m, features = members, 4 * width
    wrapped = tuple(int(axis in periodic) for axis in (2, 2, 1, 1, 0, 0))  # last axis first
    walled = (int(0 not in periodic), int(1 not in periodic), int(2 not in periodic))  # zeros

    class Wrap(nn.Module):
        def forward(self, box: torch.Tensor) -> torch.Tensor:
            return nn.functional.pad(box, wrapped, mode="circular") if any(wrapped) else box

    class Ensemble(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = width
            self.trunk = nn.Sequential(
                Wrap(),  # every member's first layer reads the same phases: one convolution
                nn.Conv3d(inputs, m * w, 3, stride=2, padding=walled),
                nn.SiLU(),
                Wrap(),
                nn.Conv3d(m * w, m * 2 * w, 3, stride=2, padding=walled, groups=m),
                nn.SiLU(),
                Wrap(),
                nn.Conv3d(m * 2 * w, m * features, 3, stride=2, padding=walled, groups=m),
                nn.SiLU(),
                Wrap(),
                nn.Conv3d(m * features, m * features, 3, padding=walled, groups=m),
            )
            self.heads = nn.Sequential(  # 1x1x1 grouped convolutions: one MLP per member
                nn.Conv3d(m * (4 * features + 1 + 7 * inputs + layered), m * features, 1, groups=m),
                nn.SiLU(),
                nn.Conv3d(m * features, m * outputs, 1, groups=m),
            )
            ins, outs = cell
            self.cell = nn.ModuleList(
                nn.Sequential(
                    nn.Linear(ins, CELL_WIDTH),
                    nn.SiLU(),
                    nn.Linear(CELL_WIDTH, CELL_WIDTH),
                    nn.SiLU(),
                    nn.Linear(CELL_WIDTH, outs),
                )
                for _ in range(m if outs else 0)
            )
            self._boxes: dict[tuple[int, ...], torch.Tensor] = {}

        def forward(
            self,
            onehot: torch.Tensor,
            thickness: torch.Tensor,
            voxels: Callable[[], torch.Tensor],
        ) -> torch.Tensor:
            """(batch, phases, *box), (batch,) → (batch, members, outputs). ``voxels`` gives
            what the heads read from the voxels themselves (``NeuralCritic._voxels``: phase
            fractions, series and layered bounds); it is called once the trunk has run, so
            that they can be computed beside it."""
            batch = onehot.shape[0]
            grid = self._trunk(onehot)
            conductance = nn.functional.softplus(grid) + 1e-3
            pooled = [nn.functional.silu(grid).mean(dim=(2, 3, 4))]
            for axis in (2, 3, 4):
                across = tuple(d for d in (2, 3, 4) if d != axis)
                slices = conductance.mean(dim=across)
                pooled.append(1 / (1 / slices).mean(dim=2))
            pooled_ = torch.stack(pooled, dim=2).view(batch, m, -1)
            read = voxels()
            context = torch.cat([read[:, :inputs], thickness.view(batch, 1), read[:, inputs:]], 1)
            context = context.view(batch, 1, -1).expand(batch, m, -1)
            both = torch.cat([pooled_, context], dim=2).view(batch, -1, 1, 1, 1)
            return self.heads(both).view(batch, m, outputs)

        def _trunk(self, onehot: torch.Tensor) -> torch.Tensor:
            """The trunk. In prediction its first convolution reads every phase but the last
            (1.6 → 1.1 ms at 48³, a third of the trunk's time): where the box is, the phases'
            channels add up to one, so the last phase's weights act through the differences
            of the others' and a term fixed by the box's shape (``_box``)."""
            if torch.is_grad_enabled():
                return self.trunk(onehot)
            weight = self._first.weight[:, :-1] - self._first.weight[:, -1:]
            x = _strided_conv(self.trunk[0](onehot[:, :-1]), weight, walled)
            x += self._box(onehot.shape[2:])
            for layer in list(self.trunk)[2:]:  # slicing a Sequential builds a new one
                # activations in place: a few MB less to allocate and stream at 48³
                x = nn.functional.silu(x, inplace=True) if isinstance(layer, nn.SiLU) else layer(x)
            return x

        def _box(self, shape: torch.Size) -> torch.Tensor:
            """What the first convolution gives a box of the last phase alone (its bias
            included), kept for the latest shape and weights."""
            weight = self._first.weight
            key = (*shape, weight._version)
            if key not in self._boxes:
                box = self.trunk[0](torch.ones(1, 1, *shape, device=weight.device))
                last = weight[:, -1:]
                self._boxes = {key: nn.functional.conv3d(box, last, self._first.bias, 2, walled)}
            return self._boxes[key]

        @property
        def _first(self) -> nn.Conv3d:
            """The trunk's first convolution, which every member shares."""
            return cast(nn.Conv3d, self.trunk[1])

        def compose(self, inputs: torch.Tensor) -> torch.Tensor:
            """(members, rows, cell inputs) → (members, rows, cell outputs), standardised."""
            return torch.stack([net(x) for net, x in zip(self.cell, inputs, strict=True)])

    return Ensemble()


def _strided_conv(box: Any, weight: Any, padding: Sequence[int]) -> Any:
    """A convolution of stride 2 without bias. On a CPU it runs in oneDNN, which torch's own
    choice passes over for a single box with few channels: 0.8 ms where torch's own kernel took
    1.3 at 48³ (the trunk's first layer, one structure a call)."""
    import torch

    if box.device.type == "cpu" and torch.backends.mkldnn.is_available():
        return torch.ops.aten.mkldnn_convolution(
            box, weight, None, padding, (2, 2, 2), (1, 1, 1), 1
        )
    return torch.nn.functional.conv3d(box, weight, None, 2, padding)


def _series_bounds(phases: np.ndarray) -> np.ndarray:
    """(batch, phases, *box) → (batch, 6 · phases): per axis, the log of the least τ that the
    slices across it allow each phase and each phase's complement: ε·mean(1/φ) over the slices
    (φ: the phase's share of a slice; a slice conducts at most φ, and slices add in series).
    Empty slices count as one voxel, so the log stays finite."""
    x, y, z = phases.shape[2:]
    # counts, summed in the boxes' own dtype (exact in float32 to 2^24; a cast to float64
    # in the sum kept the GIL, which the trunk beside needs between its layers)
    across_x, across_z = (phases.sum(axis=axis).astype(np.float64) for axis in (4, 2))
    bounds = []
    for shares in (across_x.sum(3) / (y * z), across_z.sum(3) / (x * z), across_z.sum(2) / (x * y)):
        least = shares.shape[2] / (x * y * z)  # one voxel of a slice
        for share in (shares, 1 - shares):
            share = np.maximum(share, least)
            bounds.append(share.mean(axis=2) * (1 / share).mean(axis=2))
    return np.log(np.concatenate(bounds, axis=1))


@dataclass(frozen=True)
class Prediction:
    """The ensemble's answer for one structure: mean and 90 % interval per property, and the
    probability that the physics chain scores it."""

    mean: dict[str, float]
    low: dict[str, float]
    high: dict[str, float]
    p_ok: float
    inside: bool
    """Whether the structure lies where the ensemble was trained (its coating thickness)."""

    def relative_half_width(self, key: str) -> float:
        return (self.high[key] - self.low[key]) / (2 * max(abs(self.mean[key]), 1e-300))


class NeuralCritic:
    """A trained ensemble and what it was trained on."""

    def __init__(self, trained: Trained, state: dict[str, Any] | None = None) -> None:
        import torch

        _keep_freed_memory()
        self.trained = trained
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.ids = [int(k) for k in trained.phases]
        names = list(trained.phases.values())
        self._pore = names.index("pore") if trained.bound_axes else None
        self.learnt = [key for key in trained.properties if key not in trained.composed]
        self.model = _network(
            trained.members,
            len(self.ids),
            trained.width,
            2 * len(self.learnt) + 1,
            trained.periodic,
            2 * len(trained.bound_axes),
            (len(trained.cell_inputs), len(trained.composed)),
        ).to(self.device)
        if state is not None:
            self.model.load_state_dict(state)
        self._log = np.array([key in trained.log_scaled for key in trained.properties])
        self._cell_columns = torch.tensor(  # the thickness is appended to the learnt ones
            [
                len(self.learnt) if key == THICKNESS else self.learnt.index(key)
                for key in trained.cell_inputs
            ],
            device=self.device,
        )
        draws = torch.Generator().manual_seed(0)
        self._draws = torch.randn(DRAWS, len(trained.cell_inputs), generator=draws).to(self.device)

    @property
    def properties(self) -> list[str]:
        return self.trained.properties

    def check(self, micro: Microstructure) -> None:
        """Refuse a structure unlike the training structures (one line, ``CriticError``)."""
        t = self.trained
        phases = {str(k): v for k, v in micro.phases.items()}
        if phases != t.phases:
            raise CriticError(
                f"this neural critic was trained on phases {t.phases}, the structure has {phases}"
            )
        if list(micro.shape) != t.shape:
            raise CriticError(
                f"this neural critic was trained on {'x'.join(map(str, t.shape))} boxes, the "
                f"structure is {'x'.join(map(str, micro.shape))}"
            )
        if list(micro.periodic) != t.periodic:
            raise CriticError(
                f"this neural critic was trained on boxes that wrap along {_axes(t.periodic)}, "
                f"the structure wraps along {_axes(micro.periodic)}"
            )
        if abs(micro.voxel_size_um / t.voxel_size_um - 1) > VOXEL_SIZE_RTOL:
            raise CriticError(
                f"this neural critic was trained at {t.voxel_size_um:g} um voxels, the structure "
                f"has {micro.voxel_size_um:g} um"
            )

    def _inputs(self, labels: Sequence[np.ndarray], thickness_um: Sequence[float]) -> Any:
        """One-hot boxes, channel i phase ``ids[i]`` (made in NumPy: 0.04 ms at 48³ where
        torch's comparison took 0.37), and the thicknesses as the networks read them."""
        import torch

        ids = np.array(self.ids, dtype=np.uint8).reshape(1, -1, 1, 1, 1)  # labels are uint8
        onehot = (np.stack(labels)[:, None] == ids).astype(np.float32)
        return torch.from_numpy(onehot).to(self.device), self._thickness(thickness_um)

    def _thickness(self, thickness_um: Sequence[float]) -> Any:
        """Coating thicknesses as the networks read them: -1 to 1 over the trained range."""
        import torch

        low, high = self.trained.thickness_um
        mid, half = (low + high) / 2, max((high - low) / 2, 1e-9)
        thickness = torch.tensor(np.asarray(thickness_um), dtype=torch.float32)
        return ((thickness - mid) / half).to(self.device)

    def _forward(self, onehot: Any, thickness: Any) -> Any:
        """The ensemble's outputs for one-hot boxes (as ``_inputs`` makes them, or flipped,
        rolled and swapped). Of what the heads read from the voxels, the layered bounds are
        computed on this process's second thread, the rest on the first before the trunk runs,
        so that both threads take about as long (at 48³ on an AMD EPYC: the layered bounds
        4.6 ms; the fractions and series bounds 0.5 ms, then the trunk 4)."""
        import torch

        boxes = onehot.cpu().numpy()
        layered = _beside.submit(self._layered, boxes[:, self._pore or 0] > 0.5)
        read = self._voxels(boxes)

        def everything() -> Any:
            both = np.concatenate([read, layered.result()], axis=1).astype(np.float32)
            return torch.from_numpy(both).to(onehot)

        return self.model(onehot, thickness, everything)

    def _voxels(self, onehot: np.ndarray) -> np.ndarray:
        """(batch, phases, *box) → (batch, phases + 6 · phases): the phase fractions and the
        series bounds (``_series_bounds``)."""
        counts = onehot.sum(axis=(2, 3, 4))  # in float32: exact up to 256³
        fractions = counts.astype(np.float64) / np.prod(onehot.shape[2:])
        return np.concatenate([fractions, _series_bounds(onehot)], axis=1)

    def _layered(self, pores: np.ndarray) -> np.ndarray:
        """(batch, *box) pore voxels → (batch, 2 · bound axes): the log of the pore's bound on
        τ in squares of ``TILE`` voxels and the solid's in whole slices along each of
        ``bound_axes``; no path (∞) reads as the voxels of a slice (no pore: none read). The
        solid is mostly one cluster a slice: in squares it cost 7 ms at 48³, 4× its bound in
        slices."""
        axes, periodic = self.trained.bound_axes, self.trained.periodic
        bounds = [
            [
                min(tau_lower_bound(volume, axis, periodic, tile), volume.size / volume.shape[axis])
                for volume, tile in ((pore, TILE), (~pore, None))
                for axis in axes
            ]
            for pore in pores
        ]
        return np.log(np.array(bounds).reshape(len(pores), 2 * len(axes)))

    def _raw(self, labels: Sequence[np.ndarray], thickness_um: Sequence[float]) -> Any:
        """Per member and property, standardised means and variances, and the ok logit."""
        import torch

        n = len(self.learnt)
        if self.model.training:  # after _fit; switching costs 0.3 ms a call
            self.model.eval()
        # one of torch's threads left to what the heads read from the voxels (``_forward``):
        # 8.2 → 6.4 ms a structure at 48³ on 2 cores, both layered bounds in whole slices
        with torch.no_grad(), torch_threads(torch.get_num_threads() - 1):
            onehot, thickness = self._inputs(labels, thickness_um)
            out = self._forward(onehot, thickness)
            means, variances = out[:, :, :n], out[:, :, n : 2 * n].clamp(*LOG_VARIANCE).exp()
            if self.trained.composed:
                composed_means, composed_variances = self._composed(means, variances, thickness)
                means = torch.cat([means, composed_means], dim=2)
                variances = torch.cat([variances, composed_variances], dim=2)
        return tuple(x.double().cpu().numpy() for x in (means, variances, out[:, :, -1]))

    def _cell_inputs(self, means: Any, thickness: Any) -> Any:
        """(batch, members, learnt) standardised properties and (batch,) thicknesses → the
        learnt cell model's inputs, (batch, members, cell inputs)."""
        import torch

        batch, members = means.shape[:2]
        thickness = thickness.view(batch, 1, 1).expand(batch, members, 1)
        return torch.cat([means, thickness], dim=2)[:, :, self._cell_columns]

    def _composed(self, means: Any, variances: Any, thickness: Any) -> tuple[Any, Any]:
        """Each member's mean and variance of the composed properties: ``DRAWS`` draws of the
        cell model's inputs from the member's Gaussian (the thickness is known) through the
        member's cell model."""
        centre = self._cell_inputs(means, thickness)
        spread = self._cell_inputs(variances.sqrt(), 0 * thickness)
        draws = centre.unsqueeze(2) + spread.unsqueeze(2) * self._draws  # batch, m, draws, in
        batch, members, count, ins = draws.shape
        rows = draws.transpose(0, 1).reshape(members, batch * count, ins)
        out = self.model.compose(rows).view(members, batch, count, -1).transpose(0, 1)
        return out.mean(dim=2), out.var(dim=2)

    def _mixture(
        self, labels: Sequence[np.ndarray], thickness_um: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Standardised ensemble means and standard deviations (batch, properties), and the
        probability that the chain scores each structure; ``CHUNK`` structures at a time."""
        chunks = [
            self._raw(labels[i : i + CHUNK], thickness_um[i : i + CHUNK])
            for i in range(0, len(labels), CHUNK)
        ]
        means, variances, logits = (np.concatenate(part) for part in zip(*chunks, strict=True))
        mean = means.mean(1)
        variance = (variances + means**2).mean(1) - mean**2
        p_ok = expit(logits).mean(1)
        return mean, np.sqrt(np.maximum(variance, 1e-12)), p_ok

    def _to_values(self, z: np.ndarray) -> np.ndarray:
        y = z * np.array(self.trained.scale) + np.array(self.trained.center)
        return np.where(self._log, np.exp(np.where(self._log, y, 0.0)), y)

    def predict(
        self, micros: Sequence[Microstructure], thickness_um: Sequence[float | None] | None = None
    ) -> list[Prediction]:
        """Predictions for ``micros`` (each checked first); a thickness is taken as
        ``Chain.evaluate`` takes it: given, else the recipe's, else the box height."""
        for micro in micros:
            self.check(micro)
        given = list(thickness_um) if thickness_um is not None else [None] * len(micros)
        thickness = [_thickness(m, t) for m, t in zip(micros, given, strict=True)]
        mean, sd, p_ok = self._mixture([m.labels for m in micros], thickness)
        half = Z90 * np.array(self.trained.interval_scale) * sd
        centre, low, high = (self._to_values(z) for z in (mean, mean - half, mean + half))
        low_t, high_t = self.trained.thickness_um
        return [
            Prediction(
                dict(zip(self.properties, centre[i].tolist(), strict=True)),
                dict(zip(self.properties, low[i].tolist(), strict=True)),
                dict(zip(self.properties, high[i].tolist(), strict=True)),
                float(p_ok[i]),
                low_t <= thickness[i] <= high_t,
            )
            for i in range(len(micros))
        ]

    def save(self, path: str | Path) -> None:
        weights.save(path, WHAT, self.trained, self.model)

    @classmethod
    def load(cls, path: str | Path) -> NeuralCritic:
        return weights.load(path, WHAT, Trained, FORMAT, cls)


def _axes(periodic: Sequence[int]) -> str:
    """Axes as the error messages name them: 'x, y', or 'no axis'."""
    return ", ".join(AXES[axis] for axis in periodic) or "no axis"


def _share(micro: Microstructure) -> float:
    """A number in [0, 1) fixed by the structure's voxels: which structures are audited."""
    digest = hashlib.sha256(micro.labels.tobytes()).digest()
    return int.from_bytes(digest[4:8], "big") / 2**32  # bytes apart from ``held_out``'s


def _thickness(micro: Microstructure, given: float | None) -> float:
    if given is not None:
        return float(given)
    recorded = micro.provenance.recipe.get("thickness_um")
    return float(recorded) if recorded is not None else micro.shape[2] * micro.voxel_size_um


# --- training --------------------------------------------------------------------------------


def default_properties(data: TrainingSet, objectives: Sequence[str] = ()) -> list[str]:
    """What to learn: the chain's objectives and every property named by ``PREDICTED`` or an
    energy density, that at least half the training results have."""
    keys = [
        key
        for key in data.property_keys()
        if key in objectives or key.startswith(PREDICTED) or key.startswith("energy_density_")
    ]
    return [key for key in keys if np.isfinite(data.column(key)).mean() >= 0.5]


def held_out(data: TrainingSet) -> np.ndarray:
    """Which examples calibrate instead of training: one in ``HELD_OUT``, chosen by a hash of
    each structure, so that a growing training set keeps them out of every later refinement (the
    coverage guarantee needs examples the weights never saw)."""
    mask = np.array(
        [hashlib.sha256(labels.tobytes()).digest()[0] % HELD_OUT == 0 for labels in data.labels]
    )
    if mask.sum() < 2 or (~mask).sum() < 2:
        raise CriticError(
            f"{len(data)} training structures leave {mask.sum()} to calibrate on; a neural "
            "critic needs at least two of each (about 10 structures)"
        )
    return mask


def train(
    data: TrainingSet,
    properties: Sequence[str] | None = None,
    *,
    members: int = 5,
    width: int = 8,
    epochs: int = 60,
    batch: int = 16,
    seed: int = 0,
    start: NeuralCritic | None = None,
    log: Callable[[str], None] | None = None,
) -> NeuralCritic:
    """An ensemble trained on about two thirds of ``data`` and calibrated on the rest.

    ``start``: continue from that critic's weights (active learning: a campaign extends the
    data and refines the ensemble in a few epochs instead of training it anew).
    """
    import torch

    if len(data) == 0:
        raise CriticError("no training structures")
    properties = list(properties or default_properties(data))
    if not properties:
        raise CriticError("no property to learn: the training results have none in common")
    properties, composed, cell_inputs = _arranged(data, properties)
    if start is not None and (
        start.properties != properties
        or start.trained.phases != {str(k): v for k, v in data.phases.items()}
        or start.trained.periodic != list(data.periodic)
    ):
        raise CriticError("continue training only on the same properties, phases and wrapping")
    calibrate = held_out(data)
    fit = ~calibrate
    log_scaled = [key for key in properties if key.startswith(LOG_SCALED)]
    targets = np.stack([data.column(key) for key in properties], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        targets = np.where(
            [key in log_scaled for key in properties], np.log(targets), targets
        )  # τ = inf (no path) and non-positive values become missing
    targets[~np.isfinite(targets)] = np.nan
    center = np.nanmean(targets[fit], axis=0)
    scale = np.nanstd(targets[fit], axis=0)
    if start is not None:  # its weights learnt these scales
        center, scale = np.array(start.trained.center), np.array(start.trained.scale)
    missing = [key for key, c in zip(properties, center, strict=True) if not np.isfinite(c)]
    if missing:
        raise CriticError(f"no training structure has a finite value of {missing}")
    scale = np.where(scale > 0, scale, 1.0)
    thickness = np.array([v.get("thickness_um", math.nan) for v in data.values])
    trained = Trained(
        twin=data.twin,
        chain=data.chain,
        shape=list(data.labels[0].shape),
        voxel_size_um=float(np.median(data.voxel_size_um)),
        phases={str(k): v for k, v in data.phases.items()},
        periodic=list(data.periodic),
        properties=properties,
        composed=composed,
        cell_inputs=cell_inputs,
        log_scaled=log_scaled,
        center=center.tolist(),
        scale=scale.tolist(),
        thickness_um=(  # the inputs ``start``'s weights learnt
            start.trained.thickness_um
            if start
            else [float(np.nanmin(thickness)), float(np.nanmax(thickness))]
        ),
        bound_axes=start.trained.bound_axes if start else _bound_axes(properties, data.phases),
        interval_scale=[1.0] * len(properties),
        members=start.trained.members if start else members,
        width=start.trained.width if start else width,
        epochs=epochs,
        seed=seed,
        examples=len(data),
        held_out=int(calibrate.sum()),
        data_hash=data.digest(),
    )
    torch.manual_seed(seed)
    critic = NeuralCritic(trained)
    if start is not None:
        critic.model.load_state_dict(start.model.state_dict())
    z = torch.from_numpy((targets - center) / scale).float().to(critic.device)
    ok = torch.tensor(data.ok, dtype=torch.float32, device=critic.device)
    learnt = z[:, : len(critic.learnt)]
    _fit(critic, data, thickness, learnt, ok, np.flatnonzero(fit), epochs, batch, seed, log)
    if composed:
        _fit_cell(critic, thickness, z, np.flatnonzero(fit), seed)
    return _calibrated(critic, data, thickness, z.cpu().numpy(), np.flatnonzero(calibrate))


def _bound_axes(properties: Sequence[str], phases: dict[int, str]) -> list[int]:
    """The axes that the transport properties name, x and y both where either is (training
    swaps them); none where no phase is the pore (the solid is everything else)."""
    if "pore" not in phases.values():
        return []
    named = {
        AXES.index(axis)
        for key in properties
        if key.startswith(LOG_SCALED)
        for axis in re.findall(r"_([xyz])(?=_|$)", key)
    }
    return sorted(named | {0, 1} if named & {0, 1} else named)


def _arranged(data: TrainingSet, properties: list[str]) -> tuple[list[str], list[str], list[str]]:
    """The properties to learn with the composed ones last (where the results hold every
    ``CELL_INPUTS``, the energy densities; the CNNs then learn the inputs as well), the
    composed ones, and the learnt cell model's inputs."""
    keys = data.property_keys()
    composed = [key for key in properties if key.startswith(COMPOSED)]
    if not composed or any(key not in keys for key in CELL_INPUTS):
        return properties, [], []
    learnt = [key for key in properties if key not in composed]
    learnt += [key for key in CELL_INPUTS if key not in learnt and key != THICKNESS]
    return learnt + composed, composed, list(CELL_INPUTS)


def _fit(
    critic: NeuralCritic,
    data: TrainingSet,
    thickness: np.ndarray,
    z: Any,
    ok: Any,
    rows: np.ndarray,
    epochs: int,
    batch: int,
    seed: int,
    log: Callable[[str], None] | None,
) -> None:
    """Adam on every known target's mean and variance terms and the ok head's cross-entropy;
    each member weighs each example by its own Poisson(1) draw (an online bootstrap). Each
    batch is flipped, swapped and, along the periodic axes, rolled at random."""
    import torch

    rng = np.random.default_rng(seed)
    members, n = critic.trained.members, len(critic.learnt)
    periodic = critic.trained.periodic
    mirror = [n if j is None else j for j in _axes_swapped(critic.learnt)]
    swapped = torch.tensor(mirror, device=z.device)
    unknown = torch.full((len(z), 1), math.nan, device=z.device)
    z = torch.cat([z, unknown], dim=1)  # column n: what a swap makes of an unlearnt property
    optimiser = torch.optim.AdamW(critic.model.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    steps = epochs * math.ceil(len(rows) / batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, LEARNING_RATE, total_steps=steps)
    critic.model.train()
    started = time.perf_counter()
    for epoch in range(epochs):
        total = 0.0
        for chunk in np.array_split(rng.permutation(rows), math.ceil(len(rows) / batch)):
            onehot, context = critic._inputs([data.labels[i] for i in chunk], thickness[chunk])
            flips = [d + 2 for d in range(3) if rng.random() < 0.5]
            if flips:
                onehot = onehot.flip(flips)
            if periodic:
                shifts = [int(rng.integers(onehot.shape[axis + 2])) for axis in periodic]
                onehot = onehot.roll(shifts, [axis + 2 for axis in periodic])
            target = z[chunk, :n]
            if rng.random() < 0.5:
                onehot, target = onehot.transpose(2, 3), z[chunk][:, swapped]
            out = critic._forward(onehot, context)
            mean, log_var = out[:, :, :n], out[:, :, n : 2 * n].clamp(*LOG_VARIANCE)
            target = target.unsqueeze(1).expand(-1, members, -1)
            known = torch.isfinite(target)
            error = target.nan_to_num() - mean
            nll = 0.5 * (
                error**2 * ((BETA - 1) * log_var.detach()).exp()
                + log_var
                + error.detach() ** 2 / log_var.exp()
            )
            weight = torch.from_numpy(rng.poisson(1.0, (len(chunk), members, 1))).to(out)
            nll = (nll * known * weight).sum() / (known * weight).sum().clamp(min=1)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(
                out[:, :, -1], ok[chunk].unsqueeze(1).expand(-1, members), weight=weight[..., 0]
            )
            loss = nll + bce
            if not torch.isfinite(loss):
                raise CriticError(f"training diverged in epoch {epoch + 1} (loss {loss.item()})")
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(critic.model.parameters(), GRADIENT_CLIP)
            optimiser.step()
            schedule.step()
            total += loss.item() * len(chunk)
        if log is not None and ((epoch + 1) % 10 == 0 or epoch + 1 == epochs):
            log(
                f"epoch {epoch + 1}/{epochs}: loss {total / len(rows):.3f} "
                f"({time.perf_counter() - started:.0f} s)"
            )


def _fit_cell(
    critic: NeuralCritic, thickness: np.ndarray, z: Any, rows: np.ndarray, seed: int
) -> None:
    """Each member's cell model on the training results, the true inputs (standardised as the
    CNNs predict them) to the composed properties: full-batch Adam on the squared error of
    every known value, each member on its own bootstrap weights."""
    import torch

    n, z = len(critic.learnt), z[torch.from_numpy(rows).to(z.device)]
    inputs = critic._cell_inputs(z[:, None, :n], critic._thickness(thickness[rows]))[:, 0]
    targets = z[:, n:]
    use = torch.isfinite(inputs).all(dim=1) & torch.isfinite(targets).any(dim=1)
    inputs, targets = inputs[use], targets[use]
    members = critic.trained.members
    rng = np.random.default_rng(seed)
    weight = torch.from_numpy(rng.poisson(1.0, (members, len(inputs), 1))).to(inputs)
    weight = weight * torch.isfinite(targets)
    cell = critic.model.cell
    optimiser = torch.optim.AdamW(cell.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, LEARNING_RATE, CELL_STEPS)
    for _ in range(CELL_STEPS):
        error = critic.model.compose(inputs.expand(members, -1, -1)) - targets.nan_to_num()
        loss = (error**2 * weight).sum() / weight.sum().clamp(min=1)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()


def _axes_swapped(properties: Sequence[str]) -> list[int | None]:
    """For each property, the index of the one it becomes when a box's x and y axes swap: its
    own where it names neither axis, ``None`` where its counterpart is not learnt."""
    index = {key: i for i, key in enumerate(properties)}
    swap = {"x": "y", "y": "x"}
    return [
        index.get(re.sub(r"_([xy])(?=_|$)", lambda axis: "_" + swap[axis[1]], key))
        for key in properties
    ]


def _calibrated(
    critic: NeuralCritic, data: TrainingSet, thickness: np.ndarray, z: np.ndarray, rows: np.ndarray
) -> NeuralCritic:
    """``critic`` with each property's interval scale set so that its ±Z90·σ intervals hold
    the ``rows`` (never trained on) at the conformal quantile: a 90 % coverage guarantee for
    new structures from the same distribution."""
    mean, sd, _ = critic._mixture([data.labels[i] for i in rows], thickness[rows])
    scores = np.abs(z[rows] - mean) / (Z90 * sd)
    factors = []
    for column in scores.T:
        known = np.sort(column[np.isfinite(column)])
        rank = min(math.ceil((len(known) + 1) * COVERAGE), len(known))
        factors.append(float(known[rank - 1]) if len(known) else 1.0)
    critic.trained = replace(critic.trained, interval_scale=factors)
    return critic


def _learnable(truth: Sequence[float], key: str) -> np.ndarray:
    """Which true values the critic learns from: finite, and positive where it learns the
    logarithm (D_eff = 0 of a pore that does not percolate is the chain's failure to foresee,
    not a value to predict)."""
    y = np.asarray(truth, dtype=float)
    return np.isfinite(y) & ((y > 0) if key.startswith(LOG_SCALED) else True)


def r2(truth: Sequence[float], predicted: Sequence[float], key: str) -> float:
    """Coefficient of determination over the learnable true values, on the scale the property
    is learnt on (logarithms of τ, D_eff, σ_eff and k, whose values span decades)."""
    known = _learnable(truth, key)
    y, f = np.asarray(truth, dtype=float)[known], np.asarray(predicted, dtype=float)[known]
    if key.startswith(LOG_SCALED):
        y, f = np.log(y), np.log(f)
    spread = np.sum((y - y.mean()) ** 2)
    return float(1 - np.sum((y - f) ** 2) / spread) if len(y) > 1 and spread > 0 else math.nan


def coverage(truth: Sequence[float], predictions: Sequence[Prediction], key: str) -> float:
    """The fraction of learnable true values inside their 90 % intervals."""
    known = _learnable(truth, key)
    y = np.asarray(truth, dtype=float)[known]
    low = np.array([p.low[key] for p in predictions])[known]
    high = np.array([p.high[key] for p in predictions])[known]
    return float(((low <= y) & (y <= high)).mean()) if known.any() else math.nan


# --- the chain that uses it ------------------------------------------------------------------


@dataclass(frozen=True)
class SurrogateChain:
    """A physics chain that asks the neural critic first: where the critic is sure (the
    chain would score the structure, its 90 % interval of every watched property within
    ``trust`` of the mean, the structure like those it learnt from) its answer stands;
    elsewhere the physics chain scores the structure.

    The intervals are calibrated on structures like the training ones; a campaign's planner
    soon proposes others. So an ``audit`` share of the sure answers (chosen by a hash of the
    structure) is scored by physics as well, and the physics answer is returned with what the
    critic had said: whether the truth falls inside its intervals shows whether its trust
    still holds where the campaign now looks.

    An answer's diagnostics say who gave it: ``surrogate`` 1 or 0; for the critic's answers
    ``p_ok`` and each property's 90 % interval (``<key>_low``, ``<key>_high``); for an audited
    one ``audit`` 1 and the watched properties' intervals.
    """

    physics: Chain
    critic: NeuralCritic
    trust: float = 0.05
    watch: tuple[str, ...] = ()
    """Properties the critic must be sure of; empty: the chain's objectives (else all)."""
    audit: float = 0.0
    """Share of the sure answers also scored by physics."""

    def __post_init__(self) -> None:
        t = self.critic.trained
        if t.chain != self.physics.name:
            raise CriticError(
                f"the neural critic learnt chain '{t.chain}', not '{self.physics.name}'"
            )
        unknown = [key for key in self.watched if key not in t.properties]
        if unknown:
            raise CriticError(f"the neural critic does not predict {unknown}")
        if not self.trust > 0:
            raise CriticError(f"trust must be a positive fraction, got {self.trust}")
        if not 0 <= self.audit <= 1:
            raise CriticError(f"audit must be a fraction in [0, 1], got {self.audit}")

    @classmethod
    def open(
        cls,
        physics: Chain,
        model: str | Path,
        trust: float = 0.05,
        watch: Sequence[str] = (),
        audit: float = 0.0,
    ) -> SurrogateChain:
        """``physics`` answered for by the neural critic saved at ``model``."""
        return cls(physics, NeuralCritic.load(model), trust, tuple(watch), audit)

    @property
    def name(self) -> str:
        return self.physics.name

    @property
    def objectives(self) -> Any:
        return self.physics.objectives

    @property
    def watched(self) -> tuple[str, ...]:
        return self.watch or tuple(self.physics.objectives) or tuple(self.critic.properties)

    def evaluate(self, micro: Microstructure, thickness_um: float | None = None) -> ChainResult:
        start = time.perf_counter()
        prediction = self._sure(micro, thickness_um)
        intervals = {}
        if prediction is not None:
            intervals = {f"{key}_low": prediction.low[key] for key in prediction.mean}
            intervals |= {f"{key}_high": prediction.high[key] for key in prediction.mean}
        if prediction is None or _share(micro) < self.audit:
            result = self.physics.evaluate(micro, thickness_um)
            diagnostics = {**result.diagnostics, "surrogate": 0.0}
            if prediction is not None:
                watched = {k for key in self.watched for k in (f"{key}_low", f"{key}_high")}
                diagnostics |= {"audit": 1.0} | {k: intervals[k] for k in sorted(watched)}
            return result.model_copy(update={"diagnostics": diagnostics})
        properties = {"thickness_um": _thickness(micro, thickness_um), **prediction.mean}
        return ChainResult(
            chain=self.physics.name,
            properties=properties,
            objectives={k: properties[k] for k in self.physics.objectives if k in properties},
            diagnostics={"surrogate": 1.0, "p_ok": prediction.p_ok, **intervals},
            timings_s={"surrogate": time.perf_counter() - start},
            voxel_size_um=micro.voxel_size_um,
            shape=micro.shape,
        )

    def _sure(self, micro: Microstructure, thickness_um: float | None) -> Prediction | None:
        """The critic's prediction where it is sure, else None."""
        try:
            [prediction] = self.critic.predict([micro], [thickness_um])
        except CriticError:
            return None  # unlike its training structures: physics decides
        sure = (
            prediction.inside
            and prediction.p_ok >= SURE_OK
            and all(prediction.relative_half_width(key) <= self.trust for key in self.watched)
        )
        return prediction if sure else None


__all__ = [
    "NeuralCritic",
    "Prediction",
    "SurrogateChain",
    "TrainingSet",
    "Trained",
    "coverage",
    "default_properties",
    "r2",
    "train",
]
