"""A lab config: which simulated instruments to serve, where, and the settings they share.

``poreloop lab up configs/lab.yaml`` reads one (``load_lab_config``) and starts one
``python -m poreloop.instruments.server`` per instrument (``server_command``, from its
``ServerOptions``). Relative paths are taken from the directory ``poreloop`` runs in.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from poreloop.instruments.auth import check_loopback
from poreloop.instruments.errors import InstrumentError
from poreloop.instruments.server.options import ServerOptions, journal_under
from poreloop.registry import did_you_mean, validation_summary


class InstrumentConfig(BaseModel):
    """One instrument server: its kind, its ZeroMQ bind, backend options, its approval gate."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="simulated instrument kind, e.g. oven")
    bind: str = Field(description="ZeroMQ endpoint, e.g. tcp://127.0.0.1:5555")
    backend: str = Field(default="sim", description="sim, or package.module:Class (adapter)")
    options: dict[str, Any] = Field(
        default_factory=dict, description="backend keyword arguments; they override lab settings"
    )
    approval: bool = Field(default=False, description="hold every motion for a person's approval")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        from poreloop.instruments.sim import SIMULATED

        if kind not in SIMULATED:
            raise ValueError(f"no simulated instrument '{kind}'{did_you_mean(kind, SIMULATED)}")
        return kind


class LabConfig(BaseModel):
    """The whole simulated lab: shared directory, seed and clock, keys, and the instruments."""

    model_config = ConfigDict(extra="forbid")

    lab_dir: Path = Field(description="shared lab state: samples, counters, journals/")
    seed: int = Field(default=0, description="seed of every backend that takes one")
    time_scale: float = Field(default=1.0, gt=0, description="wall seconds per simulated second")
    keys: Path | None = Field(
        default=None, description="CurveZMQ keys DIR (server.key_secret, allowed/*.key)"
    )
    instruments: list[InstrumentConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_server_per_kind_and_safe_binds(self) -> LabConfig:
        kinds = [instrument.kind for instrument in self.instruments]
        twice = sorted({kind for kind in kinds if kinds.count(kind) > 1})
        if twice:
            raise ValueError(f"one server per kind, got {twice} more than once; drop the repeats")
        bound: dict[str, str] = {}
        for instrument in self.instruments:
            if not instrument.bind.endswith(":*") and instrument.bind in bound:
                raise ValueError(
                    f"{bound[instrument.bind]} and {instrument.kind} both bind "
                    f"{instrument.bind}; give each its own port (or port * for a free one)"
                )
            bound[instrument.bind] = instrument.kind
        if self.keys is None:
            for instrument in self.instruments:
                try:
                    check_loopback(instrument.bind)
                except InstrumentError as error:
                    raise ValueError(f"{instrument.kind}: {error}, or set keys") from None
        return self

    def journal(self, instrument: InstrumentConfig) -> Path:
        return journal_under(self.lab_dir, instrument.kind)


def load_lab_config(path: str | Path) -> LabConfig:
    """The lab config in the YAML file ``path``; one-line InstrumentError naming the bad key."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        reason = " ".join(str(error).split())
        raise InstrumentError(
            f"cannot read the lab config '{path}' ({reason}); see configs/lab.yaml"
        ) from None
    try:
        return LabConfig.model_validate(data)
    except ValidationError as error:
        raise InstrumentError(
            f"{path}: {validation_summary(error)}; see configs/lab.yaml for the keys"
        ) from None


def server_options(config: LabConfig, instrument: InstrumentConfig) -> ServerOptions:
    """The server of ``instrument`` in the lab ``config``: the lab's folder, seed and clock go
    to its backend where it takes them (the instrument's own options win). The server is told
    this process's PID and stops when it is no longer its parent."""
    return ServerOptions(
        kind=instrument.kind,
        backend=instrument.backend,
        options=instrument.options,
        bind=instrument.bind,
        lab_dir=config.lab_dir,
        journal=config.journal(instrument),
        keys=config.keys,
        approval=instrument.approval,
        parent_pid=os.getpid(),
        seed=config.seed,
        time_scale=config.time_scale,
    )


def server_command(config: LabConfig, instrument: InstrumentConfig) -> list[str]:
    """The ``python -m poreloop.instruments.server`` command line that serves ``instrument``."""
    options = server_options(config, instrument)
    return [sys.executable, "-m", "poreloop.instruments.server", *options.argv()]
