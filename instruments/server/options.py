"""How to serve one instrument: the one set of options behind every way of starting a server.

``poreloop instrument serve``, ``python -m poreloop.instruments.server`` and ``poreloop lab up``
(``lab_config.server_command``) all go through ``ServerOptions``: its fields are the command
line's arguments (``add_arguments``, ``from_args``) and ``argv`` writes them back, so a flag is
spelled once, here.
"""

from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from poreloop.instruments.errors import InstrumentError
from poreloop.instruments.server.faults import Faults
from poreloop.registry import validation_summary


class ServerOptions(BaseModel):
    """One instrument server: what it drives, where it listens, what guards it, what it fakes.

    A field without a default is a positional argument; the others are ``--flags`` named after
    them (``heartbeat_s`` -> ``--heartbeat-s``); a boolean is a switch, off by default.
    """

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="instrument kind, e.g. oven")
    backend: str = Field(
        default="sim", description="sim, or a hardware adapter as package.module:Class"
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="the backend's keyword arguments as a JSON object, e.g. '{\"seed\": 3}'",
    )
    bind: str = Field(
        default="tcp://127.0.0.1:5555",
        description="ZeroMQ endpoint (tcp://127.0.0.1:5555; port * takes a free one)",
    )
    lab_dir: Path = Field(
        default=Path("lab"),
        description="the lab's folder: what its simulated instruments make and measure, and the "
        "journal (./lab)",
    )
    journal: Path | None = Field(
        default=None,
        description="exactly-once journal (SQLite); default LAB_DIR/journals/KIND.sqlite",
    )
    keys: Path | None = Field(
        default=None,
        description="CurveZMQ keys directory (server.key_secret, allowed/*.key); without it "
        "only a loopback bind is allowed",
    )
    approval: bool = Field(
        default=False,
        description="hold every motion until a person approves it (poreloop instrument approve)",
    )
    parent_pid: int | None = Field(
        default=None,
        gt=0,
        description="stop when this process is no longer the server's parent (lab up sets it)",
    )
    time_scale: float | None = Field(
        default=None, gt=0, description="wall seconds per simulated second (sim backends)"
    )
    seed: int | None = Field(default=None, description="seed of a sim backend that takes one")
    heartbeat_s: float = Field(
        default=0.5, gt=0, description="seconds between progress heartbeats of a running action"
    )
    drop_replies: int = Field(default=0, ge=0, description="fault: drop the next N final replies")
    delay_s: float = Field(default=0.0, ge=0, description="fault: send every reply this late, s")
    crash_at_fraction: float | None = Field(
        default=None, ge=0, le=1, description="fault: exit mid-action at this progress fraction"
    )
    corrupt_replies: int = Field(
        default=0, ge=0, description="fault: garble the next N final replies"
    )

    @field_validator("options", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        """The command line hands ``options`` over as JSON text."""
        if not isinstance(value, str):
            return value
        try:
            parsed = json.loads(value)
        except ValueError as error:
            raise ValueError(f"expected a JSON object, got {value!r} ({error})") from None
        if not isinstance(parsed, dict):
            raise ValueError(f"expected a JSON object, got a {type(parsed).__name__}: {value!r}")
        return parsed

    @property
    def journal_path(self) -> Path:
        return self.journal if self.journal is not None else journal_under(self.lab_dir, self.kind)

    def backend_options(self) -> dict[str, Any]:
        """The keyword arguments of the backend: the lab settings (``lab_dir``, ``seed`` and
        ``time_scale`` when set) that a simulated backend's constructor takes, then ``options``,
        which win. A hardware adapter gets ``options`` only."""
        from poreloop.instruments.sim import SIMULATED

        simulated = self.backend == "sim" and self.kind in SIMULATED
        accepted = inspect.signature(SIMULATED[self.kind]).parameters if simulated else {}
        settings = {"lab_dir": str(self.lab_dir), "seed": self.seed, "time_scale": self.time_scale}
        given = {k: v for k, v in settings.items() if v is not None and k in accepted}
        return {**given, **self.options}

    def faults(self) -> Faults:
        """The faults these options inject (none by default)."""
        return Faults(
            drop_replies=self.drop_replies,
            delay_s=self.delay_s,
            crash_at_fraction=self.crash_at_fraction,
            corrupt_replies=self.corrupt_replies,
        )

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One argument per field; one left out keeps the field's default."""
        for name, info in cls.model_fields.items():
            if info.is_required():
                parser.add_argument(name, metavar=name.upper(), help=info.description)
            elif info.annotation is bool:
                parser.add_argument(
                    _flag(name),
                    action="store_true",
                    default=argparse.SUPPRESS,
                    help=info.description,
                )
            else:
                parser.add_argument(_flag(name), default=argparse.SUPPRESS, help=info.description)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServerOptions:
        """The options parsed by ``add_arguments``; one-line InstrumentError for a bad value."""
        given = {name: value for name, value in vars(args).items() if name in cls.model_fields}
        try:
            return cls.model_validate(given)
        except ValidationError as error:
            raise InstrumentError(
                f"invalid server options: {validation_summary(error)}; see --help"
            ) from None

    def argv(self) -> list[str]:
        """The command-line arguments that ``from_args`` reads back as these options."""
        argv = []
        for name, value in self.model_dump(mode="json", exclude_defaults=True).items():
            if type(self).model_fields[name].is_required():
                argv.append(str(value))
            elif value is True:
                argv.append(_flag(name))
            else:
                text = json.dumps(value) if isinstance(value, dict) else str(value)
                argv.append(f"{_flag(name)}={text}")
        return argv


def journal_under(lab_dir: Path, kind: str) -> Path:
    """Where the journal of an instrument of ``kind`` lives in its lab's folder."""
    return lab_dir / "journals" / f"{kind}.sqlite"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
