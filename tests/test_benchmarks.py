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


@pytest.mark.parametrize(
    ("closed", "lab_only", "verdict"),
    [
        ([5, 8, 9], [20, 25, None], "8 vs 25, met"),
        ([12, 14, None], [20, 25, 26], "14 vs 25, MISSED"),
        ([15, 15, None], [None, None, 3], "15 vs >30, met"),  # lab-only's half is at least 15.5
        ([16, 16, 16], [None, None, None], "16 vs >30, undetermined"),
        ([None, None, 4], [None, None, 3], ">30 vs >30, n/a"),
    ],
)
def test_a_campaign_that_never_comes_within_2_percent_counts_as_needing_more(
    closed: list[int | None], lab_only: list[int | None], verdict: str
) -> None:
    from benchmarks.campaign import summarise

    runs = [
        {"strategy": strategy, "found_after": found, "best_after": {10: 1.0, 20: 1.0, 30: 1.0}}
        for strategy, founds in (("closed loop", closed), ("lab-only BO", lab_only))
        for found in founds
    ] + [{"strategy": "Sobol", "found_after": None, "best_after": {10: 1.0, 20: None, 30: None}}]
    rows, notes = summarise(runs, {"value": 800.0, "evaluations": 300}, samples=30)
    assert verdict in notes[1]
    assert rows[2][1:3] == ["0/1", ">30"]
