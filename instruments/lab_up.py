"""Run a whole simulated lab: one server subprocess per configured instrument, stopped together.

``run_lab`` starts every server, waits for each one's ready line, prints a table of kinds,
endpoints and PIDs, then watches them until SIGINT, SIGTERM or SIGHUP (a closed terminal), when it
stops every child by PID (SIGTERM, then SIGKILL after a grace period). Killed outright, it still
leaves no server behind: each dies with it (``_served``). A child that dies on its own is reported on stderr;
the others keep serving.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO

from poreloop.instruments.errors import InstrumentError
from poreloop.instruments.lab_config import InstrumentConfig, LabConfig, server_command
from poreloop.instruments.server import parse_ready_line

READY_TIMEOUT_S = 60.0
"""How long a server may take to print its ready line (imports, binding, opening the journal)."""
STOP_GRACE_S = 10.0
"""How long a server may take to stop on SIGTERM before it is killed."""
WATCH_PERIOD_S = 0.2
PR_SET_PDEATHSIG = 1


@dataclass
class _Child:
    instrument: InstrumentConfig
    process: subprocess.Popen[str]
    endpoint: str = ""

    @property
    def label(self) -> str:
        return f"{self.instrument.kind} (PID {self.process.pid})"


def run_lab(
    config: LabConfig, *, ready_timeout_s: float = READY_TIMEOUT_S, out: TextIO = sys.stdout
) -> int:
    """Serve the lab until SIGINT/SIGTERM/SIGHUP (exit 0); InstrumentError when a server cannot
    start.

    Returns 1 when every server died on its own.
    """
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        with _served(config, ready_timeout_s, stop, out, None) as children:
            if stop.is_set():
                return 0
            _print_table(config, children, out)
            return _watch(children, stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def serving(
    config: LabConfig, lab_dir: Path | None = None, ready_timeout_s: float = READY_TIMEOUT_S
) -> Iterator[dict[str, str]]:
    """The lab's servers for the block, as ``{kind: endpoint}`` (e.g. for a campaign that runs
    its own simulated lab under ``lab_dir``); their logs go to ``lab_dir/logs/KIND.log``."""
    if lab_dir is not None:
        config = config.model_copy(update={"lab_dir": Path(lab_dir)})
    logs = config.lab_dir / "logs"
    with _served(config, ready_timeout_s, threading.Event(), io.StringIO(), logs) as children:
        yield {child.instrument.kind: child.endpoint for child in children}


@contextlib.contextmanager
def _served(
    config: LabConfig,
    ready_timeout_s: float,
    stop: threading.Event,
    out: TextIO,
    logs: Path | None,
) -> Iterator[list[_Child]]:
    """Start one server per instrument, wait for every ready line, stop them all at the end.

    Each server dies with this process (Linux parent-death signal, and the server's own check
    that this process is still its parent: ``server_command``), so a killed supervisor leaves no
    server bound behind it."""
    children: list[_Child] = []
    try:
        (config.lab_dir / "journals").mkdir(parents=True, exist_ok=True)
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
        for instrument in config.instruments:
            stderr = (logs / f"{instrument.kind}.log").open("a") if logs is not None else None
            process = subprocess.Popen(
                server_command(config, instrument),
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                preexec_fn=_die_with_parent,
            )
            if stderr is not None:
                stderr.close()  # the child holds its own copy
            children.append(_Child(instrument, process))
        _wait_ready(children, ready_timeout_s, stop)
        yield children
    finally:
        _stop_all(children, out)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when its parent dies (prctl PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_ready(children: list[_Child], timeout_s: float, stop: threading.Event) -> None:
    """Read each server's ready line (``instruments.server.entry.ready_line``) for its endpoint."""
    waiting: dict[IO[str], _Child] = {
        child.process.stdout: child for child in children if child.process.stdout is not None
    }
    give_up = time.monotonic() + timeout_s
    while waiting and not stop.is_set():
        left = give_up - time.monotonic()
        if left <= 0:
            late = ", ".join(child.label for child in waiting.values())
            raise InstrumentError(
                f"expected every server ready within {timeout_s:.0f} s, got no ready line from "
                f"{late}; stopped the lab, check its bind and options"
            )
        ready, _, _ = select.select(list(waiting), [], [], min(left, WATCH_PERIOD_S))
        for stream in ready:
            child = waiting[stream]
            line = stream.readline()
            if not line:
                code = child.process.wait()
                raise InstrumentError(
                    f"{child.label} on {child.instrument.bind} exited with code {code} before it "
                    "was ready (its error is above); stopped the lab"
                )
            serving = parse_ready_line(line)
            if serving is not None:
                child.endpoint = serving["endpoint"]
                del waiting[stream]


def _print_table(config: LabConfig, children: list[_Child], out: TextIO) -> None:
    rows = [("KIND", "ENDPOINT", "PID", "APPROVAL")] + [
        (
            child.instrument.kind,
            child.endpoint,
            str(child.process.pid),
            "on" if child.instrument.approval else "off",
        )
        for child in children
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip(), file=out)
    print(
        f"lab up: {len(children)} instrument{'s' if len(children) > 1 else ''} serving, "
        f"state in {config.lab_dir}; "
        "Ctrl-C stops them",
        file=out,
        flush=True,
    )


def _watch(children: list[_Child], stop: threading.Event) -> int:
    """Wait for a stop signal, reporting servers that die meanwhile; 1 when none is left."""
    alive = list(children)
    while not stop.is_set():
        for child in list(alive):
            code = child.process.poll()
            if code is not None and not stop.is_set():
                alive.remove(child)
                print(
                    f"lab: {child.label} on {child.endpoint} exited with code {code}; "
                    "the others keep serving",
                    file=sys.stderr,
                    flush=True,
                )
        if not alive:
            print("lab: every server has exited", file=sys.stderr, flush=True)
            return 1
        time.sleep(WATCH_PERIOD_S)
    return 0


def _stop_all(children: list[_Child], out: TextIO) -> None:
    """SIGTERM every live child by PID, SIGKILL those still alive after the grace period."""
    running = [child for child in children if child.process.poll() is None]
    for child in running:
        child.process.terminate()
    give_up = time.monotonic() + STOP_GRACE_S
    for child in running:
        try:
            child.process.wait(max(give_up - time.monotonic(), 0.0))
            print(f"stopped {child.label}", file=out, flush=True)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
            print(f"killed {child.label}: it did not stop within {STOP_GRACE_S:.0f} s", file=out)
    for child in children:
        if child.process.stdout is not None:
            child.process.stdout.close()
