"""The campaign journal: durable rows, dispatches written before they are sent, the lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from poreloop.agent.errors import AgentError
from poreloop.agent.store import Store


def test_a_dispatch_is_journalled_once_and_replayed_from_its_key(tmp_path: Path) -> None:
    store = Store(tmp_path)
    sample = store.add_sample(1, {"compression": 0.2})
    assert store.begin_dispatch("k1", sample, "robot", "fabricate", {"compression": 0.2}) is None
    again = store.begin_dispatch("k1", sample, "robot", "fabricate", {"compression": 0.2})
    assert again is not None and again["state"] == "sent"
    store.end_dispatch("k1", "done", {"sample_id": "S00001"})
    reopened = Store(tmp_path)  # a resumed campaign sees the same rows
    (row,) = reopened.dispatches()
    assert (row["key"], row["state"], row["outcome"]) == ("k1", "done", {"sample_id": "S00001"})


def test_samples_merge_results_and_refuse_an_unknown_stage(tmp_path: Path) -> None:
    store = Store(tmp_path)
    sample = store.add_sample(1, {"x": 1.0})
    store.update_sample(sample, "fabricated", {"robot_status": "ok"}, lab_id="S00001")
    store.update_sample(sample, "inspected", {"inspection": {"passed": True}})
    row = store.sample(sample)
    assert row["stage"] == "inspected" and row["lab_id"] == "S00001"
    assert row["results"] == {"robot_status": "ok", "inspection": {"passed": True}}
    with pytest.raises(ValueError, match="unknown stage 'baked'"):
        store.update_sample(sample, "baked")


def test_planner_state_and_what_it_was_told_are_saved_together(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.planner_state() == (None, 0)
    sample = store.add_sample(1, {"x": 1.0})
    ids = store.add_screens(
        1, [{"recipe": {"x": 0.5}, "seed": 3, "failed": False, "properties": {"y": 1.0}}]
    )
    store.save_planner(1, {"planner": "sobol"}, max(ids), [sample])
    assert store.planner_state() == ({"planner": "sobol"}, ids[-1])
    assert store.sample(sample)["told"] == 1


def test_the_lock_tells_a_running_campaign_from_an_interrupted_one(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert not store.running()
    held = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from poreloop.agent.store import Store;"
            f"lock = Store({str(tmp_path)!r}).hold(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert held.stdout.readline().strip() == "held"
        assert store.running()
        with pytest.raises(AgentError, match="already running"):
            store.hold()
    finally:
        held.kill()
        held.wait()
        held.stdout.close()
    assert not store.running()  # the lock died with its process (kill -9 included)
