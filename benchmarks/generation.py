"""Manufacturing twins beside PoreSpy's closest generators: time, memory, phase fractions.

Every registered twin generates its default recipe at each size; PoreSpy's closest
generator runs in the same process at the same size with comparable parameters (porosity
matched to the twin's achieved porosity, sphere or fibre radius to the twin's default in
voxels). The ``reconstruct`` twin has no PoreSpy peer: it is timed on a 2D PoreSpy blob
image against its own target.

    .venv/bin/python -m benchmarks.generation [--sizes 64 128 256] [--repeats N]
        [--peer-max-size 256] [--skip-reconstruction] [--json PATH]

from the repository root. The table goes to stdout, progress to stderr, and the results as JSON
to PATH (default runs/benchmarks/generation.json) for a later run to be compared with.
"""

from __future__ import annotations

import argparse
import math
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import porespy.generators as psg
import scipy.stats

from benchmarks._table import (
    add_json_option,
    best_time,
    log,
    machine,
    number,
    print_comments,
    print_table,
    repeats_for,
    verdict,
    write_json,
)
from poreloop.twins.manufacturing import TWINS, get_twin
from poreloop.twins.manufacturing.base import Shape
from poreloop.twins.microstructure import Microstructure
from poreloop.twins.space import Recipe

SINGLE_FROM = 256
"""Edge from which each generator is timed once (default --repeats)."""
TARGET_SIZE = 128
TARGET_SECONDS = 2.0
"""At 128³ every twin must be no slower than its closest PoreSpy peer and under this."""

RECONSTRUCTION = "reconstruct"
RECONSTRUCTION_SIZE = 128
RECONSTRUCTION_TARGET_ERROR = 0.01
RECONSTRUCTION_TARGET_SECONDS = 60.0

SEED = 0
MIB = 2**20


@dataclass(frozen=True)
class Peer:
    """A PoreSpy generator standing in for a twin.

    generator: a ``porespy.generators`` function taking ``shape``, ``porosity`` and ``seed``;
    options: its other arguments, derived from the twin's recipe.
    """

    generator: Callable[..., np.ndarray]
    options: Callable[[Recipe], dict[str, Any]]

    @property
    def name(self) -> str:
        return f"porespy.{self.generator.__name__}"

    def describe(self, recipe: Recipe) -> str:
        args = ", ".join(f"{k}={_format(v)}" for k, v in self.options(recipe).items())
        return f"{self.name}(shape, porosity=<ours>, {args})"

    def call(self, recipe: Recipe, porosity: float, shape: Shape) -> Callable[[], np.ndarray]:
        """The generator bound to one shape and porosity; returns the bool pore image."""
        options = self.options(recipe)
        return lambda: self.generator(shape=list(shape), porosity=porosity, seed=SEED, **options)


def _format(value: Any) -> str:
    if hasattr(value, "dist"):  # a frozen scipy.stats distribution
        kwds = ", ".join(f"{k}={v:.3g}" for k, v in value.kwds.items())
        return f"{value.dist.name}({kwds}; mean {value.mean():.3g})"
    if isinstance(value, float):
        return f"{value:.3g}"
    return repr(value)


def _voxels(recipe: Recipe, key: str) -> float:
    """A length parameter of the recipe (µm) in voxels."""
    return float(recipe[key]) / float(recipe["voxel_size_um"])


def _lognormal(mean: float, spread: float) -> Any:
    """Frozen lognormal of given mean and log-sd: the twins' particle-radius law."""
    return scipy.stats.lognorm(s=spread, scale=mean * math.exp(-(spread**2) / 2))


def polydisperse_spheres(grain: Callable[[Recipe], tuple[float, float]]) -> Peer:
    """Overlapping spheres of the twin's radius law; grain: recipe → (mean radius voxels, log-sd).
    ``r_min=1`` so PoreSpy does not clip the small end of the distribution."""
    return Peer(
        psg.polydisperse_spheres,
        lambda recipe: {"dist": _lognormal(*grain(recipe)), "nbins": 5, "r_min": 1},
    )


def overlapping_spheres(grain: Callable[[Recipe], tuple[float, float]]) -> Peer:
    """Monodisperse overlapping spheres of the twin's mean radius (PoreSpy wants an int)."""
    return Peer(psg.overlapping_spheres, lambda recipe: {"r": round(grain(recipe)[0])})


def cylinders(radius: Callable[[Recipe], float], tilt: Callable[[Recipe], float]) -> Peer:
    """Infinite straight fibres. PoreSpy lays them in the xy plane (z is through-plane, as in
    our twins): ``theta_max=90`` spreads them isotropically in-plane, ``phi_max`` tilts them
    out of plane by up to ± that many degrees. PoreSpy's numba kernel wants an int radius."""
    return Peer(
        psg.cylinders,
        lambda recipe: {
            "r": max(1, round(radius(recipe))),
            "phi_max": round(tilt(recipe)),
            "theta_max": 90,
        },
    )


def _electrode_grain(recipe: Recipe) -> tuple[float, float]:
    return _voxels(recipe, "particle_radius_um"), float(recipe["particle_radius_spread"])


def _sofc_grain(recipe: Recipe) -> tuple[float, float]:
    """One law for the two powders: radius and spread averaged by their solid volume shares."""
    ni = float(recipe["ni_volume_fraction_of_solid"])
    mean = ni * _voxels(recipe, "ni_radius_um") + (1 - ni) * _voxels(recipe, "ysz_radius_um")
    spread = ni * float(recipe["ni_radius_spread"]) + (1 - ni) * float(recipe["ysz_radius_spread"])
    return mean, spread


PEERS: dict[str, tuple[Peer, ...]] = {
    "li_ion_electrode": (
        polydisperse_spheres(_electrode_grain),
        overlapping_spheres(_electrode_grain),
    ),
    "gdl": (
        cylinders(
            lambda recipe: _voxels(recipe, "fibre_diameter_um") / 2,
            lambda recipe: float(recipe["tilt_deg"]),
        ),
    ),
    "sofc_anode": (polydisperse_spheres(_sofc_grain),),
}
"""Twin name → its PoreSpy peers, the closest first (the one the target is judged against)."""


@dataclass
class Row:
    """One line of the table: one generator at one size."""

    twin: str
    size: str
    generator: str
    seconds: float | None = None
    repeats: int = 0
    peak_mib: float | None = None
    fractions: dict[str, float] = field(default_factory=dict)
    ratio: float | None = None
    target: str = ""
    note: str = ""


def peak_memory_mib(run: Callable[[], Any]) -> float:
    """Peak traced allocation (MiB) of one untimed call; numpy reports its buffers to
    tracemalloc, so this is the array memory the call needed beyond what already existed."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()


def bench_twin(
    name: str, sizes: list[int], repeats: int | None, peer_max_size: int, log: Callable[[str], None]
) -> list[Row]:
    """Our twin and its PoreSpy peers at every size, default recipe, warm-started."""
    twin = get_twin(name)
    recipe = twin.space.complete(None)
    peers = PEERS.get(name, ())
    smallest = (min(sizes),) * 3
    log(f"{name}: warm-up at {smallest}")
    porosity = twin.generate(shape=smallest, seed=SEED).phase_fractions()["pore"]
    for peer in peers:
        if min(sizes) <= peer_max_size:
            try:
                peer.call(recipe, porosity, smallest)()
            except Exception as exc:  # PoreSpy fails on some small boxes; timed runs report it
                log(f"{name}: {peer.name} warm-up failed: {exc!r}")
    rows = []
    for size in sizes:
        shape, n = (size,) * 3, repeats_for(size, repeats, SINGLE_FROM)
        ours = Row(name, f"{size}^3", "ours", repeats=n)
        log(f"{name}: ours at {size}^3 x{n}")
        ours.seconds, made = best_time(lambda s=shape: twin.generate(shape=s, seed=SEED), n)
        ours.fractions = made.phase_fractions()
        ours.peak_mib = peak_memory_mib(lambda s=shape: twin.generate(shape=s, seed=SEED))
        rows.append(ours)
        beside = [_bench_peer(peer, recipe, ours, shape, n, peer_max_size, log) for peer in peers]
        if size == TARGET_SIZE:
            ours.target = target_verdict(ours, beside[0] if beside else None)
        rows += beside or [Row(name, ours.size, "-", note="no PoreSpy peer")]
    return rows


def _bench_peer(
    peer: Peer,
    recipe: Recipe,
    ours: Row,
    shape: Shape,
    repeats: int,
    peer_max_size: int,
    log: Callable[[str], None],
) -> Row:
    """One PoreSpy peer at one size, beside our row."""
    row = Row(ours.twin, ours.size, peer.name)
    if shape[0] > peer_max_size:
        row.note = f"skipped (size > --peer-max-size {peer_max_size})"
        return row
    log(f"{ours.twin}: {peer.name} at {ours.size} x{repeats}")
    row.repeats = repeats
    try:
        row.seconds, pore = best_time(peer.call(recipe, ours.fractions["pore"], shape), repeats)
    except Exception as exc:  # a peer that fails is reported in its row, not hidden
        row.note = f"failed: {type(exc).__name__}: {exc}"
        return row
    row.fractions = {"pore": float(pore.mean())}
    row.ratio = row.seconds / ours.seconds
    return row


def target_verdict(ours: Row, closest: Row | None) -> str:
    """Our time under the limit and no slower than the closest peer (if it ran)."""
    if closest is not None and closest.ratio is None:
        return "unknown"
    fast_enough = ours.seconds is not None and ours.seconds < TARGET_SECONDS
    return verdict(fast_enough and (closest is None or closest.ratio >= 1.0))


def blob_reference(size: int) -> Microstructure:
    """A ``size x size`` two-phase PoreSpy blob image, phase 0 = pore, as a reference."""
    pore = psg.blobs(shape=[size, size], porosity=0.5, blobiness=2, seed=SEED)
    labels = np.where(pore, 0, 1).astype(np.uint8)
    return Microstructure(labels, 1.0, {0: "pore", 1: "solid"})


def bench_reconstruction(log: Callable[[str], None]) -> Row:
    """2D → 2D Yeong–Torquato reconstruction of a blob image; no PoreSpy peer exists."""
    size = RECONSTRUCTION_SIZE
    twin = get_twin(RECONSTRUCTION, reference=blob_reference(size))
    log(f"{RECONSTRUCTION}: {size}^2 from a {size}^2 blob image")
    start = time.perf_counter()
    made = twin.generate(shape=(size, size), seed=SEED)
    seconds = time.perf_counter() - start
    report = twin.last_report
    peak = peak_memory_mib(lambda: twin.generate(shape=(size, size), seed=SEED))
    error = report.correlation_error
    met = error < RECONSTRUCTION_TARGET_ERROR and seconds < RECONSTRUCTION_TARGET_SECONDS
    return Row(
        RECONSTRUCTION,
        f"{size}^2",
        "ours",
        seconds=seconds,
        repeats=1,
        peak_mib=peak,
        fractions=made.phase_fractions(),
        target=verdict(met),
        note=f"S2 error {100 * error:.2f}% after {report.sweeps:.1f} sweeps, r_max "
        f"{report.r_max} (target <{100 * RECONSTRUCTION_TARGET_ERROR:g}% in "
        f"<{RECONSTRUCTION_TARGET_SECONDS:g} s); no peer: PoreSpy has no Yeong-Torquato",
    )


COLUMNS = ("twin", "size", "generator", "time_s", "n", "peak_MiB", "fractions", "ratio", "target")
RIGHT = {"size", "time_s", "n", "peak_MiB", "ratio"}
"""Columns of the text table (a free-width note follows); these align right."""


def _cells(row: Row) -> tuple[str, ...]:
    fractions = " ".join(f"{k} {v:.3f}" for k, v in row.fractions.items())
    return (
        row.twin,
        row.size,
        row.generator,
        number(row.seconds, 3),
        str(row.repeats or "-"),
        number(row.peak_mib, 1),
        fractions or "-",
        number(row.ratio, 2),
        row.target,
        row.note,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument(
        "--repeats", type=int, help="best of N timed calls (default 3, and 1 at 256^3 and up)"
    )
    parser.add_argument(
        "--peer-max-size",
        type=int,
        default=256,
        help="skip PoreSpy runs above this edge (they take minutes); printed as skipped",
    )
    parser.add_argument("--skip-reconstruction", action="store_true")
    add_json_option(parser, "generation")
    args = parser.parse_args(argv)
    sizes = sorted(set(args.sizes))

    rows: list[Row] = []
    notes = [
        "time: best wall time of n calls (perf_counter), default recipe, seed 0, after one "
        f"warm-up call of every generator at {min(sizes)}^3 (PoreSpy's numba JIT excluded)",
        "peak_MiB: tracemalloc peak of one separate, untimed call of ours (numpy reports its "
        "buffers to tracemalloc); PoreSpy's numba kernels allocate outside it, so not measured",
        "ratio: PoreSpy time / our time (> 1: we are faster); the porosity of every peer is "
        "matched to our achieved porosity at that size",
        f"target: at {TARGET_SIZE}^3 each twin no slower than its first (closest) peer and "
        f"under {TARGET_SECONDS:g} s",
    ]
    for name in TWINS:
        if name == RECONSTRUCTION:
            if not args.skip_reconstruction:
                rows.append(bench_reconstruction(log))
            continue
        recipe = TWINS[name].space.complete(None)
        notes += [f"{name} peer: {peer.describe(recipe)}" for peer in PEERS.get(name, ())]
        rows += bench_twin(name, sizes, args.repeats, args.peer_max_size, log)

    header = machine("porespy")
    print_comments(header, notes)
    print_table((*COLUMNS, "note"), [_cells(row) for row in rows], RIGHT, group=2)
    write_json(args, header, notes, {"generation": rows})


if __name__ == "__main__":
    main()
