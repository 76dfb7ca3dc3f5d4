"""Digital twins of manufacturing (G-models), by name."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from poreloop.registry import Registry
from poreloop.twins.errors import TwinError
from poreloop.twins.manufacturing.base import Twin
from poreloop.twins.manufacturing.electrode import ElectrodeTwin
from poreloop.twins.manufacturing.gan import GanTwin
from poreloop.twins.manufacturing.gdl import GDLTwin
from poreloop.twins.manufacturing.reconstruct import ReconstructionTwin
from poreloop.twins.manufacturing.sofc import SOFCAnodeTwin
from poreloop.twins.microstructure import Microstructure

TWINS: Registry[type[Twin]] = Registry(
    "twin",
    TwinError,
    {cls.name: cls for cls in (ElectrodeTwin, GDLTwin, SOFCAnodeTwin, ReconstructionTwin, GanTwin)},
)


def get_twin(
    name: str, reference: Microstructure | str | Path | None = None, **options: Any
) -> Twin:
    """The twin registered as ``name``, built with ``options``; a suggestion on a miss.

    ``reference`` (a Microstructure or a .tif/.npz file) is the measured structure for twins that reproduce one;
    a twin that needs one and gets none, or takes none and gets one, is a TwinError, as is an
    option the twin does not take (``model=`` is the ``gan`` twin's trained generator).
    """
    cls = TWINS.lookup(name)
    unknown = sorted(set(options) - set(inspect.signature(cls).parameters))
    if unknown:
        raise TwinError(f"twin '{cls.name}' takes no {', '.join(unknown)}")
    accepted = inspect.signature(cls).parameters.get("reference")
    if accepted is None:
        if reference is not None:
            raise TwinError(
                f"twin '{cls.name}' takes no --reference; only twins that reproduce a "
                "measured structure do (see `poreloop twin list`)"
            )
    elif reference is not None:
        options["reference"] = (
            reference if isinstance(reference, Microstructure) else Microstructure.load(reference)
        )
    elif accepted.default is inspect.Parameter.empty:
        raise TwinError(
            f"twin '{cls.name}' needs a measured structure: add --reference FILE (.tif/.npz)"
        )
    return cls(**options)


__all__ = ["TWINS", "Twin", "get_twin"]
