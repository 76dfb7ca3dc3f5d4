"""Pore tortuosity beside TauFactor; Stokes permeability; time of the critic chains and of one
cell-model evaluation.

The pore-phase tortuosity factor of PoreSpy structures (blobs of three porosities and two
blobinesses, polydisperse spheres) and of our twins' pore spaces, along z (through the
thickness), from our solver (``twins.critics.tortuosity``) and from TauFactor's ``Solver`` on
the CPU, each at its own default tolerance and again at a shared one, in the same process; the
peak memory of each; the time of our Stokes permeability solve; then the time of each stage of
the electrode, GDL and SOFC-anode chains, and of the PyBaMM cell model (build, first and later
evaluations) on the electrode properties the chain found.

    .venv/bin/python -m benchmarks.transport [--sizes 64 128 256] [--structures NAME ...]
        [--backends torch numpy] [--rtol 1e-3] [--repeats N] [--peer-max-size 128] [--chain-sizes 64 128] [--chain-max-size CHAIN=EDGE ...]
        [--memory-structures NAME ...] [--memory-sizes 128 256] [--flow-structures NAME ...]
        [--flow-sizes 64 128] [--evaluations 5] [--json PATH]

from the repository root. The tables go to stdout, progress to stderr, and the results as JSON
to PATH (default runs/benchmarks/transport.json) for a later run to be compared with.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import porespy.generators as psg
import taufactor
import torch
from scipy import stats

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
from poreloop.twins.critics import tortuosity
from poreloop.twins.critics.arrays import BACKENDS
from poreloop.twins.critics.cell import CellModel, c_rate_tag
from poreloop.twins.critics.chain import AXES, ChainResult, cell_properties, get_chain
from poreloop.twins.critics.flow import permeability
from poreloop.twins.manufacturing import get_twin

SEED = 0
AXIS = AXES.index("z")
"""Every structure is solved through its thickness."""
WARM_UP_SIZE = 32
"""Both solvers and every chain run once, untimed, on a box this small (the electrode twin's
smallest in-plane size); the electrode chain builds its cell model there."""
SINGLE_FROM = 128
"""Edge from which each solver is timed once (default --repeats)."""
TARGET_SIZE = 128
TARGET_DIFFERENCE = 0.01
TARGET_SPEEDUP = 3.0
"""At 128³ our τ within 1 % of TauFactor's and our solver at least 3x faster."""
TARGET_FLOW_S = 20.0
"""At 128³ one Stokes solve in under 20 s."""

CHAINS = {"electrode": "li_ion_electrode", "gdl": "gdl", "sofc_anode": "sofc_anode"}
"""Chain → the twin whose default recipe it scores."""
C_RATES = (0.5, 1.0, 3.0)


def blobs(porosity: float, blobiness: int) -> Callable[[int], np.ndarray]:
    """PoreSpy blobs, ``(size,)*3`` bool, True = pore."""
    return lambda size: psg.blobs(
        shape=[size] * 3, porosity=porosity, blobiness=blobiness, seed=SEED
    )


def polydisperse_spheres(size: int) -> np.ndarray:
    """PoreSpy's overlapping polydisperse spheres (radii ~ N(8, 2) voxels, at least 4) at
    porosity 0.5, ``(size,)*3`` bool, True = pore."""
    return psg.polydisperse_spheres(
        [size] * 3, porosity=0.5, dist=stats.norm(loc=8, scale=2), r_min=4, seed=SEED
    )


def twin_pore(twin: str) -> Callable[[int], np.ndarray]:
    """Pore space of a twin's default recipe, ``(size,)*3`` bool."""

    def make(size: int) -> np.ndarray:
        micro = get_twin(twin).generate(shape=(size,) * 3, seed=SEED)
        return micro.labels == micro.phase_id("pore")

    return make


STRUCTURES: dict[str, Callable[[int], np.ndarray]] = {
    **{
        f"blobs e{porosity:g} b{blobiness}": blobs(porosity, blobiness)
        for porosity in (0.3, 0.5, 0.7)
        for blobiness in (1, 2)
    },
    "polydisperse_spheres": polydisperse_spheres,
    "li_ion_electrode": twin_pore("li_ion_electrode"),
    "gdl": twin_pore("gdl"),
    "sofc_anode": twin_pore("sofc_anode"),
}
"""The structure families of the τ comparison: PoreSpy's, and the pore space of our twins."""
AVAILABLE_BACKENDS = ["cuda", "torch", "numpy"] if torch.cuda.is_available() else ["torch", "numpy"]
TAUFACTOR_DEFAULT = 1e-2
"""``taufactor.Solver.solve``'s own ``conv_crit``."""


def taufactor_solve(pore: np.ndarray, axis: int, rtol: float, device: str) -> taufactor.Solver:
    """TauFactor's two-phase solver, solved along ``axis`` (it solves along its first axis);
    anything it prints goes to stderr."""
    solver = taufactor.Solver(np.moveaxis(pore, axis, 0).astype(np.uint8), device=device)
    with contextlib.redirect_stdout(sys.stderr):
        solver.solve(verbose=False, conv_crit=rtol)
    return solver


def peer_device(backend: str) -> str:
    """TauFactor runs where our backend does: on the GPU beside ``cuda``, else on the CPU."""
    return "cuda" if backend == "cuda" else "cpu"


@dataclass
class TransportRow:
    """One structure at one size, by both solvers at one pair of tolerances."""

    structure: str
    size: str
    backend: str
    tolerances: str
    porosity: float
    tau_ours: float | None = None
    tau_taufactor: float | None = None
    difference_pct: float | None = None
    iterations_ours: int | None = None
    iterations_taufactor: int | None = None
    seconds_ours: float | None = None
    seconds_taufactor: float | None = None
    speedup: float | None = None
    repeats: int = 0
    target: str = ""
    note: str = ""


def bench_transport(
    name: str,
    sizes: list[int],
    backends: list[str],
    rtol: float,
    repeats: int | None,
    peer_max_size: int,
) -> list[TransportRow]:
    """Our τ on each backend and TauFactor's beside it (on the same device) for one structure
    at every size: TauFactor at its own default ``conv_crit`` and again at our ``rtol``, ours
    once at ``rtol``; each solver warmed up on each device."""
    make = STRUCTURES[name]
    for backend in backends:
        log(f"{name}: warm-up at {WARM_UP_SIZE}^3 on {backend}")
        tortuosity(make(WARM_UP_SIZE), AXIS, rtol=rtol, backend=backend)
        taufactor_solve(make(WARM_UP_SIZE), AXIS, rtol, peer_device(backend))
    settings = {f"own: ours {rtol:g}, TF {TAUFACTOR_DEFAULT:g}": TAUFACTOR_DEFAULT}
    settings[f"shared {rtol:g}"] = rtol
    rows = []
    for size in sizes:
        pore, n = make(size), repeats_for(size, repeats, SINGLE_FROM)
        peers: dict[tuple[str, float], tuple[float, taufactor.Solver]] = {}
        for backend in backends:
            log(f"{name}: ours on {backend} at {size}^3 x{n}")
            seconds, ours = best_time(
                lambda p=pore, b=backend: tortuosity(p, AXIS, rtol=rtol, backend=b), n
            )
            for tolerances, conv_crit in settings.items():
                row = TransportRow(
                    name, f"{size}^3", backend, tolerances, float(pore.mean()), repeats=n
                )
                row.seconds_ours, row.tau_ours = seconds, ours.tau
                row.iterations_ours = ours.iterations
                notes = [] if ours.converged else [f"ours not converged ({ours.residual:.1e})"]
                device = peer_device(backend)
                if size > peer_max_size:
                    notes.append(f"TauFactor skipped (size > --peer-max-size {peer_max_size})")
                elif not ours.percolating:
                    notes.append("no percolating pore path: nothing to solve")
                else:
                    if (device, conv_crit) not in peers:
                        log(f"{name}: TauFactor on {device} (conv_crit {conv_crit:g}) x{n}")
                        peers[device, conv_crit] = best_time(
                            lambda p=pore, c=conv_crit, d=device: taufactor_solve(p, AXIS, c, d),
                            n,
                        )
                    row.seconds_taufactor, peer = peers[device, conv_crit]
                    row.tau_taufactor, row.iterations_taufactor = float(peer.tau[0]), peer.iter
                    row.difference_pct = 100 * (row.tau_ours / row.tau_taufactor - 1)
                    row.speedup = row.seconds_taufactor / row.seconds_ours
                    if not peer.converged:
                        notes.append("TauFactor not converged")
                if size == TARGET_SIZE:
                    row.target = transport_verdict(row)
                row.note = "; ".join(notes)
                rows.append(row)
    return rows


@dataclass
class MemoryRow:
    """Peak memory of one solve of one structure at one size, each solver in its own process."""

    structure: str
    size: str
    backend: str
    ours_mib: float | None = None
    taufactor_mib: float | None = None
    note: str = ""


MEMORY_RUNS = 3
"""Child processes per peak-memory figure: where glibc and torch's threads place their
allocations moves one solve's peak by ±15 % from run to run, so the median is reported."""
_MEMORY_CHILD = """
import sys
from benchmarks.transport import STRUCTURES, AXIS, peer_device, taufactor_solve, tortuosity
structure, size, solver, backend, rtol = sys.argv[1], int(sys.argv[2]), *sys.argv[3:5], float(sys.argv[5])
pore = STRUCTURES[structure](size)
def solve(volume):
    if solver == "ours":
        return tortuosity(volume, AXIS, rtol=rtol, backend=backend)
    return taufactor_solve(volume, AXIS, rtol, peer_device(backend))
solve(pore[:64, :64, :64].copy())  # imports, first-call set-up and thread pools
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # reset the high-water mark: building the structure does not count
before = status("VmRSS:")
solve(pore)
print((status("VmHWM:") - before) / 1024)
"""


def peak_memory_mib(structure: str, size: int, solver: str, backend: str, rtol: float) -> float:
    """The resident memory one solve adds at its peak, MiB, the median of ``MEMORY_RUNS``: each
    solve runs alone in a child process (Linux ``VmHWM`` after it, reset before, minus
    ``VmRSS`` before), so torch's allocations count as fully as numpy's. Host memory only: on
    ``cuda`` it misses the GPU's."""
    peaks = []
    for _ in range(MEMORY_RUNS):
        done = subprocess.run(
            [sys.executable, "-c", _MEMORY_CHILD, structure, str(size), solver, backend, str(rtol)],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the {solver} memory run failed: {done.stderr.strip()[-500:]}")
        peaks.append(float(done.stdout.split()[-1]))
    return statistics.median(peaks)


def bench_memory(
    structures: list[str], sizes: list[int], backends: list[str], rtol: float, peer_max_size: int
) -> list[MemoryRow]:
    """Peak memory of ours at ``rtol`` on each CPU backend and of TauFactor at its own default,
    per structure and size."""
    rows = []
    for name in structures:
        for size in sizes:
            peer = None
            for backend in (b for b in backends if b != "cuda"):
                row = MemoryRow(name, f"{size}^3", backend)
                log(f"{name}: peak memory of ours on {backend} at {size}^3")
                row.ours_mib = peak_memory_mib(name, size, "ours", backend, rtol)
                if size > peer_max_size:
                    row.note = f"TauFactor skipped (size > --peer-max-size {peer_max_size})"
                else:
                    if peer is None:
                        log(f"{name}: peak memory of TauFactor at {size}^3")
                        peer = peak_memory_mib(name, size, "taufactor", "cpu", TAUFACTOR_DEFAULT)
                    row.taufactor_mib = peer
                rows.append(row)
    return rows


def transport_verdict(row: TransportRow) -> str:
    if row.difference_pct is None or row.speedup is None:
        return "unknown"
    close = abs(row.difference_pct) < 100 * TARGET_DIFFERENCE
    return verdict(close and row.speedup >= TARGET_SPEEDUP)


@dataclass
class FlowRow:
    """One Stokes permeability solve of one structure at one size."""

    structure: str
    size: str
    porosity: float
    k_vox: float | None = None
    iterations: int | None = None
    seconds: float | None = None
    target: str = ""
    note: str = ""


def bench_flow(structures: list[str], sizes: list[int], rtol: float) -> list[FlowRow]:
    """Our Stokes permeability along z at ``rtol``, timed once per structure and size after a
    warm-up (no peer: TauFactor and PoreSpy solve no Stokes flow)."""
    rows = []
    for name in structures:
        make = STRUCTURES[name]
        log(f"{name}: Stokes warm-up at {WARM_UP_SIZE}^3")
        permeability(make(WARM_UP_SIZE), 1.0, AXIS, rtol=rtol)
        for size in sizes:
            pore = make(size)
            row = FlowRow(name, f"{size}^3", float(pore.mean()))
            log(f"{name}: Stokes at {size}^3")
            result = permeability(pore, 1.0, AXIS, rtol=rtol)
            row.k_vox, row.iterations, row.seconds = result.k_um2, result.iterations, result.seconds
            if not result.converged:
                row.note = f"not converged (residual {result.residual:.1e})"
            if size == TARGET_SIZE:
                row.target = verdict(result.converged and result.seconds < TARGET_FLOW_S)
            rows.append(row)
    return rows


@dataclass
class ChainRow:
    """One chain on its twin's default structure at one size."""

    chain: str
    size: str
    seconds: float | None = None
    stages_s: dict[str, float] | None = None
    ok: bool | None = None
    note: str = ""


def bench_chain(
    name: str, sizes: list[int], max_size: int | None
) -> tuple[list[ChainRow], dict[int, ChainResult]]:
    """One chain instance (it keeps its cell model) timed at every size after a warm-up;
    also the results, by size, for the cell-model benchmark."""
    twin, chain = get_twin(CHAINS[name]), get_chain(name)
    log(f"chain {name}: warm-up at {WARM_UP_SIZE}^3")
    chain.evaluate(twin.generate(shape=(WARM_UP_SIZE,) * 3, seed=SEED))
    rows, results = [], {}
    for size in sizes:
        row = ChainRow(name, f"{size}^3")
        rows.append(row)
        if max_size is not None and size > max_size:
            row.note = f"skipped (size > --chain-max-size {name}={max_size})"
            continue
        micro = twin.generate(shape=(size,) * 3, seed=SEED)
        log(f"chain {name}: {size}^3")
        start = time.perf_counter()
        result = chain.evaluate(micro)
        row.seconds = time.perf_counter() - start
        row.stages_s, row.ok, row.note = result.timings_s, result.ok, result.problem
        results[size] = result
    return rows, results


@dataclass
class CellRow:
    """One cell model (one set of C-rates) evaluated on one size's electrode properties."""

    size: str
    c_rates: str
    build_s: float | None = None
    first_s: float | None = None
    median_s: float | None = None
    evaluations: int = 0
    note: str = ""


def bench_cell(results: dict[int, ChainResult], evaluations: int) -> list[CellRow]:
    """Each model built once, then evaluated on every size's electrode: the first evaluation
    after the build apart, and the median of ``evaluations`` more. Besides the model of all
    C-rates, one model per C-rate gives the time of each discharge alone."""
    models: list[tuple[tuple[float, ...], CellModel, float]] = []
    for c_rates in (C_RATES, *((c,) for c in C_RATES)):
        log(f"cell model: build for C-rates {c_rates}")
        start = time.perf_counter()
        model = CellModel(c_rates)
        models.append((c_rates, model, time.perf_counter() - start))
    rows = []
    for i, (size, result) in enumerate(sorted(results.items())):
        properties = cell_properties(result.properties)
        for c_rates, model, build_s in models:
            row = CellRow(f"{size}^3", ", ".join(f"{c:g}C" for c in c_rates))
            log(f"cell model: {row.c_rates} on the {size}^3 electrode x{evaluations + (i == 0)}")
            if i == 0:
                start = time.perf_counter()
                model.evaluate(properties)
                row.build_s, row.first_s = build_s, time.perf_counter() - start
            times = []
            for _ in range(evaluations):
                start = time.perf_counter()
                cell = model.evaluate(properties)
                times.append(time.perf_counter() - start)
            row.median_s, row.evaluations = statistics.median(times), evaluations
            row.note = "" if cell.ok else f"failed: {cell.reason}"
            if cell.ok and len(c_rates) == len(C_RATES):
                densities = [cell.values[f"energy_density_wh_l_{c_rate_tag(c)}"] for c in c_rates]
                row.note = "energy density " + ", ".join(f"{d:.0f}" for d in densities) + " Wh/L"
            rows.append(row)
    return rows


TRANSPORT_COLUMNS = (
    "structure",
    "size",
    "backend",
    "tolerances",
    "porosity",
    "tau_ours",
    "tau_TF",
    "diff_%",
    "iter_ours",
    "iter_TF",
    "ours_s",
    "TF_s",
    "speed-up",
    "n",
    "target",
    "note",
)
MEMORY_COLUMNS = ("structure", "size", "backend", "ours_MiB", "TF_MiB", "note")
FLOW_COLUMNS = ("structure", "size", "porosity", "k/h^2", "iter", "seconds", "target", "note")
CHAIN_COLUMNS = ("chain", "size", "total_s", "ok", "stages_s")
CELL_COLUMNS = ("size", "C-rates", "build_s", "first_s", "median_s", "n", "note")
RIGHT = {
    "size",
    "ours_MiB",
    "TF_MiB",
    "k/h^2",
    "iter",
    "seconds",
    "porosity",
    "tau_ours",
    "tau_TF",
    "diff_%",
    "iter_ours",
    "iter_TF",
    "ours_s",
    "TF_s",
    "speed-up",
    "n",
    "total_s",
    "build_s",
    "first_s",
    "median_s",
}
"""Columns of the text tables (the last of each is free-width); these align right."""


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def transport_cells(row: TransportRow) -> tuple[str, ...]:
    return (
        row.structure,
        row.size,
        row.backend,
        row.tolerances,
        number(row.porosity, 3),
        number(row.tau_ours, 4),
        number(row.tau_taufactor, 4),
        "-" if row.difference_pct is None else f"{row.difference_pct:+.2f}",
        _count(row.iterations_ours),
        _count(row.iterations_taufactor),
        number(row.seconds_ours, 2),
        number(row.seconds_taufactor, 2),
        number(row.speedup, 1),
        str(row.repeats),
        row.target,
        row.note,
    )


def memory_cells(row: MemoryRow) -> tuple[str, ...]:
    return (
        row.structure,
        row.size,
        row.backend,
        number(row.ours_mib, 0),
        number(row.taufactor_mib, 0),
        row.note,
    )


def flow_cells(row: FlowRow) -> tuple[str, ...]:
    return (
        row.structure,
        row.size,
        number(row.porosity, 3),
        "-" if row.k_vox is None else f"{row.k_vox:.5g}",
        _count(row.iterations),
        number(row.seconds, 2),
        row.target,
        row.note,
    )


def chain_cells(row: ChainRow) -> tuple[str, ...]:
    stages = (
        row.note
        if row.stages_s is None
        else " ".join(f"{stage} {seconds:.2f}" for stage, seconds in row.stages_s.items())
    )
    if row.stages_s is not None and row.note:
        stages += f"; {row.note}"
    ok = "-" if row.ok is None else ("yes" if row.ok else "no")
    return (row.chain, row.size, number(row.seconds, 2), ok, stages)


def cell_cells(row: CellRow) -> tuple[str, ...]:
    return (
        row.size,
        row.c_rates,
        number(row.build_s, 3),
        number(row.first_s, 3),
        number(row.median_s, 3),
        str(row.evaluations),
        row.note,
    )


def _load() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def _chain_limit(text: str) -> tuple[str, int]:
    """``--chain-max-size`` item ``chain=edge``."""
    name, _, edge = text.partition("=")
    if name not in CHAINS or not edge.isdigit():
        raise argparse.ArgumentTypeError(
            f"expected CHAIN=EDGE with CHAIN one of {list(CHAINS)}, e.g. gdl=64; got {text!r}"
        )
    return name, int(edge)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument(
        "--structures",
        nargs="+",
        choices=list(STRUCTURES),
        default=list(STRUCTURES),
        metavar="NAME",
        help=f"structure families to solve (all): {', '.join(STRUCTURES)}",
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=[b for b in BACKENDS if b != "auto"],
        default=AVAILABLE_BACKENDS,
        help="our array backends to time, TauFactor beside each on the same device "
        f"(default: {' '.join(AVAILABLE_BACKENDS)})",
    )
    parser.add_argument(
        "--rtol", type=float, default=1e-3, help="our rtol and TauFactor's conv_crit"
    )
    parser.add_argument(
        "--repeats", type=int, help=f"best of N solves (default 3, and 1 from {SINGLE_FROM}^3)"
    )
    parser.add_argument(
        "--peer-max-size",
        type=int,
        default=128,
        help="skip TauFactor above this edge (it takes minutes); printed as skipped",
    )
    parser.add_argument(
        "--memory-structures",
        nargs="*",
        choices=list(STRUCTURES),
        default=["li_ion_electrode", "blobs e0.5 b1"],
        metavar="NAME",
        help="families whose peak memory per solve is measured (each solve in a child process)",
    )
    parser.add_argument("--memory-sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument(
        "--flow-structures",
        nargs="*",
        choices=list(STRUCTURES),
        default=["gdl", "polydisperse_spheres"],
        metavar="NAME",
        help="families whose Stokes permeability is timed (none: skip)",
    )
    parser.add_argument("--flow-sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--chain-sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument(
        "--chain-max-size",
        type=_chain_limit,
        nargs="*",
        default=[],
        metavar="CHAIN=EDGE",
        help="skip a chain above this edge, printed as skipped; e.g. gdl=64 (its Stokes flow "
        "takes minutes at 128^3)",
    )
    parser.add_argument(
        "--evaluations", type=int, default=5, help="timed cell-model evaluations per size"
    )
    add_json_option(parser, "transport")
    args = parser.parse_args(argv)
    if args.evaluations < 1:
        parser.error(f"--evaluations must be at least 1, got {args.evaluations}")
    sizes, chain_sizes = sorted(set(args.sizes)), sorted(set(args.chain_sizes))
    chain_max_size = dict(args.chain_max_size)

    header = machine("porespy", "pyamg", "taufactor", "pybamm")
    load_at_start = _load()
    notes = [
        f"tau: pore-phase tortuosity factor along z (axis {AXIS}), seed {SEED}; TauFactor "
        "(taufactor.Solver, float32) solves along its first axis, so it gets the image with z "
        "moved first; backend: where ours ran (torch = torch on the CPU, cuda = torch on the "
        "GPU, numpy), TauFactor on the same device; torch and our BLAS both at "
        f"{torch.get_num_threads()} threads",
        f"tolerances: 'own' = each solver's default (our rtol {args.rtol:g}, TauFactor's "
        f"conv_crit {TAUFACTOR_DEFAULT:g}); 'shared' = TauFactor's conv_crit = our rtol; ours "
        "is solved once and shown on both rows",
        "structures: PoreSpy blobs at porosity e and blobiness b, PoreSpy polydisperse "
        "spheres (porosity 0.5), and the pore space of each twin's default recipe",
        "diff_%: 100 (tau_ours / tau_TF - 1); speed-up: TF_s / ours_s",
        "iter: ours = flexible CG iterations (one geometric multigrid K-cycle each); TF = SOR "
        "iterations "
        "(one chequerboard colour each, convergence checked every 100)",
        "ours_s, TF_s: best wall time of n solves, setup included, after one warm-up solve "
        f"of each at {WARM_UP_SIZE}^3",
        f"target: at {TARGET_SIZE}^3 |diff| < {100 * TARGET_DIFFERENCE:g}% and speed-up >= "
        f"{TARGET_SPEEDUP:g}",
        "peak memory: the resident memory one solve adds at its peak (Linux VmHWM, reset "
        "before the solve, minus VmRSS before it), each solver alone in a child process after "
        f"a 64^3 warm-up (so torch's thread pool exists), median of {MEMORY_RUNS} runs; "
        "TauFactor at its own default tolerance; host memory only",
        f"Stokes: Darcy permeability along z (axis {AXIS}) at our rtol, voxel edge h = 1, slip "
        "sides; MINRES iterations; one timed solve after a warm-up at "
        f"{WARM_UP_SIZE}^3; target: under {TARGET_FLOW_S:g} s at {TARGET_SIZE}^3",
        "chains: default recipe of each chain's twin ("
        + ", ".join(f"{chain}: {twin}" for chain, twin in CHAINS.items())
        + f"), one wall-time evaluation per size after a warm-up at {WARM_UP_SIZE}^3 (the "
        "electrode chain's imports PyBaMM and builds its cell model); stages_s: each stage's time",
        "cell: PyBaMM DFN (Chen2020), one constant-current discharge per C-rate, on the "
        "electrode chain's properties at that size; build_s: model + discretisation + solver; "
        "first_s: first evaluation after the build; median_s: median of n more",
    ]
    transport = []
    for name in args.structures:
        transport += bench_transport(
            name, sizes, args.backends, args.rtol, args.repeats, args.peer_max_size
        )

    memory = bench_memory(
        args.memory_structures,
        sorted(set(args.memory_sizes)),
        args.backends,
        args.rtol,
        args.peer_max_size,
    )

    flow = bench_flow(args.flow_structures, sorted(set(args.flow_sizes)), args.rtol)

    chains: list[ChainRow] = []
    results: dict[str, dict[int, ChainResult]] = {}
    for name in CHAINS:
        rows, results[name] = bench_chain(name, chain_sizes, chain_max_size.get(name))
        chains += rows

    cell = bench_cell(results["electrode"], args.evaluations)

    header["load average"] = f"{load_at_start} at start, {_load()} at end (1, 5, 15 min)"
    print_comments(header, notes)
    for columns, cells, title in (
        (
            TRANSPORT_COLUMNS,
            map(transport_cells, transport),
            "pore tortuosity: ours beside TauFactor",
        ),
        (MEMORY_COLUMNS, map(memory_cells, memory), "peak memory per solve"),
        (FLOW_COLUMNS, map(flow_cells, flow), "Stokes permeability (ours; no peer solves it)"),
        (CHAIN_COLUMNS, map(chain_cells, chains), "critic chains"),
        (CELL_COLUMNS, map(cell_cells, cell), "cell model (PyBaMM) evaluation"),
    ):
        print_table(columns, list(cells), RIGHT, group=1, title=f"# {title}")
    tables = {
        "transport": transport,
        "memory": memory,
        "flow": flow,
        "chains": chains,
        "cell": cell,
    }
    write_json(args, header, notes, tables)


if __name__ == "__main__":
    main()
