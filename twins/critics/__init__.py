"""Critics (P-models): microstructure → properties with units → cell performance."""

from twins.critics.transport import TransportResult, conductivity, tortuosity

__all__ = ["TransportResult", "conductivity", "tortuosity"]
