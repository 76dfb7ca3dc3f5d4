"""Ray for the campaign: join or start a cluster, and screen recipes on pools of actors.

``connect`` starts a local Ray sized to the machine (no dashboard) and stops it at the end,
or joins the cluster at ``address`` (or ``RAY_ADDRESS``) and only disconnects from it; a Ray
already running in this process (a test session's) is used as it is.

``ScreeningPool`` keeps ``workers`` twin actors and as many chain actors busy: a job's
structure goes from its twin actor to a chain actor through Ray's object store, never through
the driver. A twin or chain that cannot make or score a recipe gives a failed result with its
one-line reason; an actor that dies (killed, out of memory) is replaced and its job redone
elsewhere, up to ``MAX_ATTEMPTS`` times.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("poreloop.cluster")

IN_FLIGHT_PER_WORKER = 2
"""Jobs queued on each actor pair, so it never waits for the driver between two jobs."""
MAX_ATTEMPTS = 3
"""Times a job is tried on fresh actors before it is reported failed."""


@contextlib.contextmanager
def connect(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Ray for the duration of the block: joined at ``address``, or a local one started here."""
    import ray

    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class ScreenResult:
    """One screened job: the chain's properties, or failed with the reason."""

    key: Any
    recipe: dict[str, Any]
    seed: int
    properties: dict[str, float]
    failed: bool
    reason: str | None
    seconds: float
    structure: Any
    """The twin's structure as a Ray ObjectRef (``ray.get`` it only when it is wanted)."""


@dataclass
class _Job:
    key: Any
    recipe: dict[str, Any]
    seed: int
    evaluate: dict[str, Any]
    attempts: int = 0
    worker: int = -1
    structure: Any = None
    started: float = 0.0


class ScreeningPool:
    """``workers`` pairs of (twin actor, chain actor) screening at box ``shape``."""

    def __init__(
        self,
        twin: str,
        chain: str,
        shape: tuple[int, ...],
        workers: int,
        twin_options: dict[str, Any] | None = None,
        chain_options: dict[str, Any] | None = None,
    ) -> None:
        self.twin, self.chain, self.shape = twin, chain, tuple(shape)
        self.twin_options = twin_options or {}
        self.chain_options = chain_options or {}
        self.replaced = 0
        self._twins = [self._new_twin() for _ in range(workers)]
        self._chains = [self._new_chain() for _ in range(workers)]

    def _new_twin(self) -> Any:
        from poreloop.twins.actors import TwinActor

        return TwinActor.remote(self.twin, **self.twin_options)

    def _new_chain(self) -> Any:
        from poreloop.twins.actors import ChainActor

        return ChainActor.remote(self.chain, **self.chain_options)

    @property
    def workers(self) -> int:
        return len(self._twins)

    def screen(
        self, jobs: Iterable[tuple[Any, dict[str, Any], int, dict[str, Any]]]
    ) -> Iterator[ScreenResult]:
        """Results of ``(key, recipe, seed, evaluate kwargs)`` jobs, as they complete."""
        import ray

        waiting = deque(_Job(key, recipe, seed, kwargs) for key, recipe, seed, kwargs in jobs)
        running: dict[Any, _Job] = {}
        load = [0] * self.workers
        while waiting or running:
            while waiting and min(load) < IN_FLIGHT_PER_WORKER:
                job = waiting.popleft()
                job.worker = load.index(min(load))
                load[job.worker] += 1
                job.attempts += 1
                job.started = time.perf_counter()
                job.structure = self._twins[job.worker].generate.remote(
                    job.recipe, self.shape, job.seed
                )
                running[self._chains[job.worker].evaluate.remote(job.structure, **job.evaluate)] = (
                    job
                )
            (done,), _ = ray.wait(list(running), num_returns=1)
            job = running.pop(done)
            load[job.worker] -= 1
            try:
                score = ray.get(done)
            except ray.exceptions.RayActorError as error:
                self._replace_dead(job.worker)
                if job.attempts < MAX_ATTEMPTS:
                    log.warning("an actor died on job %s; redoing it elsewhere: %s", job.key, error)
                    waiting.appendleft(job)
                    continue
                yield self._result(job, {}, f"its actors died {job.attempts} times: {error}")
                continue
            except ray.exceptions.RayTaskError as error:
                yield self._result(job, {}, _first_line(error))
                continue
            yield self._result(job, score.properties, None if score.ok else score.reason)

    def _result(self, job: _Job, properties: dict[str, float], reason: str | None) -> ScreenResult:
        return ScreenResult(
            key=job.key,
            recipe=job.recipe,
            seed=job.seed,
            properties=properties,
            failed=reason is not None,
            reason=reason,
            seconds=time.perf_counter() - job.started,
            structure=job.structure if reason is None else None,
        )

    def _replace_dead(self, worker: int) -> None:
        """Replace whichever of the worker's twin and chain actors no longer answers."""
        import ray

        for actors, make in ((self._twins, self._new_twin), (self._chains, self._new_chain)):
            try:
                ray.get(actors[worker].ping.remote(), timeout=30)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                actors[worker] = make()
                self.replaced += 1
                log.warning("replaced a dead %s actor (worker %d)", make.__name__[5:], worker)

    def actors(self) -> list[Any]:
        """The live actor handles (twins, then chains): for tests that kill one."""
        return [*self._twins, *self._chains]

    def close(self) -> None:
        import ray

        for actor in self.actors():
            with contextlib.suppress(Exception):
                ray.kill(actor)

    def __enter__(self) -> ScreeningPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_line(error: Exception) -> str:
    """The cause of a failed Ray task as one line: ``TwinError: ...``, not a remote traceback."""
    cause = getattr(error, "cause", None) or error
    lines = [line for line in str(cause).splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}"
