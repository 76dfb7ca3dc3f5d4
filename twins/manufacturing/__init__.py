"""Digital twins of manufacturing (G-models), by name."""

from __future__ import annotations

from typing import Any

from poreloop.registry import did_you_mean
from poreloop.twins.errors import TwinError
from poreloop.twins.manufacturing.base import Twin
from poreloop.twins.manufacturing.electrode import ElectrodeTwin
from poreloop.twins.manufacturing.gdl import GDLTwin
from poreloop.twins.manufacturing.reconstruct import ReconstructionTwin
from poreloop.twins.manufacturing.sofc import SOFCAnodeTwin

TWINS: dict[str, type[Twin]] = {
    cls.name: cls for cls in (ElectrodeTwin, GDLTwin, SOFCAnodeTwin, ReconstructionTwin)
}


def get_twin(name: str, **options: Any) -> Twin:
    """The twin registered as ``name``, built with ``options``; a suggestion on a miss."""
    try:
        cls = TWINS[name]
    except KeyError:
        raise TwinError(f"unknown twin '{name}'{did_you_mean(name, TWINS)}") from None
    return cls(**options)


__all__ = ["TWINS", "Twin", "get_twin"]
