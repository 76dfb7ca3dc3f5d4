"""What every benchmark script shares: the machine header, timing, progress, the text table."""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from importlib.metadata import version
from typing import Any

import numpy as np


def machine(*packages: str) -> dict[str, str]:
    """Date, machine, Python and numpy, then the version of each named distribution."""
    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.platform()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "numpy": np.__version__,
        **{package: version(package) for package in packages},
    }


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


def print_comments(header: dict[str, str], notes: Sequence[str]) -> None:
    """The header (``key: value``) and the notes, each as a ``#`` line."""
    for line in [f"{key}: {value}" for key, value in header.items()] + list(notes):
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
