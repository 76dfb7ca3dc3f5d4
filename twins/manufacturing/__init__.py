"""Digital twins of manufacturing (G-models), by name."""

from __future__ import annotations

from typing import Any

from poreloop.registry import Registry
from poreloop.twins.errors import TwinError
from poreloop.twins.manufacturing.base import Twin
from poreloop.twins.manufacturing.electrode import ElectrodeTwin
from poreloop.twins.manufacturing.gdl import GDLTwin
from poreloop.twins.manufacturing.reconstruct import ReconstructionTwin
from poreloop.twins.manufacturing.sofc import SOFCAnodeTwin

TWINS: Registry[type[Twin]] = Registry(
    "twin",
    TwinError,
    {cls.name: cls for cls in (ElectrodeTwin, GDLTwin, SOFCAnodeTwin, ReconstructionTwin)},
)


def get_twin(name: str, **options: Any) -> Twin:
    """The twin registered as ``name``, built with ``options``; a suggestion on a miss."""
    return TWINS.lookup(name)(**options)


__all__ = ["TWINS", "Twin", "get_twin"]
