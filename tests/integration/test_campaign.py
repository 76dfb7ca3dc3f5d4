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
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CLI = "from poreloop.agent.cli import main; raise SystemExit(main())"


def poreloop(*args: str | Path, ray_address: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """``poreloop ARGS`` in a subprocess; its output goes to ``log`` (read it on failure)."""
    env = {**os.environ, "RAY_ADDRESS": ray_address, **env}
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


def fast_lab(folder: Path) -> str:
    """``sim-lab.yaml`` at 1e-5 wall seconds per simulated second, for campaigns that need not
    catch the lab mid-action: a rate test's four simulated hours then pass in 0.15 s, not 15."""
    lab = yaml.safe_load((CONFIGS / "sim-lab.yaml").read_text())
    path = folder / "lab.yaml"
    path.write_text(yaml.safe_dump({**lab, "time_scale": 1e-5}))
    return str(path)


def quick(folder: Path, **changes: Any) -> Path:
    """``quick.yaml`` on the fast lab, ``changes`` replacing its top-level keys (of a section,
    the keys given)."""
    config = yaml.safe_load((CONFIGS / "quick.yaml").read_text())
    config["lab"]["simulated"] = fast_lab(folder)
    for key, value in changes.items():
        config[key] = {**config[key], **value} if isinstance(config.get(key), dict) else value
    path = folder / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


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
    """``query`` on a journal, read-only (a journal not yet made raises OperationalError)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return db.execute(query).fetchall()


def test_a_quick_campaign_finishes_learns_and_reports(tmp_path: Path, ray_address: str) -> None:
    out, log = tmp_path / "run", tmp_path / "log.txt"
    finish(
        poreloop(
            "run", quick(tmp_path), "--out", out, "--json-log", ray_address=ray_address, log=log
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
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    shown = [event["screened"] for event in events if event.get("event") == "progress"]
    assert shown[-1] == summary["screened"]  # the live count is the recipes screened


def test_the_best_sample_is_cycled_and_its_life_predicted_from_its_first_cycles(
    tmp_path: Path, ray_address: str
) -> None:
    """``lab.cycle_life`` with a lifetime model: the best measured sample is cycled for the
    model's early cycles only, and its predicted life is recorded, journalled and reported."""
    from poreloop.instruments.aging import simulated_cells
    from poreloop.twins.critics.lifetime import LifetimeModel

    LifetimeModel.fit(*simulated_cells(40, 100, seed=0), 100).save(tmp_path / "life.json")
    lab = {
        "samples": 3,
        "cycle_life": {"top": 1, "cycles": 100, "c_rate": 2.0, "lifetime": "life.json"},
    }
    out, log = tmp_path / "run", tmp_path / "log.txt"
    finish(
        poreloop(
            "run",
            quick(tmp_path, iterations=2, lab=lab),
            "--out",
            out,
            ray_address=ray_address,
            log=log,
        ),
        log,
    )
    results = [
        json.loads(r)
        for (r,) in rows(
            out / "campaign.sqlite", "SELECT results FROM samples WHERE stage = 'measured'"
        )
    ]
    [tested] = [r for r in results if "cycle_life" in r]
    assert tested["cycle_life"]["cycles"][-1] == 100 and tested["cycle_life"]["c_rate"] == 2.0
    life = tested["life"]
    assert 0 < life["low"] < life["cycles"] < life["high"]
    events = rows(out / "campaign.sqlite", "SELECT message FROM events WHERE kind = 'lifetime'")
    assert len(events) == 1 and "cycles to 80 %" in events[0][0]
    assert "life to 80 %, predicted" in (out / "report.html").read_text()


def test_kill_9_mid_dispatch_then_resume_makes_no_sample_twice(
    tmp_path: Path, ray_address: str
) -> None:
    out, log = tmp_path / "run", tmp_path / "log.txt"
    process = poreloop(
        "run", CONFIGS / "quick.yaml", "--out", out, "--json-log", ray_address=ray_address, log=log
    )
    database = out / "campaign.sqlite"
    wait_for(  # a fabricate journalled as sent
        lambda: rows(database, "SELECT count(*) FROM dispatches WHERE action = 'fabricate'")[0][0],
        "no dispatch",
        process,
        log,
    )
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


def test_sigterm_ends_the_campaign_as_ctrl_c_does(tmp_path: Path, ray_address: str) -> None:
    """A scheduler's stop: exit 143 and the journal itself says interrupted (Ray's handlers
    exit 15 here, and in a cluster the campaign started, print a stack trace and close
    nothing, the journal left saying running)."""
    out, log = tmp_path / "run", tmp_path / "log.txt"
    process = poreloop(
        "run", CONFIGS / "quick.yaml", "--out", out, "--json-log", ray_address=ray_address, log=log
    )
    database = out / "campaign.sqlite"
    wait_for(
        lambda: rows(database, "SELECT count(*) FROM dispatches WHERE action = 'fabricate'")[0][0],
        "no dispatch",
        process,
        log,
    )
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(120) == 143, log.read_text()[-3000:]
    [(state,)] = rows(database, "SELECT value FROM meta WHERE key = 'state'")
    assert json.loads(state) == "interrupted"


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


class ServedLab:
    """The campaign's four instruments as server subprocesses on free loopback ports, started
    apart from the campaign as a lab runs them (``lab.endpoints`` in its config); with
    ``approval`` the robot holds every motion for a person. ``time_scale`` as ``fast_lab``'s
    unless a test must catch an instrument mid-action."""

    def __init__(self, folder: Path, approval: bool = False, time_scale: float = 1e-5) -> None:
        from poreloop.instruments.lab_config import LabConfig

        self.config = LabConfig.model_validate(
            {
                "lab_dir": folder / "lab",
                "time_scale": time_scale,
                "instruments": [
                    {
                        "kind": kind,
                        "bind": f"tcp://127.0.0.1:{_free_port()}",
                        "approval": approval and kind == "robot",
                    }
                    for kind in ("robot", "inspector", "tomograph", "cycler")
                ],
            }
        )
        self.instruments = {i.kind: i for i in self.config.instruments}
        self.servers: dict[str, subprocess.Popen[str]] = {}

    def serve(self, kind: str) -> None:
        from poreloop.instruments.lab_config import server_command
        from poreloop.instruments.server import parse_ready_line

        process = subprocess.Popen(
            server_command(self.config, self.instruments[kind]),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert parse_ready_line(process.stdout.readline()) is not None
        self.servers[kind] = process

    def kill(self, kind: str) -> None:
        process = self.servers.pop(kind)
        process.kill()
        process.wait()
        process.stdout.close()

    def journal(self, kind: str) -> Path:
        return self.config.journal(self.instruments[kind])

    def campaign(self, path: Path, samples: int = 4, **changes: Any) -> Path:
        """``quick.yaml`` on this lab (``changes`` replace its top-level sections' keys)."""
        config = yaml.safe_load((CONFIGS / "quick.yaml").read_text())
        config["lab"] = {
            "endpoints": {kind: i.bind for kind, i in self.instruments.items()},
            "samples": samples,
            "per_iteration": 2,
            "timeout_s": 120,
        }
        for section, values in changes.items():
            config[section].update(values)
        path.write_text(yaml.safe_dump(config))
        return path

    def __enter__(self) -> ServedLab:
        (self.config.lab_dir / "journals").mkdir(parents=True)
        try:
            for kind in self.instruments:
                self.serve(kind)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for kind in list(self.servers):
            self.kill(kind)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(
    condition: Any, what: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 300
) -> None:
    """Poll ``condition()`` while the campaign runs (a journal not yet written counts as not
    yet); past ``timeout`` the campaign is killed and the test fails with its log."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up and process.poll() is None:
        try:
            if condition():
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise AssertionError(f"{what} while the campaign ran:\n{log.read_text()[-3000:]}")


def test_an_instrument_killed_mid_campaign_and_restarted(tmp_path: Path, ray_address: str) -> None:
    """The cycler dies (kill -9) while the campaign uses it and comes back on its journal: the
    campaign re-asks under its keys, no sample is lost, none is measured twice."""
    out, log = tmp_path / "run", tmp_path / "log.txt"
    database = out / "campaign.sqlite"
    with ServedLab(tmp_path, time_scale=1e-3) as lab:  # slow enough to kill a rate test
        config = lab.campaign(tmp_path / "c.yaml")
        process = poreloop(
            "run", config, "--out", out, "--json-log", ray_address=ray_address, log=log
        )
        wait_for(
            lambda: rows(database, "SELECT count(*) FROM dispatches WHERE instrument = 'cycler'")[
                0
            ][0],
            "no rate test",
            process,
            log,
        )
        lab.kill("cycler")
        time.sleep(3.0)  # down long enough for the campaign to notice
        lab.serve("cycler")
        finish(process, log)
    stages = [stage for (stage,) in rows(database, "SELECT stage FROM samples")]
    assert len(stages) == 4 and all(s in ("measured", "failed", "unknown") for s in stages)
    assert stages.count("measured") >= 2  # the other samples went on
    tests = rows(
        lab.journal("cycler"), "SELECT idempotency_key FROM actions WHERE action = 'rate_test'"
    )
    assert len(tests) == len({key for (key,) in tests})
    # what the restarted cycler's journal says happened to each test, the campaign recorded
    journal = dict(rows(lab.journal("cycler"), "SELECT idempotency_key, state FROM actions"))
    recorded = dict(rows(database, "SELECT key, state FROM dispatches WHERE instrument = 'cycler'"))
    for key, state in recorded.items():
        assert (
            journal.get(key)
            in {"done": ("done",), "failed": ("failed",), "unknown": ("unknown", "failed", None)}[
                state
            ]
        )


def test_a_digital_only_campaign_runs_without_instruments(tmp_path: Path, ray_address: str) -> None:
    config = yaml.safe_load((CONFIGS / "gdl.yaml").read_text())
    config["screening"].update(size=24, batch=4)
    config["iterations"] = 2
    (tmp_path / "gdl.yaml").write_text(yaml.safe_dump(config))
    out, log = tmp_path / "run", tmp_path / "log.txt"
    finish(
        poreloop(
            "run",
            tmp_path / "gdl.yaml",
            "--out",
            out,
            "--json-log",
            ray_address=ray_address,
            log=log,
        ),
        log,
    )
    summary = status(out)
    assert summary["state"] == "finished" and summary["screened"] == 8
    assert summary["lab"]["dispatched"] == 0 and not (out / "lab").exists()
    front = summary["best"]["pareto"]  # two objectives: the twin's Pareto set
    assert front and all(point["k_z_m2"] > 0 and point["deff_pore_z"] > 0 for point in front)


def test_a_held_motion_shows_as_waiting_while_screening_goes_on(
    tmp_path: Path, ray_address: str
) -> None:
    """With the robot's approval gate on, a fabricate waits for a person: the progress shows it
    with its key, the campaign screens meanwhile, and the person's approval lets it run."""
    out, log = tmp_path / "run", tmp_path / "log.txt"
    with ServedLab(tmp_path, approval=True) as lab:
        config = lab.campaign(tmp_path / "c.yaml", samples=2)
        process = poreloop(
            "run", config, "--out", out, "--json-log", ray_address=ray_address, log=log
        )

        def waiting() -> list[dict[str, Any]]:
            events = [json.loads(line) for line in log.read_text().splitlines() if "{" in line[:1]]
            return [e for e in events if e.get("event") == "progress" and e["waiting"]]

        wait_for(
            lambda: len({event["screened"] for event in waiting()}) >= 2,
            "no screening while a motion was held",
            process,
            log,
        )
        from poreloop.instruments import InstrumentClient

        approved: set[str] = set()
        with InstrumentClient(lab.instruments["robot"].bind, holder="person:tester") as person:

            def approve_held() -> bool:
                for held in person.call("pending")["pending"]:
                    person.call("approve", {"idempotency_key": held["idempotency_key"]})
                    approved.add(held["idempotency_key"])
                return len(approved) == 2

            wait_for(approve_held, "fewer than 2 motions held", process, log)
        finish(process, log)
    shown = {key for event in waiting() for key in event["waiting"]}
    assert shown <= {f"{key} (fabricate)" for key in approved} and shown
    summary = status(out)
    assert summary["state"] == "finished" and summary["lab"]["fabricated"] == 2


def test_a_lab_only_campaign_tells_its_planner_the_lab_alone(
    tmp_path: Path, ray_address: str
) -> None:
    """``screening.batch: 0``: no screening; the planner hears only lab results, without
    fidelities, failures included."""
    from poreloop.agent.planners import make_planner
    from poreloop.agent.store import Store

    out, log = tmp_path / "run", tmp_path / "log.txt"
    with ServedLab(tmp_path) as lab:
        config = lab.campaign(tmp_path / "c.yaml", screening={"batch": 0})
        finish(
            poreloop("run", config, "--out", out, "--json-log", ray_address=ray_address, log=log),
            log,
        )
    summary = status(out)
    assert summary["state"] == "finished" and summary["screened"] == 0
    assert summary["lab"]["dispatched"] == 4
    planner = make_planner(state=Store(out).planner_state()[0])
    assert not planner.fidelities
    assert len(planner.observations) == summary["lab"]["measured"] + summary["lab"]["failed"]
    assert all(o.fidelity is None for o in planner.observations)


def test_a_campaign_joins_the_ray_cluster_its_config_names(tmp_path: Path, ray_head: str) -> None:
    """``ray.address`` in the config, ``RAY_ADDRESS`` unset: the campaign screens on the head's
    one CPU (not a local Ray of this machine's two) and leaves the cluster running."""
    out, log = tmp_path / "run", tmp_path / "log.txt"
    campaign = poreloop(
        "run",
        quick(tmp_path, ray={"address": ray_head}),
        "--out",
        out,
        "--json-log",
        ray_address="",
        log=log,
        RAY_AUTH_MODE="disabled",
    )
    finish(campaign, log)
    summary = status(out)
    assert summary["state"] == "finished" and summary["lab"]["measured"] >= 1
    assert (summary["ray"]["mode"], summary["ray"]["cpus"]) == ("joined", 1.0)
    assert summary["ray"]["address"].endswith(ray_head.rpartition(":")[2])


def test_a_neural_critic_trains_for_a_config_and_learns_from_the_campaign(
    tmp_path: Path, ray_address: str
) -> None:
    """``surrogate train CONFIG`` makes the critic and its training set on the session's Ray;
    a digital-only campaign that never trusts it (trust 1e-9) sends every structure to the
    physics chain, whose answers grow the training set and refine the critic every 4."""
    config = yaml.safe_load((CONFIGS / "quick.yaml").read_text())
    config.update(lab=None, iterations=2)
    config["screening"]["surrogate"] = {
        "model": "critic.pt",
        "trust": 1e-9,
        "retrain_every": 4,
        "refine_epochs": 2,
        "structures": 24,
        "members": 2,
        "epochs": 3,
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    log = tmp_path / "log.txt"
    finish(
        poreloop("surrogate", "train", tmp_path / "c.yaml", ray_address=ray_address, log=log), log
    )
    assert "R^2 (held out)" in log.read_text()
    from poreloop.twins.critics.surrogate import NeuralCritic, TrainingSet

    critic = NeuralCritic.load(tmp_path / "critic.pt")
    trained = len(TrainingSet.load(tmp_path / "critic.npz"))
    assert critic.trained.examples == trained and "energy_density_wh_l_1c" in critic.properties
    out = tmp_path / "run"
    finish(
        poreloop("run", tmp_path / "c.yaml", "--out", out, ray_address=ray_address, log=log), log
    )
    screens = rows(out / "campaign.sqlite", "SELECT properties FROM screens")
    answered = [json.loads(p).get("surrogate") for (p,) in screens]
    assert len(answered) == 16 and set(answered) <= {0.0, None}  # None: the twin made nothing
    grown = TrainingSet.load(out / "surrogate" / "training.npz")
    assert len(grown) == trained + answered.count(0.0)
    refined = sorted((out / "surrogate").glob("critic-*.pt"))
    assert refined and NeuralCritic.load(refined[-1]).trained.examples > trained
    events = rows(out / "campaign.sqlite", "SELECT message FROM events WHERE kind = 'surrogate'")
    assert any("refined it on" in message for (message,) in events)
