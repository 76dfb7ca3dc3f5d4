"""The digital space on Ray: twins and critic chains hosted by actors, loaded once each.

``TwinHost`` and ``ChainHost`` are plain classes (tested as such); ``TwinActor`` and
``ChainActor`` wrap them with ``ray.remote`` here and nowhere else. A chain is built once per
host, so the electrode chain's PyBaMM cell model (seconds to build) is built on the host's first
structure and re-solved for every later one. Importing this module imports Ray, so the package
roots never import it; ``poreloop.agent.cluster`` imports it when a pool starts.
"""

from __future__ import annotations

import time
from typing import Any

import ray

from poreloop.twins.critics.chain import ChainResult, get_chain
from poreloop.twins.manufacturing import get_twin
from poreloop.twins.microstructure import Microstructure

ACTOR_CPUS = 0.5
"""CPUs reserved per actor: a pool pairs one twin actor with one chain actor per worker, and
generating takes about 1 % of a job's time (10 ms of 0.2-1 s at 32³), so a pair fills one core
and ``n_workers`` = the cluster's CPUs schedules every actor. At 1 CPU each, half of such a pool
would wait forever for CPUs that never come."""


class TwinHost:
    """One twin, built once; ``generate`` as ``Twin.generate``."""

    def __init__(self, twin_name: str, **twin_options: Any) -> None:
        self.twin = get_twin(twin_name, **twin_options)

    def generate(self, recipe: dict[str, Any], shape: tuple[int, ...], seed: int) -> Microstructure:
        return self.twin.generate(recipe, shape=shape, seed=seed)

    def generate_timed(
        self, recipe: dict[str, Any], shape: tuple[int, ...], seed: int
    ) -> tuple[Microstructure, float]:
        """``generate`` and its seconds, as two returns: the structure stays in Ray's object
        store for the chain actor while only the seconds travel to the driver."""
        start = time.perf_counter()
        micro = self.generate(recipe, shape, seed)
        return micro, time.perf_counter() - start


class ChainHost:
    """One critic chain, built once and reused; ``evaluate`` as ``Chain.evaluate``."""

    def __init__(self, chain_name: str, **chain_options: Any) -> None:
        self.chain = get_chain(chain_name, **chain_options)

    def evaluate(self, micro: Microstructure, **kwargs: Any) -> ChainResult:
        return self.chain.evaluate(micro, **kwargs)


TwinActor = ray.remote(num_cpus=ACTOR_CPUS)(TwinHost)
ChainActor = ray.remote(num_cpus=ACTOR_CPUS)(ChainHost)
