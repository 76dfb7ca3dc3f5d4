"""The neural critic in a campaign: one that does not fit the config is refused before anything
starts, every mismatch on its own line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from poreloop.agent.cli import main
from poreloop.agent.config import ConfigError, load_config
from poreloop.agent.learning import check_critic
from poreloop.twins.critics import surrogate
from poreloop.twins.critics.chain import get_chain
from poreloop.twins.manufacturing.electrode import ElectrodeTwin

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def critic() -> surrogate.NeuralCritic:
    """A critic of the electrode chain's structure stages at 20^3 (one epoch: its fit is not
    what these tests are about)."""
    twin, chain = ElectrodeTwin(), get_chain("electrode", cell=False)
    data = surrogate.TrainingSet("li_ion_electrode", "electrode", dict(twin.phases))
    for seed in range(20):
        recipe = {"particle_radius_um": 2.0, "voxel_size_um": 0.5}
        micro = twin.generate(recipe, shape=(20, 20, 20), seed=seed)
        data.add(micro, chain.evaluate(micro))
    return surrogate.train(data, ["porosity", "tau_pore_z"], members=1, width=2, epochs=1)


def test_a_critic_that_does_not_fit_the_config_is_refused_line_by_line(critic) -> None:
    config = load_config(CONFIGS / "quick.yaml")  # 24^3 boxes, an energy-density objective
    with pytest.raises(ConfigError) as caught:
        check_critic(critic, config)
    lines = str(caught.value).splitlines()
    assert "learnt [20, 20, 20] boxes, the campaign screens 24^3" in lines[0]
    assert "does not predict ['energy_density_wh_l_1c']" in lines[1]
    assert lines[-1] == "train it for this config: poreloop surrogate train CONFIG"


def test_a_campaign_without_its_critic_or_training_set_stops_before_it_starts(
    critic, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = yaml.safe_load((CONFIGS / "quick.yaml").read_text())
    config.update(lab=None, out=str(tmp_path / "run"))
    config["screening"]["surrogate"] = {"model": "critic.pt"}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 2
    assert f"no neural critic at '{tmp_path / 'critic.pt'}'" in capsys.readouterr().err
    config["screening"]["size"] = 20
    config["objectives"] = {"tau_pore_z": "min"}
    path.write_text(yaml.safe_dump(config))
    critic.save(tmp_path / "critic.pt")
    assert main(["run", str(path)]) == 2
    assert "no training set at" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written: the same command runs once fixed
