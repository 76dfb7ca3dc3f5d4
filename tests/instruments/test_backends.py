"""Hardware adapters slot in by name and must honour their kind's contract."""

from __future__ import annotations

from typing import ClassVar

import pytest

from poreloop.instruments.backends import make_instrument
from poreloop.instruments.base import Action, Instrument
from poreloop.instruments.errors import InstrumentError
from poreloop.instruments.sim.oven import DryParams, DryResult, SimOven


class BenchOven(Instrument):
    """A stand-in for a vendor driver: the oven's contract, a different body."""

    kind: ClassVar[str] = "oven"
    actions: ClassVar[dict[str, Action]] = {"dry": Action(params=DryParams, result=DryResult)}

    def _dry(self, params, ctx):
        return DryResult(
            temperature_c=params.temperature_c,
            duration_s=params.duration_s,
            initial_moisture_ppm=500.0,
            residual_moisture_ppm=100.0,
            run=1,
        )


class NoActions(Instrument):
    kind: ClassVar[str] = "oven"
    actions: ClassVar[dict[str, Action]] = {}


def test_sim_and_an_adapter_are_built_by_name():
    assert isinstance(make_instrument("oven"), SimOven)
    assert isinstance(make_instrument("oven", f"{__name__}:BenchOven"), BenchOven)


@pytest.mark.parametrize(
    ("kind", "backend", "message"),
    [
        ("oven", "no_colon", "must be 'sim' or 'package.module:Class'"),
        ("oven", "no_such_module:X", "cannot load backend"),
        ("oven", f"{__name__}:DryParams", "is not an Instrument subclass"),
        ("robot", f"{__name__}:BenchOven", "drives a 'oven', not a 'robot'"),
        ("oven", f"{__name__}:NoActions", r"lacks the oven actions \['dry'\]"),
    ],
)
def test_a_bad_backend_is_refused_with_a_clear_message(kind, backend, message):
    with pytest.raises(InstrumentError, match=message):
        make_instrument(kind, backend)
