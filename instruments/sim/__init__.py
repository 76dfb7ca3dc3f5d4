"""Simulated backends: the same instrument contract, acting on a reproducible model."""

from __future__ import annotations

from typing import Any

from instruments.base import Instrument
from instruments.errors import InstrumentError, did_you_mean
from instruments.sim.cycler import SimCycler
from instruments.sim.inspector import SimInspector
from instruments.sim.oven import SimOven
from instruments.sim.robot import SimRobot
from instruments.sim.tomograph import SimTomograph
from instruments.sim.xrd import SimXRD

SIMULATED: dict[str, type[Instrument]] = {
    cls.kind: cls for cls in (SimOven, SimRobot, SimInspector, SimXRD, SimTomograph, SimCycler)
}


def make_simulated(kind: str, **options: Any) -> Instrument:
    """The simulated backend of instrument ``kind``, built with its keyword ``options``."""
    cls = SIMULATED.get(kind)
    if cls is None:
        raise InstrumentError(f"no simulated instrument '{kind}'{did_you_mean(kind, SIMULATED)}")
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
