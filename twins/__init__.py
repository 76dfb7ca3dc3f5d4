"""The digital space: microstructures, manufacturing twins and critics."""

from twins.errors import TwinError
from twins.manufacturing import TWINS, Twin, get_twin
from twins.microstructure import Microstructure, Provenance
from twins.space import Categorical, Continuous, Integer, LinearConstraint, ParameterSpace

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
