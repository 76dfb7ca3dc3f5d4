"""The digital space on Ray: twins and critic chains hosted by actors, loaded once each.

``TwinHost`` and ``ChainHost`` are plain classes (tested as such); ``TwinActor`` and
``ChainActor`` wrap them with ``ray.remote`` here and nowhere else. A chain's PyBaMM model is
built when its actor starts and reused for every structure it scores. Importing this module
imports Ray, so the package roots never import it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import ray

from poreloop.twins.critics.chain import get_chain
from poreloop.twins.errors import TwinError
from poreloop.twins.manufacturing import get_twin
from poreloop.twins.microstructure import Microstructure

ACTOR_CPUS = 0.5
"""CPU share reserved per actor: a twin and a chain actor alternate on one job, so a pair
fills one core."""


@dataclass(frozen=True)
class Score:
    """What a chain said of one structure: its properties, or why it could not score it."""

    properties: dict[str, float]
    ok: bool
    reason: str
    seconds: float


class TwinHost:
    """One twin, built once; ``generate`` as ``Twin.generate``."""

    def __init__(self, twin: str, **options: Any) -> None:
        self.twin = get_twin(twin, **options)

    def generate(self, recipe: dict[str, Any], shape: tuple[int, ...], seed: int) -> Microstructure:
        return self.twin.generate(recipe, shape=shape, seed=seed)

    def ping(self) -> bool:
        return True


class ChainHost:
    """One critic chain, built once; ``evaluate`` returns a ``Score``, a TwinError a failed one."""

    def __init__(self, chain: str, **options: Any) -> None:
        self.chain = get_chain(chain, **options)

    def evaluate(self, micro: Microstructure, **kwargs: Any) -> Score:
        start = time.perf_counter()
        try:
            result = self.chain.evaluate(micro, **kwargs)
        except TwinError as error:
            return Score({}, False, str(error), time.perf_counter() - start)
        return Score(dict(result.properties), result.ok, result.reason, time.perf_counter() - start)

    def ping(self) -> bool:
        return True


TwinActor = ray.remote(num_cpus=ACTOR_CPUS)(TwinHost)
ChainActor = ray.remote(num_cpus=ACTOR_CPUS)(ChainHost)
