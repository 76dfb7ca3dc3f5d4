"""The digital space: microstructures, manufacturing twins and critics."""

from poreloop.twins.errors import TwinError
from poreloop.twins.manufacturing import TWINS, Twin, get_twin
from poreloop.twins.microstructure import Microstructure, Provenance
from poreloop.twins.space import Categorical, Continuous, Integer, LinearConstraint, ParameterSpace

__all__ = [
    "TWINS",
    "Categorical",
    "Continuous",
    "Integer",
    "LinearConstraint",
    "Microstructure",
    "ParameterSpace",
    "Provenance",
    "Twin",
    "TwinError",
    "get_twin",
]
