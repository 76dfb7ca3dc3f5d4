"""Ray for the campaign: join or start a cluster, and screen recipes on pools of actors.

``connect`` starts a local Ray sized to the machine (no dashboard) and stops it at the end, or
joins the cluster at ``address`` (or ``RAY_ADDRESS``) and only disconnects from it; a Ray already
running in this process (a test session's) is used as it is and left running.

``ScreeningPool`` keeps ``n_workers`` twin actors and as many chain actors busy, up to
``IN_FLIGHT`` jobs queued on each. A job's structure goes from its twin actor to a chain actor
through Ray's object store, never through the driver. A twin or chain that cannot make or score
a recipe (``TwinError``, ``CriticError``) gives a failed result with its one-line reason. An
actor that dies (killed, out of memory, its node lost) is replaced; the job it was running (its
oldest unfinished one, as an actor runs its queue in order) counts a death and is redone, the
jobs queued behind it are redone without one, and a job that has killed ``MAX_DEATHS`` actors is
reported failed instead of being tried again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from poreloop.agent.errors import AgentError

if TYPE_CHECKING:
    from ray import ObjectRef
    from ray.actor import ActorHandle

    from poreloop.twins.critics.chain import ChainResult
    from poreloop.twins.microstructure import Microstructure

log = logging.getLogger("poreloop.cluster")

IN_FLIGHT = 2
"""Jobs queued on each actor, so it starts the next as soon as one ends, without waiting for
the driver."""
MAX_DEATHS = 3
"""Actors a job may kill before it is reported failed rather than tried again."""

Job = tuple[Hashable, dict[str, Any], int, dict[str, Any]]
"""``(key, recipe, seed, evaluate kwargs)``: the kwargs go to ``Chain.evaluate`` (e.g.
``thickness_um``)."""


@dataclass(frozen=True)
class Cluster:
    """The Ray this process screens on. ``mode``: ``local`` (started here; ``close`` stops it),
    ``joined`` (``close`` disconnects; the cluster goes on) or ``reused`` (``close`` leaves it)."""

    address: str
    """The GCS address another process joins with (``RAY_ADDRESS``)."""
    cpus: float
    mode: Literal["local", "joined", "reused"]

    def close(self) -> None:
        import ray

        if self.mode != "reused" and ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


WORKER_NICENESS = 0
"""The niceness of a local Ray's workers. At Ray's own, 15, the actors, a campaign's main work,
got a few % of a core beside any other busy process: on 2 cores beside two busy loops, a quick
campaign's screening took 327 s (13 s alone); at 0, 22 s."""


def connect(address: str | None = None, num_cpus: int | None = None) -> Cluster:
    """Ray for this process: the one already initialised here, else the cluster at ``address``
    (or ``RAY_ADDRESS``), else a local Ray of ``num_cpus`` (default: Ray's count of the
    machine's CPUs, container limits included)."""
    import ray

    if ray.is_initialized():
        mode = "reused"
    else:
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address:
            if num_cpus is not None:
                log.warning(
                    "num_cpus=%d sizes a local Ray; ignored when joining %s", num_cpus, address
                )
            _check_reachable(address)
            ray.init(address=address, log_to_driver=False)
            mode = "joined"
        else:
            # "local": a new Ray, never one that another `ray start` left on this machine
            ray.init(
                address="local",
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                _system_config={"worker_niceness": WORKER_NICENESS},
            )
            mode = "local"
    cluster = Cluster(
        ray.get_runtime_context().gcs_address,
        ray.cluster_resources().get("CPU", 0.0),
        mode,  # type: ignore[arg-type]  # one of the three literals above
    )
    log.info("Ray %s at %s with %g CPUs", mode, cluster.address, cluster.cpus)
    return cluster


def _check_reachable(address: str) -> None:
    """Fail in seconds, with a way out, where ``ray.init`` would retry a dead address for
    minutes. ``auto`` and ``ray://`` addresses are left to Ray."""
    host, sep, port = address.rpartition(":")
    if address == "auto" or "://" in address or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise AgentError(
            f"no Ray cluster answers at {address} ({error.strerror or error}); start one with "
            "`ray start --head --port=PORT`, or leave ray.address and RAY_ADDRESS unset for a "
            "local Ray"
        ) from None


@dataclass(frozen=True)
class ScreenResult:
    """One screened job: the chain's result, or failed with a one-line ``reason`` (a stage
    could not score it, or a solve stopped at its iteration cap: its number is not clean).

    ``structure`` is the twin's structure as a Ray ObjectRef (``ScreeningPool.structure``
    fetches it); None when the twin could not make it. ``timings_s``: ``generate_s`` and
    ``evaluate_s`` (time in the actors, where the job got that far), ``job_s`` (from the job's
    first submission to its result: queueing and redos included) and ``elapsed_s`` (since
    ``screen`` began; the last result's is the batch's wall time).
    """

    key: Hashable
    recipe: dict[str, Any]
    seed: int
    result: ChainResult | None
    reason: str | None
    structure: ObjectRef | None
    timings_s: dict[str, float]
    deaths: int
    """Actors that died while running this job."""

    @property
    def failed(self) -> bool:
        return self.reason is not None

    @property
    def properties(self) -> dict[str, float]:
        """The chain's properties, those found before a failing stage included."""
        return dict(self.result.properties) if self.result is not None else {}


@dataclass(eq=False)
class _Job:
    key: Hashable
    recipe: dict[str, Any]
    seed: int
    kwargs: dict[str, Any]
    stage: Literal["generate", "evaluate"] = "generate"
    ref: Any = None
    """What the driver waits on (an ObjectRef once submitted): the seconds of
    ``generate_timed``, or the ChainResult."""
    structure: Any = None
    """The twin's structure (an ObjectRef once generating)."""
    slot: Any = None
    """The ``_Slot`` whose actor has the job (once submitted)."""
    deaths: int = 0
    submitted: float = math.nan
    generate_s: float = math.nan


@dataclass(eq=False)
class _Slot:
    """One actor and the jobs submitted to it that the driver has not collected, oldest first."""

    actor: ActorHandle
    jobs: list[_Job] = field(default_factory=list)


class ScreeningPool:
    """``n_workers`` twin actors and ``n_workers`` chain actors screening at box ``shape``.

    The twin and chain names and options are checked here (one-line ``TwinError``); each actor
    builds its twin or chain once and reuses it for every job.
    """

    def __init__(
        self,
        twin: str,
        chain: str,
        shape: tuple[int, ...],
        n_workers: int,
        twin_options: dict[str, Any] | None = None,
        chain_options: dict[str, Any] | None = None,
    ) -> None:
        import ray

        from poreloop.twins.actors import ACTOR_CPUS
        from poreloop.twins.critics.chain import get_chain
        from poreloop.twins.manufacturing import get_twin

        if not ray.is_initialized():
            raise AgentError("ScreeningPool needs Ray: open one with connect() first")
        if n_workers < 1:
            raise AgentError(f"n_workers must be at least 1, got {n_workers}")
        self.twin, self.chain, self.shape = twin, chain, tuple(shape)
        self.twin_options = dict(twin_options or {})
        self.chain_options = dict(chain_options or {})
        get_twin(twin, **self.twin_options)
        get_chain(chain, **self.chain_options)
        needed, cpus = 2 * n_workers * ACTOR_CPUS, ray.cluster_resources().get("CPU", 0.0)
        if needed > cpus:
            log.warning(
                "%d workers need %g CPUs, the Ray cluster has %g: some actors wait for more",
                n_workers,
                needed,
                cpus,
            )
        self.replaced = 0
        """Actors that died and were replaced."""
        self._made: list[ActorHandle] = []
        self._slots: dict[Literal["twin", "chain"], list[_Slot]] = {
            "twin": [_Slot(self._new_actor("twin")) for _ in range(n_workers)],
            "chain": [_Slot(self._new_actor("chain")) for _ in range(n_workers)],
        }

    def _new_actor(self, kind: Literal["twin", "chain"]) -> ActorHandle:
        from poreloop.twins.actors import ChainActor, TwinActor

        actor: ActorHandle = (
            TwinActor.remote(self.twin, **self.twin_options)  # type: ignore[assignment]
            if kind == "twin"
            else ChainActor.remote(self.chain, **self.chain_options)
        )
        self._made.append(actor)
        return actor

    def rebuild_chains(self, **chain_options: Any) -> None:
        """Chain actors built anew with ``chain_options`` (e.g. a refined neural critic) in
        place of the old ones, which are killed; between screens only."""
        import ray

        from poreloop.twins.critics.chain import get_chain

        get_chain(self.chain, **chain_options)
        for slot in self._slots["chain"]:
            ray.kill(slot.actor)
        self.chain_options = dict(chain_options)
        self._slots["chain"] = [_Slot(self._new_actor("chain")) for _ in range(self.n_workers)]

    @property
    def n_workers(self) -> int:
        return len(self._slots["twin"])

    def actors(self, kind: Literal["twin", "chain"]) -> list[ActorHandle]:
        """The live actor handles of one kind (a test kills one to see it replaced)."""
        return [slot.actor for slot in self._slots[kind]]

    def structure(self, result: ScreenResult) -> Microstructure:
        """The structure a result was scored on, fetched from Ray's object store."""
        import ray

        if result.structure is None:
            raise AgentError(f"job {result.key!r} has no structure: {result.reason}")
        return ray.get(result.structure)

    def screen(self, jobs: Iterable[Job]) -> Iterator[ScreenResult]:
        """Results of ``(key, recipe, seed, evaluate kwargs)`` jobs, as they complete.

        An error other than a ``TwinError`` (a bug) is raised from here.
        """
        import ray

        from poreloop.twins.errors import TwinError

        start = time.perf_counter()
        to_generate = deque(_Job(*job) for job in jobs)
        to_evaluate: deque[_Job] = deque()
        running: dict[ObjectRef, _Job] = {}
        while to_generate or to_evaluate or running:
            self._submit(to_generate, to_evaluate, running)
            [ref], _ = ray.wait(list(running), num_returns=1, fetch_local=False)
            job = running.pop(ref)
            try:
                value = ray.get(ref)
            except ray.exceptions.RayActorError as error:
                yield from self._bury(job.slot, error, to_generate, to_evaluate, running, start)
                continue
            except (ray.exceptions.ObjectLostError, ray.exceptions.RayTaskError) as error:
                value = error
            job.slot.jobs.remove(job)
            if isinstance(value, ray.exceptions.ObjectLostError):
                log.warning("job %r lost its structure (%s); generating it again", job.key, value)
                job.stage, job.structure = "generate", None
                to_generate.appendleft(job)
            elif isinstance(value, ray.exceptions.RayTaskError):
                if not isinstance(value.cause, TwinError):
                    raise value
                if job.stage == "generate":
                    _read_error(job.structure)
                yield self._result(job, None, f"{job.stage}: {_one_line(value.cause)}", start)
            elif job.stage == "generate":
                job.generate_s, job.stage = value, "evaluate"
                to_evaluate.append(job)
            else:
                yield self._result(job, value, value.problem or None, start)

    def _submit(
        self, to_generate: deque[_Job], to_evaluate: deque[_Job], running: dict[ObjectRef, _Job]
    ) -> None:
        """Fill the chain actors' queues, then generate as many structures ahead as the chain
        actors can take next (so twins neither idle the chains nor hoard volumes)."""
        while to_evaluate and (slot := _free(self._slots["chain"])):
            job = to_evaluate.popleft()
            job.ref = slot.actor.evaluate.remote(job.structure, **job.kwargs)
            self._assign(job, slot, running)
        generating = sum(len(slot.jobs) for slot in self._slots["twin"])
        ahead = IN_FLIGHT * len(self._slots["chain"])
        while to_generate and generating + len(to_evaluate) < ahead:
            slot = _free(self._slots["twin"])
            if slot is None:
                return
            job = to_generate.popleft()
            job.structure, job.ref = slot.actor.generate_timed.options(num_returns=2).remote(
                job.recipe, self.shape, job.seed
            )
            if math.isnan(job.submitted):
                job.submitted = time.perf_counter()
            self._assign(job, slot, running)
            generating += 1

    @staticmethod
    def _assign(job: _Job, slot: _Slot, running: dict[ObjectRef, _Job]) -> None:
        job.slot = slot
        slot.jobs.append(job)
        running[job.ref] = job

    def _bury(
        self,
        slot: _Slot,
        error: Exception,
        to_generate: deque[_Job],
        to_evaluate: deque[_Job],
        running: dict[ObjectRef, _Job],
        start: float,
    ) -> Iterator[ScreenResult]:
        """Replace the dead actor of ``slot`` and redo its unfinished jobs; the oldest of them,
        the one it was running, counts a death (and fails at ``MAX_DEATHS``)."""
        if getattr(error, "actor_init_failed", False):
            raise AgentError(f"an actor could not start: {_one_line(error)}") from None
        kind: Literal["twin", "chain"] = next(
            kind for kind, slots in self._slots.items() if slot in slots
        )
        slots = self._slots[kind]
        slots[slots.index(slot)] = _Slot(self._new_actor(kind))
        self.replaced += 1
        why = _one_line(error)
        log.warning("a %s actor died (%s); replaced it (%d so far)", kind, why, self.replaced)
        unfinished = [job for job in slot.jobs if not _finished(job.ref)]
        for job in unfinished:
            slot.jobs.remove(job)
            running.pop(job.ref, None)
        culprit = unfinished[0]
        culprit.deaths += 1
        if culprit.deaths >= MAX_DEATHS:
            unfinished.pop(0)
            reason = f"{culprit.stage}: killed its {kind} actor {culprit.deaths} times ({why})"
            yield self._result(culprit, None, reason, start)
        for job in reversed(unfinished):
            (to_generate if job.stage == "generate" else to_evaluate).appendleft(job)

    def _result(
        self, job: _Job, result: ChainResult | None, reason: str | None, start: float
    ) -> ScreenResult:
        now = time.perf_counter()
        timings = {"job_s": now - job.submitted, "elapsed_s": now - start}
        if not math.isnan(job.generate_s):
            timings["generate_s"] = job.generate_s
        if result is not None:
            timings["evaluate_s"] = sum(result.timings_s.values())
        return ScreenResult(
            key=job.key,
            recipe=job.recipe,
            seed=job.seed,
            result=result,
            reason=reason,
            structure=job.structure if job.stage == "evaluate" else None,
            timings_s=timings,
            deaths=job.deaths,
        )

    def close(self) -> None:
        """Kill every actor this pool made (their tasks with them), the replaced ones too: Ray
        can miss a kill that reaches an actor still being created, which then lives on,
        holding its CPUs, after it was reported dead."""
        import ray

        if ray.is_initialized():
            for actor in self._made:
                ray.kill(actor)

    def __enter__(self) -> ScreeningPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _free(slots: list[_Slot]) -> _Slot | None:
    """The least busy actor with room in its queue, or None."""
    slot = min(slots, key=lambda slot: len(slot.jobs))
    return slot if len(slot.jobs) < IN_FLIGHT else None


def _finished(ref: ObjectRef) -> bool:
    """Whether a task ended (with a value or its own error) before its actor died."""
    import ray

    if not ray.wait([ref], timeout=0, fetch_local=False)[0]:
        return False
    try:
        ray.get(ref)
    except ray.exceptions.RayActorError:
        return False
    except Exception:  # its own error, collected with it like a value
        return True
    return True


def _read_error(ref: ObjectRef) -> None:
    """Read the error a failed task left in its other return, or Ray logs it as unhandled."""
    import ray

    with contextlib.suppress(ray.exceptions.RayTaskError):
        ray.get(ref)


def _one_line(error: BaseException) -> str:
    """An error as one line: a TwinError's message; a dead actor's cause, the last line Ray
    writes (e.g. "killed by `ray.kill`", "OOM")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
