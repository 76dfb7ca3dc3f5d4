"""The actions in flight, exactly once by journal: received, held, running, ended.

Every request is journaled before anything moves. A motion under the approval gate is journaled
``held`` and waits; any other request starts in a worker thread at once. The worker journals how
the action ended and hands the end back through a queue, so the I/O thread sends every reply.
A key seen before is answered from the journal and never runs twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from poreloop.instruments.base import ActionContext, ActionStopped, Instrument
from poreloop.instruments.errors import ErrorCode, InstrumentError, InvalidRequest
from poreloop.instruments.journal import Entry, Journal
from poreloop.instruments.protocol import Accepted, Error, Message, Progress, Request, Result

if TYPE_CHECKING:
    from poreloop.instruments.server.control import Control

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 5.0
"""How long a stopping server waits for aborted actions to journal their end."""

Send = Callable[[bytes, Message], None]


@dataclass
class Job:
    """An action in flight; ``identity`` and ``request_id`` follow the latest retry.

    ``identity`` is None for a held request reloaded after a restart until its client asks again.
    """

    key: str
    action: str
    motion: bool
    identity: bytes | None
    request_id: str
    deadline: float | None
    ctx: ActionContext
    params: dict[str, Any] = field(default_factory=dict)
    holder: str | None = None
    state: Literal["held", "received", "running"] = "received"
    thread: threading.Thread | None = None


@dataclass(frozen=True)
class _Ended:
    job: Job
    outcome: dict[str, Any] | None
    code: ErrorCode
    message: str


class Jobs:
    """The journal-backed jobs of the instrument served as ``name``.

    ``send`` queues a message for a client; it runs in the I/O thread only. ``wake`` tells the
    I/O thread, from a worker, that an end waits in ``ended``. ``on_progress`` sees every
    progress fraction an action reports (the crash fault uses it). Motions run one at a time.
    """

    def __init__(
        self,
        name: str,
        instrument: Instrument,
        journal: Journal,
        *,
        send: Send,
        wake: Callable[[], None],
        on_progress: Callable[[float], None],
    ) -> None:
        self.name = name
        self.instrument = instrument
        self.journal = journal
        self._send = send
        self._wake = wake
        self._on_progress = on_progress
        self._jobs: dict[str, Job] = {}
        self._ended: queue.SimpleQueue[_Ended] = queue.SimpleQueue()
        self._motion_lock = threading.Lock()
        for entry in journal.held():
            self._reload_held(entry)
        if self._jobs:
            log.warning("%d requests still held for approval in %s", len(self._jobs), journal.path)

    def __iter__(self) -> Iterator[Job]:
        """The jobs in flight, a snapshot: ending one while iterating is allowed."""
        return iter(list(self._jobs.values()))

    def submit(self, identity: bytes, request: Request, control: Control) -> None:
        """Journal a new action, refuse it, hold it or start it; answer a repeated key.

        ``control`` refuses what may not run now (a lease, the e-stop) and says whether the
        approval gate holds motions. A refusal is journaled under the key, then raised.
        """
        key = request.idempotency_key
        fingerprint = _fingerprint(request)
        entry = self.journal.get(key)
        if entry is not None:
            self._answer_repeat(identity, request, entry, fingerprint)
            return
        self.journal.receive(key, request.action, fingerprint)
        try:
            control.check_lease(request.holder, request.action)
            params = self.instrument.validate(request.action, request.params)
            motion = self.instrument.actions[request.action].motion
            if motion:
                control.check_motion(request.action)
        except Exception as error:
            code = error.code if isinstance(error, InstrumentError) else ErrorCode.internal
            self.journal.fail(key, code, str(error))
            raise
        now = time.monotonic()
        job = Job(
            key=key,
            action=request.action,
            motion=motion,
            identity=identity,
            request_id=request.id,
            deadline=now + request.deadline_s if request.deadline_s else None,
            ctx=ActionContext(on_progress=self._on_progress, started=now),
            params=request.params,
            holder=request.holder,
        )
        self._jobs[key] = job
        if motion and control.approval:
            deadline_at = time.time() + request.deadline_s if request.deadline_s else None
            self.journal.hold(
                key,
                {"params": request.params, "holder": request.holder, "deadline_at": deadline_at},
            )
            job.state = "held"
            log.info("%s.%s under key %s held for approval", self.name, request.action, key)
        self._send(identity, Accepted(request_id=request.id, idempotency_key=key, state=job.state))
        if job.state != "held":
            self._start(job, params)

    def held(self, key: str) -> Job:
        """The held job under ``key``; InvalidRequest naming what is held when it is not."""
        job = self._jobs.get(key)
        if job is None or job.state != "held":
            entry = self.journal.get(key)
            now = f"not held: it is {entry.state}" if entry is not None else "unknown"
            held = [other.key for other in self._jobs.values() if other.state == "held"]
            raise InvalidRequest(
                f"expected the idempotency key of a held request, got '{key}' ({now}); "
                f"held now: {', '.join(held) if held else 'none'}"
            )
        return job

    def release(self, job: Job, params: BaseModel) -> None:
        """Run an approved held job once, with its re-validated ``params``."""
        self.journal.release(job.key)
        job.state = "received"
        self._start(job, params)

    def end_held(self, job: Job, code: ErrorCode, message: str) -> None:
        """End a held job without running it: journal why, tell its client if connected."""
        self.journal.fail(job.key, code, message)
        self._jobs.pop(job.key, None)
        if job.identity is not None:
            reply_to = {"request_id": job.request_id, "idempotency_key": job.key}
            self._send(job.identity, Error(**reply_to, code=code, message=message))

    def ended(self) -> Iterator[tuple[bytes | None, Result | Error]]:
        """The final reply of each action that ended since the last call, and its client.

        The client is None for a request approved after a restart before its client asked again.
        """
        while True:
            try:
                end = self._ended.get_nowait()
            except queue.Empty:
                return
            self._jobs.pop(end.job.key, None)
            reply_to = {"request_id": end.job.request_id, "idempotency_key": end.job.key}
            reply = (
                Result(**reply_to, outcome=end.outcome)
                if end.outcome is not None
                else Error(**reply_to, code=end.code, message=end.message)
            )
            yield end.job.identity, reply

    def beat(self, now: float) -> None:
        """Heartbeat every job in flight, and stop those past their deadline.

        A held request past its deadline ends there (nothing moved): nobody waits for it any more.
        """
        for job in list(self._jobs.values()):
            if job.deadline is not None and now > job.deadline:
                message = (
                    f"{self.name}.{job.action} passed its deadline after {job.ctx.elapsed_s:.1f} s"
                )
                if job.state == "held":
                    self.end_held(
                        job,
                        ErrorCode.deadline,
                        f"{message} without approval, so nothing moved; ask again with a longer "
                        "timeout, or get it approved sooner",
                    )
                    continue
                job.ctx.stop(ErrorCode.deadline, f"{message}; give it a longer timeout")
            if job.identity is None:
                continue
            self._send(
                job.identity,
                Progress(
                    request_id=job.request_id,
                    idempotency_key=job.key,
                    fraction=job.ctx.fraction,
                    elapsed_s=job.ctx.elapsed_s,
                    state=job.state,
                ),
            )

    def stop_all(self) -> None:
        """Tell every action in flight to abort, then give their workers time to journal it."""
        for job in self._jobs.values():
            job.ctx.stop(ErrorCode.aborted, f"{self.name} shut down during {job.action}")
        give_up = time.monotonic() + SHUTDOWN_GRACE_S
        for job in self._jobs.values():
            if job.thread is not None:
                job.thread.join(max(give_up - time.monotonic(), 0.0))

    def _start(self, job: Job, params: BaseModel) -> None:
        job.thread = threading.Thread(
            target=self._work, args=(job, params), name=f"{job.action}-{job.key[:8]}", daemon=True
        )
        job.thread.start()

    def _reload_held(self, entry: Entry) -> None:
        """Wait again for approval of a request held when the server last stopped."""
        request = entry.request or {}
        deadline_at = request.get("deadline_at")
        now_wall, now = time.time(), time.monotonic()
        self._jobs[entry.idempotency_key] = Job(
            key=entry.idempotency_key,
            action=entry.action,
            motion=True,
            identity=None,
            request_id="",
            deadline=now + deadline_at - now_wall if deadline_at is not None else None,
            ctx=ActionContext(
                on_progress=self._on_progress, started=now - now_wall + entry.created
            ),
            params=request.get("params", {}),
            holder=request.get("holder"),
            state="held",
        )

    def _answer_repeat(
        self, identity: bytes, request: Request, entry: Entry, fingerprint: str
    ) -> None:
        key = request.idempotency_key
        if entry.fingerprint != fingerprint:
            raise InvalidRequest(
                f"idempotency key '{key}' was first used for {entry.action} with other params, "
                f"got {request.action} with {request.params}; use a new key for a new request",
                ErrorCode.key_conflict,
            )
        reply_to = {"request_id": request.id, "idempotency_key": key}
        if entry.state == "done":
            self._send(identity, Result(**reply_to, outcome=entry.outcome or {}, replayed=True))
        elif entry.state == "failed":
            code = entry.error_code or ErrorCode.failed
            self._send(identity, Error(**reply_to, code=code, message=entry.error_message or ""))
        elif entry.state == "unknown":
            message = (
                f"{entry.action} under key '{key}' was running when the server stopped, so it may "
                "or may not have happened; inspect the instrument and decide: it is never run "
                "again under this key"
            )
            self._send(identity, Error(**reply_to, code=ErrorCode.unknown_outcome, message=message))
        else:
            job = self._jobs[key]
            job.identity, job.request_id = identity, request.id
            self._send(identity, Accepted(**reply_to, state=job.state))

    def _work(self, job: Job, params: BaseModel) -> None:
        """Worker thread: run the action, journal how it ended, hand the end to the I/O thread.

        When the end cannot be journaled (the server is closing) nothing is sent: the row stays
        ``running`` and reads ``unknown`` after a restart, which is the honest answer.
        """
        outcome: dict[str, Any] | None = None
        code, message = ErrorCode.failed, ""
        try:
            outcome = self._run(job, params)
        except (ActionStopped, InstrumentError) as error:
            code, message = error.code, str(error)
        except Exception as error:
            log.exception("%s failed", job.action)
            message = f"{self.name}.{job.action} failed in the instrument: {type(error).__name__}: {error}"
        try:
            if outcome is None:
                self.journal.fail(job.key, code, message)
            else:
                self.journal.finish(job.key, outcome)
        except sqlite3.Error as error:
            log.error("could not journal the end of %s (%s); it reads unknown", job.key, error)
            return
        self._ended.put(_Ended(job, outcome, code, message))
        self._wake()

    def _run(self, job: Job, params: BaseModel) -> dict[str, Any]:
        """Wait for the instrument, re-check stop (an e-stop stops queued motions too), commit
        ``running``, then act."""
        with self._motion_lock if job.motion else contextlib.nullcontext():
            job.ctx.check()
            self.journal.start(job.key)
            job.state = "running"
            return self.instrument.perform(job.action, params, job.ctx)


def _fingerprint(request: Request) -> str:
    """What a key was first used for, so reusing it for another request is caught."""
    body = json.dumps([request.action, request.params], sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()
