"""The neural critic: a tiny ensemble trains in seconds on twin structures scored by the physics
chain, its intervals cover held-out structures, and it saves, loads, refuses and defers."""

from __future__ import annotations

import json
import multiprocessing
from dataclasses import replace

import numpy as np
import pytest

from poreloop.agent.cli import main
from poreloop.twins.critics import surrogate
from poreloop.twins.critics.chain import CELL_INPUTS, get_chain
from poreloop.twins.errors import CriticError, TwinError
from poreloop.twins.manufacturing.electrode import ElectrodeTwin
from poreloop.twins.microstructure import Microstructure

EDGE = 20
PROPERTIES = ["porosity", "tau_pore_z", "sigma_eff_solid_z_s_m", "ssa_per_um"]


def scored(count: int, seed: int) -> surrogate.TrainingSet:
    """``count`` electrodes of small particles at 20^3, spread over porosity and binder, scored
    by the electrode chain's structure stages (no cell model: seconds for all)."""
    twin, chain = ElectrodeTwin(), get_chain("electrode", cell=False)
    data = surrogate.TrainingSet("li_ion_electrode", "electrode", dict(twin.phases))
    rng = np.random.default_rng(seed)
    for index in range(count):
        recipe = {
            "active_fraction": rng.uniform(0.35, 0.55),
            "cbd_fraction": rng.uniform(0.04, 0.15),
            "particle_radius_um": rng.uniform(1.5, 2.5),
            "thickness_um": rng.uniform(30, 120),
            "voxel_size_um": 0.5,
        }
        micro = twin.generate(recipe, shape=(EDGE,) * 3, seed=seed * 1000 + index)
        data.add(micro, chain.evaluate(micro))
    return data


@pytest.fixture(scope="module")
def training() -> surrogate.TrainingSet:
    return scored(100, seed=1)


@pytest.fixture(scope="module")
def test_set() -> surrogate.TrainingSet:
    return scored(60, seed=2)


@pytest.fixture(scope="module")
def critic(training: surrogate.TrainingSet) -> surrogate.NeuralCritic:
    return surrogate.train(training, PROPERTIES, members=3, width=4, epochs=150, seed=0)


def predictions(
    critic: surrogate.NeuralCritic, data: surrogate.TrainingSet
) -> list[surrogate.Prediction]:
    micros = [data.structure(i) for i in range(len(data))]
    return critic.predict(micros, [values["thickness_um"] for values in data.values])


def test_its_90_percent_intervals_cover_held_out_structures(critic, training, test_set) -> None:
    """Calibrated on the ~20 training structures it did not fit, each property's intervals hold
    90 % of 60 new structures' true values: the conformal bound makes a coverage below 0.75
    about a 1 % event. Where this tiny ensemble learns (porosity, τ), coverage is not bought
    with useless intervals: they are narrower than the 90 % range of the training values,
    what a constant predictor would need."""
    found = predictions(critic, test_set)
    for key in PROPERTIES:
        assert 0.75 <= surrogate.coverage(test_set.column(key), found, key) <= 1.0, key
    for key in ("porosity", "tau_pore_z"):
        low, high = np.nanpercentile(training.column(key), [5, 95])
        assert np.median([p.high[key] - p.low[key] for p in found]) < high - low, key


def test_the_series_bound_the_head_reads_is_a_lower_bound_of_the_chain_s_tau(training) -> None:
    """τ ≥ ε·mean(1/φ) over the slices across an axis (a slice conducts at most its share φ of
    the area; slices add in series): the exact input never exceeds the solver's τ, and on a box
    of one phase but for one sparse slice it is the hand sum."""
    pore = (np.stack(training.labels)[:, None] == 0).astype(np.float32)
    bound = np.exp(surrogate._series_bounds(pore))[:, 4:]  # z: the pore, the rest
    for column, key in enumerate(("tau_pore_z", "tau_solid_z")):
        tau = training.column(key)
        known = np.isfinite(tau)
        assert known.sum() > 50 and np.all(bound[known, column] <= tau[known]), key
    box = np.ones((1, 1, 4, 4, 4), dtype=np.float32)
    box[..., 0] = 0
    box[0, 0, 0, 0, 0] = 1  # the slice z = 0 holds one voxel of 16
    z = surrogate._series_bounds(box)[0, 4]
    assert z == pytest.approx(np.log(49 / 64 * (16 + 3) / 4))


def test_it_predicts_better_than_the_training_mean(critic, training, test_set) -> None:
    found = predictions(critic, test_set)
    for key in ("porosity", "tau_pore_z"):
        truth = test_set.column(key)
        assert surrogate.r2(truth, [p.mean[key] for p in found], key) > 0.5, key
        constant = np.full(len(truth), np.nanmean(training.column(key)))
        assert surrogate.r2(truth, constant, key) < 0.05


def with_energy(data: surrogate.TrainingSet) -> surrogate.TrainingSet:
    """``data`` with a made-up energy density of the cell model's kind (full below a knee in
    τ·L²/ε, falling beyond it): the real cell model takes 0.3 s a structure."""
    values = []
    for found in data.values:
        loading = found["tau_pore_z"] * (found["thickness_um"] / 60) ** 2 / found["porosity"]
        full = 2000 * found["fraction_active"]
        values.append({**found, "energy_density_wh_l_1c": full / (1 + (loading / 20) ** 4)})
    return replace(data, values=values)


def test_it_composes_energy_from_its_learnt_cell_model_and_predicted_inputs(training, test_set):
    """Where the results hold every input of the cell model, the CNNs learn those inputs and
    each member learns the cell model from them; the energy density is their composition, and
    its intervals hold new structures' values as any other property's do."""
    key = "energy_density_wh_l_1c"
    critic = surrogate.train(with_energy(training), [key], members=3, width=4, epochs=150)
    assert critic.trained.composed == [key] and critic.properties[-1] == key
    assert set(CELL_INPUTS) - set(critic.learnt) == {"thickness_um"}
    test = with_energy(test_set)
    found = predictions(critic, test)
    truth = test.column(key)
    assert surrogate.r2(truth, [p.mean[key] for p in found], key) > 0.4  # 0.57 (direct: 0.54)
    assert surrogate.coverage(truth, found, key) >= 0.75
    refined = surrogate.train(test, critic.properties, epochs=1, start=critic)  # as a campaign does
    assert refined.properties == critic.properties and refined.trained.composed == [key]
    lacking = [
        {k: v for k, v in values.items() if k != "ssa_active_per_um"} for values in test.values
    ]
    without = replace(test, values=lacking)
    assert surrogate.train(without, [key], members=1, width=2, epochs=1).trained.composed == []


def test_a_saved_critic_predicts_alike_and_refuses_other_structures(critic, test_set, tmp_path):
    path = tmp_path / "critic.pt"
    critic.save(path)
    again = surrogate.NeuralCritic.load(path)
    assert again.trained == critic.trained
    assert predictions(again, test_set)[:3] == predictions(critic, test_set)[:3]
    micro = test_set.structure(0)
    other_phases = Microstructure(micro.labels, 0.5, {0: "pore", 1: "solid", 2: "cbd"})
    bigger = Microstructure(np.zeros((24, 24, 24), np.uint8), 0.5, micro.phases)
    walled = Microstructure(micro.labels, 0.5, micro.phases)  # a scan, say: it does not wrap
    finer = Microstructure(micro.labels, 0.25, micro.phases, periodic=micro.periodic)
    for structure, message in [
        (other_phases, "trained on phases"),
        (bigger, "trained on 20x20x20 boxes, the structure is 24x24x24"),
        (walled, "trained on boxes that wrap along x, y, the structure wraps along no axis"),
        (finer, "trained at 0.5 um voxels, the structure has 0.25 um"),
    ]:
        with pytest.raises(CriticError, match=message):
            again.predict([structure])


@pytest.mark.parametrize("periodic", [(0, 1), (), (0, 1, 2)])
def test_the_trunk_reading_one_phase_fewer_in_prediction_is_the_trained_trunk(periodic):
    """In prediction the first convolution reads every phase but the last, plus a term fixed
    by the box's shape: the same features as training's convolution of every phase, walls and
    wraps alike, also after the weights change."""
    import torch

    model = surrogate._network(2, 3, 4, 5, periodic)
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, 3, (2, 1, 9, 10, 12)))
    onehot = (labels == torch.arange(3).view(1, 3, 1, 1, 1)).float()
    for scale in (1.0, -1.5):  # the term kept for the first weights must not serve the second
        with torch.no_grad():
            model.trunk[1].weight.mul_(scale)
            assert torch.allclose(model._trunk(onehot), model.trunk(onehot), atol=1e-6)


def test_a_forked_child_predicts_as_its_parent(critic, test_set) -> None:
    """The layered bounds are computed on a second thread of each process, which a fork does
    not copy: the child starts its own (else it would wait for the parent's forever)."""
    expected = predictions(critic, test_set)[:2]  # the parent's thread has started
    fork = multiprocessing.get_context("fork")
    receive, send = fork.Pipe(duplex=False)
    child = fork.Process(target=lambda: send.send(predictions(critic, test_set)[:2]))
    child.start()
    try:
        assert receive.poll(60), "the forked child gave no predictions in 60 s"
        assert receive.recv() == expected
    finally:
        child.kill()
        child.join()


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no neural critic at"), (b"not a model", "is not a poreloop neural critic")],
)
def test_a_file_that_is_not_a_critic_is_refused_in_one_line(tmp_path, content, message) -> None:
    path = tmp_path / "critic.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TwinError, match=message):
        surrogate.NeuralCritic.load(path)


def test_the_chain_answers_where_sure_and_asks_physics_elsewhere(critic, test_set) -> None:
    physics = get_chain("electrode", cell=False)
    micro = test_set.structure(0)
    thickness = test_set.values[0]["thickness_um"]
    unsure = surrogate.SurrogateChain(physics, critic, trust=1e-9, watch=("tau_pore_z",))
    deferred = unsure.evaluate(micro, thickness)
    assert deferred.diagnostics["surrogate"] == 0.0
    assert deferred.properties == physics.evaluate(micro, thickness).properties
    trusting = surrogate.SurrogateChain(physics, critic, trust=1e9, watch=("tau_pore_z",))
    [prediction] = critic.predict([micro], [thickness])
    assert prediction.p_ok >= surrogate.SURE_OK  # the chain scored every training structure
    answer = trusting.evaluate(micro, thickness)
    assert answer.diagnostics["surrogate"] == 1.0 and "tau_pore_z" not in answer.diagnostics
    assert answer.properties["tau_pore_z"] == prediction.mean["tau_pore_z"]
    low, high = answer.diagnostics["tau_pore_z_low"], answer.diagnostics["tau_pore_z_high"]
    assert low < prediction.mean["tau_pore_z"] < high
    audited = surrogate.SurrogateChain(physics, critic, 1e9, ("tau_pore_z",), audit=1.0)
    checked = audited.evaluate(micro, thickness)
    assert checked.properties == deferred.properties  # physics answers an audited structure
    assert checked.diagnostics["audit"] == 1.0 and checked.diagnostics["surrogate"] == 0.0
    assert (checked.diagnostics["tau_pore_z_low"], checked.diagnostics["tau_pore_z_high"]) == (
        low,
        high,
    )
    with pytest.raises(CriticError, match=r"does not predict \['energy_density_wh_l_1c'\]"):
        surrogate.SurrogateChain(physics, critic, watch=("energy_density_wh_l_1c",))


def test_a_training_set_round_trips_and_keeps_its_calibration_split(training, tmp_path) -> None:
    path = tmp_path / "training.npz"
    training.save(path)
    again = surrogate.TrainingSet.load(path)
    assert again.digest() == training.digest() and again.ok == training.ok
    assert again.periodic == training.periodic == (0, 1)
    unwrapped = Microstructure(training.labels[0], 0.5, training.phases)
    with pytest.raises(CriticError, match="wrap along x, y, this one along no axis"):
        again.add(unwrapped, get_chain("electrode", cell=False).evaluate(unwrapped))
    split = surrogate.held_out(training)
    assert 25 <= split.sum() <= 43  # about a third of 100 (two σ); a fifth would give about 20
    grown = surrogate.TrainingSet.load(path)
    extra = scored(5, seed=3)
    for index in range(len(extra)):
        grown.labels.append(extra.labels[index])
        grown.values.append(extra.values[index])
    np.testing.assert_array_equal(surrogate.held_out(grown)[: len(training)], split)


def test_refining_continues_from_the_weights_on_more_data(critic, training, test_set) -> None:
    more = surrogate.TrainingSet(
        training.twin, training.chain, training.phases, periodic=training.periodic
    )
    for data in (training, test_set):
        more.labels += data.labels
        more.voxel_size_um += data.voxel_size_um
        more.values += data.values
        more.ok += data.ok
    refined = surrogate.train(more, PROPERTIES, epochs=2, seed=1, start=critic)
    assert refined.trained.examples == 160 and refined.trained.members == 3
    with pytest.raises(CriticError, match="same properties"):
        surrogate.train(more, ["porosity"], epochs=1, start=critic)
    walled = replace(more, periodic=())
    with pytest.raises(CriticError, match="phases and wrapping"):
        surrogate.train(walled, PROPERTIES, epochs=1, start=critic)


def test_the_cli_evaluates_a_structure_file(critic, test_set, tmp_path, capsys) -> None:
    model, structure = tmp_path / "critic.pt", tmp_path / "s.npz"
    critic.save(model)
    test_set.structure(0).save(structure)
    assert main(["surrogate", "evaluate", str(model), str(structure), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert set(answer["mean"]) == set(PROPERTIES) and 0 <= answer["p_ok"] <= 1
    assert answer["low"]["porosity"] <= answer["mean"]["porosity"] <= answer["high"]["porosity"]
    assert main(["surrogate", "evaluate", str(tmp_path / "none.pt"), str(structure)]) == 2
    assert "no neural critic at" in capsys.readouterr().err


def slabs(count: int, seed: int) -> surrogate.TrainingSet:
    """Active material cut by pore slabs normal to x or y, every few voxels: pore τ is about 1
    along the slabs and grows with their spacing across them (made-up values of the right
    kind: what is tested is that each axis's property follows that axis)."""
    twin = ElectrodeTwin()
    data = surrogate.TrainingSet("li_ion_electrode", "electrode", dict(twin.phases))
    rng = np.random.default_rng(seed)
    for _ in range(count):
        normal, spacing = int(rng.integers(2)), int(rng.integers(3, 7))
        labels = np.where(rng.random((16, 16, 16)) < 0.1, 2, 1).astype(np.uint8)
        planes = [slice(None)] * 3
        planes[normal] = slice(int(rng.integers(spacing)), None, spacing)
        labels[tuple(planes)] = 0
        along, across = 1.2, 1.0 + spacing
        tau = {f"tau_pore_{axis}": across if normal == i else along for i, axis in enumerate("xy")}
        data.labels.append(labels)
        data.voxel_size_um.append(0.5)
        data.values.append({**tau, "thickness_um": 50.0})
        data.ok.append(True)
    return data


def test_swapping_a_box_s_in_plane_axes_swaps_what_it_learns_of_them() -> None:
    """Training swaps x and y of random batches; the x and y properties must swap with them, or
    the critic is taught both values for either axis and cannot tell the slabs' direction."""
    keys = ["tau_pore_x", "tau_pore_y"]
    critic = surrogate.train(slabs(40, seed=1), keys, members=2, width=4, epochs=80, seed=0)
    test = slabs(20, seed=2)
    found = predictions(critic, test)
    for key in keys:
        assert surrogate.r2(test.column(key), [p.mean[key] for p in found], key) > 0.8, key


@pytest.mark.parametrize(
    ("keys", "phases", "axes"),
    [
        (["tau_pore_z", "sigma_eff_solid_z_s_m", "porosity"], {0: "pore", 1: "solid"}, [2]),
        (["k_x_m2", "tau_pore_z"], {0: "pore", 1: "fibre"}, [0, 1, 2]),  # training swaps x, y
        (["porosity", "ssa_per_um"], {0: "pore", 1: "solid"}, []),
        (["tau_a_z"], {0: "a", 1: "b"}, []),  # no pore to bound
    ],
)
def test_the_heads_read_layered_bounds_along_the_axes_transport_is_learnt(keys, phases, axes):
    assert surrogate._bound_axes(keys, phases) == axes
