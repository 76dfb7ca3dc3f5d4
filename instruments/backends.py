"""The backends of an instrument kind: its simulated one, or an adapter for real hardware.

An adapter is an ``Instrument`` subclass, named as ``package.module:Class``, whose ``kind`` is
the kind it serves and whose ``actions`` cover every action of that kind's simulated backend
(same names, params and result schemas, limits no looser), with hooks ``_<action>(params, ctx)``
that drive the device instead of a model: report ``ctx.progress`` and honour ``ctx.check`` so
abort, e-stop and deadlines reach the hardware. The server, journal, client and CLI do not
change: ``poreloop instrument serve robot --backend mylab.robots:UR5Coater``.
"""

from __future__ import annotations

import importlib
from typing import Any

from poreloop.instruments.base import Instrument
from poreloop.instruments.errors import InstrumentError
from poreloop.instruments.sim import SIMULATED, make_simulated

SIM = "sim"


def make_instrument(kind: str, backend: str = SIM, **options: Any) -> Instrument:
    """The instrument of ``kind`` on ``backend`` ('sim' or 'package.module:Class')."""
    if backend == SIM:
        return make_simulated(kind, **options)
    module_name, sep, class_name = backend.partition(":")
    if not sep or not module_name or not class_name:
        raise InstrumentError(f"backend must be 'sim' or 'package.module:Class', got '{backend}'")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise InstrumentError(f"cannot load backend '{backend}': {error}") from None
    if not (isinstance(cls, type) and issubclass(cls, Instrument)):
        raise InstrumentError(f"backend '{backend}' is not an Instrument subclass")
    if cls.kind != kind:
        raise InstrumentError(f"backend '{backend}' drives a '{cls.kind}', not a '{kind}'")
    missing = sorted(set(SIMULATED[kind].actions) - set(cls.actions)) if kind in SIMULATED else []
    if missing:
        raise InstrumentError(f"backend '{backend}' lacks the {kind} actions {missing}")
    try:
        return cls(**options)
    except TypeError as error:
        raise InstrumentError(
            f"bad options {sorted(options)} for backend '{backend}': {error}"
        ) from None
