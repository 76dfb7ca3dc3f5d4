"""Every benchmark still imports and has its entry point; timing them is the benchmarks' job,
but that the planners benchmark times Ax under our torch thread setting is checked here.

Runs from the repository root (``python -m pytest``), where ``benchmarks`` is importable.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest

import benchmarks

NAMES = [info.name for info in pkgutil.iter_modules(benchmarks.__path__) if info.name[0] != "_"]


def test_benchmarks_are_found() -> None:
    assert {"generation", "transport", "instruments", "planners"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_benchmark_imports_and_has_main(name: str) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    assert callable(getattr(module, "main", None)), f"benchmarks.{name} has no main()"


def test_ax_is_timed_under_our_planners_torch_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ours pin torch to one thread while planning; Ax runs under the same setting, and at
    torch's default threads only where asked."""
    import torch

    from benchmarks import planners

    seen: list[int] = []

    def client(problem: Any, seed: int) -> Any:
        seen.append(torch.get_num_threads())
        raise LookupError("stop here")

    monkeypatch.setattr(planners.Ax, "client", staticmethod(client))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for ax in (planners.Ax(), planners.Ax(one_thread=False)):
            with pytest.raises(LookupError):
                ax.time_proposal(planners.hartmann6(), [], [], seed=0)
            with pytest.raises(LookupError):
                ax.run(planners.hartmann6(), seed=0, evals=1)
    finally:
        torch.set_num_threads(threads)
    assert seen == [1, 1, 2, 2]
    assert planners.Ax(one_thread=False).name == f"ax ({threads} threads)"


def test_ax_at_default_threads_is_shown_only_where_it_differs() -> None:
    from benchmarks.planners import differ, threads_note

    rows = [["20", "ax", "1.00"], ["20", "ax (4 threads)", "1.10"]]
    rows += [["300", "ax", "2.00"], ["300", "ax (4 threads)", "9.00"]]
    assert [differ(rows, row) for row in rows[1::2]] == [False, True]
    assert "'ax (4 threads)' is ax at torch's default threads" in threads_note(rows)
    assert "(1 of 2 N)" in threads_note(rows)
