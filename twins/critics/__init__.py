"""Critics (P-models): microstructure → properties with units → cell performance."""

from twins.critics.flow import PermeabilityResult, permeability
from twins.critics.transport import TransportResult, conductivity, tortuosity

__all__ = ["PermeabilityResult", "TransportResult", "conductivity", "permeability", "tortuosity"]
