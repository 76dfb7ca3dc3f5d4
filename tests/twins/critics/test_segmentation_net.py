"""The learned segmentation method: a tiny U-Net trains in seconds, saves, loads and refuses."""

from pathlib import Path

import numpy as np
import pytest

from poreloop.agent.cli import main
from poreloop.instruments.tomography import render, write_scan
from poreloop.twins import Microstructure
from poreloop.twins.critics import segmentation_net
from poreloop.twins.critics.segmentation import segment
from poreloop.twins.errors import TwinError
from poreloop.twins.manufacturing.electrode import ElectrodeTwin


def scan(micro: Microstructure, exposure_s: float, rng: np.random.Generator) -> np.ndarray:
    return render(micro, micro.voxel_size_um, exposure_s, rng)


@pytest.fixture(scope="module")
def structures() -> list[Microstructure]:
    return [ElectrodeTwin().generate({}, shape=(32, 32, 32), seed=seed) for seed in (1, 2, 3)]


@pytest.fixture(scope="module")
def net(structures: list[Microstructure]) -> segmentation_net.SegmentationNet:
    return segmentation_net.train(
        structures[:2], scan, [1.0], twin="li_ion_electrode", steps=60, crop=16, channels=4
    )


def test_a_tiny_unet_beats_a_deliberately_bad_threshold(structures, net) -> None:
    held_out = structures[2]
    grey = scan(held_out, 1.0, np.random.default_rng(9))
    # the darkest 15 % called pore: a threshold that ignores how much pore there is (~35 %)
    bad = np.digitize(grey, np.quantile(grey, [0.15, 0.3])).astype(np.uint8)
    learned = segmentation_net.phase_iou(net(grey, 3), held_out)
    assert learned["pore"] > segmentation_net.phase_iou(bad, held_out)["pore"] + 0.1
    assert learned["active"] > 0.5


def test_a_saved_model_segments_alike_and_names_its_phases(structures, net, tmp_path) -> None:
    path = tmp_path / "unet.pt"
    net.save(path)
    grey = scan(structures[2], 1.0, np.random.default_rng(1))
    again = segmentation_net.SegmentationNet.load(path)
    np.testing.assert_array_equal(again(grey, 3), net(grey, 3))
    assert again.trained == net.trained and again.phases == ["pore", "cbd", "active"]
    micro = segment(grey, structures[2].phases, 0.5, method=str(path))
    assert micro.phases == structures[2].phases
    with pytest.raises(TwinError, match="segments pore, cbd, active .* not pore, active"):
        segment(grey, {0: "pore", 1: "active"}, 0.5, method=str(path))


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no segmentation model at"), (b"not a model", "is not a poreloop segmentation model")],
)
def test_a_file_that_is_not_a_model_is_refused_in_one_line(tmp_path, content, message) -> None:
    path = tmp_path / "model.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TwinError, match=message) as info:
        segmentation_net.SegmentationNet.load(path)
    assert "\n" not in str(info.value) and "weights_only" not in str(info.value)  # no unsafe advice


def test_a_model_of_another_format_is_refused(net, tmp_path, monkeypatch) -> None:
    path = tmp_path / "old.pt"
    net.save(path)
    monkeypatch.setattr(segmentation_net, "FORMAT", segmentation_net.FORMAT + 1)
    with pytest.raises(TwinError, match="train it again"):
        segmentation_net.SegmentationNet.load(path)


def test_segmenter_train_writes_a_model_that_segment_uses(tmp_path: Path, capsys) -> None:
    model = tmp_path / "unet.pt"
    argv = ["segmenter", "train", "--twin", "li_ion_electrode", "--out", str(model)]
    assert main([*argv, "--structures", "1", "--edge", "32", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "held-out IoU, unet: pore" in out and "held-out IoU, tomograph: pore" in out
    micro = ElectrodeTwin().generate({}, shape=(32, 32, 32), seed=5)
    grey_path = tmp_path / "scan.tif"
    write_scan(grey_path, scan(micro, 1.0, np.random.default_rng(0)), 0.5, "S1")
    labels = tmp_path / "labels.tif"
    argv = ["segment", str(grey_path), "--phases", "pore,active,cbd", "--out", str(labels)]
    assert main([*argv, "--method", str(model)]) == 0
    assert Microstructure.load(labels).shape == (32, 32, 32)
    assert main(["segmenter", "train", "--twin", "li_ion_electrode", "--out", "x.npz"]) == 2


def test_a_campaign_segments_with_a_model_only_of_its_twin_s_phases(structures, tmp_path) -> None:
    from poreloop.agent.config import ConfigError, load_config
    from poreloop.twins.manufacturing import get_twin

    fibres = get_twin("gdl").generate({}, shape=(32, 32, 32), seed=0)
    segmentation_net.train([fibres], scan, [1.0], twin="gdl", steps=1, crop=16).save(
        tmp_path / "gdl.pt"
    )
    config = tmp_path / "c.yaml"
    text = "objectives: {{energy_density_wh_l_1c: max}}\nlab: {{simulated: lab.yaml, segmentation: {}}}\n"
    (tmp_path / "lab.yaml").write_text("instruments: {}\n")
    for method, message in [
        (
            "gdl.pt",
            "lab.segmentation: the model segments pore, fibre, binder, ptfe, the twin li_ion",
        ),
        ("absent.pt", "no segmentation model at"),
        ("unet", "unknown segmentation method 'unet'"),
    ]:
        config.write_text(text.format(method))
        with pytest.raises(ConfigError, match=message):
            load_config(config)


def test_training_without_steps_is_refused_in_one_line(structures) -> None:
    with pytest.raises(TwinError, match="at least one step, not 0"):
        segmentation_net.train(structures[:1], scan, [1.0], twin="x", steps=0, crop=16)


def test_training_that_diverges_stops_with_the_step(structures, monkeypatch) -> None:
    monkeypatch.setattr(segmentation_net, "LEARNING_RATE", 1e30)
    with pytest.raises(TwinError, match="training diverged at step [2-9]"):
        segmentation_net.train(structures[:1], scan, [1.0], twin="x", steps=9, crop=16)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (lambda grey: np.full(grey.shape, np.nan), "scan at 1 s holds NaN or infinite greys"),
        (lambda grey: np.zeros_like(grey), "show active .* no brighter than pore"),
    ],
)
def test_training_scans_from_a_scanner_model_gone_wrong_are_refused(
    structures, fault, message
) -> None:
    def broken(micro: Microstructure, exposure_s: float, rng: np.random.Generator) -> np.ndarray:
        return fault(scan(micro, exposure_s, rng))

    with pytest.raises(TwinError, match=message):
        segmentation_net.train(structures[:1], broken, [1.0], twin="x", steps=3, crop=16)


def test_the_model_reads_scans_in_its_training_scans_calibration(structures, net) -> None:
    pore, cbd, active = net.trained.grey_levels
    assert pore < cbd < active  # the tomograph's calibration, as the training scans show it
    for exposure in (0.1, 10.0):  # noisier and cleaner than training: the same calibration
        net(scan(structures[2], exposure, np.random.default_rng(3)), 3)
    phases = structures[2].phases
    for only in phases:  # nothing but one phase: the median at that phase's own grey
        alone = Microstructure(np.full((16, 16, 16), only, np.uint8), 0.5, phases)
        net(scan(alone, 0.1, np.random.default_rng(3)), 3)
    grey = scan(structures[2], 1.0, np.random.default_rng(3))
    for other in (grey // 257, grey / 65535.0):  # 8-bit, and scaled to 0..1
        with pytest.raises(TwinError, match="another grey calibration; rescale"):
            net(other, 3)


def test_a_voxel_s_scores_depend_on_no_voxel_beyond_the_margin(net) -> None:
    import torch

    x = torch.rand(1, 1, 64, 64, 64, generator=torch.Generator().manual_seed(0))
    net.model.eval()
    with torch.no_grad():
        before = net.model(x)
        x[0, 0, 32, 32, 32] += 10.0
        changed = (net.model(x) - before).abs().amax(dim=(0, 1)) > 0
    reach = np.abs(np.argwhere(changed.numpy()) - 32).max()
    assert 0 < reach <= segmentation_net.MARGIN


def test_a_scan_larger_than_a_tile_is_classified_as_in_one_pass(net, monkeypatch) -> None:
    low, _, high = net.trained.grey_levels
    grey = np.random.default_rng(4).uniform(low, high, (101, 37, 30)).astype(np.uint16)
    whole = net(grey, 3)
    monkeypatch.setattr(segmentation_net, "TILE", 64)  # 16 voxels classified per box along x
    assert len(list(segmentation_net.boxes((104, 40, 32)))) == 7
    np.testing.assert_array_equal(net(grey, 3), whole)
