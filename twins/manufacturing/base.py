"""The contract of a manufacturing twin (G-model): recipe → Microstructure."""

from __future__ import annotations

from abc import ABC, abstractmethod
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar

import numpy as np

from poreloop.twins.errors import TwinError
from poreloop.twins.microstructure import Microstructure, Provenance
from poreloop.twins.space import ParameterSpace, Recipe

Shape = tuple[int, ...]

DEFAULT_SHAPE: Shape = (128, 128, 128)
MIN_EDGE = 8
PARAMETER_KEYS = ("name", "kind", "unit", "low", "high", "default", "choices", "description")
"""What ``Twin.describe`` tells of each parameter (null where a kind has no such key)."""


def package_version() -> str:
    try:
        return version("poreloop")
    except PackageNotFoundError:
        return "unknown"


class Twin(ABC):
    """A digital twin of a manufacturing process.

    ``generate`` validates the recipe (unset parameters take their defaults) and the box
    shape, then calls ``_generate``, which models the process steps. Every space has a
    ``voxel_size_um`` parameter; phase id 0 is always pore. Deterministic for a seed.
    """

    name: ClassVar[str]
    phases: ClassVar[dict[int, str]]
    space: ClassVar[ParameterSpace]
    dims: ClassVar[tuple[int, ...]] = (3,)
    periodic: ClassVar[tuple[int, ...]] = ()
    """The axes along which the boxes it makes wrap (``Microstructure.periodic``)."""

    def generate(
        self,
        recipe: dict[str, Any] | None = None,
        shape: Shape = DEFAULT_SHAPE,
        seed: int = 0,
    ) -> Microstructure:
        recipe = self.space.complete(recipe)
        shape = self._check_shape(shape)
        labels = self._generate(recipe, shape, np.random.default_rng(seed))
        if labels.shape != shape or labels.dtype != np.uint8:
            raise TwinError(
                f"twin '{self.name}' made {labels.dtype} labels of shape {labels.shape}; "
                f"expected uint8 of shape {shape} — a bug in the twin"
            )
        provenance = Provenance(twin=self.name, recipe=recipe, seed=seed, version=package_version())
        periodic = tuple(axis for axis in self.periodic if axis < len(shape))
        return Microstructure(
            labels, float(recipe["voxel_size_um"]), dict(self.phases), provenance, periodic
        )

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """JSON-ready: name, first docstring line, phases, dims, parameters, constraints."""
        parameters = []
        for p in cls.space.parameters:
            dump = p.model_dump()
            if "choices" in dump:
                dump["choices"] = list(dump["choices"])
            parameters.append({key: dump.get(key) for key in PARAMETER_KEYS})
        doc = (cls.__doc__ or "").strip()
        return {
            "name": cls.name,
            "description": doc.splitlines()[0] if doc else "",
            "phases": {str(pid): name for pid, name in sorted(cls.phases.items())},
            "dims": list(cls.dims),
            "parameters": parameters,
            "constraints": [c.describe() for c in cls.space.constraints],
        }

    def summary(self) -> str:
        """One line on how the last ``generate`` went, for twins that measure it ('' if not)."""
        return ""

    @abstractmethod
    def _generate(self, recipe: Recipe, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        """Labels of the box, ``shape`` uint8, from a validated recipe."""

    def _check_shape(self, shape: Shape) -> Shape:
        try:
            shape = tuple(int(n) for n in shape)
        except (TypeError, ValueError):
            raise TwinError(f"shape must be a tuple of integers, got {shape!r}") from None
        if len(shape) not in self.dims:
            made = " or ".join(f"{n}-D" for n in self.dims)
            raise TwinError(
                f"twin '{self.name}' makes {made} boxes, got the {len(shape)}-D shape {shape}"
            )
        if min(shape) < MIN_EDGE:
            raise TwinError(
                f"every edge of the box must be at least {MIN_EDGE} voxels, got {shape}"
            )
        return shape
