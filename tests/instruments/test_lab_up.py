"""``poreloop lab up``: every configured server starts, answers, and stops with the lab."""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from poreloop.agent.cli import main
from poreloop.instruments.client import InstrumentClient
from poreloop.instruments.errors import InstrumentError
from poreloop.instruments.lab_config import load_lab_config, server_command, server_options
from poreloop.instruments.lab_up import run_lab
from poreloop.instruments.server import ServerOptions

RUN_CLI = "import sys; from poreloop.agent.cli import main; sys.exit(main(sys.argv[1:]))"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _write_config(tmp_path: Path, bind: str, **extra: object) -> Path:
    config = {
        "lab_dir": str(tmp_path / "lab"),
        "seed": 3,
        "time_scale": 1e-3,
        "instruments": [
            {
                "kind": "oven",
                "bind": bind,
                "options": {"counter_path": str(tmp_path / "lab" / "oven-runs")},
                **extra,
            }
        ],
    }
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """The lab's stdout lines, read in a thread; an empty string marks its end."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=read, daemon=True).start()
    return lines


def _read_until(lines: queue.Queue[str], marker: str, timeout_s: float) -> list[str]:
    """Lines up to the first that contains ``marker``."""
    seen: list[str] = []
    give_up = time.monotonic() + timeout_s
    while True:
        try:
            line = lines.get(timeout=max(give_up - time.monotonic(), 0.0))
        except queue.Empty:
            raise AssertionError(
                f"no '{marker}' from lab up within {timeout_s} s: {seen}"
            ) from None
        assert line, f"lab up ended before '{marker}': {seen}"
        seen.append(line)
        if marker in line:
            return seen


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_lab_up_serves_then_stops_on_sigint(tmp_path: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    config = _write_config(tmp_path, endpoint, approval=True)
    lab = subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, "lab", "up", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        output = _lines(lab)
        lines = _read_until(output, "Ctrl-C stops them", timeout_s=30.0)
        (row,) = [line.split() for line in lines if line.startswith("oven")]
        assert row[:2] == ["oven", endpoint] and row[3] == "on"
        child = int(row[2])
        with InstrumentClient(endpoint) as client:
            status = client.call("status", timeout=10.0)
            held = client.call("pending", timeout=10.0)
        assert status["kind"] == "oven" and held == {"approval": True, "pending": []}
        os.kill(lab.pid, signal.SIGINT)
        assert lab.wait(timeout=20.0) == 0
        _read_until(output, f"stopped oven (PID {child})", timeout_s=5.0)
        assert _pid_gone(child)
        assert (tmp_path / "lab" / "journals" / "oven.sqlite").is_file()
    finally:
        if lab.poll() is None:
            os.kill(lab.pid, signal.SIGKILL)
            lab.wait(timeout=10.0)


def test_a_server_that_cannot_start_fails_the_lab(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = _write_config(tmp_path, f"tcp://127.0.0.1:{port}")
        assert main(["lab", "up", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("poreloop: error: oven (PID ") and "before it was ready" in err


@pytest.mark.parametrize(
    ("instrument", "named"),
    [
        ({"kind": "ovn", "bind": "tcp://127.0.0.1:5555"}, "instruments.0.kind: no simulated"),
        ({"kind": "oven", "bind": "tcp://127.0.0.1:5555", "aproval": True}, "0.aproval: Extra"),
        ({"kind": "oven", "bind": "tcp://0.0.0.0:5555"}, "oven: expected a loopback bind"),
    ],
)
def test_bad_config_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], instrument: dict[str, str], named: str
) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump({"lab_dir": "lab", "instruments": [instrument]}))
    assert main(["lab", "up", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and named in err


def test_two_servers_on_one_port_are_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    instruments = [
        {"kind": "robot", "bind": "tcp://127.0.0.1:5555"},
        {"kind": "cycler", "bind": "tcp://127.0.0.1:*"},
        {"kind": "inspector", "bind": "tcp://127.0.0.1:*"},  # free ports: never a clash
        {"kind": "oven", "bind": "tcp://127.0.0.1:5555"},
    ]
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump({"lab_dir": "lab", "instruments": instruments}))
    assert main(["lab", "up", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "robot and oven both bind tcp://127.0.0.1:5555" in err[0]


def test_lab_settings_reach_the_backend_options(tmp_path: Path) -> None:
    config = load_lab_config(_write_config(tmp_path, "tcp://127.0.0.1:5555", approval=True))
    (oven,) = config.instruments
    command = server_command(config, oven)
    assert f"--journal={tmp_path / 'lab' / 'journals' / 'oven.sqlite'}" in command
    assert "--approval" in command
    assert server_options(config, oven).backend_options() == {
        "seed": 3,
        "time_scale": 1e-3,
        "counter_path": str(tmp_path / "lab" / "oven-runs"),
    }


def test_shipped_lab_config_loads() -> None:
    config = load_lab_config(Path(__file__).parents[2] / "configs" / "lab.yaml")
    kinds = [instrument.kind for instrument in config.instruments]
    assert kinds[0] == "oven" and len(set(kinds)) == len(kinds)
    assert len({instrument.bind for instrument in config.instruments}) == len(kinds)


def test_a_server_that_dies_is_reported(tmp_path: Path) -> None:
    config = _write_config(tmp_path, f"tcp://127.0.0.1:{_free_port()}")
    lab = subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, "lab", "up", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _read_until(_lines(lab), "Ctrl-C stops them", timeout_s=30.0)
        (row,) = [line.split() for line in lines if line.startswith("oven")]
        os.kill(int(row[2]), signal.SIGKILL)
        assert lab.wait(timeout=20.0) == 1
        assert f"oven (PID {row[2]}) on {row[1]} exited with code -9" in lab.stderr.read()
    finally:
        if lab.poll() is None:
            os.kill(lab.pid, signal.SIGKILL)
            lab.wait(timeout=10.0)
        lab.stderr.close()


def test_a_server_not_ready_in_time_stops_the_lab(tmp_path: Path) -> None:
    config = load_lab_config(_write_config(tmp_path, f"tcp://127.0.0.1:{_free_port()}"))
    out = io.StringIO()
    with pytest.raises(InstrumentError, match="expected every server ready within"):
        run_lab(config, ready_timeout_s=0.01, out=out)
    (stopped,) = out.getvalue().splitlines()
    assert _pid_gone(int(stopped.split("PID ")[1].split(")")[0]))


def _wait_gone(pid: int, timeout_s: float) -> bool:
    """True once ``pid`` has exited (a zombie not yet reaped by init counts as exited)."""
    give_up = time.monotonic() + timeout_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            state = "gone" if _pid_gone(pid) else "?"
        if state in ("gone", "Z", "X"):
            return True
        if time.monotonic() >= give_up:
            return False
        time.sleep(0.05)


@pytest.mark.subprocess
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGHUP], ids=["SIGKILL", "SIGHUP"])
def test_a_lab_killed_or_hung_up_leaves_no_server_bound(tmp_path: Path, signum: int) -> None:
    port = _free_port()
    config = _write_config(tmp_path, f"tcp://127.0.0.1:{port}")
    lab = subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, "lab", "up", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    child = None
    try:
        output = _lines(lab)
        lines = _read_until(output, "Ctrl-C stops them", timeout_s=30.0)
        (row,) = [line.split() for line in lines if line.startswith("oven")]
        child = int(row[2])
        os.kill(lab.pid, signum)
        code = lab.wait(timeout=20.0)
        if signum == signal.SIGHUP:  # a closed terminal stops the lab like Ctrl-C
            assert code == 0
            _read_until(output, f"stopped oven (PID {child})", timeout_s=5.0)
        assert _wait_gone(child, timeout_s=5.0), f"server {child} outlived its lab"
        with socket.socket() as again:
            again.bind(("127.0.0.1", port))
    finally:
        for pid in (lab.pid, child):
            if pid is not None and not _wait_gone(pid, 0.0):
                os.kill(pid, signal.SIGKILL)
        lab.wait(timeout=10.0)


@pytest.mark.subprocess
def test_a_server_stops_when_its_parent_is_gone(tmp_path: Path) -> None:
    """The check that works without Linux's parent-death signal: a parent that sets none."""
    options = ServerOptions(
        kind="oven",
        bind="tcp://127.0.0.1:*",
        journal=tmp_path / "journal.sqlite",
        time_scale=1e-3,
        options={"counter_path": str(tmp_path / "runs")},
    )
    parent_script = (
        "import os, subprocess, sys; "
        "server = subprocess.Popen(sys.argv[1:] + [f'--parent-pid={os.getpid()}']); "
        "print(server.pid, flush=True); server.wait()"
    )
    command = [sys.executable, "-m", "poreloop.instruments.server", *options.argv()]
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_script, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    server = None
    try:
        output = _lines(parent)
        server = int(_read_until(output, "", timeout_s=10.0)[0])
        (ready,) = _read_until(output, '"serving"', timeout_s=30.0)
        endpoint = json.loads(ready)["endpoint"]
        with InstrumentClient(endpoint) as client:
            assert client.call("status", timeout=10.0)["kind"] == "oven"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10.0)
        assert _wait_gone(server, timeout_s=5.0), f"server {server} outlived its parent"
    finally:
        for pid in (parent.pid, server):
            if pid is not None and not _wait_gone(pid, 0.0):
                os.kill(pid, signal.SIGKILL)
        parent.wait(timeout=10.0)


def test_a_server_whose_parent_is_already_gone_does_not_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "journal.sqlite"
    argv = ["instrument", "serve", "oven", "--bind=tcp://127.0.0.1:*", f"--journal={journal}"]
    assert main([*argv, "--parent-pid=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "expected to run under process 1" in err
    assert not journal.exists()
