"""Round-trip latency and throughput of a no-op action: our client and server beside raw pyzmq.

Each server runs in its own process on the loopback: a bare pyzmq ROUTER that echoes every
message, and our ``instruments.server.Server`` driving a simulated oven. One client in this
process makes round trips one at a time (as our client does: one call in flight): raw pyzmq
sends our encoded ``noop`` request on a DEALER and waits for the echo; ours times
``InstrumentClient.call("noop")``. Then ``--clients`` client processes do the same at once,
for the throughput under concurrent callers. Each setting runs without and with CurveZMQ.

    .venv/bin/python -m benchmarks.instruments [--calls 5000] [--warmup 200] [--clients 4]
        [--json PATH]

from the repository root. The table goes to stdout, progress to stderr, and the results as JSON
to PATH (default runs/benchmarks/instruments.json) for a later run to be compared with.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from benchmarks._table import (
    add_json_option,
    log,
    machine,
    number,
    print_comments,
    print_table,
    verdict,
    write_json,
)
from poreloop.instruments.auth import ALLOWED_DIR, CLIENT_NAME, SERVER_NAME, Keys, make_keys
from poreloop.instruments.client import InstrumentClient
from poreloop.instruments.protocol import Request, encode
from poreloop.instruments.server import Server
from poreloop.instruments.sim import SimOven

TARGET_RATIO = 3.0
TARGET_THROUGHPUT = 2000.0
"""Ours, one client: p50 at most 3x raw pyzmq's (same CURVE setting) and >= 2000 calls/s."""
START_TIMEOUT_S = 30.0
"""How long a server or client process may take to start (imports included)."""
STOP_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 10.0
BIND = "tcp://127.0.0.1:*"

CurveKeys = tuple[bytes, bytes]
"""A CurveZMQ key pair (public, secret), Z85-encoded as ``zmq.curve_keypair`` gives them."""


def noop_frames() -> list[bytes]:
    """The frames our client sends for ``noop``, so raw pyzmq moves the same bytes."""
    key = uuid.uuid4().hex
    request = Request(id=key, idempotency_key=key, action="noop", deadline_s=CALL_TIMEOUT_S)
    return encode(request)


# Servers, each run in a spawned process: it sends its endpoint through ``ready`` and serves
# until SIGTERM.


def raw_server(ready: Connection, server_keys: CurveKeys | None) -> None:
    """A ROUTER that sends every message straight back to its sender."""
    context = zmq.Context()
    socket = context.socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    if server_keys is not None:
        socket.curve_server = True
        socket.curve_publickey, socket.curve_secretkey = server_keys
    socket.bind(BIND)
    ready.send(socket.getsockopt_string(zmq.LAST_ENDPOINT))
    while True:
        socket.send_multipart(socket.recv_multipart())


def our_server(ready: Connection, journal: str, keys: Keys | None) -> None:
    """Our server on a simulated oven; SIGTERM stops it cleanly (journal closed)."""
    server = Server(SimOven(), BIND, journal, keys=keys)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: server.stop())
    ready.send(server.endpoint)
    server.serve_forever()


class RawClient:
    """A DEALER sending our ``noop`` frames and waiting for them to come back."""

    def __init__(
        self, endpoint: str, server_public: bytes | None, client_keys: CurveKeys | None
    ) -> None:
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        if server_public is not None and client_keys is not None:
            self._socket.curve_serverkey = server_public
            self._socket.curve_publickey, self._socket.curve_secretkey = client_keys
        self._socket.connect(endpoint)
        self._frames = noop_frames()

    def call(self) -> None:
        self._socket.send_multipart(self._frames)
        if not self._socket.poll(CALL_TIMEOUT_S * 1000):
            raise RuntimeError(f"expected an echo within {CALL_TIMEOUT_S} s, got none")
        self._socket.recv_multipart()

    def close(self) -> None:
        self._socket.close(linger=0)
        self._context.term()


class OurClient:
    """``InstrumentClient.call("noop")``."""

    def __init__(self, endpoint: str, keys: Keys | None) -> None:
        self._client = InstrumentClient(endpoint, keys=keys)

    def call(self) -> None:
        self._client.call("noop", timeout=CALL_TIMEOUT_S)

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class Setting:
    """What a client needs to reach one server: which kind, where, and its CURVE keys."""

    transport: str
    endpoint: str
    server_public: bytes | None = None
    client_keys: CurveKeys | None = None
    our_keys: Keys | None = None

    def client(self) -> RawClient | OurClient:
        if self.transport == "raw pyzmq":
            return RawClient(self.endpoint, self.server_public, self.client_keys)
        return OurClient(self.endpoint, self.our_keys)


def round_trips(
    client: RawClient | OurClient, calls: int, warmup: int
) -> tuple[np.ndarray, float, float]:
    """Seconds of each of ``calls`` round trips after ``warmup`` untimed ones (connection set-up
    and CURVE handshake among them); and the monotonic start and end of the timed ones."""
    for _ in range(warmup):
        client.call()
    seconds = np.empty(calls)
    start = time.monotonic()
    for i in range(calls):
        began = time.perf_counter()
        client.call()
        seconds[i] = time.perf_counter() - began
    return seconds, start, time.monotonic()


def client_process(ready: Connection, setting: Setting, calls: int, warmup: int, go: Event) -> None:
    """One of the concurrent clients: warm up, say so, wait for the start, send the timings."""
    client = setting.client()
    try:
        round_trips(client, 0, warmup)
        ready.send("warm")
        go.wait()
        ready.send(round_trips(client, calls, 0))
    finally:
        client.close()


@dataclass
class Row:
    """One transport, CURVE setting and number of concurrent clients."""

    transport: str
    curve: bool
    clients: int
    n: int = 0
    p50_us: float | None = None
    p99_us: float | None = None
    throughput_per_s: float | None = None
    ratio_p50: float | None = None
    target: str = ""
    note: str = ""


def measured(row: Row, seconds: np.ndarray, elapsed_s: float) -> Row:
    row.n = seconds.size
    row.p50_us, row.p99_us = (float(v) for v in np.percentile(seconds, [50, 99]) * 1e6)
    row.throughput_per_s = seconds.size / elapsed_s
    return row


class Spawned:
    """Processes started with the spawn method, stopped by PID on the way out."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[multiprocessing.process.BaseProcess] = []

    def start(self, target: Callable[..., None], *args: Any) -> Connection:
        """Start ``target(child_end, *args)``; returns our end of the pipe to it."""
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=target, args=(theirs, *args), daemon=True)
        process.start()
        theirs.close()
        self._processes.append(process)
        return ours

    def event(self) -> Event:
        return self._context.Event()

    def stop(self) -> None:
        for process in self._processes:
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signal.SIGTERM)
            process.join(STOP_TIMEOUT_S)
            if process.exitcode is None and process.pid is not None:
                os.kill(process.pid, signal.SIGKILL)
                process.join(STOP_TIMEOUT_S)
        self._processes.clear()


def receive(pipe: Connection, what: str) -> Any:
    """The next thing a spawned process sends; RuntimeError when it is silent or died."""
    try:
        if pipe.poll(START_TIMEOUT_S):
            return pipe.recv()
    except EOFError:
        pass
    raise RuntimeError(
        f"expected {what} within {START_TIMEOUT_S:g} s, got nothing; see its traceback above"
    )


def bench_setting(
    spawned: Spawned, setting: Setting, curve: bool, calls: int, warmup: int, clients: int
) -> list[Row]:
    """One client in this process, then ``clients`` client processes at once."""
    log(f"{setting.transport}, curve {curve}: {calls} calls from one client")
    client = setting.client()
    try:
        seconds, start, end = round_trips(client, calls, warmup)
    finally:
        client.close()
    row = Row(setting.transport, curve, 1, note="one client in the benchmark process")
    rows = [measured(row, seconds, end - start)]
    if clients > 1:
        note = f"{clients} client processes at once, {calls // clients} calls each"
        log(f"{setting.transport}, curve {curve}: {note}")
        go = spawned.event()
        pipes = [
            spawned.start(client_process, setting, calls // clients, warmup, go)
            for _ in range(clients)
        ]
        for pipe in pipes:
            receive(pipe, "a client process to warm up")
        go.set()
        results = [receive(pipe, "a client's timings") for pipe in pipes]
        seconds = np.concatenate([r[0] for r in results])
        elapsed = max(r[2] for r in results) - min(r[1] for r in results)
        rows.append(measured(Row(setting.transport, curve, clients, note=note), seconds, elapsed))
    return rows


def bench(curve: bool, calls: int, warmup: int, clients: int, work_dir: str) -> list[Row]:
    """Raw pyzmq then ours, each against its own server process, with or without CURVE;
    our journal and keys go under ``work_dir``."""
    spawned = Spawned()
    try:
        raw_keys = zmq.curve_keypair() if curve else None
        client_keys = zmq.curve_keypair() if curve else None
        endpoint = receive(spawned.start(raw_server, raw_keys), "the raw server's endpoint")
        server_public = raw_keys[0] if raw_keys is not None else None
        raw = Setting("raw pyzmq", endpoint, server_public, client_keys)
        rows = bench_setting(spawned, raw, curve, calls, warmup, clients)
        spawned.stop()
        work = Path(work_dir) / f"curve-{curve}"
        work.mkdir()
        server_keys, our_client_keys = our_keys(work / "keys") if curve else (None, None)
        journal = str(work / "journal.sqlite")
        endpoint = receive(spawned.start(our_server, journal, server_keys), "our server's endpoint")
        ours = Setting("ours", endpoint, our_keys=our_client_keys)
        return rows + bench_setting(spawned, ours, curve, calls, warmup, clients)
    finally:
        spawned.stop()


def our_keys(directory: Path) -> tuple[Keys, Keys]:
    """Server and client keys in a new keys directory, the client's on the allow-list."""
    make_keys(directory, SERVER_NAME)
    client_public, _ = make_keys(directory, CLIENT_NAME)
    (directory / ALLOWED_DIR).mkdir()
    shutil.copy(client_public, directory / ALLOWED_DIR)
    return Keys.for_server(directory), Keys.for_client(directory)


def judge(rows: list[Row]) -> None:
    """Ours / raw p50 at the same CURVE setting and clients; the target on ours, one client."""
    raw = {(r.curve, r.clients): r for r in rows if r.transport == "raw pyzmq"}
    for row in rows:
        peer = raw.get((row.curve, row.clients))
        if row.transport != "ours" or row.p50_us is None or peer is None or not peer.p50_us:
            continue
        row.ratio_p50 = row.p50_us / peer.p50_us
        if row.clients == 1:
            met = row.ratio_p50 <= TARGET_RATIO and row.throughput_per_s >= TARGET_THROUGHPUT
            row.target = verdict(met)


COLUMNS = (
    "transport",
    "curve",
    "clients",
    "n",
    "p50_us",
    "p99_us",
    "throughput_per_s",
    "ratio_p50",
    "target",
    "note",
)
RIGHT = {"clients", "n", "p50_us", "p99_us", "throughput_per_s", "ratio_p50"}


def cells(row: Row) -> tuple[str, ...]:
    return (
        row.transport,
        "yes" if row.curve else "no",
        str(row.clients),
        str(row.n) if row.n else "-",
        number(row.p50_us, 0),
        number(row.p99_us, 0),
        number(row.throughput_per_s, 0),
        number(row.ratio_p50, 2),
        row.target,
        row.note,
    )


def _load() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000, help="timed round trips per row")
    parser.add_argument("--warmup", type=int, default=200, help="untimed round trips per client")
    parser.add_argument(
        "--clients", type=int, default=4, help="concurrent client processes (1: none)"
    )
    add_json_option(parser, "instruments")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= args.calls or args.warmup < 0:
        parser.error(
            f"expected 1 <= --clients <= --calls and --warmup >= 0; got --clients {args.clients}, "
            f"--calls {args.calls}, --warmup {args.warmup}"
        )

    header = machine("pyzmq", "pydantic")
    header["libzmq"] = zmq.zmq_version()
    load_at_start = _load()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="poreloop-bench-") as work_dir:
        for curve in (False, True):
            rows += bench(curve, args.calls, args.warmup, args.clients, work_dir)
    judge(rows)
    header["load average"] = f"{load_at_start} at start, {_load()} at end (1, 5, 15 min)"
    notes = [
        "servers: each in its own spawned process on tcp://127.0.0.1; raw pyzmq: a ROUTER "
        "echoing every message; ours: instruments.server.Server on a simulated oven (noop is "
        "answered by the I/O thread, no journal, no worker thread)",
        "clients 1: one client in the benchmark process, one round trip in flight; raw pyzmq: "
        f"DEALER send + receive of our encoded noop request ({sum(map(len, noop_frames()))} "
        "bytes in 3 frames); ours: InstrumentClient.call('noop') (pydantic encode and decode "
        "both ways, uuid keys, the server's dispatch)",
        f"clients {args.clients}: that many client processes at once, calls // clients each; "
        "throughput = all their calls / (last end - first start)",
        f"p50_us, p99_us: percentiles of the per-call wall time (perf_counter), after "
        f"{args.warmup} untimed calls per client",
        "curve: CurveZMQ on the sockets (raw: zmq.curve_keypair keys set directly, no ZAP "
        "authenticator; ours: instruments.auth keys files, its ThreadAuthenticator checking "
        "the client's key against the allow-list at the handshake)",
        "ratio_p50: ours / raw pyzmq p50 at the same curve setting and clients",
        f"target: ours, one client: ratio_p50 <= {TARGET_RATIO:g} and throughput >= "
        f"{TARGET_THROUGHPUT:g}/s",
    ]
    print_comments(header, notes)
    print_table(
        COLUMNS,
        [cells(r) for r in rows],
        RIGHT,
        group=2,
        title="# no-op round trip: ours beside raw pyzmq DEALER/ROUTER",
    )
    write_json(args, header, notes, {"instruments": rows})


if __name__ == "__main__":
    main()
