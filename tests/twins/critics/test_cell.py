"""The DFN cell critic: stock Chen2020 reproduced, and each microstructure property moves
capacity the way electrode physics says it should."""

import math

import numpy as np
import pybamm
import pytest

from poreloop.twins.critics.cell import (
    VAR_PTS,
    CellModel,
    ElectrodeInputs,
    c_rate_tag,
    electrode_inputs,
)
from poreloop.twins.errors import CriticError

CUT_OFF = "event: Minimum voltage [V]"
# A Chen2020-like positive electrode with 5 % carbon-binder and physical tortuosity factors.
PROPERTIES = {
    "porosity": 0.335,
    "active_fraction": 0.615,
    "cbd_fraction": 0.05,
    "tau_pore_z": 1.8,
    "tau_solid_z": 1.5,
    "ssa_active_per_um": 3 * 0.615 / 5.22,
    "thickness_um": 75.6,
}


@pytest.fixture(scope="module")
def cell() -> CellModel:
    return CellModel()


def evaluate(cell: CellModel, **changes: float) -> dict[str, float]:
    result = cell.evaluate({**PROPERTIES, **changes})
    assert result.ok, result.reason
    return result.values


def test_mapping_recovers_chen2020_inputs():
    reference = pybamm.ParameterValues("Chen2020")
    eps = reference["Positive electrode porosity"]
    active = reference["Positive electrode active material volume fraction"]
    radius = reference["Positive particle radius [m]"]
    inputs = electrode_inputs(
        {
            "porosity": eps,
            "active_fraction": active,
            "cbd_fraction": 1 - eps - active,
            "tau_pore_z": eps**-0.5,
            "tau_solid_z": 1.0,
            "ssa_active_per_um": 3 * active / (radius * 1e6),
            "thickness_um": reference["Positive electrode thickness [m]"] * 1e6,
        }
    )
    assert inputs.particle_radius_m == pytest.approx(radius, rel=1e-12)
    assert inputs.thickness_m == pytest.approx(reference["Positive electrode thickness [m]"])
    assert (inputs.porosity, inputs.active_fraction) == (eps, active)
    assert (inputs.tau_electrolyte, inputs.tau_electrode) == (eps**-0.5, 1.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"porosity": 1.2, "active_fraction": -0.25}, "porosity"),
        ({"cbd_fraction": 0.2}, "must be 1"),
        ({"tau_pore_z": 0.5}, "tau_pore_z"),
        ({"tau_solid_z": math.inf}, "not finite"),
        ({"ssa_active_per_um": 0.0}, "ssa_active_per_um"),
        ({"ssa_active_per_um": 1e-3}, "particle radius"),
        ({"thickness_um": -5.0}, "thickness_um"),
    ],
)
def test_out_of_range_properties_are_refused(change, message):
    with pytest.raises(CriticError, match=message):
        electrode_inputs({**PROPERTIES, **change})


def test_missing_property_is_named():
    with pytest.raises(CriticError, match="tau_solid_z"):
        electrode_inputs({k: v for k, v in PROPERTIES.items() if k != "tau_solid_z"})


def test_inputs_that_do_not_fit_the_volume_are_refused():
    with pytest.raises(CriticError, match="exceed 1"):
        ElectrodeInputs(0.5, 0.6, 5e-6, 1.5, 1.0, 7e-5)


def test_stock_chen2020_dfn_is_reproduced(cell):
    """Inputs equal to Chen2020's defaults give PyBaMM's own DFN result on the same mesh."""
    stock = pybamm.Simulation(
        pybamm.lithium_ion.DFN(),
        parameter_values=pybamm.ParameterValues("Chen2020"),
        var_pts=VAR_PTS,
        solver=pybamm.IDAKLUSolver(),
    ).solve([0, 5400])
    assert stock.termination == CUT_OFF
    result = cell.evaluate_inputs(cell.reference)
    assert result.ok, result.reason
    assert result.limits["1c"] == "voltage cut-off"
    assert result.values["rated_capacity_ah"] == pytest.approx(5.0)
    expected = stock["Discharge capacity [A.h]"].entries[-1]
    assert result.values["capacity_ah_1c"] == pytest.approx(expected, rel=5e-3)


def test_capacity_and_energy_fall_with_c_rate(cell):
    values = evaluate(cell)
    for quantity in ("capacity_ah", "capacity_mah_cm2", "energy_density_wh_l"):
        rates = [values[f"{quantity}_{c_rate_tag(c)}"] for c in (0.5, 1.0, 3.0)]
        assert rates[0] > rates[1] > rates[2] > 0
    # NMC811/graphite discharges at 3.3-3.9 V on average; at 0.5C nearly all rated capacity.
    assert 3.3 < values["energy_wh_0p5c"] / values["capacity_ah_0p5c"] < 3.9
    assert values["capacity_ah_0p5c"] == pytest.approx(values["rated_capacity_ah"], rel=0.05)
    area_cm2 = values["capacity_ah_1c"] * 1e3 / values["capacity_mah_cm2_1c"]
    assert area_cm2 == pytest.approx(0.065 * 1.58 * 1e4)


def test_default_mesh_is_converged_at_3c(cell):
    """3C is the most mesh-sensitive rate; a mesh twice as fine moves its capacity < 1 %."""
    fine = CellModel(c_rates=(3.0,), var_pts={k: 2 * n for k, n in VAR_PTS.items()})
    assert fine.evaluate(PROPERTIES).values["capacity_ah_3c"] == pytest.approx(
        evaluate(cell)["capacity_ah_3c"], rel=0.01
    )


def test_tortuous_pores_lose_capacity_at_3c(cell):
    open_pores = evaluate(cell, tau_pore_z=1.8)
    tortuous = evaluate(cell, tau_pore_z=5.0)
    assert tortuous["capacity_ah_3c"] < 0.9 * open_pores["capacity_ah_3c"]
    assert tortuous["capacity_ah_0p5c"] == pytest.approx(open_pores["capacity_ah_0p5c"], rel=0.02)


def test_more_active_material_stores_more_at_low_rate(cell):
    lean = evaluate(cell, active_fraction=0.55, porosity=0.4)
    rich = evaluate(cell, active_fraction=0.65, porosity=0.3)
    assert rich["capacity_ah_0p5c"] > 1.1 * lean["capacity_ah_0p5c"]
    assert rich["energy_density_wh_l_0p5c"] > lean["energy_density_wh_l_0p5c"]


def test_thick_electrode_stores_more_but_loses_more_at_3c(cell):
    thin = evaluate(cell, thickness_um=60.0)
    thick = evaluate(cell, thickness_um=120.0)
    assert thick["capacity_ah_0p5c"] > 1.8 * thin["capacity_ah_0p5c"]

    def loss(values: dict[str, float]) -> float:
        return 1 - values["capacity_ah_3c"] / values["capacity_ah_0p5c"]

    assert loss(thick) > loss(thin) + 0.1


def test_absurd_electrode_fails_explicitly(cell):
    """A 1 mm electrode cannot carry 3C: that discharge fails with a reason, never NaN."""
    result = cell.evaluate({**PROPERTIES, "thickness_um": 1000.0, "tau_pore_z": 20.0})
    assert not result.ok
    assert "3c:" in result.reason
    assert "capacity_ah_3c" not in result.values
    assert all(np.isfinite(v) for v in result.values.values())


def test_solver_exception_becomes_failed_result(cell, monkeypatch):
    def fail(*args, **kwargs):
        raise pybamm.SolverError("IDA_CONV_FAIL: forced")

    monkeypatch.setattr(cell._solver, "solve", fail)
    result = cell.evaluate(PROPERTIES)
    assert not result.ok
    assert result.reason.count("IDA_CONV_FAIL: forced") == len(cell.c_rates)
    assert set(result.values) == {"rated_capacity_ah"}


def test_nan_solution_becomes_failed_result(cell, monkeypatch):
    class NaNSolution:
        termination = CUT_OFF

        def __getitem__(self, name: str) -> pybamm.ProcessedVariable:
            return type("Entries", (), {"entries": np.array([0.0, np.nan])})()

    monkeypatch.setattr(cell._solver, "solve", lambda *args, **kwargs: NaNSolution())
    result = cell.evaluate(PROPERTIES)
    assert not result.ok
    assert "non-finite" in result.reason


def test_evaluations_resolve_without_rebuilding(cell, monkeypatch):
    model = cell.model

    def rebuild(*args, **kwargs):
        raise AssertionError("evaluate rebuilt the mesh or the discretisation")

    monkeypatch.setattr(pybamm.Discretisation, "process_model", rebuild)
    monkeypatch.setattr(pybamm.Mesh, "__init__", rebuild)
    first = cell.evaluate(PROPERTIES)
    second = cell.evaluate({**PROPERTIES, "thickness_um": 90.0})
    assert first.ok and second.ok
    assert cell.model is model and cell.n_builds == 1
    assert second.values["capacity_ah_0p5c"] > first.values["capacity_ah_0p5c"]


def test_c_rate_tags():
    assert [c_rate_tag(c) for c in (0.5, 1.0, 3.0, 0.05)] == ["0p5c", "1c", "3c", "0p05c"]
