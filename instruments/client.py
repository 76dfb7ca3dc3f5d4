"""The instrument client: DEALER socket, blocking and asyncio calls, exactly-once by key.

The client owns the idempotency key (a uuid4 per logical call). While an action runs the server
sends heartbeats; when the client hears nothing for ``retry_s`` it reconnects on a new socket and
sends the same request again under the same key, which the server answers from its journal
instead of moving anything twice. Silence for ``liveness_s`` means the server is gone
(ServerUnreachable); the ``timeout`` of a call bounds it whatever happens (DeadlineError).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import zmq
import zmq.asyncio

from poreloop.instruments.errors import (
    DeadlineError,
    InstrumentError,
    ProtocolError,
    ServerUnreachable,
    error_for,
)
from poreloop.instruments.protocol import (
    LEASE_TTL_S,
    READ_ONLY_ACTIONS,
    Error,
    Progress,
    Request,
    Result,
    decode,
    encode,
)

if TYPE_CHECKING:
    from poreloop.instruments.auth import Keys

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], None]


def python_replay_hint(key: str) -> str:
    """How a Python caller learns the outcome of the call under ``key``."""
    return f"call again with idempotency_key='{key}' to learn its outcome"


@dataclass
class _Call:
    """One logical call's clock: when to retry, when the server counts as dead, the deadline.

    ``silence`` says what silence from the server can mean; ``replay_hint`` how the caller, in
    its own syntax, asks again about this call."""

    request: Request
    deadline: float
    retry_s: float
    liveness_s: float
    on_progress: ProgressCallback | None
    last_sent: float
    last_heard: float
    silence: str
    replay_hint: Callable[[str], str]

    @property
    def key(self) -> str:
        return self.request.idempotency_key

    def wait_s(self, now: float) -> float:
        """Seconds until something is due: a retry, the liveness limit, or the deadline."""
        quiet_since = max(self.last_sent, self.last_heard)
        due = min(self.deadline, self.last_heard + self.liveness_s, quiet_since + self.retry_s)
        return max(due - now, 0.0)

    def must_resend(self, now: float) -> bool:
        """True when silence calls for a retry; raises past the deadline or the liveness window."""
        action = self.request.action
        read_only = action in READ_ONLY_ACTIONS
        if now >= self.deadline:
            raise DeadlineError(
                f"{action} did not finish within its {self.request.deadline_s:.3g} s timeout; "
                + (
                    "give it a longer timeout"
                    if read_only
                    else f"it may still be running: {self.replay_hint(self.key)}, or give it a "
                    "longer timeout"
                ),
                idempotency_key=self.key,
            )
        if now - self.last_heard >= self.liveness_s:
            raise ServerUnreachable(
                f"no reply within {self.liveness_s:.3g} s while calling {action}: {self.silence}"
                + ("" if read_only else f"; once it answers, {self.replay_hint(self.key)}"),
                idempotency_key=self.key,
            )
        return now - max(self.last_sent, self.last_heard) >= self.retry_s

    def resend(self, now: float) -> Request:
        """The same request under the same key, with a new id and the time it has left."""
        self.last_sent = now
        return self.request.model_copy(
            update={"id": uuid.uuid4().hex, "deadline_s": self.deadline - now}
        )

    def receive(self, frames: list[bytes], now: float) -> dict[str, Any] | None:
        """The outcome when ``frames`` end this call; raises for an Error; None otherwise.

        A reply garbled in transit counts as lost: the call goes on and, if nothing better
        arrives, re-asks under the same key, whose recorded outcome the server replays.
        """
        try:
            message = decode(frames)
        except ProtocolError as error:
            log.warning("ignored a garbled reply for %s: %s", self.key, error)
            return None
        if isinstance(message, Request):
            raise ProtocolError(
                "expected a reply from the server, got a request; check the endpoint is a server"
            )
        if message.idempotency_key not in (self.key, None):
            return None
        self.last_heard = now
        if isinstance(message, Result):
            return message.outcome
        if isinstance(message, Error):
            raise error_for(message.code, message.message, self.key)
        if isinstance(message, Progress) and self.on_progress is not None:
            self.on_progress(message)
        return None


_ENDPOINT = re.compile(r"tcp://(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):(\d{1,5})")


def check_endpoint(endpoint: str) -> str:
    """``endpoint`` if it is ``tcp://HOST:PORT``; else one line saying what was expected (ZeroMQ
    itself answers a bad address with a bare 'Invalid argument')."""
    found = _ENDPOINT.fullmatch(endpoint)
    if found is None or not 0 < int(found.group(2)) < 65536:
        raise InstrumentError(
            f"expected an endpoint like tcp://127.0.0.1:5555 (tcp://HOST:PORT), got '{endpoint}'"
        )
    return endpoint


class InstrumentClient:
    """Talk to one instrument server at ``endpoint`` (``tcp://127.0.0.1:5555``).

    ``instrument`` names the instrument the server must drive (None: whatever it drives);
    ``holder`` names this client for leases (a campaign id). ``retry_s`` must exceed the
    server's heartbeat period. One call at a time per client: concurrent calls on one client
    wait for each other; use one client per concurrent caller. ``keys`` (CurveZMQ, see
    ``instruments.auth``) encrypt the link and prove this client to a server that checks keys.
    ``replay_hint`` words, in the caller's syntax, how to ask again about a call whose outcome
    is not known (the CLI says ``--idempotency-key``).

    A lease this client takes (``lease()``, or ``acquire_lease``) is released when it closes;
    one it does not renew lapses after its ``ttl_s`` (``LEASE_TTL_S`` by default).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        instrument: str | None = None,
        holder: str | None = None,
        retry_s: float = 2.0,
        liveness_s: float = 6.0,
        keys: Keys | None = None,
        replay_hint: Callable[[str], str] = python_replay_hint,
    ) -> None:
        if not 0 < retry_s < liveness_s:
            raise InstrumentError(
                f"expected 0 < retry_s < liveness_s, got retry_s={retry_s}, "
                f"liveness_s={liveness_s}; retry at least once before declaring the server dead"
            )
        self.endpoint = check_endpoint(endpoint)
        self.instrument = instrument
        self.holder = holder
        self.retry_s = retry_s
        self.liveness_s = liveness_s
        self.replay_hint = replay_hint
        self._keys = keys
        self._curve = keys.client_options() if keys is not None else {}
        self._leased = False
        self._renewal: tuple[threading.Thread, threading.Event] | None = None
        self._context = zmq.Context()
        self._async_context = zmq.asyncio.Context.shadow(self._context)
        self._socket: zmq.Socket | None = None
        self._async_socket: zmq.asyncio.Socket | None = None
        self._lock = threading.Lock()
        self._async_lock: asyncio.Lock | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None

    def call(
        self,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float = 60.0,
        idempotency_key: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Run ``action`` and return its outcome; blocks until it ends or ``timeout`` s pass.

        Pass ``idempotency_key`` to ask again about an earlier call (after ServerUnreachable or
        DeadlineError): its recorded outcome comes back and nothing runs twice.
        """
        outcome = self._call(action, params, timeout, idempotency_key, on_progress)
        self._track_lease(action)
        return outcome

    def _call(
        self,
        action: str,
        params: dict[str, Any] | None,
        timeout: float,
        idempotency_key: str | None,
        on_progress: ProgressCallback | None,
    ) -> dict[str, Any]:
        with self._lock:
            call = self._begin(action, params, timeout, idempotency_key, on_progress)
            socket = self._connect(reconnect=False)
            _send(socket, encode(call.request))
            try:
                while True:
                    now = time.monotonic()
                    if call.must_resend(now):
                        socket = self._connect(reconnect=True)
                        _send(socket, encode(call.resend(now)))
                    if socket.poll(round(call.wait_s(time.monotonic()) * 1000)):
                        outcome = call.receive(socket.recv_multipart(), time.monotonic())
                        if outcome is not None:
                            return outcome
            except (DeadlineError, ServerUnreachable):
                self._drop_socket(asynchronous=False)
                raise

    async def acall(
        self,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float = 60.0,
        idempotency_key: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """The awaitable twin of ``call``: same arguments, same outcome, same errors."""
        loop = asyncio.get_running_loop()
        if self._async_lock is None or loop is not self._async_loop:
            self._drop_socket(asynchronous=True)
            self._async_loop, self._async_lock = loop, asyncio.Lock()
        async with self._async_lock:
            call = self._begin(action, params, timeout, idempotency_key, on_progress)
            socket = self._aconnect(reconnect=False)
            await _asend(socket, encode(call.request))
            try:
                while True:
                    now = time.monotonic()
                    if call.must_resend(now):
                        socket = self._aconnect(reconnect=True)
                        await _asend(socket, encode(call.resend(now)))
                    if await socket.poll(call.wait_s(time.monotonic()) * 1000):
                        frames = await socket.recv_multipart()
                        outcome = call.receive(frames, time.monotonic())
                        if outcome is not None:
                            self._track_lease(action)
                            return outcome
            except (DeadlineError, ServerUnreachable):
                self._drop_socket(asynchronous=True)
                raise

    @contextlib.contextmanager
    def lease(self, ttl_s: float = LEASE_TTL_S) -> Iterator[dict[str, Any]]:
        """Keep the instrument to this client's holder while the block runs.

        The lease is renewed every ``ttl_s``/3 from a thread and socket of its own (a long call
        on this client does not starve it) and released at the end; if this process dies, it
        lapses within ``ttl_s``. Yields what ``acquire_lease`` answered.
        """
        granted = self.call("acquire_lease", {"ttl_s": ttl_s}, timeout=self.liveness_s)
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(ttl_s, stop), name="lease-renewal", daemon=True
        )
        self._renewal = (renewer, stop)
        renewer.start()
        try:
            yield granted
        finally:
            self._release()

    def close(self) -> None:
        """Release a lease this client took, then close the sockets at once (linger 0) and the
        context."""
        self._release()
        self._drop_socket()
        self._context.term()

    def __enter__(self) -> InstrumentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _begin(
        self,
        action: str,
        params: dict[str, Any] | None,
        timeout: float,
        idempotency_key: str | None,
        on_progress: ProgressCallback | None,
    ) -> _Call:
        now = time.monotonic()
        request = Request(
            id=uuid.uuid4().hex,
            idempotency_key=idempotency_key or uuid.uuid4().hex,
            instrument=self.instrument,
            action=action,
            params=params or {},
            deadline_s=timeout,
            holder=self.holder,
        )
        return _Call(
            request,
            now + timeout,
            self.retry_s,
            self.liveness_s,
            on_progress,
            now,
            now,
            self._silence(),
            self.replay_hint,
        )

    def _silence(self) -> str:
        """What silence from the server can mean: under CurveZMQ, a refused key is silent too."""
        if not self._curve:
            return f"the server is down or not listening at {self.endpoint}; start it"
        return (
            "the server is down or did not accept this client's key; check this client's "
            "NAME.key is in the server's allowed/ directory and server.key is that server's "
            "public key"
        )

    def _track_lease(self, action: str) -> None:
        if action == "acquire_lease":
            self._leased = True
        elif action == "release_lease":
            self._leased = False

    def _renew(self, ttl_s: float, stop: threading.Event) -> None:
        """Renew the lease every ttl_s/3 on a client of its own until ``stop``."""
        renewer = InstrumentClient(
            self.endpoint,
            instrument=self.instrument,
            holder=self.holder,
            retry_s=self.retry_s,
            liveness_s=self.liveness_s,
            keys=self._keys,
        )
        try:
            while not stop.wait(ttl_s / 3):
                try:  # not ``call``: the renewer must not release the lease when it closes
                    renewer._call("acquire_lease", {"ttl_s": ttl_s}, ttl_s / 3, None, None)
                except InstrumentError as error:
                    log.warning("could not renew the lease on %s: %s", self.endpoint, error)
        finally:
            renewer.close()

    def _release(self) -> None:
        """Stop renewing and release the lease this client holds, if any; a server that does
        not answer lets it lapse on its own."""
        if self._renewal is not None:
            renewer, stop = self._renewal
            stop.set()
            renewer.join()
            self._renewal = None
        if self._leased:
            self._leased = False
            try:
                self._call("release_lease", None, self.liveness_s, None, None)
            except InstrumentError as error:
                log.warning("could not release the lease on %s: %s", self.endpoint, error)

    def _connect(self, reconnect: bool) -> zmq.Socket:
        """The DEALER socket; a new one when ``reconnect`` so late replies to the old are lost."""
        if reconnect or self._socket is None:
            self._drop_socket(asynchronous=False)
            self._socket = self._context.socket(zmq.DEALER)
            self._socket.setsockopt(zmq.LINGER, 0)
            for option, value in self._curve.items():
                self._socket.setsockopt(option, value)
            self._socket.connect(self.endpoint)
        return self._socket

    def _aconnect(self, reconnect: bool) -> zmq.asyncio.Socket:
        if reconnect or self._async_socket is None:
            self._drop_socket(asynchronous=True)
            self._async_socket = self._async_context.socket(zmq.DEALER)
            self._async_socket.setsockopt(zmq.LINGER, 0)
            for option, value in self._curve.items():
                self._async_socket.setsockopt(option, value)
            self._async_socket.connect(self.endpoint)
        return self._async_socket

    def _drop_socket(self, asynchronous: bool | None = None) -> None:
        """Close the blocking socket, the asyncio one, or both (None), dropping what they hold."""
        if asynchronous is not True and self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        if asynchronous is not False and self._async_socket is not None:
            self._async_socket.close(linger=0)
            self._async_socket = None


def _send(socket: zmq.Socket, frames: list[bytes]) -> None:
    """Queue a request without blocking. A DEALER with no live peer (the server is down, or
    refused the CurveZMQ handshake) would block forever; the request is then lost like a
    dropped one, and the retry and liveness windows decide what happens."""
    with contextlib.suppress(zmq.Again):
        socket.send_multipart(frames, flags=zmq.NOBLOCK)


async def _asend(socket: zmq.asyncio.Socket, frames: list[bytes]) -> None:
    """``_send`` for the asyncio socket."""
    with contextlib.suppress(zmq.Again):
        await socket.send_multipart(frames, flags=zmq.NOBLOCK)
