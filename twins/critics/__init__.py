"""Critics (P-models): microstructure → properties with units → cell performance."""

from poreloop.twins.critics.flow import PermeabilityResult, permeability
from poreloop.twins.critics.transport import TransportResult, conductivity, tortuosity

__all__ = ["PermeabilityResult", "TransportResult", "conductivity", "permeability", "tortuosity"]
