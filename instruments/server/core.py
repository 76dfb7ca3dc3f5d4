"""The server's I/O loop: one ROUTER socket, dispatch, heartbeats, and every send.

One I/O thread owns the socket. It answers control actions (``control``) at once and hands every
other request to the journal-backed jobs (``jobs``), whose workers report their ends through a
queue and a wake-up pipe, so a long action never blocks other requests or heartbeats. Bad input
gets an ``Error`` reply; the server never dies on it.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

from poreloop.instruments.auth import check_loopback
from poreloop.instruments.base import Instrument
from poreloop.instruments.errors import ErrorCode, InstrumentError, InvalidRequest
from poreloop.instruments.journal import Journal
from poreloop.instruments.protocol import Error, Message, Request, Result, decode, encode
from poreloop.instruments.server.control import CONTROL_ACTIONS, Control, check_not_shadowed
from poreloop.instruments.server.faults import Faults, garbled
from poreloop.instruments.server.jobs import Jobs

if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator

    from poreloop.instruments.auth import AllowList, Keys

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 2**20
"""Larger messages are dropped by ZeroMQ before they reach the server."""
RECEIVE_BATCH = 256
"""Messages answered per turn of the I/O loop before outcomes and heartbeats get their turn."""


@dataclass(order=True)
class _Delayed:
    due: float
    seq: int
    frames: list[bytes] = field(compare=False)


class Server:
    """Serve one instrument on ``bind``, journaling to ``journal_path``.

    Without ``keys`` the bind must be loopback; with them (CurveZMQ, see ``instruments.auth``)
    any address is allowed and only clients whose public key is in the allow-list now are served
    (a key deleted from it is refused from the next message on, see ``auth.AllowList``).
    ``heartbeat_s`` is the period of Progress messages for running actions; a client's retry
    interval must be longer. ``approval`` holds every motion for a person's approval
    (``server.control``). Use ``serve_forever`` in the current thread, or ``start``/``stop``.
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
        check_not_shadowed(instrument)
        self.instrument = instrument
        self.name = name or instrument.kind
        self.heartbeat_s = heartbeat_s
        self.faults = faults or Faults()
        self.journal = Journal(journal_path)
        if any(self.journal.recovered.values()):
            log.warning("journal %s after a crash: %s", journal_path, self.journal.recovered)
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        self.keys = keys
        self._authenticator: ThreadAuthenticator | None = None
        self._allow_list: AllowList | None = None
        try:
            if keys is not None:
                self._authenticator, self._allow_list = keys.secure_server(self._socket)
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
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self._closed = False
        self._delayed: list[_Delayed] = []
        self._seq = itertools.count()
        self._stopping = threading.Event()
        self._serving = False
        self._thread: threading.Thread | None = None
        self.jobs = Jobs(
            self.name,
            instrument,
            self.journal,
            send=self._send,
            wake=self._wake,
            on_progress=self.faults.crash_if_due,
        )
        self.control = Control(self.name, instrument, self.jobs, approval)

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
                events = dict(poller.poll(math.ceil(max(0.0, due - time.monotonic()) * 1000)))
                if self._socket in events:
                    self._receive_all()
                if self._wake_read in events:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_read, 4096)
                self._send_ended()
                now = time.monotonic()
                if now >= next_beat:
                    self.jobs.beat(now)
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
        if self._closed:
            return
        self.jobs.stop_all()
        self._close_transport()
        self.journal.close()
        with self._pipe_lock:
            for fd in (self._wake_read, self._wake_write):
                os.close(fd)
            self._closed = True

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
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if self._allow_list is not None and not self._allow_list.allows(
                str(frames[0].get("User-Id")).encode()
            ):
                continue  # revoked while connected: as silent as a refused handshake
            self._handle(frames[0].bytes, [frame.bytes for frame in frames[1:]])

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
        """A control action is answered here and now; any other goes to the jobs."""
        if request.instrument not in (None, self.name):
            raise InvalidRequest(
                f"this server drives '{self.name}', got a request for '{request.instrument}'; "
                "connect to that instrument's endpoint",
                ErrorCode.unknown_instrument,
            )
        if request.action not in CONTROL_ACTIONS:
            self.jobs.submit(identity, request, self.control)
            return
        outcome = self.control.answer(request)
        self._send(
            identity,
            Result(request_id=request.id, idempotency_key=request.idempotency_key, outcome=outcome),
        )

    def _send_ended(self) -> None:
        """Send the final reply of each action that ended, through the reply faults."""
        for identity, reply in self.jobs.ended():
            key = reply.idempotency_key or ""
            if self.faults.drops(key) or identity is None:
                continue
            self._send(identity, reply, corrupt=self.faults.corrupts(key))

    def _send(self, identity: bytes, message: Message, corrupt: bool = False) -> None:
        frames = [identity, *encode(message)]
        if corrupt:
            frames = garbled(frames)
        if self.faults.delay_s > 0:
            due = time.monotonic() + self.faults.delay_s
            heapq.heappush(self._delayed, _Delayed(due, next(self._seq), frames))
        else:
            self._socket.send_multipart(frames)

    def _send_due(self, now: float) -> None:
        while self._delayed and self._delayed[0].due <= now:
            self._socket.send_multipart(heapq.heappop(self._delayed).frames)

    def _wake(self) -> None:
        """Wake the I/O thread's poll from another thread."""
        with self._pipe_lock:
            if not self._closed:
                os.write(self._wake_write, b"x")
