"""Simulated backends: the same instrument contract, acting on a reproducible model."""

from __future__ import annotations

from typing import Any

from poreloop.instruments.base import Instrument
from poreloop.instruments.errors import InstrumentError
from poreloop.instruments.sim.cycler import SimCycler
from poreloop.instruments.sim.inspector import SimInspector
from poreloop.instruments.sim.oven import SimOven
from poreloop.instruments.sim.robot import SimRobot
from poreloop.instruments.sim.tomograph import SimTomograph
from poreloop.instruments.sim.xrd import SimXRD
from poreloop.registry import Registry

SIMULATED: Registry[type[Instrument]] = Registry(
    "simulated instrument",
    InstrumentError,
    {cls.kind: cls for cls in (SimOven, SimRobot, SimInspector, SimXRD, SimTomograph, SimCycler)},
)


def make_simulated(kind: str, **options: Any) -> Instrument:
    """The simulated backend of instrument ``kind``, built with its keyword ``options``."""
    cls = SIMULATED.lookup(kind)
    try:
        return cls(**options)
    except TypeError as error:
        raise InstrumentError(
            f"bad options {sorted(options)} for the simulated {kind}: {error}; see {cls.__name__}"
        ) from None


__all__ = [
    "SIMULATED",
    "SimCycler",
    "SimInspector",
    "SimOven",
    "SimRobot",
    "SimTomograph",
    "SimXRD",
    "make_simulated",
]
