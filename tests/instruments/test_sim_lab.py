"""The simulated lab: robot fabrication with hidden offsets and failures, inspector and XRD."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from poreloop.instruments.base import ActionContext, Instrument
from poreloop.instruments.client import InstrumentClient
from poreloop.instruments.errors import ErrorCode, InvalidRequest, RefusedError
from poreloop.instruments.server import Server
from poreloop.instruments.sim.inspector import SimInspector
from poreloop.instruments.sim.lab import load_sample
from poreloop.instruments.sim.robot import TWIN, SimRobot, crack_probability
from poreloop.instruments.sim.xrd import DENSITY_G_CM3, SimXRD
from poreloop.twins import get_twin

SMALL = {"particle_radius_um": 2.0}  # five voxels: fits a 32-voxel box
NO_OFFSETS = {
    "compression_offset": 0.0,
    "active_fraction_factor": 1.0,
    "particle_radius_factor": 1.0,
}


def run(instrument: Instrument, action: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate then perform, as the server does."""
    return instrument.perform(action, instrument.validate(action, params), ActionContext())


def robot(lab: Path, **options: Any) -> SimRobot:
    return SimRobot(lab, time_scale=0, box_voxels=32, **options)


def test_fabricate_is_deterministic_per_seed_and_run(tmp_path: Path) -> None:
    labels = {}
    for lab, seed in (("a", 3), ("b", 3), ("c", 4)):
        made = [run(robot(tmp_path / lab, seed=seed), "fabricate", SMALL) for _ in range(2)]
        assert [m["sample_id"] for m in made] == ["S00001", "S00002"]
        labels[lab] = [load_sample(tmp_path / lab, m["sample_id"])[0].labels for m in made]
    assert all(np.array_equal(x, y) for x, y in zip(labels["a"], labels["b"], strict=True))
    assert not np.array_equal(labels["a"][0], labels["a"][1])  # batch to batch
    assert not np.array_equal(labels["a"][0], labels["c"][0])  # another seed


def test_the_lab_is_denser_than_the_twin_by_its_hidden_calendering_offset(tmp_path: Path) -> None:
    recipe = {**SMALL, "compression": 0.15}
    twin = get_twin("li_ion_electrode").generate(recipe, shape=(32, 32, 32), seed=0)
    twin_porosity = twin.phase_fractions()["pore"]
    porosity = {}
    for name, hidden in (("true", None), ("unbiased", NO_OFFSETS)):
        lab = tmp_path / name
        made = [run(robot(lab, seed=seed, hidden=hidden), "fabricate", recipe) for seed in range(3)]
        assert {m["status"] for m in made} == {"ok"}
        porosity[name] = np.mean(
            [load_sample(lab, m["sample_id"])[0].phase_fractions()["pore"] for m in made]
        )
    # solid (0.48 * 0.98 + 0.08) / (1 - 0.18) against 0.56 / 0.85: 0.012 less pore
    assert -0.025 < porosity["true"] - twin_porosity < -0.006
    assert abs(porosity["unbiased"] - twin_porosity) < 0.004


def test_cracking_rises_with_compression(tmp_path: Path) -> None:
    base = {**SMALL, "active_fraction": 0.40}
    assert crack_probability({"compression": 0.2, "drying_rate_um_s": 0.5}) < crack_probability(
        {"compression": 0.33, "drying_rate_um_s": 0.5}
    )
    cracked = {}
    for compression in (0.2, 0.3, 0.38):
        made = [
            run(robot(tmp_path, seed=seed), "fabricate", {**base, "compression": compression})
            for seed in range(8)
        ]
        cracked[compression] = sum(m["status"] == "cracked" for m in made)
    assert cracked[0.2] <= 1 and cracked[0.38] >= 6
    assert cracked[0.2] <= cracked[0.3] <= cracked[0.38]


def test_fast_drying_cracks_the_coating(tmp_path: Path) -> None:
    made = [
        run(robot(tmp_path, seed=seed), "fabricate", {**SMALL, "drying_rate_um_s": 5.0})
        for seed in range(4)
    ]
    assert sum(m["status"] == "cracked" for m in made) >= 3
    wet_um = 2 * 70.0 / (1 - 0.15)  # twice the dried coating of the default recipe
    assert all(m["duration_s"] == pytest.approx(600 + wet_um / 5.0 + 120, rel=0.1) for m in made)


def test_a_cracked_sample_has_open_cracks_and_fails_inspection(tmp_path: Path) -> None:
    made = run(robot(tmp_path), "fabricate", {**SMALL, "compression": 0.4, "active_fraction": 0.4})
    assert made["status"] == "cracked"
    micro, meta = load_sample(tmp_path, made["sample_id"])
    assert meta["defects"]["crack_density_per_mm2"] > 0
    intact = TWIN.generate(meta["true_recipe"], shape=micro.shape, seed=meta["seed"])
    top = micro.labels[:, :, -1] == 0
    assert top.sum() > (intact.labels[:, :, -1] == 0).sum() + micro.shape[0]  # an open line
    seen = run(SimInspector(tmp_path, time_scale=0), "inspect", {"sample_id": made["sample_id"]})
    assert seen["cracks_per_mm2"] > 0 and not seen["passed"]


def test_low_binder_delaminates(tmp_path: Path) -> None:
    made = [
        run(robot(tmp_path, seed=seed), "fabricate", {**SMALL, "cbd_fraction": 0.0})
        for seed in range(4)
    ]
    assert sum(m["status"] == "delaminated" for m in made) >= 3
    meta = load_sample(tmp_path, made[0]["sample_id"])[1]
    assert 0.05 < meta["defects"]["delamination_fraction"] < 0.55


def test_out_of_limit_compression_is_refused_before_anything_runs(tmp_path: Path) -> None:
    lab = robot(tmp_path)
    with pytest.raises(
        RefusedError, match=r"compression=0.45 exceeds the safety limit 0.4"
    ) as caught:
        lab.validate("fabricate", {"compression": 0.45})
    assert caught.value.code == ErrorCode.refused_limit
    assert lab.runs() == 0 and not (tmp_path / "samples").exists()


def test_a_recipe_outside_the_twin_space_is_invalid(tmp_path: Path) -> None:
    lab = robot(tmp_path)
    with pytest.raises(InvalidRequest, match="active_fraction' = 0.7 is above its upper bound"):
        lab.validate("fabricate", {"active_fraction": 0.7})
    with pytest.raises(InvalidRequest, match="breaks the constraint"):
        lab.validate("fabricate", {"compression": 0.38})
    with pytest.raises(InvalidRequest, match="do not match its schema"):
        lab.validate("fabricate", {"solvent": "NMP"})
    assert lab.runs() == 0


@pytest.mark.parametrize("instrument", [SimInspector, SimXRD])
def test_an_unknown_sample_is_refused_by_name(tmp_path: Path, instrument: type[Instrument]) -> None:
    run(robot(tmp_path), "fabricate", SMALL)
    reader = instrument(tmp_path, time_scale=0)
    action = next(iter(reader.actions))
    with pytest.raises(InvalidRequest, match="no sample 'S00042'.*known: S00001") as caught:
        reader.validate(action, {"sample_id": "S00042"})
    assert caught.value.code == ErrorCode.invalid_params
    with pytest.raises(InvalidRequest, match="no sample '../samples'"):
        reader.validate(action, {"sample_id": "../samples"})


def test_xrd_reads_the_true_composition_back_reproducibly(tmp_path: Path) -> None:
    readings = []
    for lab in (tmp_path / "a", tmp_path / "b"):
        made = run(robot(lab, seed=1), "fabricate", SMALL)
        readings.append(
            run(SimXRD(lab, seed=2, time_scale=0), "measure", {"sample_id": made["sample_id"]})
        )
        readings.append(
            run(SimXRD(lab, seed=2, time_scale=0), "measure", {"sample_id": made["sample_id"]})
        )
    assert readings[0] == readings[2] and readings[0] != readings[1]
    micro = load_sample(tmp_path / "a", "S00001")[0]
    volume = micro.phase_fractions()
    active_mass = DENSITY_G_CM3["active"] * volume["active"]
    expected = active_mass / (active_mass + DENSITY_G_CM3["cbd"] * volume["cbd"])
    for reading in readings:
        assert reading["active_weight_fraction"] == pytest.approx(expected, abs=0.02)
        assert reading["active_weight_fraction"] + reading["cbd_weight_fraction"] == pytest.approx(
            1
        )
    # the lab lost 2 % of its active material: XRD sees less of it than the set recipe implies
    set_mass = DENSITY_G_CM3["active"] * 0.48
    assert expected < set_mass / (set_mass + DENSITY_G_CM3["cbd"] * 0.08)


def test_inspector_passes_a_good_sample_reproducibly(tmp_path: Path) -> None:
    readings = []
    for lab in (tmp_path / "a", tmp_path / "b"):
        made = run(robot(lab, seed=1), "fabricate", SMALL)
        assert made["status"] == "ok"
        readings.append(
            run(
                SimInspector(lab, seed=5, time_scale=0), "inspect", {"sample_id": made["sample_id"]}
            )
        )
    assert readings[0] == readings[1]
    assert readings[0]["passed"] and readings[0]["cracks_per_mm2"] == 0


def test_fabricate_inspect_and_measure_through_a_server(tmp_path: Path) -> None:
    servers = [
        Server(instrument, "tcp://127.0.0.1:*", tmp_path / f"{instrument.kind}.sqlite").start()
        for instrument in (
            SimRobot(tmp_path, time_scale=1e-4, box_voxels=32),
            SimInspector(tmp_path, time_scale=1e-4),
            SimXRD(tmp_path, time_scale=1e-4),
        )
    ]
    try:
        clients = [
            InstrumentClient(server.endpoint, retry_s=0.5, liveness_s=3.0) for server in servers
        ]
        made = clients[0].call("fabricate", SMALL, timeout=10)
        seen = clients[1].call("inspect", {"sample_id": made["sample_id"]}, timeout=10)
        phases = clients[2].call("measure", {"sample_id": made["sample_id"]}, timeout=10)
        with pytest.raises(RefusedError):
            clients[0].call("fabricate", {"drying_rate_um_s": 9.0}, timeout=10)
        for client in clients:
            client.close()
    finally:
        for server in servers:
            server.stop()
    assert made["sample_id"] == seen["sample_id"] == phases["sample_id"] == "S00001"
    assert 0.85 < phases["active_weight_fraction"] < 0.95
