"""Campaigns end to end: the CLI, Ray, the simulated lab as server subprocesses over ZeroMQ.

Each campaign runs as ``poreloop run`` in a subprocess that joins the session's Ray
(``RAY_ADDRESS``), so it can be killed like a user's would be.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CLI = "from poreloop.agent.cli import main; raise SystemExit(main())"


def poreloop(*args: str | Path, ray_address: str, log: Path) -> subprocess.Popen[bytes]:
    """``poreloop ARGS`` in a subprocess; its output goes to ``log`` (read it on failure)."""
    env = {**os.environ, "RAY_ADDRESS": ray_address}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", CLI, *map(str, args)], stdout=out, stderr=out, env=env
        )


def finish(process: subprocess.Popen[bytes], log: Path, timeout: float = 400) -> None:
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"the campaign did not finish:\n{log.read_text()[-3000:]}") from None
    assert code == 0, f"exit {code}:\n{log.read_text()[-3000:]}"


def status(out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CLI, "status", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def rows(database: Path, query: str) -> list[tuple]:
    with sqlite3.connect(database) as db:
        return db.execute(query).fetchall()


def test_a_quick_campaign_finishes_learns_and_reports(tmp_path: Path, ray_address: str) -> None:
    out, log = tmp_path / "run", tmp_path / "log.txt"
    finish(
        poreloop(
            "run",
            CONFIGS / "quick.yaml",
            "--out",
            out,
            "--json-log",
            ray_address=ray_address,
            log=log,
        ),
        log,
    )
    summary = status(out)
    lab = summary["lab"]
    assert summary["state"] == "finished" and summary["iterations"] >= 2
    assert lab["dispatched"] == 4 and lab["measured"] + lab["failed"] + lab["unknown"] == 4
    assert lab["measured"] >= 2 and summary["best"]["energy_density_wh_l_1c"] > 0
    measured = rows(out / "campaign.sqlite", "SELECT results FROM samples WHERE stage = 'measured'")
    for (results,) in measured:  # every lab result journalled with the scan that came before it
        results = json.loads(results)
        assert results["outcome"]["energy_density_wh_l_1c"] > 0
        assert results["measured_structure"]["properties"]["porosity"] > 0
    assert set(summary["calibration"]) == {
        "compression_offset",
        "active_fraction_factor",
        "particle_radius_um_factor",
    }
    report = (out / "report.html").read_text()
    assert "data:image/png;base64," in report and "Twin against lab" in report
    told = rows(out / "campaign.sqlite", "SELECT count(*) FROM samples WHERE told = 1")[0][0]
    assert lab["measured"] <= told <= lab["measured"] + lab["failed"]


def test_kill_9_mid_dispatch_then_resume_makes_no_sample_twice(
    tmp_path: Path, ray_address: str
) -> None:
    out, log = tmp_path / "run", tmp_path / "log.txt"
    process = poreloop(
        "run", CONFIGS / "quick.yaml", "--out", out, "--json-log", ray_address=ray_address, log=log
    )
    database = out / "campaign.sqlite"
    give_up = time.monotonic() + 300
    while time.monotonic() < give_up:  # until a fabricate is journalled as sent
        if database.exists():
            try:
                sent = rows(database, "SELECT count(*) FROM dispatches WHERE action = 'fabricate'")
            except sqlite3.OperationalError:
                sent = [(0,)]
            if sent[0][0] >= 1:
                break
        time.sleep(0.05)
    else:
        process.kill()
        raise AssertionError(f"no dispatch within 300 s:\n{log.read_text()[-3000:]}")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert status(out)["state"] == "interrupted"

    finish(
        poreloop(
            "run",
            CONFIGS / "quick.yaml",
            "--out",
            out,
            "--resume",
            "--json-log",
            ray_address=ray_address,
            log=log,
        ),
        log,
    )
    summary = status(out)
    samples = sorted(p.name for p in (out / "lab" / "samples").glob("S*"))
    assert summary["state"] == "finished"
    assert len(samples) == summary["lab"]["fabricated"]
    made = rows(
        out / "lab" / "journals" / "robot.sqlite",
        "SELECT idempotency_key, state FROM actions WHERE action = 'fabricate'",
    )
    assert sum(state == "done" for _, state in made) == len(samples)  # each made once
    asked = rows(database, "SELECT key FROM dispatches WHERE action = 'fabricate'")
    assert sorted(key for key, _ in made) == sorted(key for (key,) in asked)  # one key a sample
    finished = rows(database, "SELECT stage FROM samples")
    assert all(stage in ("measured", "failed", "unknown") for (stage,) in finished)
    assert len(finished) == 4


def test_a_bad_config_is_one_line_per_problem_and_nothing_starts(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        yaml.safe_dump(
            {"twin": {"name": "li_ion_electrod"}, "objectives": {"x": "maximise"}, "planer": 1}
        )
    )
    done = subprocess.run(
        [sys.executable, "-c", CLI, "run", str(config), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("poreloop: error: ") and len(lines) == 3
    assert (
        "did you mean 'li_ion_electrode'" in done.stderr and "did you mean 'planner'" in done.stderr
    )
    assert not (tmp_path / "run").exists()
