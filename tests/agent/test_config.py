"""Campaign configs: every shipped config loads; a bad one names every problem, one a line."""

from __future__ import annotations

from pathlib import Path

import pytest

from poreloop.agent.config import CampaignConfig, ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    "name", ["electrode.yaml", "electrode-fast.yaml", "quick.yaml", "gdl.yaml"]
)
def test_shipped_configs_load(name: str) -> None:
    config = load_config(CONFIGS / name)
    assert isinstance(config, CampaignConfig)
    if config.lab is not None and config.lab.simulated is not None:
        assert config.lab.simulated.is_file()


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines)
    return lines


def test_every_problem_gets_its_own_line_with_a_suggestion(tmp_path: Path) -> None:
    lines = _problems(
        tmp_path,
        "twin: {name: li_ion_electrod}\n"
        "screening: {size: -3}\n"
        "objectives: {energy_density_wh_l_1c: maximise}\n"
        "planer: bayes\n",
    )
    assert len(lines) == 4
    assert any(
        "twin.name: unknown twin 'li_ion_electrod'; did you mean 'li_ion_electrode'" in line
        for line in lines
    )
    assert any(line.endswith("screening.size: Input should be greater than 0") for line in lines)
    assert any("objectives.energy_density_wh_l_1c" in line for line in lines)
    assert any("planer: unknown setting; did you mean 'planner'?" in line for line in lines)


def test_design_variables_are_narrowed_never_widened_and_resolution_is_not_one(
    tmp_path: Path,
) -> None:
    lines = _problems(
        tmp_path,
        "twin:\n"
        "  free: {compression: [0.1, 0.6], voxel_size_um: null, active_fraction: [0.5, 0.4]}\n"
        "  fixed: {compression: 0.2}\n"
        "screening: {voxel_size_um: 1.0}\n"
        "objectives: {energy_density_wh_l_1c: max}\n",
    )
    text = "\n".join(lines)
    assert "voxel_size_um is the screening resolution" in text
    assert "['compression'] are both free and fixed" in text
    assert "twin.free.compression: [0.1, 0.6] leaves the twin's bounds [0.0, 0.4]" in text
    assert "twin.free.active_fraction: expected low < high" in text
    assert "cannot resolve particles of radius 1.0 um" in text


def test_a_lab_is_simulated_or_running_not_both(tmp_path: Path) -> None:
    lines = _problems(
        tmp_path,
        "objectives: {energy_density_wh_l_1c: max}\n"
        "lab: {simulated: lab.yaml, endpoints: {robot: 'tcp://127.0.0.1:1'}}\n",
    )
    assert any("give exactly one of lab.simulated" in line for line in lines)


def test_a_lab_endpoint_that_is_no_tcp_address_is_named(tmp_path: Path) -> None:
    endpoints = {
        kind: f"tcp://127.0.0.1:{5555 + i}"
        for i, kind in enumerate(("robot", "inspector", "tomograph", "cycler"))
    }
    endpoints["cycler"] = "http://127.0.0.1:5558"
    lines = _problems(
        tmp_path,
        f"objectives: {{energy_density_wh_l_1c: max}}\nlab: {{endpoints: {endpoints}}}\n",
    )
    assert any("lab.endpoints.cycler: expected an endpoint like tcp://" in line for line in lines)


def test_a_missing_or_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping of settings, got list"):
        load_config(tmp_path / "list.yaml")


def test_a_lifetime_model_is_found_beside_the_config_and_must_read_the_cycles_run(
    tmp_path: Path,
) -> None:
    from poreloop.instruments.aging import simulated_cells
    from poreloop.twins.critics.lifetime import LifetimeModel

    LifetimeModel.fit(*simulated_cells(20, 60, seed=0), 60).save(tmp_path / "models" / "life.json")
    (tmp_path / "lab.yaml").write_text("instruments: []\n")
    path = tmp_path / "c.yaml"
    for cycles, problem in ((60, None), (500, "reads the first 60; set cycles: 60")):
        path.write_text(
            "objectives: {energy_density_wh_l_1c: max}\n"
            f"lab: {{simulated: lab.yaml, cycle_life: {{top: 1, cycles: {cycles}, "
            "lifetime: models/life.json}}\n"
        )
        settings = load_config(path).lab
        assert (
            settings is not None and settings.cycle_life.lifetime == tmp_path / "models/life.json"
        )
        if problem is None:
            assert settings.cycle_life.model().early_cycles == 60
        else:
            with pytest.raises(ConfigError, match=problem):
                settings.cycle_life.model()
    (tmp_path / "models" / "life.json").write_text("{}")
    with pytest.raises(ConfigError, match="lab.cycle_life.lifetime: .*another format"):
        load_config(path).lab.cycle_life.model()  # type: ignore[union-attr]
