"""The ``poreloop`` command line.

Heavy modules (the twins, matplotlib) are imported inside the commands that use them, so
``poreloop --help`` answers at once. A user mistake is printed as one line
``poreloop: error: <message>`` on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poreloop.twins.manufacturing.base import Twin
    from poreloop.twins.microstructure import Microstructure
    from poreloop.twins.space import ParameterSpace, Value

PROG = "poreloop"
_MICROSTRUCTURE_SUFFIXES = (".tif", ".tiff", ".npz")
_PARAMETER_KEYS = ("name", "kind", "unit", "low", "high", "default", "choices", "description")


def user_errors() -> tuple[type[Exception], ...]:
    """The exception families that mean a user mistake; add each package's family here.

    Imported on demand so that ``--help`` does not pay for the packages.
    """
    from poreloop.agent.errors import AgentError
    from poreloop.instruments.errors import InstrumentError
    from poreloop.twins.errors import TwinError

    return (AgentError, TwinError, InstrumentError, OSError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status: 0 on success, 2 on a usage error or user mistake."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.run(args)
    except BrokenPipeError:  # the reader of stdout left early (`poreloop twin list | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if not isinstance(exc, user_errors()):
            raise
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A closed-loop lab for porous energy materials.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    twin = commands.add_parser(
        "twin",
        help="manufacturing twins: list them, generate microstructures, look at them",
        description="Manufacturing twins (recipe → 3D microstructure).",
    )
    twin_commands = twin.add_subparsers(dest="twin_command", required=True, metavar="COMMAND")

    listing = twin_commands.add_parser(
        "list",
        help="every registered twin with its parameters",
        description=(
            "Every registered twin with its phases, parameters (kind, unit, bounds or "
            "choices, default) and linear constraints. --json prints a list of "
            "{name, description, phases: {'<id>': name}, dims, parameters: [{name, kind, "
            "unit, low, high, default, choices, description}], constraints: [text]}; keys "
            "that do not apply to a parameter kind are null."
        ),
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=twin_list)

    generate = twin_commands.add_parser(
        "generate",
        help="generate a microstructure from a recipe",
        description=(
            "Generate a microstructure with twin NAME. Parameters not set with --set take "
            "their defaults (see `poreloop twin list`)."
        ),
    )
    generate.add_argument("name", metavar="NAME", help="registered twin name")
    generate.add_argument(
        "--set",
        dest="values",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        type=_key_value,
        help="a recipe parameter (repeatable), e.g. --set voxel_size_um=0.5; overrides --recipe",
    )
    generate.add_argument(
        "--recipe",
        type=Path,
        metavar="FILE",
        help="a YAML mapping of parameter names to values, e.g. configs/recipes/*.yaml",
    )
    box = generate.add_mutually_exclusive_group()
    box.add_argument(
        "--size", type=_positive_int, default=128, help="edge of a cubic box in voxels (128)"
    )
    box.add_argument("--shape", type=_shape, help="box shape NX,NY,NZ in voxels")
    generate.add_argument("--seed", type=int, default=0, help="random seed (0)")
    generate.add_argument(
        "--out", type=Path, required=True, help="output file: .tif/.tiff (ImageJ stack) or .npz"
    )
    generate.add_argument(
        "--reference",
        type=Path,
        metavar="FILE",
        help="a measured microstructure (.tif/.npz) for twins that reproduce one",
    )
    generate.set_defaults(run=twin_generate)

    show = twin_commands.add_parser(
        "show",
        help="picture the mid-slices of a microstructure file",
        description="Orthogonal mid-slices (xy, xz, yz) with phase legend and a scale bar.",
    )
    show.add_argument("file", type=Path, metavar="FILE", help="a .tif/.tiff or .npz file")
    show.add_argument(
        "--out", type=Path, help="picture to write (.png, .pdf, .svg); default FILE with .png"
    )
    show.add_argument(
        "--voxel-size-um",
        type=float,
        help="voxel size in µm, overriding the file's (foreign files often carry none)",
    )
    show.set_defaults(run=twin_show)

    critic = commands.add_parser(
        "critic",
        help="critics: score a microstructure (metrics, transport, flow, cell model)",
        description="Critics (microstructure → properties → performance).",
    )
    critic_commands = critic.add_subparsers(dest="critic_command", required=True, metavar="COMMAND")
    evaluate = critic_commands.add_parser(
        "evaluate",
        help="run a critic chain on a microstructure file",
        description=(
            "Score a .tif/.tiff/.npz microstructure (ours or a segmented stack you bring) with a "
            "chain: generic (morphology + tau/deff of every phase along x, y, z), electrode "
            "(+ solid conduction + PyBaMM cell model), gdl (+ permeability), sofc_anode "
            "(+ Ni and YSZ conduction). Axes x, y, z are array indices 0, 1, 2; tau = inf "
            'is written as the JSON string "inf". Exit 1 when a stage could not score it.'
        ),
    )
    evaluate.add_argument("file", type=Path, metavar="FILE", help="a .tif/.tiff or .npz file")
    evaluate.add_argument("--chain", default="generic", help="generic, electrode, gdl, sofc_anode")
    evaluate.add_argument(
        "--phases",
        type=_phase_names,
        help="name the phase ids, e.g. 0=pore,85=active,170=cbd (id 0 should be pore)",
    )
    evaluate.add_argument("--axes", type=_axes, help="axes to solve along, e.g. z or x,y,z")
    evaluate.add_argument(
        "--voxel-size-um", type=float, help="voxel size in µm, overriding the file's"
    )
    evaluate.add_argument("--json", action="store_true", help="machine-readable output")
    evaluate.set_defaults(run=critic_evaluate)
    _add_instrument_commands(commands)
    lab = commands.add_parser(
        "lab",
        help="a simulated lab: every configured instrument at once",
        description="A simulated lab: one instrument server subprocess per configured instrument.",
    )
    lab_commands = lab.add_subparsers(dest="lab_command", required=True, metavar="COMMAND")
    up = lab_commands.add_parser(
        "up",
        help="serve every instrument of a lab config until Ctrl-C",
        description=(
            "Start one server subprocess per instrument in CONFIG, print their endpoints and "
            "PIDs, and stop them all on Ctrl-C or SIGTERM. A bad config or a server that does "
            "not start exits with 2."
        ),
    )
    up.add_argument("config", type=Path, metavar="CONFIG", help="lab YAML, e.g. configs/lab.yaml")
    up.set_defaults(run=lab_up)
    return parser


def _add_instrument_commands(commands: argparse._SubParsersAction) -> None:
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
    serve.add_argument("kind", metavar="KIND", help="instrument kind, e.g. oven")
    serve.add_argument(
        "--backend", default="sim", help="sim, or a hardware adapter as package.module:Class"
    )
    serve.add_argument(
        "--bind", default="tcp://127.0.0.1:5555", help="ZeroMQ endpoint (tcp://127.0.0.1:5555)"
    )
    serve.add_argument(
        "--journal", type=Path, help="exactly-once journal (SQLite); default KIND-journal.sqlite"
    )
    serve.add_argument("--keys", type=Path, metavar="DIR", help="CurveZMQ keys directory")
    serve.add_argument(
        "--time-scale", type=float, help="wall seconds per simulated second (sim only)"
    )
    serve.add_argument(
        "--approval",
        action="store_true",
        help="hold every motion until a person approves it (poreloop instrument approve)",
    )
    serve.set_defaults(run=instrument_serve)

    call = instrument_commands.add_parser(
        "call",
        help="call an action on an instrument server and print its result",
        description=(
            "Run ACTION on the server at ENDPOINT and print its outcome as JSON. Every server "
            "answers status, describe, abort, estop, clear_estop, acquire_lease, release_lease, "
            "noop, pending, approve, reject; `call ENDPOINT describe` lists the instrument's own "
            "actions."
        ),
    )
    call.add_argument("endpoint", metavar="ENDPOINT", help="e.g. tcp://127.0.0.1:5555")
    call.add_argument("action", metavar="ACTION", help="e.g. status, dry")
    call.add_argument(
        "--params", default="{}", help="action params as a JSON object, e.g. '{\"duration_s\": 60}'"
    )
    call.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (60)")
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
    approve.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (10)")
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


def twin_list(args: argparse.Namespace) -> int:
    from poreloop.twins.manufacturing import TWINS

    entries = [_describe_twin(cls) for _, cls in sorted(TWINS.items())]
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    if not entries:
        print("no twins registered")
        return 0
    print("\n\n".join(_twin_table(entry) for entry in entries))
    return 0


def twin_generate(args: argparse.Namespace) -> int:
    from poreloop.twins.manufacturing import TWINS, get_twin

    twin = get_twin(args.name, **_twin_options(TWINS.get(args.name), args.reference))
    _check_output(args.out, _MICROSTRUCTURE_SUFFIXES)
    recipe = read_recipe(args.recipe) if args.recipe else {}
    recipe |= parse_recipe(twin.space, args.values)
    shape = args.shape or (args.size,) * max(twin.dims)
    start = time.perf_counter()
    micro = twin.generate(recipe, shape=shape, seed=args.seed)
    seconds = time.perf_counter() - start
    micro.save(args.out)
    print(
        f"wrote {args.out}: twin {twin.name}, shape {'x'.join(map(str, micro.shape))}, "
        f"voxel {micro.voxel_size_um:g} um, seed {args.seed}, {seconds:.2f} s"
    )
    print("recipe: " + ", ".join(f"{k}={v}" for k, v in micro.provenance.recipe.items()))
    if twin.summary():
        print(twin.summary())
    _print_fractions(micro)
    return 0


def twin_show(args: argparse.Namespace) -> int:
    from poreloop.twins.microstructure import Microstructure
    from poreloop.twins.plot import plot_slices

    out = args.out or args.file.with_suffix(".png")
    _check_output(out, ())
    micro = Microstructure.load(args.file, voxel_size_um=args.voxel_size_um)
    plot_slices(micro, out)
    print(f"wrote {out}: mid-slices of {args.file}, shape {'x'.join(map(str, micro.shape))}")
    _print_fractions(micro)
    return 0


def critic_evaluate(args: argparse.Namespace) -> int:
    from poreloop.twins.critics.chain import get_chain
    from poreloop.twins.microstructure import Microstructure

    chain = get_chain(args.chain, **({"axes": args.axes} if args.axes else {}))
    micro = Microstructure.load(args.file, voxel_size_um=args.voxel_size_um)
    if args.phases:
        micro = Microstructure(micro.labels, micro.voxel_size_um, args.phases, micro.provenance)
    result = chain.evaluate(micro)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0 if result.ok else 1
    shape = "x".join(map(str, result.shape))
    print(f"{args.file}: chain {result.chain}, {shape} voxels of {result.voxel_size_um:g} um")
    units = result.units
    width = max(map(len, result.properties), default=0)
    for key, value in result.properties.items():
        print(f"  {key:<{width}}  {value:<12.6g}  {units[key]}")
    stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in result.timings_s.items())
    print(f"stages: {stages}")
    if not result.ok:
        print(f"{PROG}: could not score it: {result.reason}", file=sys.stderr)
        return 1
    return 0


def instrument_keys(args: argparse.Namespace) -> int:
    from poreloop.instruments.auth import make_keys

    public, secret = make_keys(args.directory, args.name)
    print(f"wrote {public} (public: give it to the other side)")
    print(f"wrote {secret} (secret: owner-only, keep it here)")
    return 0


def instrument_serve(args: argparse.Namespace) -> int:
    from poreloop.instruments.auth import Keys
    from poreloop.instruments.backends import make_instrument
    from poreloop.instruments.server import serve

    options = {} if args.time_scale is None else {"time_scale": args.time_scale}
    instrument = make_instrument(args.kind, args.backend, **options)
    journal = args.journal or Path(f"{args.kind}-journal.sqlite")
    keys = Keys.for_server(args.keys) if args.keys is not None else None
    serve(instrument, args.bind, journal, keys=keys, approval=args.approval)
    print(f"stopped {args.kind} on {args.bind}", flush=True)
    return 0


def instrument_call(args: argparse.Namespace) -> int:
    from poreloop.instruments.auth import Keys
    from poreloop.instruments.client import InstrumentClient
    from poreloop.instruments.errors import InstrumentError

    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as exc:
        raise InstrumentError(
            f"expected --params as a JSON object like '{{\"duration_s\": 60}}', got "
            f"'{args.params}' ({exc})"
        ) from None
    if not isinstance(params, dict):
        raise InstrumentError(
            f"expected --params as a JSON object like '{{\"duration_s\": 60}}', got "
            f"a {type(params).__name__}: '{args.params}'"
        )
    keys = Keys.for_client(args.keys, name=args.key_name) if args.keys is not None else None
    with InstrumentClient(args.endpoint, keys=keys) as client:
        outcome = client.call(
            args.action, params, timeout=args.timeout, idempotency_key=args.idempotency_key
        )
    print(json.dumps(outcome, indent=2))
    return 0


def lab_up(args: argparse.Namespace) -> int:
    from poreloop.instruments.lab_config import load_lab_config
    from poreloop.instruments.lab_up import run_lab

    return run_lab(load_lab_config(args.config))


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
    with InstrumentClient(args.endpoint, holder=args.approver, keys=keys) as client:
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


def read_recipe(path: Path) -> dict[str, Value]:
    """A recipe file: a YAML mapping of parameter names to values (checked by the space)."""
    import yaml

    from poreloop.twins.errors import TwinError

    try:
        recipe = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TwinError(f"cannot read recipe '{path}': {exc}") from None
    if not isinstance(recipe, dict) or not all(isinstance(k, str) for k in recipe):
        raise TwinError(
            f"recipe '{path}' must be a YAML mapping of parameter names to values, "
            f"got {type(recipe).__name__}"
        )
    return recipe


def parse_recipe(space: ParameterSpace, values: Sequence[tuple[str, str]]) -> dict[str, Value]:
    """``--set`` pairs → a partial recipe, each text parsed by its parameter's kind."""
    from poreloop.twins.errors import TwinError

    recipe: dict[str, Value] = {}
    for key, text in values:
        parameter = space[key]
        if key in recipe:
            raise TwinError(f"parameter '{key}' is set twice; give each --set once")
        recipe[key] = _parse_value(parameter.name, parameter.kind, text)
    return recipe


def _parse_value(name: str, kind: str, text: str) -> Value:
    """Text → int/float for numeric kinds (bounds are checked by the space), str otherwise."""
    from poreloop.twins.errors import TwinError

    if kind == "categorical":
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        expected = "an integer" if kind == "integer" else "a number"
        raise TwinError(f"parameter '{name}' expects {expected}, got '{text}'") from None


def _twin_options(cls: type[Twin] | None, reference: Path | None) -> dict[str, Any]:
    """Constructor options for a twin: the loaded reference structure only where it takes one.

    An unknown twin (``cls`` None) gets none, so that ``get_twin`` names it with a suggestion.
    """
    import inspect

    from poreloop.twins.errors import TwinError
    from poreloop.twins.microstructure import Microstructure

    if cls is None:
        return {}
    accepted = inspect.signature(cls).parameters.get("reference")
    if accepted is None:
        if reference is not None:
            raise TwinError(
                f"twin '{cls.name}' takes no --reference; only twins that reproduce a "
                "measured structure do (see `poreloop twin list`)"
            )
        return {}
    if reference is None:
        if accepted.default is inspect.Parameter.empty:
            raise TwinError(
                f"twin '{cls.name}' needs a measured structure: add --reference FILE (.tif/.npz)"
            )
        return {}
    return {"reference": Microstructure.load(reference)}


def _check_output(path: Path, suffixes: tuple[str, ...]) -> None:
    """Fail before the work, not after it, on an output path that cannot be written."""
    from poreloop.twins.errors import TwinError

    if suffixes and path.suffix.lower() not in suffixes:
        raise TwinError(f"cannot write '{path}': expected a suffix {', '.join(suffixes)}")
    if not path.parent.is_dir():
        raise TwinError(f"cannot write '{path}': no directory '{path.parent}'; create it first")


def _print_fractions(micro: Microstructure) -> None:
    fractions = micro.phase_fractions()
    width = max(len(name) for name in fractions)
    print("phase fractions:")
    for name, fraction in fractions.items():
        print(f"  {name:<{width}}  {fraction:.4f}")


def _describe_twin(cls: type[Twin]) -> dict[str, Any]:
    """The JSON-ready description of a twin class (see ``poreloop twin list --help``)."""
    parameters = []
    for p in cls.space.parameters:
        dump = p.model_dump()
        if "choices" in dump:
            dump["choices"] = list(dump["choices"])
        parameters.append({key: dump.get(key) for key in _PARAMETER_KEYS})
    doc = (cls.__doc__ or "").strip()
    return {
        "name": cls.name,
        "description": doc.splitlines()[0] if doc else "",
        "phases": {str(pid): name for pid, name in sorted(cls.phases.items())},
        "dims": list(cls.dims),
        "parameters": parameters,
        "constraints": [c.describe() for c in cls.space.constraints],
    }


def _twin_table(entry: dict[str, Any]) -> str:
    phases = ", ".join(f"{pid} {name}" for pid, name in entry["phases"].items())
    lines = [f"{entry['name']} — {entry['description']}".rstrip(" —"), f"  phases: {phases}"]
    rows = [("parameter", "kind", "unit", "range", "default", "description")]
    for p in entry["parameters"]:
        if p["kind"] == "categorical":
            bounds = "{" + ", ".join(p["choices"]) + "}"
        else:
            bounds = f"[{p['low']:g}, {p['high']:g}]"
        default = "-" if p["default"] is None else _format(p["default"])
        rows.append((p["name"], p["kind"], p["unit"], bounds, default, p["description"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  " + "  ".join([*cells, row[-1]]).rstrip())
    lines += [f"  constraint: {text}" for text in entry["constraints"]]
    return "\n".join(lines)


def _format(value: Value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    return key.strip(), value.strip()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return value


def _phase_names(text: str) -> dict[int, str]:
    names: dict[int, str] = {}
    for part in text.split(","):
        key, sep, name = part.partition("=")
        if not sep or not key.strip().isdigit() or not name.strip():
            raise argparse.ArgumentTypeError(
                f"expected ID=NAME,... like 0=pore,1=solid, got '{text}'"
            )
        names[int(key)] = name.strip()
    return names


def _axes(text: str) -> tuple[str, ...]:
    axes = tuple(a.strip() for a in text.split(","))
    if not axes or any(a not in ("x", "y", "z") for a in axes):
        raise argparse.ArgumentTypeError(f"expected axes among x,y,z like z or x,z, got '{text}'")
    return axes


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(_positive_int(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a shape like 64,64,96 (positive integers), got '{text}'"
        ) from None
