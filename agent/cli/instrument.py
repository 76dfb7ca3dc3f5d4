"""``poreloop instrument``: keys, serve one instrument, call an action, approve held motions."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poreloop.agent.cli.progress import StatusLine
from poreloop.agent.cli.types import json_object, positive_float

if TYPE_CHECKING:
    from poreloop.instruments.protocol import Progress


def register(commands: argparse._SubParsersAction) -> None:
    from poreloop.instruments.server.options import ServerOptions

    instrument = commands.add_parser(
        "instrument",
        help="instruments: make CurveZMQ keys, serve a simulated instrument, call one",
        description="Instruments over ZeroMQ (one server per instrument, exactly-once actions).",
    )
    instrument_commands = instrument.add_subparsers(
        dest="instrument_command", required=True, metavar="COMMAND"
    )
    keys = instrument_commands.add_parser(
        "keys",
        help="make a CurveZMQ key pair",
        description=(
            "Write DIR/NAME.key (public) and DIR/NAME.key_secret (owner-only). A server reads "
            "DIR/server.key_secret and the allowed clients' keys in DIR/allowed/*.key; a client "
            "reads DIR/NAME.key_secret and the server's DIR/server.key."
        ),
    )
    keys.add_argument("directory", type=Path, metavar="DIR", help="where the key files go")
    keys.add_argument("--name", default="client", help="key pair name (client; server for one)")
    keys.set_defaults(run=instrument_keys)

    serve = instrument_commands.add_parser(
        "serve",
        help="serve a simulated instrument until Ctrl-C or SIGTERM",
        description=(
            "Serve instrument KIND on --bind. Without --keys only a loopback bind is allowed; "
            "with --keys DIR (server.key_secret, allowed/*.key) any bind, CurveZMQ-encrypted, "
            "serving allowed client keys only."
        ),
    )
    ServerOptions.add_arguments(serve)
    serve.set_defaults(run=instrument_serve)

    call = instrument_commands.add_parser(
        "call",
        help="call an action on an instrument server and print its result",
        description=(
            "Run ACTION on the server at ENDPOINT and print its outcome as JSON. Every server "
            "answers status, describe, abort, estop, clear_estop, release_lease, noop, "
            "pending, approve, reject (and acquire_lease, from Python: a lease ends with its "
            "client); `call ENDPOINT describe` lists the instrument's own actions. Under "
            "another holder's lease an operator releases it or clears an e-stop with "
            '--holder NAME --params \'{"override": "why"}\', which the server logs.'
        ),
    )
    call.add_argument("endpoint", metavar="ENDPOINT", help="e.g. tcp://127.0.0.1:5555")
    call.add_argument("action", metavar="ACTION", help="e.g. status, dry")
    call.add_argument(
        "--params",
        type=json_object,
        default={},
        help="action params as a JSON object, e.g. '{\"duration_s\": 60}'",
    )
    call.add_argument("--timeout", type=positive_float, default=60.0, help="seconds to wait (60)")
    call.add_argument(
        "--holder",
        metavar="NAME",
        help="who calls, for leases (e.g. person:$USER, or the campaign's holder to act under "
        "its lease)",
    )
    call.add_argument(
        "--keys",
        type=Path,
        metavar="DIR",
        help="CurveZMQ keys directory (NAME.key_secret, server.key)",
    )
    call.add_argument("--key-name", default="client", help="this client's key pair name (client)")
    call.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="ask again about an earlier call (its outcome comes back; nothing runs twice)",
    )
    call.add_argument(
        "--quiet",
        action="store_true",
        help="no progress on stderr (by default: the action's progress, and how to approve it "
        "when the server holds it for approval)",
    )
    call.set_defaults(run=instrument_call)

    approve = instrument_commands.add_parser(
        "approve",
        help="list, approve or reject the motions held by a server's approval gate",
        description=(
            "Without KEY (or with --list) list the requests held on the server at ENDPOINT; "
            "with KEY approve that request (it then runs once) or, with --reject --reason TEXT, "
            "reject it (its caller gets the error 'rejected'). The approver's name (--as) must "
            "differ from the holder that proposed the request. A request not approved before "
            "its caller's deadline (call --timeout) ends there without moving."
        ),
    )
    approve.add_argument("endpoint", metavar="ENDPOINT", help="e.g. tcp://127.0.0.1:5555")
    approve.add_argument("key", nargs="?", metavar="KEY", help="idempotency key of the request")
    approve.add_argument("--list", action="store_true", help="list the held requests")
    approve.add_argument("--reject", action="store_true", help="reject KEY instead")
    approve.add_argument("--reason", help="why it is rejected (needed with --reject)")
    approve.add_argument(
        "--as",
        dest="approver",
        default=f"person:{os.environ.get('USER') or 'operator'}",
        help="the approver's holder name (person:$USER)",
    )
    approve.add_argument(
        "--timeout", type=positive_float, default=10.0, help="seconds to wait (10)"
    )
    approve.add_argument(
        "--keys",
        type=Path,
        metavar="DIR",
        help="CurveZMQ keys directory (NAME.key_secret, server.key)",
    )
    approve.add_argument(
        "--key-name", default="client", help="this client's key pair name (client)"
    )
    approve.set_defaults(run=instrument_approve)


def instrument_keys(args: argparse.Namespace) -> int:
    from poreloop.instruments.auth import make_keys

    public, secret = make_keys(args.directory, args.name)
    print(f"wrote {public} (public: give it to the other side)")
    print(f"wrote {secret} (secret: owner-only, keep it here)")
    return 0


def instrument_serve(args: argparse.Namespace) -> int:
    from poreloop.instruments.server import ServerOptions, serve

    options = ServerOptions.from_args(args)
    serve(options)
    print(f"stopped {options.kind} on {options.bind}", flush=True)
    return 0


def instrument_call(args: argparse.Namespace) -> int:
    from poreloop.instruments.auth import Keys
    from poreloop.instruments.client import InstrumentClient
    from poreloop.instruments.errors import InstrumentError

    if args.action == "acquire_lease":
        raise InstrumentError(
            "acquire_lease from the command line would end with the command (a lease is "
            "released when its client closes); hold one from Python (`with client.lease():`), "
            "or call estop to stop every motion"
        )
    keys = Keys.for_client(args.keys, name=args.key_name) if args.keys is not None else None
    key_flags = f" --keys {args.keys} --key-name {args.key_name}" if args.keys is not None else ""
    show = None if args.quiet else _ShowProgress(args.action, args.endpoint, key_flags)
    try:
        with InstrumentClient(
            args.endpoint, holder=args.holder, keys=keys, replay_hint=_cli_replay_hint
        ) as client:
            outcome = client.call(
                args.action,
                args.params,
                timeout=args.timeout,
                idempotency_key=args.idempotency_key,
                on_progress=show,
            )
    finally:
        if show is not None:
            show.end()
    print(json.dumps(outcome, indent=2))
    return 0


def _cli_replay_hint(key: str) -> str:
    return f"run the same command with --idempotency-key {key} to learn its outcome"


class _ShowProgress:
    """A call's heartbeats on a status line: ``dry: 40% (12 s)``, every beat on a terminal and
    one line per tenth elsewhere (a log stays short); a held call says once how to approve it."""

    def __init__(self, action: str, endpoint: str, key_flags: str) -> None:
        self.action = action
        self.endpoint = endpoint
        self.key_flags = key_flags
        self.status = StatusLine()
        self.held_told = False
        self.tenth: int | None = None

    def __call__(self, progress: Progress) -> None:
        if progress.state == "held":
            if not self.held_told:
                self.held_told = True
                self.status.show(
                    f"{self.action} is held for approval under key {progress.idempotency_key}; "
                    f"approve it with `poreloop instrument approve {self.endpoint} "
                    f"{progress.idempotency_key} --as NAME{self.key_flags}` "
                    "(NAME: who approves, not the proposer)"
                )
                self.status.end()
            return
        tenth = int(progress.fraction * 10)
        if self.status.in_place or tenth != self.tenth:
            self.tenth = tenth
            self.status.show(f"{self.action}: {progress.fraction:.0%} ({progress.elapsed_s:.0f} s)")

    def end(self) -> None:
        self.status.end()


def instrument_approve(args: argparse.Namespace) -> int:
    from poreloop.instruments.auth import Keys
    from poreloop.instruments.client import InstrumentClient
    from poreloop.instruments.errors import InstrumentError

    if args.key is None and (args.reject or args.reason):
        raise InstrumentError("expected the KEY of the request to reject, got none; run --list")
    if args.reject and not args.reason:
        raise InstrumentError(
            f"expected --reason TEXT with --reject, got none; say why {args.key} is turned down"
        )
    keys = Keys.for_client(args.keys, name=args.key_name) if args.keys is not None else None
    with InstrumentClient(
        args.endpoint, holder=args.approver, keys=keys, replay_hint=_cli_replay_hint
    ) as client:
        if args.list or args.key is None:
            _print_pending(args.endpoint, client.call("pending", timeout=args.timeout))
            return 0
        if args.reject:
            params = {"idempotency_key": args.key, "reason": args.reason}
            client.call("reject", params, timeout=args.timeout)
            print(f"rejected {args.key} on {args.endpoint}: {args.reason}")
        else:
            done = client.call("approve", {"idempotency_key": args.key}, timeout=args.timeout)
            print(f"approved {args.key} ({done['action']}) on {args.endpoint}; it runs now")
    return 0


def _print_pending(endpoint: str, answer: dict[str, Any]) -> None:
    pending = answer["pending"]
    gate = "" if answer["approval"] else " (its approval gate is off)"
    if not pending:
        print(f"no request held on {endpoint}{gate}")
        return
    print(f"{len(pending)} held on {endpoint}{gate}:")
    for held in pending:
        print(
            f"  {held['idempotency_key']}  {held['action']} {json.dumps(held['params'])}  "
            f"from {held['holder'] or '(no holder)'}, {held['age_s']:.0f} s ago"
        )
