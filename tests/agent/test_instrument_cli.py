"""``poreloop instrument``: key pairs, a served simulated oven called from the command line."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from poreloop.agent.cli import main
from poreloop.instruments.server import parse_ready_line

RUN_CLI = "import sys; from agent.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture
def serve_cli(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[str], str]]]:
    """Factory: `poreloop instrument serve oven ...` in a subprocess; SIGTERM by PID after."""
    processes: list[subprocess.Popen[str]] = []

    def start(*extra: str) -> tuple[subprocess.Popen[str], str]:
        command = [
            sys.executable,
            "-c",
            RUN_CLI,
            "instrument",
            "serve",
            "oven",
            "--bind=tcp://127.0.0.1:*",
            f"--journal={tmp_path / 'journal.sqlite'}",
            "--time-scale=1e-3",
            *extra,
        ]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        processes.append(process)
        ready, _, _ = select.select([process.stdout], [], [], 30.0)
        line = process.stdout.readline() if ready else ""
        ready = parse_ready_line(line)
        if ready is None:
            raise RuntimeError(f"the oven server did not start: {line!r}")
        return process, ready["endpoint"]

    yield start
    for process in processes:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        process.stdout.close()


def test_keys_makes_a_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["instrument", "keys", str(tmp_path / "k"), "--name", "lab1"]) == 0
    public, secret = tmp_path / "k" / "lab1.key", tmp_path / "k" / "lab1.key_secret"
    assert str(public) in capsys.readouterr().out
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert main(["instrument", "keys", str(tmp_path / "k"), "--name", "lab1"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_serve_then_call_status_and_dry(
    serve_cli: Callable[..., tuple[subprocess.Popen[str], str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    process, endpoint = serve_cli()
    assert main(["instrument", "call", endpoint, "status", "--timeout", "20"]) == 0
    assert json.loads(capsys.readouterr().out)["instrument"] == "oven"
    params = json.dumps({"temperature_c": 120.0, "duration_s": 60.0})
    assert main(["instrument", "call", endpoint, "dry", "--params", params, "--timeout", "20"]) == 0
    dried = json.loads(capsys.readouterr().out)
    assert dried["run"] == 1 and 0 < dried["residual_moisture_ppm"] < dried["initial_moisture_ppm"]
    hot = json.dumps({"temperature_c": 300.0, "duration_s": 60.0})
    assert main(["instrument", "call", endpoint, "dry", "--params", hot, "--timeout", "20"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("poreloop: error:") and "safety limit" in err and err.count("\n") == 1
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_serve_and_call_with_keys(
    tmp_path: Path,
    serve_cli: Callable[..., tuple[subprocess.Popen[str], str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys = tmp_path / "keys"
    for name in ("server", "client"):
        assert main(["instrument", "keys", str(keys), "--name", name]) == 0
    (keys / "allowed").mkdir()
    shutil.copy(keys / "client.key", keys / "allowed")
    _, endpoint = serve_cli(f"--keys={keys}")
    capsys.readouterr()
    call = ["instrument", "call", endpoint, "status", "--timeout", "20", "--keys", str(keys)]
    assert main(call) == 0
    assert json.loads(capsys.readouterr().out)["instrument"] == "oven"


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (
            ["call", "tcp://127.0.0.1:1", "dry", "--params", "{bad"],
            "argument --params: expected a JSON object",
        ),
        (["call", "tcp://127.0.0.1:1", "dry", "--params", "[1]"], "got a list"),
        (["serve", "ovn"], "did you mean 'oven'"),
        (["serve", "oven", "--bind", "tcp://0.0.0.0:5555"], "loopback"),
        (["call", "127.0.0.1:5555", "status"], "expected an endpoint like tcp://"),
        (["call", "tcp://127.0.0.1", "status"], "(tcp://HOST:PORT), got 'tcp://127.0.0.1'"),
        (["call", "http://127.0.0.1:5555", "status"], "got 'http://127.0.0.1:5555'"),
        (["approve", "localhost:1", "--list"], "expected an endpoint like tcp://"),
        (
            ["call", "tcp://127.0.0.1:1", "status", "--timeout", "0"],
            "--timeout: expected a positive number",
        ),
        (
            ["approve", "tcp://127.0.0.1:1", "--timeout", "-1"],
            "--timeout: expected a positive number",
        ),
        (["call", "tcp://127.0.0.1:1", "acquire_lease"], "would end with the command"),
        (
            ["call", "tcp://127.0.0.1:1", "dry", "--timeout", "0.3"],
            "may still be running: run the same command with --idempotency-key ",
        ),
        (["call", "tcp://127.0.0.1:1", "status", "--timeout", "0.3"], "timeout; give it a longer"),
    ],
)
def test_mistakes_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], pattern: str
) -> None:
    journal = ["--journal", str(tmp_path / "j.sqlite")] if argv[0] == "serve" else []
    assert main(["instrument", *argv, *journal]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("poreloop: error:") and captured.err.count("\n") == 1
    assert pattern in captured.err
    assert "idempotency_key=" not in captured.err  # the hint speaks the CLI's syntax
    if argv[2:3] == ["status"]:  # nothing to learn by asking again about a read
        assert "--idempotency-key" not in captured.err


def test_an_operator_breaks_a_campaign_s_lease_from_the_command_line(
    serve_cli: Callable[..., tuple[subprocess.Popen[str], str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from poreloop.instruments.client import InstrumentClient

    _, endpoint = serve_cli()
    release = ["instrument", "call", endpoint, "release_lease", "--holder", "person:op"]
    with InstrumentClient(endpoint, holder="campaign") as campaign:
        campaign.call("acquire_lease", {"ttl_s": 600}, timeout=20)
        assert main(release) == 2
        assert "leased by 'campaign'" in capsys.readouterr().err
        assert main([*release, "--params", '{"override": "the campaign hung"}']) == 0
        assert json.loads(capsys.readouterr().out) == {"holder": None}
        assert campaign.call("status", timeout=20)["lease"] is None


def test_call_shows_progress_on_stderr_unless_quiet(
    serve_cli: Callable[..., tuple[subprocess.Popen[str], str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, endpoint = serve_cli("--heartbeat-s=0.05")
    params = json.dumps({"temperature_c": 120.0, "duration_s": 1000.0})  # 1 s of wall time
    call = ["instrument", "call", endpoint, "dry", "--params", params, "--timeout", "20"]
    assert main(call) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["run"] == 1
    lines = captured.err.splitlines()
    assert len(lines) >= 3 and all(re.fullmatch(r"dry: \d+% \(\d+ s\)", line) for line in lines)
    percents = [int(line.split()[1].rstrip("%")) for line in lines]
    assert percents == sorted(percents) and percents[-1] >= 50
    assert main([*call, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["run"] == 2 and captured.err == ""


def test_a_held_call_says_how_to_approve_it(
    serve_cli: Callable[..., tuple[subprocess.Popen[str], str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, endpoint = serve_cli("--approval", "--heartbeat-s=0.05")
    params = json.dumps({"temperature_c": 120.0, "duration_s": 60.0})
    caller = subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, "instrument", "call", endpoint, "dry", "--params", params],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([caller.stderr], [], [], 30.0)
        told = caller.stderr.readline() if ready else ""
        found = re.search(r"held for approval under key (\w+); approve it with `(.+?)`", told)
        assert found, told
        key, hint = found.groups()
        assert hint == f"poreloop instrument approve {endpoint} {key} --as NAME"
        approve = hint.split()[1:]
        approve[-1] = "person:tester"
        assert main(approve) == 0
        assert f"approved {key}" in capsys.readouterr().out
        assert caller.wait(timeout=30) == 0
        assert json.loads(caller.stdout.read())["run"] == 1
    finally:
        if caller.poll() is None:
            os.kill(caller.pid, signal.SIGKILL)
            caller.wait(timeout=10)
        caller.stdout.close()
        caller.stderr.close()
