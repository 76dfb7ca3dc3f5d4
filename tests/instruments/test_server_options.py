"""One set of server options behind every command line, and the ready line a supervisor reads."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from poreloop.instruments.backends import make_instrument
from poreloop.instruments.base import Action
from poreloop.instruments.errors import InstrumentError
from poreloop.instruments.server import (
    Faults,
    Server,
    ServerOptions,
    parse_ready_line,
    ready_line,
)
from poreloop.instruments.server.control import CONTROL_ACTIONS, Control
from poreloop.instruments.sim import SIMULATED
from poreloop.instruments.sim.oven import DryParams, DryResult, SimOven


def _parse(argv: list[str]) -> ServerOptions:
    parser = argparse.ArgumentParser()
    ServerOptions.add_arguments(parser)
    return ServerOptions.from_args(parser.parse_args(argv))


def test_every_option_survives_the_command_line(tmp_path: Path) -> None:
    options = ServerOptions(
        kind="oven",
        backend="mylab.ovens:Vacuum",
        options={"seed": 3, "counter_path": str(tmp_path / "runs")},
        bind="tcp://127.0.0.1:*",
        journal=tmp_path / "j.sqlite",
        keys=tmp_path / "keys",
        approval=True,
        time_scale=1e-3,
        heartbeat_s=0.05,
        drop_replies=1,
        delay_s=0.2,
        crash_at_fraction=0.5,
        corrupt_replies=2,
    )
    assert _parse(options.argv()) == options


def test_left_out_options_take_their_defaults() -> None:
    options = _parse(["oven"])
    assert options == ServerOptions(kind="oven") and options.argv() == ["oven"]
    assert options.journal_path == Path("lab/journals/oven.sqlite")
    assert options.faults() == Faults()
    assert options.backend_options() == {}


@pytest.mark.parametrize("kind", list(SIMULATED))
def test_every_simulated_kind_serves_on_its_own(tmp_path: Path, kind: str) -> None:
    """No lab config needed: the lab folder (``--lab-dir``, default ./lab) reaches the backends
    that keep samples there, and the journal goes under it, never into the working folder."""
    options = _parse([kind, "--lab-dir", str(tmp_path / "lab")])
    assert options.journal_path == tmp_path / "lab" / "journals" / f"{kind}.sqlite"
    instrument = make_instrument(kind, options.backend, **options.backend_options())
    assert instrument.kind == kind


def test_a_lab_folder_given_in_the_options_wins(tmp_path: Path) -> None:
    options = _parse(["robot", "--options", json.dumps({"lab_dir": str(tmp_path)})])
    assert options.backend_options() == {"lab_dir": str(tmp_path)}


def test_time_scale_joins_the_backend_options() -> None:
    options = _parse(["oven", "--options", '{"seed": 3}', "--time-scale", "0.01"])
    assert options.backend_options() == {"seed": 3, "time_scale": 0.01}


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["oven", "--heartbeat-s", "0"], "heartbeat_s: Input should be greater than 0"),
        (["oven", "--time-scale", "-1"], "time_scale: Input should be greater than 0"),
        (["oven", "--options", "{bad"], "options: expected a JSON object, got '{bad'"),
        (["oven", "--options", "[1]"], "options: expected a JSON object, got a list"),
        (["oven", "--crash-at-fraction", "2"], "crash_at_fraction: Input should be less"),
    ],
)
def test_a_bad_option_is_one_line(argv: list[str], named: str) -> None:
    with pytest.raises(InstrumentError, match="invalid server options: ") as caught:
        _parse(argv)
    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_the_ready_line_is_json_its_parser_reads_back() -> None:
    line = ready_line("oven", "tcp://127.0.0.1:5555", Path("j.sqlite"), "loopback only")
    assert parse_ready_line(line) == {
        "event": "serving",
        "kind": "oven",
        "endpoint": "tcp://127.0.0.1:5555",
        "journal": "j.sqlite",
        "security": "loopback only",
    }
    assert json.loads(line)["endpoint"] == "tcp://127.0.0.1:5555"


@pytest.mark.parametrize(
    "line", ["serving oven on tcp://127.0.0.1:5555", '{"event": "stopped"}', "[1, 2]", ""]
)
def test_other_lines_are_not_ready_lines(line: str) -> None:
    assert parse_ready_line(line) is None


def test_each_control_action_is_the_control_method_of_its_name() -> None:
    assert set(CONTROL_ACTIONS) == {
        "status",
        "describe",
        "noop",
        "abort",
        "estop",
        "clear_estop",
        "acquire_lease",
        "release_lease",
        "pending",
        "approve",
        "reject",
    }
    for name, (_, handler) in CONTROL_ACTIONS.items():
        assert getattr(Control, name) is handler


def test_an_instrument_may_not_shadow_a_control_action(tmp_path: Path) -> None:
    class StatusOven(SimOven):
        actions = {**SimOven.actions, "status": Action(params=DryParams, result=DryResult)}

        def _status(self, params, ctx):
            return self._dry(params, ctx)

    with pytest.raises(InstrumentError, match=r"declares actions \['status'\] that the server"):
        Server(StatusOven(), "tcp://127.0.0.1:*", tmp_path / "j.sqlite")
    assert not (tmp_path / "j.sqlite").exists()
