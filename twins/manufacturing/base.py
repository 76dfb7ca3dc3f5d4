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
        return Microstructure(labels, float(recipe["voxel_size_um"]), dict(self.phases), provenance)

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
            raise TwinError(f"twin '{self.name}' makes {self.dims}-D boxes, got shape {shape}")
        if min(shape) < MIN_EDGE:
            raise TwinError(
                f"every edge of the box must be at least {MIN_EDGE} voxels, got {shape}"
            )
        return shape
