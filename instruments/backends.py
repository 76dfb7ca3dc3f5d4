"""The backends of an instrument kind: its simulated one, or an adapter for real hardware.

An adapter is an ``Instrument`` subclass, named as ``package.module:Class``, whose ``kind`` is
the kind it serves and whose ``actions`` are those of that kind's simulated backend (same names,
params and result schemas, bounds no wider, limits no looser: ``checks.check_adapter``), with
hooks ``_<action>(params, ctx)`` that drive the device instead of a model: report
``ctx.progress`` and honour ``ctx.check`` so abort, e-stop and deadlines reach the hardware. The
server, journal, client and CLI do not change:
``poreloop instrument serve robot --backend mylab.robots:UR5Coater``.
"""

from __future__ import annotations

from typing import Any

from poreloop.instruments.base import Instrument
from poreloop.instruments.checks import check_adapter
from poreloop.instruments.errors import InstrumentError
from poreloop.instruments.sim import make_simulated
from poreloop.registry import load_entry_point

SIM = "sim"


def make_instrument(kind: str, backend: str = SIM, **options: Any) -> Instrument:
    """The instrument of ``kind`` on ``backend`` ('sim' or 'package.module:Class')."""
    if backend == SIM:
        return make_simulated(kind, **options)
    try:
        loaded = load_entry_point(backend)
    except ValueError:
        raise InstrumentError(
            f"backend must be 'sim' or 'package.module:Class', got '{backend}'"
        ) from None
    except (ImportError, AttributeError) as error:
        raise InstrumentError(f"cannot load backend '{backend}': {error}") from None
    adapter = check_adapter(loaded, kind)
    try:
        return adapter(**options)
    except TypeError as error:
        raise InstrumentError(
            f"bad options {sorted(options)} for backend '{backend}': {error}"
        ) from None
