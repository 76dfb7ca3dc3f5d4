"""The instrument server: one module per job.

- ``core``: the I/O loop (``Server``): one ROUTER socket, dispatch, heartbeats, every send.
- ``jobs``: the journal-backed lifecycle of an action, exactly once by idempotency key.
- ``control``: the e-stop latch, the lease, the approval gate and the control actions.
- ``faults``: faults a test injects (dropped, late, garbled replies; a crash mid-action).
- ``options``: ``ServerOptions``, the one set of options behind every way to start a server.
- ``entry``: ``serve(options)``, its ready line and ``parse_ready_line``; ``python -m`` runs it.

The names below load on first use, so a command line can read ``ServerOptions`` without
starting ZeroMQ.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poreloop.instruments.server.core import Server
    from poreloop.instruments.server.entry import parse_ready_line, ready_line, serve
    from poreloop.instruments.server.faults import CRASH_EXIT_CODE, Faults
    from poreloop.instruments.server.options import ServerOptions

_HOMES = {
    "Server": "core",
    "serve": "entry",
    "ready_line": "entry",
    "parse_ready_line": "entry",
    "Faults": "faults",
    "CRASH_EXIT_CODE": "faults",
    "ServerOptions": "options",
}

__all__ = [
    "CRASH_EXIT_CODE",
    "Faults",
    "Server",
    "ServerOptions",
    "parse_ready_line",
    "ready_line",
    "serve",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
