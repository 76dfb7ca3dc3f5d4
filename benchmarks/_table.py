"""What every benchmark shares: the machine header, timing, progress, the text table, the JSON."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path("runs/benchmarks")
"""Where each benchmark writes its JSON by default, relative to the repository root."""
CORE_PACKAGES = ("poreloop", "numpy", "scipy", "torch")
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)


def threads() -> dict[str, str | int]:
    """The thread settings both sides of a benchmark share: torch's intra-op threads (torch is
    imported here to ask) and the environment variables that size the BLAS and OpenMP pools."""
    import torch

    return {"torch": torch.get_num_threads()} | {
        name: os.environ.get(name, "unset") for name in THREAD_VARIABLES
    }


def machine(*peers: str) -> dict[str, Any]:
    """What a later run must share to be compared with this one: date, machine, CPU count,
    Python, thread settings, and the versions of ours, numpy, scipy, torch and each peer."""
    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "threads": threads(),
        "packages": {package: version(package) for package in (*CORE_PACKAGES, *peers)},
    }


def add_json_option(parser: argparse.ArgumentParser, name: str) -> None:
    """``--json PATH``, where the benchmark ``name`` writes its results beside the table."""
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS_DIR / f"{name}.json",
        metavar="PATH",
        help="also write the results here as JSON (default: %(default)s)",
    )


def _plain(value: Any) -> Any:
    """``value`` as JSON holds it: dataclasses as objects, numpy scalars as numbers, paths as
    text, NaN and infinities as null (standard JSON has no NaN)."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value) if isinstance(value, Path) else value


def write_json(
    args: argparse.Namespace,
    header: Mapping[str, Any],
    notes: Sequence[str],
    tables: Mapping[str, Sequence[Any]],
) -> None:
    """The run at ``args.json``, beside the printed table, so a later run can be compared with
    this one: the options, the header, the notes, and each table's rows (dataclasses or
    mappings)."""
    document = {"options": vars(args), "header": header, "notes": notes, "tables": tables}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(_plain(document), indent=1) + "\n")
    log(f"results written to {args.json}")


def log(message: str) -> None:
    """Progress to stderr, time-stamped, so that stdout holds only the table."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def best_time(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Fastest wall time (s) of ``repeats`` calls, and the last result."""
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def repeats_for(size: int, repeats: int | None, single_from: int) -> int:
    """``repeats`` if given, else best of 3 below ``single_from`` voxels a side and 1 from it."""
    return repeats if repeats is not None else (1 if size >= single_from else 3)


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def number(value: float | None, digits: int) -> str:
    """A table cell: ``value`` to ``digits`` decimals, "-" when there is none."""
    return "-" if value is None else f"{value:.{digits}f}"


def _comment(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{key} {item}" for key, item in value.items())
    return str(value)


def print_comments(header: Mapping[str, Any], notes: Sequence[str]) -> None:
    """The header (``key: value``, a mapping value as ``k v, k v``) and the notes, each as a
    ``#`` line."""
    for line in [f"{key}: {_comment(value)}" for key, value in header.items()] + list(notes):
        print(f"# {line}")


def print_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Collection[str] = (),
    group: int = 0,
    title: str = "",
) -> None:
    """Fixed-width columns sized to their contents, after a blank line and the ``title``.

    The last column is free-width (a note); columns named in ``right`` align right. A row
    whose first ``group`` cells repeat the row above's leaves them blank.
    """
    table = [tuple(columns)]
    for before, cells in zip([None, *rows], rows, strict=False):
        same = before is not None and tuple(before[:group]) == tuple(cells[:group])
        table.append(("",) * group + tuple(cells[group:]) if same else tuple(cells))
    fixed = columns[:-1]
    widths = [max(len(line[i]) for line in table) for i in range(len(fixed))]

    def render(cells: tuple[str, ...]) -> str:
        padded = [
            cell.rjust(width) if name in right else cell.ljust(width)
            for cell, width, name in zip(cells, widths, fixed, strict=False)
        ]
        return "  ".join([*padded, cells[-1]]).rstrip()

    print()
    if title:
        print(title)
    print(render(table[0]))
    print("-" * len(render(table[0])))
    for cells in table[1:]:
        print(render(cells))
