"""Starting a server from options: ``serve``, its ready line and that line's parser, ``main``.

A server prints one line once it is bound: a JSON object that a supervisor (``lab up``, tests,
benchmarks) reads with ``parse_ready_line`` and a person can read too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from poreloop.instruments.errors import InstrumentError
from poreloop.instruments.server.core import Server
from poreloop.instruments.server.options import ServerOptions

READY_EVENT = "serving"
PARENT_POLL_S = 0.5
"""How often a server told its parent's PID checks that the parent is still there."""

log = logging.getLogger(__name__)


def serve(options: ServerOptions) -> None:
    """Serve the instrument ``options`` describe until SIGINT, SIGTERM or SIGHUP, or until
    the process ``options.parent_pid`` is no longer its parent.

    Prints the ready line once bound; InstrumentError (one line) when it cannot start.
    """
    from poreloop.instruments.auth import Keys
    from poreloop.instruments.backends import make_instrument

    if options.parent_pid is not None and os.getppid() != options.parent_pid:
        raise InstrumentError(
            f"expected to run under process {options.parent_pid} (--parent-pid), got parent "
            f"{os.getppid()}: that process is gone or is not this server's parent; not serving"
        )
    instrument = make_instrument(options.kind, options.backend, **options.backend_options())
    keys = Keys.for_server(options.keys) if options.keys is not None else None
    server = Server(
        instrument,
        options.bind,
        options.journal_path,
        heartbeat_s=options.heartbeat_s,
        faults=options.faults(),
        keys=keys,
        approval=options.approval,
    )
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: server.stop())
    if options.parent_pid is not None:
        threading.Thread(
            target=_stop_when_orphaned,
            args=(server, options.parent_pid),
            name="parent-watch",
            daemon=True,
        ).start()
    security = (
        f"CurveZMQ, {keys.allowed_count()} allowed client keys in {keys.allowed}"
        if keys is not None
        else "loopback only (no CurveZMQ keys)"
    )
    gate = "; motions held for approval (poreloop instrument approve)" if options.approval else ""
    print(
        ready_line(instrument.kind, server.endpoint, server.journal.path, security + gate),
        flush=True,
    )
    server.serve_forever()


def _stop_when_orphaned(server: Server, parent_pid: int) -> None:
    """Stop ``server`` once ``parent_pid`` is no longer this process's parent.

    A supervisor killed outright (SIGKILL) cannot stop its servers; on Linux they get a
    parent-death signal (``lab_up``), and this check covers the rest: other systems, and a
    parent that died before that signal was set up."""
    while True:
        time.sleep(PARENT_POLL_S)  # first, so that serve_forever has begun before any stop
        if os.getppid() != parent_pid:
            break
    log.warning("parent process %d is gone: stopping %s", parent_pid, server.name)
    server.stop()


def ready_line(kind: str, endpoint: str, journal: str | Path, security: str) -> str:
    """The one line a server prints once it is bound (module doc)."""
    return json.dumps(
        {
            "event": READY_EVENT,
            "kind": kind,
            "endpoint": endpoint,
            "journal": str(journal),
            "security": security,
        }
    )


def parse_ready_line(line: str) -> dict[str, Any] | None:
    """The fields of a ``ready_line`` (``endpoint``, ``kind`` ...), or None for another line."""
    try:
        fields = json.loads(line)
    except ValueError:
        return None
    return fields if isinstance(fields, dict) and fields.get("event") == READY_EVENT else None


def main(argv: list[str] | None = None) -> None:
    """``python -m poreloop.instruments.server``: serve an instrument, with optional faults."""
    parser = argparse.ArgumentParser(
        prog="python -m poreloop.instruments.server", description=main.__doc__
    )
    ServerOptions.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        serve(ServerOptions.from_args(args))
    except InstrumentError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
