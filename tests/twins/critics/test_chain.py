"""Critic chains: stages in order, units in the keys, explicit failures, resolution recorded."""

import json
import math
import re

import numpy as np
import pytest

from poreloop.agent.cli import main
from poreloop.twins import Microstructure
from poreloop.twins.critics.chain import Chain, StageFailed, get_chain, unit_of
from poreloop.twins.errors import CriticError
from poreloop.twins.manufacturing.electrode import ElectrodeTwin


def channels(shape=(16, 16, 16)) -> Microstructure:
    """Straight pore channels along z in a solid block: τ_z = 1, no path along x or y."""
    labels = np.ones(shape, dtype=np.uint8)
    labels[4:8, 4:8, :] = 0
    labels[10:12, 2:6, :] = 0
    return Microstructure(labels, 0.5, {0: "pore", 1: "solid"})


@pytest.mark.parametrize(
    ("key", "unit"),
    [
        ("porosity", "1"),
        ("tau_pore_z", "1"),
        ("ssa_pore_active_per_um", "1/um"),
        ("tpb_active_per_um2", "1/um^2"),
        ("mean_pore_radius_um", "um"),
        ("k_z_m2", "m^2"),
        ("sigma_eff_solid_z_s_m", "S/m"),
        ("energy_density_wh_l_0p5c", "Wh/L"),
        ("capacity_mah_cm2_3c", "mAh/cm^2"),
        ("capacity_ah_1c", "Ah"),
    ],
)
def test_units_come_from_the_key(key, unit):
    assert unit_of(key) == unit


def test_generic_chain_on_channels_is_exact_and_flags_no_path():
    result = get_chain("generic").evaluate(channels())
    p = result.properties
    assert p["tau_pore_z"] == pytest.approx(1.0, rel=1e-3)
    assert p["deff_pore_z"] == pytest.approx(p["porosity"], rel=1e-3)
    assert math.isinf(p["tau_pore_x"]) and p["deff_pore_x"] == 0.0
    assert result.ok and result.voxel_size_um == 0.5 and result.shape == (16, 16, 16)
    assert result.diagnostics["tau_pore_z_converged"] == 1.0
    assert set(result.timings_s) == {"morphology", "diffusion"}
    written = json.loads(json.dumps(result.to_json()))
    assert written["properties"]["tau_pore_x"] == "inf"
    assert written["units"]["ssa_per_um"] == "1/um"


def test_electrode_chain_scores_a_twin_electrode_through_the_cell_model():
    micro = ElectrodeTwin().generate({"voxel_size_um": 0.5}, shape=(40, 40, 48), seed=0)
    result = get_chain("electrode").evaluate(micro)
    assert result.ok, result.reason
    p = result.properties
    assert 1.0 < p["tau_pore_z"] < 10.0 and 1.0 < p["tau_solid_z"] < 10.0
    assert 0 < p["sigma_eff_solid_z_s_m"] < 10.0
    # Rate capability: more energy at low rate than at high rate.
    assert p["energy_density_wh_l_0p5c"] > p["energy_density_wh_l_1c"] > p["energy_density_wh_l_3c"]
    assert result.objectives == {"energy_density_wh_l_1c": p["energy_density_wh_l_1c"]}
    assert list(result.timings_s) == [
        "morphology",
        "diffusion",
        "solid_tortuosity",
        "conduction",
        "cell",
    ]


def test_electrode_chain_fails_explicitly_when_the_pore_is_closed():
    labels = np.ones((16, 16, 16), dtype=np.uint8)
    labels[4:8, 4:8, 2:10] = 0  # a sealed cavity
    micro = Microstructure(labels, 0.5, {0: "pore", 1: "active", 2: "cbd"})
    result = get_chain("electrode").evaluate(micro)
    assert not result.ok
    assert "does not percolate" in result.reason
    assert math.isinf(result.properties["tau_pore_z"])
    assert result.objectives == {}


def test_chain_needs_its_phases_by_name():
    with pytest.raises(CriticError, match=r"needs phases named \['pore', 'ni', 'ysz'\]"):
        get_chain("sofc_anode").evaluate(channels())


def test_unknown_chain_gets_a_suggestion():
    with pytest.raises(CriticError, match="did you mean 'gdl'"):
        get_chain("gld")


def test_a_stage_that_gives_nan_is_an_error_and_a_failed_stage_keeps_earlier_results():
    def nan_stage(micro, found, diagnostics):
        return {"x": float("nan")}

    def failing_stage(micro, found, diagnostics):
        raise StageFailed("instrument said no", {"b": 2.0})  # b found before it failed

    with pytest.raises(CriticError, match=r"gave NaN for \['x'\]"):
        Chain("t", (("nan", nan_stage),), {}).evaluate(channels())
    first = ("first", lambda micro, found, diagnostics: {"a": 1.0})
    third = ("third", lambda micro, found, diagnostics: {"c": 3.0})
    stages = (first, ("second", failing_stage), third)
    result = Chain("t", stages, {"a": "max"}).evaluate(channels())
    assert not result.ok and result.reason == "second: instrument said no"
    assert result.properties == {"thickness_um": pytest.approx(8.0), "a": 1.0, "b": 2.0}
    assert result.unfinished == ("second", "third")
    assert set(result.timings_s) == {"first", "second"}


def test_cli_prints_what_it_computed_and_which_stages_did_not_finish(tmp_path, capsys):
    labels = np.ones((16, 16, 16), dtype=np.uint8)
    labels[4:8, 4:8, 2:10] = 0  # a sealed cavity: the cell model cannot run
    path = Microstructure(labels, 0.5, {0: "pore", 1: "active", 2: "cbd"}).save(tmp_path / "x.tif")
    assert main(["critic", "evaluate", str(path), "--chain", "electrode"]) == 1
    out, err = capsys.readouterr()
    assert re.search(r"tau_pore_z +inf", out) and re.search(r"tau_solid_z +1\.0", out)
    assert err == (
        "poreloop: cell: the pore does not percolate through the thickness (tau_pore_z = inf); "
        "not finished: cell; the properties above are every one that could be computed\n"
    )
    assert main(["critic", "evaluate", str(path), "--chain", "electrode", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert (result["ok"], result["unfinished"]) == (False, ["cell"])


def test_cli_evaluates_a_foreign_stack_with_named_phases(tmp_path, capsys):
    labels = channels().labels * 85  # ids 0 and 85, as a segmented CT stack might have
    path = tmp_path / "scan.tif"
    Microstructure(labels, 1.0, {0: "phase_0", 85: "phase_85"}).save(path)
    assert main(["critic", "evaluate", str(path), "--phases", "0=pore,85=solid", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["properties"]["tau_pore_z"] == pytest.approx(1.0, rel=1e-3)
    assert result["properties"]["tau_solid_x"] != "inf"
    assert result["properties"]["tau_pore_y"] == "inf"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--chain", "electrod"], "did you mean 'electrode'"),
        (["--phases", "0=pore"], "no name in phases"),
        (["--chain", "sofc_anode"], "needs phases named"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, message):
    path = tmp_path / "x.npz"
    channels().save(path)
    assert main(["critic", "evaluate", str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_the_thickness_is_the_recipe_s_not_the_box_s() -> None:
    """Explicit value, else the recipe's, else (a foreign structure) the box height."""
    chain = get_chain("generic")
    recipe = {"thickness_um": 90.0, "particle_radius_um": 2.0}
    for voxel in (0.4, 0.8):
        micro = ElectrodeTwin().generate({**recipe, "voxel_size_um": voxel}, (24, 24, 24), seed=0)
        assert chain.evaluate(micro).properties["thickness_um"] == 90.0
        assert chain.evaluate(micro, thickness_um=45.0).properties["thickness_um"] == 45.0
    assert chain.evaluate(channels()).properties["thickness_um"] == 16 * 0.5
    with pytest.raises(CriticError, match="positive thickness_um"):
        chain.evaluate(channels(), thickness_um=-3.0)


@pytest.mark.slow
def test_thickness_trades_energy_for_power_and_is_not_the_voxel_size() -> None:
    """The cell takes the coating thickness from the recipe, the transport from the structure:
    a thicker coating holds more energy at a slow rate and delivers less at a fast one."""
    from poreloop.twins import get_twin

    twin, chain = get_twin("li_ion_electrode"), get_chain("electrode", c_rates=(0.5, 3.0))
    micro = twin.generate({"voxel_size_um": 0.5, "particle_radius_um": 2.0}, (32, 32, 32), seed=0)
    thin, thick = (chain.evaluate(micro, thickness_um=t).properties for t in (40.0, 120.0))
    assert thick["energy_density_wh_l_0p5c"] > thin["energy_density_wh_l_0p5c"]
    assert thick["energy_density_wh_l_3c"] < thin["energy_density_wh_l_3c"]
    assert chain.evaluate(micro).properties["thickness_um"] == 70.0  # the recipe's, not 32 × 0.5


def random_pores(shape=(16, 16, 16)) -> Microstructure:
    """A random two-phase box: no solver converges on it in 2 iterations."""
    labels = (np.random.default_rng(0).random(shape) < 0.6).astype(np.uint8)
    return Microstructure(labels, 0.5, {0: "pore", 1: "solid"})


def test_a_solve_stopped_at_its_cap_is_flagged_with_its_residual():
    capped = get_chain("gdl", max_iterations=2).evaluate(random_pores())
    assert capped.ok and not capped.converged
    assert set(capped.unconverged) == {"tau_pore_z", "tau_pore_x", "k_z", "k_x"}
    assert capped.unconverged["k_z"] == capped.diagnostics["k_z_residual"] > 1e-3
    assert "k_z (residual" in capped.problem and "iteration cap" in capped.problem
    assert capped.to_json()["converged"] is False
    clean = get_chain("gdl").evaluate(random_pores())
    assert clean.converged and clean.unconverged == {} and clean.problem == ""


def test_cli_says_a_capped_solve_is_not_clean_and_exits_1(tmp_path, capsys):
    path = tmp_path / "x.npz"
    random_pores().save(path)
    argv = ["critic", "evaluate", str(path), "--axes", "z", "--max-iterations", "2"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "tau_pore_z (residual" in err and "raise --max-iterations" in err
    assert len(err.strip().splitlines()) == 1
    assert main([*argv, "--json"]) == 1
    written = json.loads(capsys.readouterr().out)
    assert written["converged"] is False and set(written["unconverged"]) == {
        "tau_pore_z",
        "tau_solid_z",
    }
    assert main(argv[:-2]) == 0
