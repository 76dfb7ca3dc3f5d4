"""The instrument server: one ROUTER socket, actions in worker threads, exactly-once by journal.

One I/O thread owns the socket. It answers control actions (status, abort, estop, leases, noop)
at once, journals every other request before anything moves, runs it in a worker thread and
sends ``Accepted``, ``Progress`` heartbeats while it runs, then ``Result`` or ``Error``. Workers
hand their outcome back through a queue and a wake-up pipe, so a long action never blocks other
requests or heartbeats. Bad input gets an ``Error`` reply; the server never dies on it.

With ``approval`` on, every motion is journaled ``held`` and waits (heartbeats continue, its
deadline still runs) until a person sends ``approve`` or ``reject`` naming its idempotency key;
``pending`` lists what waits. The approver must name a holder other than the proposer's. Holder
names are self-declared, so this keeps an agent from approving its own proposals, it does not
authenticate the person: who may connect at all is the CurveZMQ allow-list's job.

Run one from the shell: ``python -m poreloop.instruments.server --instrument oven --journal j.sqlite``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import heapq
import ipaddress
import itertools
import json
import logging
import os
import queue
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import zmq
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from poreloop.instruments.base import ActionContext, ActionStopped, Instrument
from poreloop.instruments.errors import ErrorCode, InstrumentError, InvalidRequest, RefusedError
from poreloop.instruments.journal import Entry, Journal
from poreloop.instruments.protocol import (
    Accepted,
    Error,
    Message,
    Progress,
    Request,
    Result,
    decode,
    encode,
)
from poreloop.registry import validation_summary

if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator

    from poreloop.instruments.auth import Keys

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 70
"""Exit status of a server killed by the ``crash_at_fraction`` fault."""
MAX_MESSAGE_BYTES = 16 * 2**20
"""Larger messages are dropped by ZeroMQ before they reach the server."""
RECEIVE_BATCH = 256
"""Messages answered per turn of the I/O loop before outcomes and heartbeats get their turn."""
SHUTDOWN_GRACE_S = 5.0
"""How long a stopping server waits for aborted actions to journal their end."""


@dataclass
class Faults:
    """Faults a test injects into a server, to prove the client and the journal cope.

    ``drop_replies``: the next N final replies (Result or Error of an action) are not sent.
    ``corrupt_replies``: the next N final replies leave with their JSON body garbled.
    ``delay_s``: every reply leaves this long after it is ready.
    ``crash_at_fraction``: the process exits (os._exit) when an action reports this progress.
    """

    drop_replies: int = 0
    delay_s: float = 0.0
    crash_at_fraction: float | None = None
    corrupt_replies: int = 0


class _NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _AbortParams(_NoParams):
    idempotency_key: str | None = None


class _LeaseParams(_NoParams):
    ttl_s: float = Field(default=3600.0, gt=0)


class _ApproveParams(_NoParams):
    idempotency_key: str = Field(min_length=1, max_length=128)


class _RejectParams(_ApproveParams):
    reason: str = Field(min_length=1, max_length=1000)


@dataclass
class _Job:
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


@dataclass(order=True)
class _Delayed:
    due: float
    seq: int
    frames: list[bytes] = field(compare=False)


class Server:
    """Serve one instrument on ``bind``, journaling to ``journal_path``.

    Without ``keys`` the bind must be loopback; with them (CurveZMQ, see ``instruments.auth``)
    any address is allowed and only clients whose public key is in the allow-list are served.
    ``heartbeat_s`` is the period of Progress messages for running actions; a client's retry
    interval must be longer. ``approval`` holds every motion for a person's approval (module
    doc). Use ``serve_forever`` in the current thread, or ``start``/``stop``.
    """

    def __init__(
        self,
        instrument: Instrument,
        bind: str,
        journal_path: str | Path,
        *,
        name: str | None = None,
        heartbeat_s: float = 0.5,
        faults: Faults | None = None,
        keys: Keys | None = None,
        approval: bool = False,
    ) -> None:
        if keys is None:
            check_loopback(bind)
            log.info("no CurveZMQ keys: serving on loopback only (%s)", bind)
        shadowed = sorted(set(instrument.actions) & set(BUILTINS))
        if shadowed:
            raise InstrumentError(
                f"{instrument.kind} declares actions {shadowed} that the server provides itself; "
                "rename them"
            )
        self.instrument = instrument
        self.name = name or instrument.kind
        self.heartbeat_s = heartbeat_s
        self.faults = faults or Faults()
        self.approval = approval
        self.journal = Journal(journal_path)
        if any(self.journal.recovered.values()):
            log.warning("journal %s after a crash: %s", journal_path, self.journal.recovered)
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        self.keys = keys
        self._authenticator: ThreadAuthenticator | None = None
        try:
            if keys is not None:
                self._authenticator = keys.secure_server(self._socket)
            self._socket.bind(bind)
        except (InstrumentError, zmq.ZMQError) as error:
            self._close_transport()
            self.journal.close()
            if isinstance(error, InstrumentError):
                raise
            raise InstrumentError(
                f"could not bind {bind} ({error}); pick a free port or stop the other server"
            ) from None
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._pipe_lock = threading.Lock()
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        self._wake_read: int | None = wake_read
        self._wake_write: int | None = wake_write
        self._outbox: queue.SimpleQueue[tuple[_Job, dict[str, Any] | None, ErrorCode, str]] = (
            queue.SimpleQueue()
        )
        self._jobs: dict[str, _Job] = {}
        self._motion_lock = threading.Lock()
        self._estop = False
        self._lease: tuple[str, float] | None = None
        self._delayed: list[_Delayed] = []
        self._seq = itertools.count()
        self._stopping = threading.Event()
        self._serving = False
        self._thread: threading.Thread | None = None
        for entry in self.journal.held():
            self._reload_held(entry)
        if self._jobs:
            log.warning("%d requests still held for approval in %s", len(self._jobs), journal_path)

    def serve_forever(self) -> None:
        """Answer requests until ``stop``; closes the socket and the journal on the way out."""
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._wake_read, zmq.POLLIN)
        next_beat = time.monotonic() + self.heartbeat_s
        self._serving = True
        try:
            while not self._stopping.is_set():
                due = min([next_beat] + [d.due for d in self._delayed[:1]])
                events = dict(poller.poll(max(0.0, due - time.monotonic()) * 1000))
                if self._socket in events:
                    self._receive_all()
                if self._wake_read in events:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_read, 4096)
                self._flush_outbox()
                now = time.monotonic()
                if now >= next_beat:
                    self._beat(now)
                    next_beat = now + self.heartbeat_s
                self._send_due(now)
        finally:
            self._close()

    def start(self) -> Server:
        """Serve in a background thread; returns self."""
        self._serving = True
        self._thread = threading.Thread(target=self.serve_forever, name=f"server-{self.name}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: running actions are told to abort and journal it, then all is closed."""
        self._stopping.set()
        if not self._serving:
            self._close()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _close(self) -> None:
        """Stop the actions in flight, let their workers journal the end, then close it all."""
        if self._wake_read is None:
            return
        for job in self._jobs.values():
            job.ctx.stop(ErrorCode.aborted, f"{self.name} shut down during {job.action}")
        give_up = time.monotonic() + SHUTDOWN_GRACE_S
        for job in self._jobs.values():
            if job.thread is not None:
                job.thread.join(max(give_up - time.monotonic(), 0.0))
        self._close_transport()
        self.journal.close()
        with self._pipe_lock:
            for fd in (self._wake_read, self._wake_write):
                os.close(fd)
            self._wake_read = self._wake_write = None

    def _close_transport(self) -> None:
        """Close the socket, stop the authenticator (it holds the context), end the context."""
        self._socket.close(linger=0)
        if self._authenticator is not None:
            self._authenticator.stop()
        self._context.term()

    def _receive_all(self) -> None:
        """Answer what is waiting, at most a batch, so a flood cannot starve the heartbeats."""
        for _ in range(RECEIVE_BATCH):
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._handle(frames[0], frames[1:])

    def _handle(self, identity: bytes, frames: list[bytes]) -> None:
        """Answer one message; every failure becomes an Error reply, never an exception."""
        try:
            request = decode(frames)
            if not isinstance(request, Request):
                raise InvalidRequest(
                    f"expected a request, got a {request.kind} message; servers only take requests",
                    ErrorCode.malformed,
                )
        except InstrumentError as error:
            log.warning("bad message from %r: %s", identity, error)
            self._send(identity, Error(code=error.code, message=str(error)))
            return
        reply_to = {"request_id": request.id, "idempotency_key": request.idempotency_key}
        try:
            self._dispatch(identity, request)
        except InstrumentError as error:
            self._send(identity, Error(**reply_to, code=error.code, message=str(error)))
        except Exception as error:
            log.exception("internal error on %s", request.action)
            message = f"the server failed on {request.action}: {type(error).__name__}: {error}; report this bug"
            self._send(identity, Error(**reply_to, code=ErrorCode.internal, message=message))

    def _dispatch(self, identity: bytes, request: Request) -> None:
        if request.instrument not in (None, self.name):
            raise InvalidRequest(
                f"this server drives '{self.name}', got a request for '{request.instrument}'; "
                "connect to that instrument's endpoint",
                ErrorCode.unknown_instrument,
            )
        builtin = BUILTINS.get(request.action)
        if builtin is None:
            self._submit(identity, request)
            return
        params_model, handler = builtin
        try:
            params = params_model.model_validate(request.params)
        except ValidationError as error:
            raise InvalidRequest(
                f"{request.action} params do not match its schema: {validation_summary(error)}"
            ) from None
        outcome = handler(self, request, params)
        self._send(
            identity,
            Result(request_id=request.id, idempotency_key=request.idempotency_key, outcome=outcome),
        )

    def _submit(self, identity: bytes, request: Request) -> None:
        """Journal a new action, refuse it or start it; answer a repeated key from the journal."""
        key = request.idempotency_key
        fingerprint = _fingerprint(request)
        entry = self.journal.get(key)
        if entry is not None:
            self._answer_repeat(identity, request, entry, fingerprint)
            return
        self.journal.receive(key, request.action, fingerprint)
        try:
            self._check_lease(request.holder, request.action)
            params = self.instrument.validate(request.action, request.params)
            motion = self.instrument.actions[request.action].motion
            if motion and self._estop:
                raise RefusedError(_estop_message(self.name, request.action), ErrorCode.estop)
        except Exception as error:
            code = error.code if isinstance(error, InstrumentError) else ErrorCode.internal
            self.journal.fail(key, code, str(error))
            raise
        now = time.monotonic()
        job = _Job(
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
        if motion and self.approval:
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

    def _start(self, job: _Job, params: BaseModel) -> None:
        job.thread = threading.Thread(
            target=self._work, args=(job, params), name=f"{job.action}-{job.key[:8]}", daemon=True
        )
        job.thread.start()

    def _reload_held(self, entry: Entry) -> None:
        """Wait again for approval of a request held when the server last stopped."""
        request = entry.request or {}
        deadline_at = request.get("deadline_at")
        now_wall, now = time.time(), time.monotonic()
        self._jobs[entry.idempotency_key] = _Job(
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

    def _work(self, job: _Job, params: BaseModel) -> None:
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
        self._outbox.put((job, outcome, code, message))
        self._wake()

    def _run(self, job: _Job, params: BaseModel) -> dict[str, Any]:
        """Wait for the instrument, re-check stop and estop, commit ``running``, then act."""
        with self._motion_lock if job.motion else contextlib.nullcontext():
            job.ctx.check()
            if job.motion and self._estop:
                raise ActionStopped(ErrorCode.estop, _estop_message(self.name, job.action))
            self.journal.start(job.key)
            job.state = "running"
            return self.instrument.perform(job.action, params, job.ctx)

    def _wake(self) -> None:
        """Wake the I/O thread's poll from another thread."""
        with self._pipe_lock:
            if self._wake_write is not None:
                os.write(self._wake_write, b"x")

    def _flush_outbox(self) -> None:
        while True:
            try:
                job, outcome, code, message = self._outbox.get_nowait()
            except queue.Empty:
                return
            self._jobs.pop(job.key, None)
            if self.faults.drop_replies > 0:
                self.faults.drop_replies -= 1
                log.warning("fault: dropped the reply to %s", job.key)
                continue
            if job.identity is None:  # approved after a restart, before its client asked again
                continue
            reply_to = {"request_id": job.request_id, "idempotency_key": job.key}
            reply: Message = (
                Result(**reply_to, outcome=outcome)
                if outcome is not None
                else Error(**reply_to, code=code, message=message)
            )
            if self.faults.corrupt_replies > 0:
                self.faults.corrupt_replies -= 1
                log.warning("fault: corrupted the reply to %s", job.key)
                self._send(job.identity, reply, corrupt=True)
            else:
                self._send(job.identity, reply)

    def _beat(self, now: float) -> None:
        """Heartbeat every job in flight, and stop those past their deadline.

        A held request past its deadline ends there (nothing moved): nobody waits for it any more.
        """
        for job in list(self._jobs.values()):
            if job.deadline is not None and now > job.deadline:
                message = (
                    f"{self.name}.{job.action} passed its deadline after {job.ctx.elapsed_s:.1f} s"
                )
                if job.state == "held":
                    self._end_held(
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
                ),
            )

    def _on_progress(self, fraction: float) -> None:
        crash_at = self.faults.crash_at_fraction
        if crash_at is not None and fraction >= crash_at:
            log.error("fault: crashing the server mid-action at fraction %.2f", fraction)
            os._exit(CRASH_EXIT_CODE)

    def _send(self, identity: bytes, message: Message, corrupt: bool = False) -> None:
        frames = [identity, *encode(message)]
        if corrupt:
            frames[-1] = frames[-1][: len(frames[-1]) // 2] + b"\xff\x00"
        if self.faults.delay_s > 0:
            due = time.monotonic() + self.faults.delay_s
            heapq.heappush(self._delayed, _Delayed(due, next(self._seq), frames))
        else:
            self._socket.send_multipart(frames)

    def _send_due(self, now: float) -> None:
        while self._delayed and self._delayed[0].due <= now:
            self._socket.send_multipart(heapq.heappop(self._delayed).frames)

    def _live_lease(self) -> tuple[str, float] | None:
        """The lease (holder, monotonic expiry) unless it has expired."""
        if self._lease is not None and time.monotonic() >= self._lease[1]:
            self._lease = None
        return self._lease

    def _check_lease(self, holder: str | None, action: str) -> None:
        lease = self._live_lease()
        if lease is not None and lease[0] != holder:
            owner, expires = lease
            raise RefusedError(
                f"{self.name} is leased by '{owner}' for {expires - time.monotonic():.0f} s more, "
                f"got {action} from holder '{holder}'; wait, or ask '{owner}' to release_lease",
                ErrorCode.lease_held,
            )

    def _end_held(self, job: _Job, code: ErrorCode, message: str) -> None:
        """End a held request without running it: journal why, tell its client if connected."""
        self.journal.fail(job.key, code, message)
        self._jobs.pop(job.key, None)
        if job.identity is not None:
            reply_to = {"request_id": job.request_id, "idempotency_key": job.key}
            self._send(job.identity, Error(**reply_to, code=code, message=message))

    def _held_job(self, key: str) -> _Job:
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

    def _status(self, request: Request, params: _NoParams) -> dict[str, Any]:
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
            for job in self._jobs.values()
        ]
        return {
            "instrument": self.name,
            "kind": self.instrument.kind,
            "estop": self._estop,
            "lease": lease,
            "running": running,
            "journal": self.journal.counts(),
        }

    def _abort(self, request: Request, params: _AbortParams) -> dict[str, Any]:
        self._check_lease(request.holder, request.action)
        jobs = [job for job in self._jobs.values() if params.idempotency_key in (None, job.key)]
        for job in jobs:
            message = f"{self.name}.{job.action} was aborted by a client"
            if job.state == "held":
                self._end_held(job, ErrorCode.aborted, f"{message} while held; nothing moved")
            else:
                job.ctx.stop(ErrorCode.aborted, message)
        return {"aborted": [job.key for job in jobs]}

    def _estop_action(self, request: Request, params: _NoParams) -> dict[str, Any]:
        """Latch the emergency stop and stop every motion, held ones too; anyone may, any lease."""
        self._estop = True
        stopped = [job for job in self._jobs.values() if job.motion]
        for job in stopped:
            if job.state == "held":
                self._end_held(job, ErrorCode.estop, _estop_message(self.name, job.action))
            else:
                job.ctx.stop(ErrorCode.estop, _estop_message(self.name, job.action))
        log.warning("emergency stop latched on %s", self.name)
        return {"estop": True, "stopped": [job.key for job in stopped]}

    def _clear_estop(self, request: Request, params: _NoParams) -> dict[str, Any]:
        self._check_lease(request.holder, request.action)
        self._estop = False
        return {"estop": False}

    def _acquire_lease(self, request: Request, params: _LeaseParams) -> dict[str, Any]:
        if not request.holder:
            raise InvalidRequest(
                "acquire_lease needs a holder, got none; create the client with holder='name'"
            )
        self._check_lease(request.holder, request.action)
        self._lease = (request.holder, time.monotonic() + params.ttl_s)
        return {"holder": request.holder, "expires_in_s": params.ttl_s}

    def _release_lease(self, request: Request, params: _NoParams) -> dict[str, Any]:
        self._check_lease(request.holder, request.action)
        self._lease = None
        return {"holder": None}

    def _describe(self, request: Request, params: _NoParams) -> dict[str, Any]:
        """The instrument's actions with params schemas, limits and motion flags."""
        return {"instrument": self.name, "kind": self.instrument.kind, **self.instrument.describe()}

    def _noop(self, request: Request, params: _NoParams) -> dict[str, Any]:
        return {}

    def _pending(self, request: Request, params: _NoParams) -> dict[str, Any]:
        """The held requests, oldest first: what they would do, who proposed them, how long ago."""
        held = sorted(
            (job for job in self._jobs.values() if job.state == "held"),
            key=lambda job: job.ctx.started,
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

    def _approve(self, request: Request, params: _ApproveParams) -> dict[str, Any]:
        """Run a held request once; the approver names a holder other than the proposer's."""
        job = self._held_job(params.idempotency_key)
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
        self._check_lease(job.holder, job.action)
        try:
            validated = self.instrument.validate(job.action, job.params)
        except InstrumentError as error:
            self._end_held(job, error.code, str(error))
            raise
        self.journal.release(job.key)
        job.state = "received"
        log.info(
            "%s.%s under key %s approved by %s", self.name, job.action, job.key, request.holder
        )
        self._start(job, validated)
        return {"approved": job.key, "action": job.action, "by": request.holder}

    def _reject(self, request: Request, params: _RejectParams) -> dict[str, Any]:
        """End a held request with code ``rejected``; anyone may, the proposer withdrawing too."""
        job = self._held_job(params.idempotency_key)
        by = request.holder or "an unnamed client"
        self._end_held(
            job,
            ErrorCode.rejected,
            f"{self.name}.{job.action} under key '{job.key}' was rejected by '{by}': "
            f"{params.reason}; nothing moved, change the request and ask again with a new key",
        )
        return {"rejected": job.key, "action": job.action, "by": by}


Handler = Callable[[Server, Request, Any], dict[str, Any]]
BUILTINS: dict[str, tuple[type[BaseModel], Handler]] = {
    "status": (_NoParams, Server._status),
    "abort": (_AbortParams, Server._abort),
    "estop": (_NoParams, Server._estop_action),
    "clear_estop": (_NoParams, Server._clear_estop),
    "acquire_lease": (_LeaseParams, Server._acquire_lease),
    "release_lease": (_NoParams, Server._release_lease),
    "describe": (_NoParams, Server._describe),
    "noop": (_NoParams, Server._noop),
    "pending": (_NoParams, Server._pending),
    "approve": (_ApproveParams, Server._approve),
    "reject": (_RejectParams, Server._reject),
}
"""Control actions every server answers at once, without the journal or a worker thread."""


def _estop_message(name: str, action: str) -> str:
    return (
        f"{name}.{action} refused: the emergency stop is latched; "
        "make the instrument safe, then call clear_estop"
    )


def _fingerprint(request: Request) -> str:
    """What a key was first used for, so reusing it for another request is caught."""
    body = json.dumps([request.action, request.params], sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def check_loopback(bind: str) -> None:
    """Refuse a bind reachable from other machines: without CurveZMQ keys, loopback only."""
    transport, _, address = bind.partition("://")
    if transport in ("ipc", "inproc"):
        return
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_loopback:
            return
    raise InstrumentError(
        f"expected a loopback bind without CurveZMQ keys, got '{bind}': anyone on the network "
        "could move the instrument; bind tcp://127.0.0.1:PORT"
    )


def serve(
    instrument: Instrument,
    bind: str,
    journal_path: str | Path,
    **options: Any,
) -> None:
    """Serve ``instrument`` on ``bind`` until SIGINT or SIGTERM; options go to ``Server``."""
    server = Server(instrument, bind, journal_path, **options)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: server.stop())
    keys = server.keys
    security = (
        f"CurveZMQ, {keys.allowed_count()} allowed client keys in {keys.allowed}"
        if keys is not None
        else "loopback only (no CurveZMQ keys)"
    )
    gate = "; motions held for approval (poreloop instrument approve)" if server.approval else ""
    print(
        ready_line(instrument.kind, server.endpoint, server.journal.path, security + gate),
        flush=True,
    )
    server.serve_forever()


def ready_line(kind: str, endpoint: str, journal: str | Path, security: str) -> str:
    """The one line a server prints once it is bound: JSON a supervisor reads (with
    ``parse_ready_line``) and a person can too."""
    return json.dumps(
        {
            "event": "serving",
            "kind": kind,
            "endpoint": endpoint,
            "journal": str(journal),
            "security": security,
        }
    )


def parse_ready_line(line: str) -> dict[str, str] | None:
    """The fields of a ``ready_line`` (``endpoint``, ``kind`` ...), or None for another line."""
    try:
        fields = json.loads(line)
    except ValueError:
        return None
    return fields if isinstance(fields, dict) and fields.get("event") == "serving" else None


def main(argv: list[str] | None = None) -> None:
    """``python -m poreloop.instruments.server``: serve an instrument, with optional faults."""
    from poreloop.instruments.auth import Keys
    from poreloop.instruments.backends import make_instrument

    parser = argparse.ArgumentParser(
        prog="python -m poreloop.instruments.server", description=main.__doc__
    )
    parser.add_argument("--instrument", required=True, help="instrument kind, e.g. oven")
    parser.add_argument("--backend", default="sim", help="sim, or package.module:Class (adapter)")
    parser.add_argument("--options", default="{}", help="JSON keyword arguments of its backend")
    parser.add_argument("--bind", default="tcp://127.0.0.1:*")
    parser.add_argument("--journal", required=True, type=Path)
    parser.add_argument("--heartbeat-s", type=float, default=0.5)
    parser.add_argument("--drop-replies", type=int, default=0)
    parser.add_argument("--delay-s", type=float, default=0.0)
    parser.add_argument("--crash-at", type=float, default=None)
    parser.add_argument("--corrupt-replies", type=int, default=0)
    parser.add_argument(
        "--keys", type=Path, help="CurveZMQ keys DIR: server.key_secret and allowed/*.key"
    )
    parser.add_argument(
        "--approval", action="store_true", help="hold every motion until a person approves it"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    faults = Faults(args.drop_replies, args.delay_s, args.crash_at, args.corrupt_replies)
    try:
        instrument = make_instrument(args.instrument, args.backend, **json.loads(args.options))
        keys = Keys.for_server(args.keys) if args.keys is not None else None
        serve(
            instrument,
            args.bind,
            args.journal,
            heartbeat_s=args.heartbeat_s,
            faults=faults,
            keys=keys,
            approval=args.approval,
        )
    except InstrumentError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
