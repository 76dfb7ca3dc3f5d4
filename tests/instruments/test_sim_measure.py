"""The simulated tomograph and cycler: scans with artefacts, segmentation, rate and fade tests."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from scipy.ndimage import binary_erosion

from poreloop.agent.cli import main
from poreloop.instruments.aging import FADE_NOISE, SEVERSON_CYCLE
from poreloop.instruments.base import ActionContext, Instrument
from poreloop.instruments.client import InstrumentClient
from poreloop.instruments.errors import ActionFailed, InvalidRequest, RefusedError
from poreloop.instruments.server import Server
from poreloop.instruments.server.options import journal_under
from poreloop.instruments.sim import SIMULATED
from poreloop.instruments.sim.cycler import RATE_NOISE, SimCycler
from poreloop.instruments.sim.lab import save_sample
from poreloop.instruments.sim.tomograph import SimTomograph
from poreloop.twins import Microstructure, get_twin
from poreloop.twins.critics.chain import get_chain
from poreloop.twins.critics.segmentation import segment_file
from poreloop.twins.manufacturing.electrode import ElectrodeTwin

RATES = [0.5, 2.0, 5.0]
CRACKS_PER_MM2 = 300.0


def run(instrument: Instrument, action: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate then perform, as the server does."""
    return instrument.perform(action, instrument.validate(action, params), ActionContext())


def meta(status: str = "ok") -> dict[str, Any]:
    return {"recipe": {}, "status": status}


def truth(cracks: float = 0.0) -> dict[str, Any]:
    """What only the simulated instruments read: the true recipe, seed and defects."""
    defects = {
        "crack_density_per_mm2": cracks,
        "delamination_fraction": 0.0,
        "pinholes_per_cm2": 0.0,
    }
    recipe = get_twin("li_ion_electrode").space.complete({"voxel_size_um": 0.5})
    return {"true_recipe": recipe, "seed": 0, "defects": defects}


@pytest.fixture(scope="module")
def electrode() -> Microstructure:
    return get_twin("li_ion_electrode").generate({"voxel_size_um": 0.5}, shape=(40, 40, 48), seed=0)


@pytest.fixture
def lab(tmp_path: Path, electrode: Microstructure) -> Path:
    """A lab holding the electrode as S00001."""
    save_sample(tmp_path / "lab", electrode, meta(), truth())
    return tmp_path / "lab"


@pytest.fixture(scope="module")
def cycler_lab(tmp_path_factory: pytest.TempPathFactory, electrode: Microstructure) -> Path:
    """One lab for the cycler tests: S00001 intact, S00002 the same coating cracked, S00003
    sealed by a dense layer the electrolyte cannot cross."""
    lab = tmp_path_factory.mktemp("cycler") / "lab"
    save_sample(lab, electrode, meta(), truth())
    save_sample(lab, electrode, meta("cracked"), truth(CRACKS_PER_MM2))
    sealed = electrode.labels.copy()
    sealed[:, :, 20:22] = electrode.phase_id("active")
    save_sample(lab, replace(electrode, labels=sealed), meta(), truth())
    return lab


@pytest.fixture(scope="module")
def cycler(cycler_lab: Path) -> SimCycler:
    """Shared so the DFN is discretised once for the module."""
    return SimCycler(cycler_lab, seed=0, time_scale=0)


def test_both_instruments_are_registered() -> None:
    assert SIMULATED["tomograph"] is SimTomograph and SIMULATED["cycler"] is SimCycler


def test_a_scan_is_a_tiff_reproducible_per_seed(lab: Path, tmp_path: Path) -> None:
    shutil.copytree(lab, tmp_path / "twin_lab")
    scans = []
    for lab_dir, seed in ((lab, 1), (tmp_path / "twin_lab", 1), (tmp_path / "twin_lab", 2)):
        out = run(
            SimTomograph(lab_dir, seed=seed, time_scale=0),
            "scan",
            {"sample_id": "S00001", "voxel_size_um": 0.5},
        )
        scans.append(tifffile.imread(out["path"]))
    assert out["shape"] == [40, 40, 48] and scans[0].dtype == np.uint16
    assert np.array_equal(scans[0], scans[1])
    assert not np.array_equal(scans[1], scans[2])


def test_noise_falls_with_exposure(lab: Path, electrode: Microstructure) -> None:
    tomograph = SimTomograph(lab, time_scale=0)
    interior = binary_erosion(electrode.labels == 0, iterations=2, border_value=1)
    spread, snr = [], []
    for exposure_s in (0.05, 5.0):
        out = run(
            tomograph,
            "scan",
            {"sample_id": "S00001", "voxel_size_um": 0.5, "exposure_s": exposure_s},
        )
        grey = tifffile.imread(out["path"]).astype(float)
        spread.append(grey[interior].std())
        snr.append(out["snr"])
    assert spread[0] > 5 * spread[1]  # σ ∝ 1/√exposure: a factor 10 in noise
    assert snr[1] == pytest.approx(10 * snr[0])


def test_segmentation_recovers_porosity_at_good_exposure_only(
    lab: Path, electrode: Microstructure
) -> None:
    tomograph = SimTomograph(lab, time_scale=0)
    true = electrode.phase_fractions()["pore"]
    errors = []
    for exposure_s in (5.0, 0.05):
        out = run(
            tomograph,
            "scan",
            {"sample_id": "S00001", "voxel_size_um": 0.5, "exposure_s": exposure_s},
        )
        measured = segment_file(out["path"], ElectrodeTwin.phases)
        assert measured.voxel_size_um == 0.5 and set(measured.phases.values()) == {
            "pore",
            "active",
            "cbd",
        }
        errors.append(abs(measured.phase_fractions()["pore"] - true))
    assert errors[0] < 0.03
    assert errors[1] > errors[0]


def test_a_coarser_scan_resamples_and_a_finer_one_is_refused(lab: Path) -> None:
    tomograph = SimTomograph(lab, time_scale=0)
    out = run(tomograph, "scan", {"sample_id": "S00001", "voxel_size_um": 1.0})
    assert out["shape"] == [20, 20, 24] and out["voxel_size_um"] == 1.0
    ringed = run(
        tomograph, "scan", {"sample_id": "S00001", "voxel_size_um": 1.0, "ring_artefacts": True}
    )
    assert ringed["scan_id"] == "T00002"
    with pytest.raises(RefusedError, match="finer than sample S00001's own voxel size 0.5"):
        run(tomograph, "scan", {"sample_id": "S00001", "voxel_size_um": 0.25})
    with pytest.raises(RefusedError, match="exposure_s=60.0 s exceeds"):
        run(tomograph, "scan", {"sample_id": "S00001", "voxel_size_um": 1.0, "exposure_s": 60.0})


@pytest.mark.parametrize("instrument", [SimTomograph, SimCycler])
def test_an_unknown_sample_is_named(lab: Path, instrument: type[Instrument]) -> None:
    params = (
        {"sample_id": "S00042", "voxel_size_um": 1.0}
        if instrument is SimTomograph
        else {"sample_id": "S00042", "cycles": 10}
    )
    action = "scan" if instrument is SimTomograph else "cycle_life"
    with pytest.raises(InvalidRequest, match="no sample 'S00042'.*known: S00001"):
        run(instrument(lab, time_scale=0), action, params)


def test_rate_test_capacity_falls_with_c_rate_and_is_reproducible(
    cycler: SimCycler, cycler_lab: Path, tmp_path: Path
) -> None:
    shutil.copytree(cycler_lab, tmp_path / "copy")
    first = run(cycler, "rate_test", {"sample_id": "S00001", "c_rates": RATES})
    again = run(cycler, "rate_test", {"sample_id": "S00001", "c_rates": RATES})
    assert np.all(np.diff(first["capacity_mah_cm2"]) < 0)
    assert first["capacity_ah"][0] == pytest.approx(first["rated_capacity_ah"], rel=0.03)
    assert first["capacity_ah"] != again["capacity_ah"]  # a new run draws new noise
    assert first["capacity_ah"] == pytest.approx(again["capacity_ah"], rel=0.03)
    twin_cycler = SimCycler(tmp_path / "copy", seed=0, time_scale=0)
    twin_cycler._cells = cycler._cells  # the same discretised DFN: another build takes seconds
    assert run(twin_cycler, "rate_test", {"sample_id": "S00001", "c_rates": RATES}) == first


def test_a_cracked_sample_delivers_less(cycler: SimCycler) -> None:
    intact = run(cycler, "rate_test", {"sample_id": "S00001", "c_rates": RATES})
    cracked = run(cycler, "rate_test", {"sample_id": "S00002", "c_rates": RATES})
    assert cracked["status"] == "cracked" and 0.1 < cracked["crack_loss_fraction"] < 0.2
    ratio = np.array(cracked["capacity_ah"]) / np.array(intact["capacity_ah"])
    assert np.all(ratio < 0.9)


def test_cycle_life_fades_faster_at_high_rate_and_with_cracks(cycler: SimCycler) -> None:
    fade = {}
    for sample, c_rate in (("S00001", 1.0), ("S00001", 3.0), ("S00002", 1.0)):
        out = run(cycler, "cycle_life", {"sample_id": sample, "cycles": 1000, "c_rate": c_rate})
        cycles, fraction = out["cycles"], np.array(out["capacity_fraction"])
        assert cycles[0] == 1 and cycles[-1] == 1000 and SEVERSON_CYCLE in cycles
        curves = np.array(out["discharged_fraction"])
        assert curves.shape == (len(cycles), len(out["voltage_v"]))
        # Q(V) grows as the voltage falls, and ends below the capacity at the cut-off
        assert np.all(np.diff(curves, axis=1) <= 1e-3) and np.all(curves[:, 0] <= fraction + 1e-3)
        assert np.all(np.diff(fraction) < 4 * FADE_NOISE)  # fades, noise aside
        fade[sample, c_rate] = 1 - fraction[-1]
    assert 0.05 < fade["S00001", 1.0] < 0.25
    assert fade["S00001", 3.0] > 1.5 * fade["S00001", 1.0]
    assert fade["S00002", 1.0] > 1.5 * fade["S00001", 1.0]


def test_a_structure_the_cell_model_cannot_discharge_fails_with_the_reason(
    cycler: SimCycler,
) -> None:
    with pytest.raises(ActionFailed, match="S00003 failed: the pore or the solid does not"):
        run(cycler, "rate_test", {"sample_id": "S00003", "c_rates": RATES})


def test_a_structure_whose_transport_did_not_converge_is_a_failed_measurement(
    cycler_lab: Path,
) -> None:
    capped = SimCycler(cycler_lab, seed=0, time_scale=0)
    capped._structure = get_chain("electrode", cell=False, max_iterations=2)
    with pytest.raises(
        ActionFailed,
        match=r"S00001 failed: the solver stopped at its iteration "
        r"cap without converging: tau_pore_z \(residual",
    ):
        run(capped, "rate_test", {"sample_id": "S00001", "c_rates": RATES})


@pytest.mark.parametrize(
    ("action", "params", "error", "match"),
    [
        (
            "rate_test",
            {"c_rates": [1.0, 6.0]},
            RefusedError,
            "max_c_rate=6.0 C exceeds the safety limit 5.0",
        ),
        ("rate_test", {"c_rates": [0.0]}, InvalidRequest, "c_rates"),
        ("rate_test", {"c_rates": []}, InvalidRequest, "c_rates"),
        (
            "cycle_life",
            {"cycles": 3000},
            RefusedError,
            "cycles=3000.0 exceeds the safety limit 2000",
        ),
        ("cycle_life", {"cycles": 10, "c_rate": 8.0}, RefusedError, "c_rate=8.0 C exceeds"),
    ],
)
def test_out_of_limit_requests_are_refused(
    tmp_path: Path, action: str, params: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        SimCycler(tmp_path, time_scale=0).validate(action, {"sample_id": "S00001", **params})


def test_a_scan_through_a_server(lab: Path, tmp_path: Path) -> None:
    server = Server(
        SimTomograph(lab, time_scale=1e-4), "tcp://127.0.0.1:*", tmp_path / "j.sqlite"
    ).start()
    try:
        with InstrumentClient(server.endpoint, retry_s=0.5, liveness_s=3.0) as client:
            out = client.call("scan", {"sample_id": "S00001", "voxel_size_um": 1.0}, timeout=10)
    finally:
        server.stop()
    assert out["scan_id"] == "T00001" and Path(out["path"]).is_file()
    assert out["duration_s"] > 60


def test_the_lab_departs_from_the_digital_chain_where_the_chain_is_blind() -> None:
    """Model-form error: thin binder networks resist (more at low compression), swollen binder
    chokes the pores; the chain models neither."""
    from poreloop.instruments.sim.cycler import contact_asr_ohm_m2, swell_binder

    assert contact_asr_ohm_m2(0.03, 0.15) > 5 * contact_asr_ohm_m2(0.08, 0.15)
    assert contact_asr_ohm_m2(0.08, 0.35) < contact_asr_ohm_m2(0.08, 0.05)
    dry = {"porosity": 0.35, "fraction_active": 0.5, "fraction_cbd": 0.15, "tau_pore_z": 2.0}
    wet = swell_binder(dry)
    assert wet["porosity"] < dry["porosity"] and wet["tau_pore_z"] > dry["tau_pore_z"]
    assert sum(wet[k] for k in ("porosity", "fraction_active", "fraction_cbd")) == pytest.approx(1)
    lean = swell_binder({**dry, "fraction_cbd": 0.02, "porosity": 0.48})
    assert lean["tau_pore_z"] / 2.0 < wet["tau_pore_z"] / 2.0  # little binder, little swelling


def test_the_cycler_measures_less_than_the_chain_predicts_most_at_3c(
    cycler: SimCycler, electrode
) -> None:
    from poreloop.twins.critics.chain import get_chain

    lab = run(cycler, "rate_test", {"sample_id": "S00001", "c_rates": [1.0, 3.0]})
    thickness = get_twin("li_ion_electrode").space.complete({})["thickness_um"]
    twin = get_chain("electrode", c_rates=(1.0, 3.0)).evaluate(electrode, thickness_um=thickness)
    slow, fast = lab["energy_density_wh_l"]
    assert slow < twin.properties["energy_density_wh_l_1c"] * (1 + 2 * RATE_NOISE)
    assert fast < twin.properties["energy_density_wh_l_3c"] * (1 - 10 * RATE_NOISE)


def test_the_lab_penalises_what_the_chain_cannot_see(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Model-form error on the same true structures, each effect alone and both: the contact
    resistance costs most where the binder network is thin, the swelling most where there is
    much binder; at 3C the lab never delivers what the chain predicts."""
    from poreloop.instruments.sim import cycler as sim_cycler
    from poreloop.twins.critics.chain import get_chain

    twin, chain = get_twin("li_ion_electrode"), get_chain("electrode", c_rates=(3.0,))
    predicted = []
    for cbd in (0.03, 0.08, 0.14):
        recipe = twin.space.complete(
            {"voxel_size_um": 0.5, "particle_radius_um": 2.5, "cbd_fraction": cbd}
        )
        micro = twin.generate(recipe, shape=(40, 40, 48), seed=0)
        save_sample(tmp_path, micro, meta(), {**truth(), "true_recipe": recipe})
        predicted.append(chain.evaluate(micro).properties["energy_density_wh_l_3c"])
    cycler = SimCycler(tmp_path, seed=0, time_scale=0)

    def penalty() -> np.ndarray:
        """1 - lab / chain energy density at 3C, per sample."""
        measured = [
            run(cycler, "rate_test", {"sample_id": f"S{i:05d}", "c_rates": [3.0]})
            for i in (1, 2, 3)
        ]
        return 1 - np.array([m["energy_density_wh_l"][0] for m in measured]) / predicted

    both = penalty()
    with monkeypatch.context() as patch:
        patch.setattr(sim_cycler, "BINDER_SWELLING", 0.0)
        contact = penalty()
    with monkeypatch.context() as patch:
        patch.setattr(sim_cycler, "CONTACT_ASR_OHM_CM2", 0.0)
        swelling = penalty()
    noise = 4 * RATE_NOISE
    assert contact[0] > contact[1] + 0.05 and contact[1] > contact[2] - noise
    assert swelling[0] + 0.05 < swelling[1] < swelling[2] - 0.05
    assert np.all((both > 0.05) & (both < 0.4)), both


def test_lab_samples_lists_what_the_journals_recorded_while_the_lab_runs(
    lab: Path, electrode: Microstructure, capsys: pytest.CaptureFixture[str]
) -> None:
    save_sample(lab, electrode, meta("cracked"), truth(CRACKS_PER_MM2))
    server = Server(
        SimTomograph(lab, time_scale=0), "tcp://127.0.0.1:*", journal_under(lab, "tomograph")
    ).start()
    try:
        with InstrumentClient(server.endpoint, retry_s=0.5, liveness_s=3.0) as client:
            client.call("scan", {"sample_id": "S00001", "voxel_size_um": 1.0}, timeout=10)
            with pytest.raises(RefusedError):  # refused before it ran: nothing measured
                client.call("scan", {"sample_id": "S00002", "voxel_size_um": 0.1}, timeout=10)
        assert main(["lab", "samples", str(lab)]) == 0  # while the server holds its journal
        out = capsys.readouterr().out.splitlines()
        assert main(["lab", "samples", str(lab), "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
    finally:
        server.stop()
    assert out[1].split() == ["S00001", "ok", "tomograph.scan", "(T00001)"]
    assert out[2].split() == ["S00002", "cracked", "-"]
    assert out[3] == "2 samples: 1 ok, 1 cracked"
    [scan] = listed[0]["measurements"]
    assert (scan["instrument"], scan["action"], scan["result"]["scan_id"]) == (
        "tomograph",
        "scan",
        "T00001",
    )
    assert "true_recipe" not in listed[0] and listed[1]["measurements"] == []


def test_lab_samples_of_a_folder_that_is_no_lab_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lab", "samples", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
