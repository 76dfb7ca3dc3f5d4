"""The aging of a lithium-ion coin cell under a cycle-life test: a forward model, shared.

The simulated cycler ages its cells with it, and ``poreloop lifetime train`` ages simulated
cells with it to learn from, as the tomograph's forward model (``instruments.tomography``)
serves the simulated tomograph and the segmenter's training.

A cell is aged cycle by cycle, charged and discharged at the test's rate, and checked up: the
discharge capacity and the whole discharge curve Q(V). Three mechanisms, each a fraction of the cell's lithium or host capacity:

- SEI/CEI growth (loss of lithium inventory), diffusion-limited, ``a·√n`` (Schmalstieg et al.
  2014): a = ``SEI_FADE`` at 1C on the reference surface, growing with current (heat) as
  C^``SEI_RATE_EXPONENT`` and with the electrolyte-wetted active surface as
  √(s/``REFERENCE_WETTED_SSA_PER_UM``);
- particle cracking (loss of active material), ``b·n``: b = ``LINEAR_FADE`` at 1C, ∝
  C^``LINEAR_RATE_EXPONENT``, accelerated by cracks (1 + ρ/``CRACK_FADE_DENSITY_PER_MM2``) and
  delamination (1 + ``DELAMINATION_FADE``·δ);
- lithium plating, the knee (Attia et al. 2022): the films the SEI grows and the plated lithium
  leaves behind raise the cell's resistance, ``η = C·(RESISTANCE_V + FILM_RESISTANCE_V·lost
  lithium)``; once the charge overpotential η passes the anode's margin ``PLATING_MARGIN_V``,
  each cycle plates ``PLATING_RATE·(η − margin)`` of the lithium, which raises η further, so
  the fade runs away.

The capacity a discharge delivers stops at the cut-off: the full cell's open-circuit voltage
(PyBaMM's Chen2020 NMC811 and graphite OCPs over their stoichiometry windows) less η reaches
``LOWER_CUTOFF_V``, so resistance also costs capacity directly, more as it grows. Every cell
is built anew and differs from the last (``CELL_SPREAD``: its resistance growth, SEI growth,
cracking and plating margin), which early data can see and the structure cannot: Severson et
al. (2019) predicted life from the change of Q(V) between cycles 10 and 100.
Check-ups carry ``FADE_NOISE`` relative gain noise and ``CURVE_NOISE`` on each curve point.
At 1C an undamaged Chen2020-like electrode keeps ~85 % after 1000 cycles, and 80 % at 3C
lasts ~200 cycles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

SEI_FADE = 3e-3
"""Lithium share lost per √cycle at 1C by SEI/CEI growth on the reference surface."""
SEI_RATE_EXPONENT = 0.5
LINEAR_FADE = 5e-5
"""Host share lost per cycle at 1C by particle cracking."""
LINEAR_RATE_EXPONENT = 1.0
REFERENCE_WETTED_SSA_PER_UM = 0.38
"""Chen2020 positive electrode's active surface 3ε_act/R (0.665, 5.22 µm): the fade reference."""
CRACK_FADE_DENSITY_PER_MM2 = 150.0
DELAMINATION_FADE = 2.0
RESISTANCE_V = 0.02
"""Overpotential of a fresh coin cell at 1C."""
FILM_RESISTANCE_V = 0.8
"""Overpotential at 1C added per unit of lithium lost to films (SEI and dead plated lithium):
+0.08 V at 10 % lost, as aged cells' resistance doubles to triples."""
PLATING_MARGIN_V = 0.15
"""Charge overpotential beyond which the graphite's surface falls below 0 V against lithium."""
PLATING_RATE = 8e-3
"""Lithium share plated per cycle per volt of overpotential beyond the margin."""
CELL_SPREAD = {"resistance": 0.35, "sei": 0.15, "cracking": 0.2, "margin_v": 0.005}
"""Cell-to-cell spread: log-normal σ of the resistance growth, SEI growth and cracking rates,
and the plating margin's σ in volts."""
STOICHIOMETRY = {"negative": (0.0279, 0.9014), "positive": (0.9084, 0.2661)}
"""Chen2020 (LG M50) stoichiometry windows of graphite and NMC811, empty to full."""
LOWER_CUTOFF_V = 2.5
CURVE_VOLTAGES_V = np.round(np.linspace(3.0, 4.1, 45), 3)
"""Where the check-ups sample the discharge curve Q(V)."""
FADE_NOISE = 0.003
CURVE_NOISE = 1e-4
SEVERSON_CYCLE = 10
"""A check-up always falls on this cycle: the reference curve of Severson's ΔQ(V)."""
MAX_LIFE = 20000
"""Cycles a simulated cell is aged for its true life; longer lives are reported as this."""
FADE_POINTS = 20
"""Check-ups spread over a test, from its first cycle to its last."""
REST_S = 600.0
"""Rest after each charge and each discharge."""


def cycling_s(cycles: int, c_rate: float) -> float:
    """Simulated time of a cycle-life test: a charge and a discharge at ``c_rate`` and two
    rests per cycle."""
    return cycles * (2 * 3600 / c_rate + 2 * REST_S)


@cache
def _open_circuit() -> tuple[np.ndarray, np.ndarray]:
    """The full cell's open-circuit voltage (V) on a grid of states of charge (0 … 1), from
    PyBaMM's Chen2020 electrode OCPs over their stoichiometry windows."""
    import pybamm

    values = pybamm.ParameterValues("Chen2020")
    soc = np.linspace(0.0, 1.0, 801)

    def ocp(electrode: str) -> np.ndarray:
        empty, full = STOICHIOMETRY[electrode]
        stoichiometry = pybamm.Vector(empty + soc * (full - empty))
        function = values[f"{electrode.capitalize()} electrode OCP [V]"]
        return np.asarray(function(stoichiometry).evaluate()).ravel()

    return soc, ocp("positive") - ocp("negative")


def discharged(held: np.ndarray, overpotential_v: np.ndarray, voltage_v: np.ndarray) -> np.ndarray:
    """Capacity (over the fresh cell's) a discharge from full has delivered when the terminal
    voltage, the open-circuit voltage less the overpotential, has fallen to ``voltage_v``;
    ``held`` (k,) and ``overpotential_v`` (k,) per discharge, ``voltage_v`` (v,) → (k, v)."""
    soc, ocv = _open_circuit()
    left = np.interp(voltage_v[None, :] + overpotential_v[:, None], ocv, soc)
    return held[:, None] * (1.0 - left)


@dataclass(frozen=True)
class AgingCell:
    """A coin cell of one sample cycled at ``c_rate``: the rates of its aging mechanisms (see
    the module doc), its own spread included."""

    c_rate: float
    sei: float
    cracking: float
    resistance_growth: float
    plating_margin_v: float

    @classmethod
    def built(
        cls,
        c_rate: float,
        wetted_ssa_per_um: float,
        crack_density_per_mm2: float,
        delamination_fraction: float,
        rng: np.random.Generator,
    ) -> AgingCell:
        """A new cell of a sample with this wetted active surface and these defects."""
        spread = {key: float(rng.lognormal(0.0, CELL_SPREAD[key])) for key in CELL_SPREAD}
        sei = (
            SEI_FADE
            * c_rate**SEI_RATE_EXPONENT
            * math.sqrt(wetted_ssa_per_um / REFERENCE_WETTED_SSA_PER_UM)
        )
        cracking = (
            LINEAR_FADE
            * c_rate**LINEAR_RATE_EXPONENT
            * (1 + crack_density_per_mm2 / CRACK_FADE_DENSITY_PER_MM2)
            * (1 + DELAMINATION_FADE * delamination_fraction)
        )
        margin = PLATING_MARGIN_V + CELL_SPREAD["margin_v"] * float(rng.standard_normal())
        return cls(
            c_rate, sei * spread["sei"], cracking * spread["cracking"], spread["resistance"], margin
        )

    def age(self, cycles: int) -> tuple[np.ndarray, np.ndarray]:
        """The capacity the cell still holds (lithium and host, over the fresh cell's) and its
        overpotential (V) at each of cycles 1 … ``cycles``, noiseless."""
        n = np.arange(1, cycles + 1)
        sei = self.sei * np.sqrt(n)
        scale = self.c_rate * FILM_RESISTANCE_V * self.resistance_growth
        overpotential = self.c_rate * RESISTANCE_V + scale * sei
        plated = np.zeros(cycles)
        beyond = np.flatnonzero(overpotential > self.plating_margin_v)
        lost = 0.0
        for i in range(beyond[0] if beyond.size else cycles, cycles):
            # plated lithium raises the overpotential that plates more: cycle by cycle
            plated[i] = lost
            overpotential[i] += scale * lost
            lost += PLATING_RATE * max(overpotential[i] - self.plating_margin_v, 0.0)
            if lost >= 1.0:
                plated[i:] = 1.0
                break
        held = np.clip(1.0 - sei - plated - self.cracking * n, 0.0, None)
        return held, overpotential

    def capacity(self, cycles: int) -> np.ndarray:
        """Discharge capacity over the first cycle's at cycles 1 … ``cycles``, noiseless."""
        held, overpotential = self.age(cycles)
        full = discharged(held, overpotential, np.array([LOWER_CUTOFF_V]))[:, 0]
        return full / full[0]

    def life(self) -> int:
        """Cycles until the capacity first falls below 80 % of the first cycle's (at most
        ``MAX_LIFE``)."""
        below = np.flatnonzero(self.capacity(MAX_LIFE) < 0.8)
        return int(below[0]) + 1 if below.size else MAX_LIFE

    def test(
        self, sample_id: str, cycles: int, rng: np.random.Generator, run: int
    ) -> dict[str, Any]:
        """A cycle-life test of ``cycles``: check-ups at ``FADE_POINTS`` cycles from the first
        to the last and at ``SEVERSON_CYCLE``, each with its discharge curve, measured: the
        fields of the cycler's ``cycle_life`` result."""
        check_ups = np.round(np.linspace(1, cycles, FADE_POINTS)).astype(int)
        check_ups = np.unique(np.append(check_ups, min(SEVERSON_CYCLE, cycles)))
        held, overpotential = self.age(cycles)
        voltages = np.append(CURVE_VOLTAGES_V, LOWER_CUTOFF_V)
        curves = discharged(held[check_ups - 1], overpotential[check_ups - 1], voltages)
        first = discharged(held[:1], overpotential[:1], voltages[-1:])[0, 0]
        gain = rng.normal(1.0, FADE_NOISE, (check_ups.size, 1))
        noise = rng.normal(0.0, CURVE_NOISE, curves.shape)
        measured = np.clip(curves / first * gain + noise, 0.0, None)
        return dict(
            sample_id=sample_id,
            c_rate=self.c_rate,
            cycles=check_ups.tolist(),
            capacity_fraction=measured[:, -1].tolist(),
            voltage_v=CURVE_VOLTAGES_V.tolist(),
            discharged_fraction=measured[:, :-1].tolist(),
            duration_s=cycling_s(cycles, self.c_rate),
            run=run,
        )


def simulated_cells(count: int, cycles: int, seed: int) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Cycle-life tests of ``cycles`` on ``count`` simulated cells, as the cycler reports them,
    and each cell's true life (cycles to 80 %): what a lifetime model learns from and is judged
    on. The cells span the
    electrodes and defects the lab makes (wetted active surface 0.2–0.7 /µm, a third cracked
    at 50–300 /mm², a fifth delaminated up to 0.2) and rates of 0.5–3C."""
    rng = np.random.default_rng(seed)
    tests, lives = [], []
    for index in range(count):
        cracked, delaminated = rng.random() < 1 / 3, rng.random() < 0.2
        cell = AgingCell.built(
            float(rng.uniform(0.5, 3.0)),
            float(rng.uniform(0.2, 0.7)),
            float(rng.uniform(50.0, 300.0)) if cracked else 0.0,
            float(rng.uniform(0.0, 0.2)) if delaminated else 0.0,
            rng,
        )
        tests.append(cell.test(f"cell-{index:05d}", cycles, rng, index))
        lives.append(cell.life())
    return tests, np.array(lives)
