"""The campaign's bookkeeping of lab samples, on its real journal and planner (no Ray, no lab)."""

from __future__ import annotations

from pathlib import Path

from poreloop.agent.campaign import Campaign
from poreloop.agent.config import load_config
from poreloop.agent.store import Store

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_every_sample_the_journal_calls_final_is_told_before_the_lab_counts_as_idle(
    tmp_path: Path,
) -> None:
    """Samples that end together are all told, and the lab is idle only once every final
    sample was: a sample that ends between two looks is not lost (a fast lab ends several
    between two polls)."""
    campaign = Campaign(load_config(CONFIGS / "quick.yaml", out=str(tmp_path)))
    campaign._planner()
    store = campaign.store
    first, second, third = (
        store.add_sample(1, {**recipe, **campaign.fixed})
        for recipe in campaign._ask(3, fidelity="lab")
    )
    store.update_sample(first, "measured", {"outcome": {"energy_density_wh_l_1c": 300.0}})
    store.update_sample(second, "failed", {"recipe_at_fault": True}, reason="cracked")

    assert not campaign._absorb_lab()  # the third is still in the lab
    assert len(campaign.planner.observations) == 2
    store.update_sample(third, "unknown", reason="the robot died mid-action")
    assert campaign._absorb_lab()
    assert len(campaign.planner.observations) == 2  # an unknown outcome is never guessed
    assert [s["told"] for s in Store(tmp_path).samples()] == [1, 1, 0]
