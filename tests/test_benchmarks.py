"""Every benchmark still imports and has its entry point; timing them is the benchmarks' job.

Runs from the repository root (``python -m pytest``), where ``benchmarks`` is importable.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import benchmarks

NAMES = [info.name for info in pkgutil.iter_modules(benchmarks.__path__) if info.name[0] != "_"]


def test_benchmarks_are_found() -> None:
    assert {"generation", "transport", "instruments", "planners"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_benchmark_imports_and_has_main(name: str) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    assert callable(getattr(module, "main", None)), f"benchmarks.{name} has no main()"
