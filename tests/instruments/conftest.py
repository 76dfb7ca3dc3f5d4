"""Servers for instrument tests: in a thread for speed, in a subprocess where one must crash."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from poreloop.instruments.server import Faults, Server, ServerOptions, parse_ready_line
from poreloop.instruments.sim.oven import SimOven

HEARTBEAT_S = 0.05
TIME_SCALE = 1e-3  # one simulated second is one wall millisecond


@dataclass
class Served:
    """A server in this process and the simulated oven behind it."""

    server: Server
    oven: SimOven

    @property
    def endpoint(self) -> str:
        return self.server.endpoint


@pytest.fixture
def serve_oven(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Factory: start a threaded oven server (with optional faults); all stop at teardown."""
    started: list[Server] = []

    def start(faults: Faults | None = None) -> Served:
        oven = SimOven(tmp_path / "runs.txt", time_scale=TIME_SCALE, seed=7)
        server = Server(
            oven,
            "tcp://127.0.0.1:*",
            tmp_path / "journal.sqlite",
            heartbeat_s=HEARTBEAT_S,
            faults=faults,
        ).start()
        started.append(server)
        return Served(server, oven)

    yield start
    for server in started:
        server.stop()


@dataclass
class OvenProcess:
    """An oven server in a subprocess, its endpoint, and the files that outlive it."""

    process: subprocess.Popen[str]
    endpoint: str
    counter_path: Path

    def runs(self) -> int:
        return SimOven(self.counter_path).runs()


@pytest.fixture
def oven_process(tmp_path: Path) -> Iterator[Callable[..., OvenProcess]]:
    """Factory: ``python -m poreloop.instruments.server`` on a journal in tmp_path; stopped by PID."""
    processes: list[subprocess.Popen[str]] = []
    counter_path = tmp_path / "runs.txt"

    def start(bind: str = "tcp://127.0.0.1:*", crash_at: float | None = None) -> OvenProcess:
        options = ServerOptions(
            kind="oven",
            options={"counter_path": str(counter_path), "time_scale": TIME_SCALE, "seed": 7},
            bind=bind,
            journal=tmp_path / "journal.sqlite",
            heartbeat_s=HEARTBEAT_S,
            crash_at_fraction=crash_at,
        )
        command = [sys.executable, "-m", "poreloop.instruments.server", *options.argv()]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        processes.append(process)
        ready, _, _ = select.select([process.stdout], [], [], 20.0)
        line = process.stdout.readline() if ready else ""
        ready = parse_ready_line(line)
        if ready is None:
            raise RuntimeError(f"the oven server did not start: {line!r}")
        return OvenProcess(process, ready["endpoint"], counter_path)

    yield start
    for process in processes:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        process.stdout.close()
