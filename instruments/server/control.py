"""Safety and control: the e-stop latch, the lease, the approval gate, and the actions over them.

Every server answers the control actions at once, in its I/O thread, without the journal:
status, describe, noop, abort, estop, clear_estop, acquire_lease, release_lease, pending,
approve, reject. Each is a method of ``Control`` registered where it is defined by
``@control_action(Params)``, under the method's name.

With ``approval`` on, every motion is journaled ``held`` and waits (heartbeats continue, its
deadline still runs) until a person sends ``approve`` or ``reject`` naming its idempotency key;
``pending`` lists what waits. The approver must name a holder other than the proposer's. Holder
names are self-declared, so this keeps an agent from approving its own proposals, it does not
authenticate the person: who may connect at all is the CurveZMQ allow-list's job.

A lease is short (``LEASE_TTL_S`` unless asked otherwise) and its holder's client renews it
while alive and releases it on close, so a dead campaign frees the instrument within seconds.
An operator can still release another holder's lease or clear an e-stop under it at once by
saying why (``override``); the server logs who did it and why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from poreloop.instruments.base import Instrument
from poreloop.instruments.errors import ErrorCode, InstrumentError, InvalidRequest, RefusedError
from poreloop.instruments.protocol import LEASE_TTL_S, Request
from poreloop.instruments.server.jobs import Jobs
from poreloop.registry import validation_summary

log = logging.getLogger(__name__)


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AbortParams(NoParams):
    idempotency_key: str | None = None


class LeaseParams(NoParams):
    ttl_s: float = Field(default=LEASE_TTL_S, gt=0, le=3600.0)


class OverrideParams(NoParams):
    override: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="why another holder's lease is overridden (logged with who did it)",
    )


class ApproveParams(NoParams):
    idempotency_key: str = Field(min_length=1, max_length=128)


class RejectParams(ApproveParams):
    reason: str = Field(min_length=1, max_length=1000)


Handler = Callable[["Control", Request, Any], dict[str, Any]]
H = TypeVar("H", bound=Handler)

CONTROL_ACTIONS: dict[str, tuple[type[BaseModel], Handler]] = {}
"""Control action name -> (params schema, ``Control`` method), filled by ``control_action``."""


def control_action(params: type[BaseModel] = NoParams) -> Callable[[H], H]:
    """Register a ``Control`` method as the control action of its name, taking ``params``."""

    def register(handler: H) -> H:
        CONTROL_ACTIONS[handler.__name__] = (params, handler)
        return handler

    return register


def check_not_shadowed(instrument: Instrument) -> None:
    """Refuse an instrument declaring an action the server answers itself."""
    shadowed = sorted(set(instrument.actions) & set(CONTROL_ACTIONS))
    if shadowed:
        raise InstrumentError(
            f"{instrument.kind} declares actions {shadowed} that the server provides itself; "
            "rename them"
        )


def estop_message(name: str, action: str) -> str:
    return (
        f"{name}.{action} refused: the emergency stop is latched; "
        "make the instrument safe, then call clear_estop"
    )


class Control:
    """The safety state of the instrument served as ``name``, and the actions over it.

    ``jobs`` are what the actions inspect, stop and release. The e-stop latch refuses every
    motion until cleared; a lease refuses every other holder until it expires or is released;
    ``approval`` holds every motion for a person (module doc).
    """

    def __init__(self, name: str, instrument: Instrument, jobs: Jobs, approval: bool) -> None:
        self.name = name
        self.instrument = instrument
        self.jobs = jobs
        self.approval = approval
        self.estop_latched = False
        self._lease: tuple[str, float] | None = None

    def answer(self, request: Request) -> dict[str, Any]:
        """The outcome of the control action ``request`` names, after checking its params."""
        params_model, handler = CONTROL_ACTIONS[request.action]
        try:
            params = params_model.model_validate(request.params)
        except ValidationError as error:
            raise InvalidRequest(
                f"{request.action} params do not match its schema: {validation_summary(error)}"
            ) from None
        return handler(self, request, params)

    def check_lease(self, holder: str | None, action: str) -> None:
        """Refuse ``action`` from ``holder`` while another holder's lease runs."""
        lease = self._live_lease()
        if lease is not None and lease[0] != holder:
            owner, expires = lease
            raise RefusedError(
                f"{self.name} is leased by '{owner}' for {expires - time.monotonic():.0f} s more, "
                f"got {action} from holder '{holder}'; wait, ask '{owner}' to release_lease, or "
                'override it: release_lease with {"override": "why"}',
                ErrorCode.lease_held,
            )

    def check_motion(self, action: str) -> None:
        """Refuse the motion ``action`` while the emergency stop is latched."""
        if self.estop_latched:
            raise RefusedError(estop_message(self.name, action), ErrorCode.estop)

    def _live_lease(self) -> tuple[str, float] | None:
        """The lease (holder, monotonic expiry) unless it has expired."""
        if self._lease is not None and time.monotonic() >= self._lease[1]:
            self._lease = None
        return self._lease

    @control_action()
    def status(self, request: Request, params: NoParams) -> dict[str, Any]:
        """The latch, the lease, the jobs in flight and the journal's counts."""
        live = self._live_lease()
        lease = None
        if live is not None:
            lease = {"holder": live[0], "expires_in_s": live[1] - time.monotonic()}
        running = [
            {
                "idempotency_key": job.key,
                "action": job.action,
                "state": job.state,
                "fraction": job.ctx.fraction,
                "elapsed_s": job.ctx.elapsed_s,
            }
            for job in self.jobs
        ]
        return {
            "instrument": self.name,
            "kind": self.instrument.kind,
            "estop": self.estop_latched,
            "lease": lease,
            "running": running,
            "journal": self.jobs.journal.counts(),
        }

    @control_action()
    def describe(self, request: Request, params: NoParams) -> dict[str, Any]:
        """The instrument's actions with params schemas, limits and motion flags."""
        return {"instrument": self.name, "kind": self.instrument.kind, **self.instrument.describe()}

    @control_action()
    def noop(self, request: Request, params: NoParams) -> dict[str, Any]:
        """Nothing: a round trip, for liveness checks and benchmarks."""
        return {}

    @control_action(AbortParams)
    def abort(self, request: Request, params: AbortParams) -> dict[str, Any]:
        """Stop one job (by key) or all; a held one ends without moving."""
        self.check_lease(request.holder, request.action)
        jobs = [job for job in self.jobs if params.idempotency_key in (None, job.key)]
        for job in jobs:
            message = f"{self.name}.{job.action} was aborted by a client"
            if job.state == "held":
                self.jobs.end_held(job, ErrorCode.aborted, f"{message} while held; nothing moved")
            else:
                job.ctx.stop(ErrorCode.aborted, message)
        return {"aborted": [job.key for job in jobs]}

    @control_action()
    def estop(self, request: Request, params: NoParams) -> dict[str, Any]:
        """Latch the emergency stop and stop every motion (queued, running or held); anyone
        may, whoever holds the lease."""
        self.estop_latched = True
        stopped = [job for job in self.jobs if job.motion]
        for job in stopped:
            if job.state == "held":
                self.jobs.end_held(job, ErrorCode.estop, estop_message(self.name, job.action))
            else:
                job.ctx.stop(ErrorCode.estop, estop_message(self.name, job.action))
        log.warning("emergency stop latched on %s", self.name)
        return {"estop": True, "stopped": [job.key for job in stopped]}

    def _check_lease_or_override(self, request: Request, params: OverrideParams) -> None:
        """``check_lease``, unless the request overrides it: an operator whose campaign died
        with the lease, or who must clear an e-stop under someone else's lease, says why; who
        and why are logged."""
        if params.override is None:
            self.check_lease(request.holder, request.action)
            return
        if not request.holder:
            raise InvalidRequest(
                f"an override of {request.action} needs the operator's name as holder, got none; "
                "pass --holder NAME (or holder='name' to the client)"
            )
        lease = self._live_lease()
        log.warning(
            "%s.%s by '%s' overrides the lease of '%s': %s",
            self.name,
            request.action,
            request.holder,
            lease[0] if lease else None,
            params.override,
        )

    @control_action(OverrideParams)
    def clear_estop(self, request: Request, params: OverrideParams) -> dict[str, Any]:
        """Let motions run again, once a person has made the instrument safe (under another
        holder's lease only with an ``override`` reason)."""
        self._check_lease_or_override(request, params)
        self.estop_latched = False
        log.warning("emergency stop cleared on %s by '%s'", self.name, request.holder)
        return {"estop": False}

    @control_action(LeaseParams)
    def acquire_lease(self, request: Request, params: LeaseParams) -> dict[str, Any]:
        """Keep the instrument to this holder for ``ttl_s``."""
        if not request.holder:
            raise InvalidRequest(
                "acquire_lease needs a holder, got none; create the client with holder='name'"
            )
        self.check_lease(request.holder, request.action)
        self._lease = (request.holder, time.monotonic() + params.ttl_s)
        return {"holder": request.holder, "expires_in_s": params.ttl_s}

    @control_action(OverrideParams)
    def release_lease(self, request: Request, params: OverrideParams) -> dict[str, Any]:
        """Give the instrument back to every holder (another holder's lease only with an
        ``override`` reason)."""
        self._check_lease_or_override(request, params)
        self._lease = None
        return {"holder": None}

    @control_action()
    def pending(self, request: Request, params: NoParams) -> dict[str, Any]:
        """The held requests, oldest first: what they would do, who proposed them, how long ago."""
        held = sorted(
            (job for job in self.jobs if job.state == "held"), key=lambda job: job.ctx.started
        )
        return {
            "approval": self.approval,
            "pending": [
                {
                    "idempotency_key": job.key,
                    "action": job.action,
                    "params": job.params,
                    "holder": job.holder,
                    "age_s": job.ctx.elapsed_s,
                }
                for job in held
            ],
        }

    def _decided(self, key: str, verb: str) -> dict[str, Any] | None:
        """The decision already recorded on ``key`` when it is no longer held (a retried approve
        or reject, its first reply lost, gets the same answer); None while it is held or was
        never decided. Deciding the other way is refused."""
        if any(job.key == key and job.state == "held" for job in self.jobs):
            return None
        entry = self.jobs.journal.get(key)
        decision = (entry.request or {}).get("decision") if entry is not None else None
        if decision is None:
            return None
        if verb not in decision:
            done = "approved" if "approved" in decision else "rejected"
            raise InvalidRequest(
                f"{self.name}.{decision['action']} under key '{key}' was already {done} by "
                f"'{decision['by']}'; it cannot be {verb} now"
            )
        return dict(decision)

    @control_action(ApproveParams)
    def approve(self, request: Request, params: ApproveParams) -> dict[str, Any]:
        """Run a held request once; the approver names a holder other than the proposer's.
        Asked again, it answers what it answered the first time."""
        decided = self._decided(params.idempotency_key, "approved")
        if decided is not None:
            return decided
        job = self.jobs.held(params.idempotency_key)
        if not request.holder:
            raise InvalidRequest(
                "approve needs the approver's name as holder, got none; pass --as NAME "
                "(or holder='name' to the client)"
            )
        if request.holder == job.holder:
            raise RefusedError(
                f"'{request.holder}' proposed {self.name}.{job.action} under key '{job.key}' and "
                "cannot approve it too; a person approves with another holder name"
            )
        self.check_lease(job.holder, job.action)
        try:
            validated = self.instrument.validate(job.action, job.params)
        except InstrumentError as error:
            self.jobs.end_held(job, error.code, str(error))
            raise
        log.info(
            "%s.%s under key %s approved by %s", self.name, job.action, job.key, request.holder
        )
        decision = {"approved": job.key, "action": job.action, "by": request.holder}
        self.jobs.journal.decide(job.key, decision)
        self.jobs.release(job, validated)
        return decision

    @control_action(RejectParams)
    def reject(self, request: Request, params: RejectParams) -> dict[str, Any]:
        """End a held request with code ``rejected``; anyone may, the proposer withdrawing too.
        Asked again, it answers what it answered the first time."""
        decided = self._decided(params.idempotency_key, "rejected")
        if decided is not None:
            return decided
        job = self.jobs.held(params.idempotency_key)
        by = request.holder or "an unnamed client"
        decision = {"rejected": job.key, "action": job.action, "by": by}
        self.jobs.journal.decide(job.key, decision)
        self.jobs.end_held(
            job,
            ErrorCode.rejected,
            f"{self.name}.{job.action} under key '{job.key}' was rejected by '{by}': "
            f"{params.reason}; nothing moved, change the request and ask again with a new key",
        )
        return decision
