"""The forward model of cell aging: the full cell's OCV, the plating knee, Q(V) curves."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pybamm

from poreloop.instruments.aging import (
    LINEAR_FADE,
    LOWER_CUTOFF_V,
    PLATING_MARGIN_V,
    SEI_FADE,
    AgingCell,
    _open_circuit,
    discharged,
    simulated_cells,
)


def reference_cell(c_rate: float, resistance_growth: float = 1.0) -> AgingCell:
    """The reference electrode's cell at ``c_rate``, without the cell-to-cell spread."""
    return AgingCell(
        c_rate, SEI_FADE * c_rate**0.5, LINEAR_FADE * c_rate, resistance_growth, PLATING_MARGIN_V
    )


def test_the_open_circuit_voltage_spans_chen2020s_voltage_window() -> None:
    """Over its stoichiometry windows the LG M50's OCV runs from its lower to its upper
    cut-off voltage (to 0.02 V: the windows are the fitted ones, the cut-offs round numbers)."""
    soc, ocv = _open_circuit()
    limits = pybamm.ParameterValues("Chen2020")
    assert np.all(np.diff(ocv) > 0) and soc[0] == 0 and soc[-1] == 1
    assert abs(ocv[0] - limits["Lower voltage cut-off [V]"]) < 0.02
    assert abs(ocv[-1] - limits["Upper voltage cut-off [V]"]) < 0.02


def test_plating_bends_the_fade_into_a_knee() -> None:
    """At 2C the overpotential passes the plating margin and the fade runs away: the last 50
    cycles before 80 % lose capacity over three times as fast as the cycles before the onset,
    and without plating the cell would still hold over 85 % there. At 0.5C it never plates and
    the fade keeps slowing (√n)."""
    fast = reference_cell(2.0)
    life = fast.life()
    capacity = fast.capacity(life)
    _, overpotential = fast.age(life)
    onset = int(np.argmax(overpotential > PLATING_MARGIN_V))
    before = (capacity[onset // 2] - capacity[onset]) / (onset - onset // 2)
    late = (capacity[life - 51] - capacity[life - 1]) / 50
    assert 100 < onset < life < 2000 and late > 3 * before
    assert replace(fast, plating_margin_v=np.inf).capacity(life)[-1] > 0.85
    slow = reference_cell(0.5)
    _, overpotential = slow.age(3000)
    assert overpotential.max() < PLATING_MARGIN_V
    capacity = slow.capacity(3000)
    assert capacity[99] - capacity[199] > capacity[2899] - capacity[2999]


def test_faster_resistance_growth_shortens_life_and_shows_early_in_the_curves() -> None:
    """Severson's signal: a cell whose resistance grows faster shifts its Q(V) more between
    cycles 10 and 100, and dies sooner."""
    voltages = np.linspace(3.0, 4.1, 45)
    changes, lives = [], []
    for growth in (0.7, 1.0, 1.4):
        cell = reference_cell(1.5, growth)
        held, overpotential = cell.age(100)
        curves = discharged(held[[9, 99]], overpotential[[9, 99]], voltages)
        changes.append(float(np.var(curves[1] - curves[0])))
        lives.append(cell.life())
    assert changes[0] < changes[1] < changes[2] and lives[0] > lives[1] > lives[2]


def test_a_discharge_delivers_its_capacity_at_the_cut_off() -> None:
    """Q(V) of a fresh cell at the lower cut-off is all it holds; the overpotential costs the
    capacity below the curve's cut-off."""
    held = np.array([1.0, 1.0])
    full = discharged(held, np.array([0.0, 0.2]), np.array([LOWER_CUTOFF_V]))[:, 0]
    assert abs(full[0] - 1.0) < 0.01 and full[1] < full[0]


def test_simulated_cells_repeat_per_seed_and_span_lives() -> None:
    tests, lives = simulated_cells(30, 100, seed=3)
    again, lives_again = simulated_cells(30, 100, seed=3)
    assert tests == again and np.array_equal(lives, lives_again)
    assert lives.max() > 4 * lives.min()
    assert all(t["cycles"][-1] == 100 and 10 in t["cycles"] for t in tests)
