"""The array backend the voxel solvers compute on: torch (CUDA or CPU) or NumPy.

The solvers are written once against the Python array API standard (``array_api_compat``
namespaces), so the same code runs on a GPU, on torch's multi-threaded CPU kernels, or on
NumPy. ``"auto"`` takes CUDA when torch sees a GPU and torch on the CPU otherwise (its
kernels use every thread torch is allowed, where NumPy's use one);
``PORELOOP_ARRAY_BACKEND`` overrides the default for a whole process (a campaign's Ray
workers inherit it), a ``backend=`` argument overrides both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from array_api_compat import to_device

from poreloop.twins.errors import CriticError

BACKENDS = ("auto", "torch", "cuda", "numpy")
"""``torch`` computes with torch on the CPU, ``cuda`` with torch on the GPU."""
ENVIRONMENT = "PORELOOP_ARRAY_BACKEND"
"""Environment variable naming the default backend."""
SINGLE_PRECISION_RTOL = 1e-5
"""The voxel solvers work in single precision (half the memory and the bytes moved) for
tolerances from this one up; round-off holds a float32 solution's flux spread near 1e-6, so
tighter tolerances are solved in double precision."""


@dataclass(frozen=True)
class Backend:
    """An array namespace and the device its arrays live on."""

    name: str
    xp: ModuleType
    device: Any

    def asarray(self, a: np.ndarray) -> Any:
        """``a`` on this backend's device."""
        return self.xp.asarray(a, device=self.device)


def to_numpy(a: Any) -> np.ndarray:
    """``a``, from any backend, as a NumPy array on the host."""
    return np.asarray(to_device(a, "cpu"))


def backend(name: str | None = None) -> Backend:
    """The backend called ``name`` (one of ``BACKENDS``; None: the environment's, else auto)."""
    chosen = name if name is not None else os.environ.get(ENVIRONMENT, "auto")
    if chosen not in BACKENDS:
        where = "backend" if name is not None else ENVIRONMENT
        raise CriticError(f"{where} must be one of {', '.join(BACKENDS)}, got {chosen!r}")
    if chosen == "numpy":
        import array_api_compat.numpy

        return Backend("numpy", array_api_compat.numpy, "cpu")
    import array_api_compat.torch
    import torch

    if chosen == "auto":
        chosen = "cuda" if torch.cuda.is_available() else "torch"
    if chosen == "cuda" and not torch.cuda.is_available():
        raise CriticError("backend 'cuda' needs a GPU that torch can see; none was found")
    return Backend(
        chosen, array_api_compat.torch, torch.device("cuda" if chosen == "cuda" else "cpu")
    )
