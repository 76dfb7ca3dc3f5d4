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
from collections.abc import Callable
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
from poreloop.instruments.protocol import Error, Progress, Request, Result, decode, encode

if TYPE_CHECKING:
    from poreloop.instruments.auth import Keys

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], None]


@dataclass
class _Call:
    """One logical call's clock: when to retry, when the server counts as dead, the deadline."""

    request: Request
    deadline: float
    retry_s: float
    liveness_s: float
    on_progress: ProgressCallback | None
    last_sent: float
    last_heard: float

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
        if now >= self.deadline:
            raise DeadlineError(
                f"{action} did not finish within its {self.request.deadline_s:.3g} s timeout; "
                f"it may still be running: call again with idempotency_key='{self.key}' to learn "
                "its outcome, or give it a longer timeout",
                idempotency_key=self.key,
            )
        if now - self.last_heard >= self.liveness_s:
            raise ServerUnreachable(
                f"expected a reply or heartbeat within {self.liveness_s:.3g} s, got silence "
                f"while calling {action}; start the server, then call again with "
                f"idempotency_key='{self.key}' to learn its outcome",
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
        self._curve = keys.client_options() if keys is not None else {}
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
            except (DeadlineError, ServerUnreachable) as error:
                self._drop_socket(asynchronous=False)
                raise self._explained(error) from None

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
                            return outcome
            except (DeadlineError, ServerUnreachable) as error:
                self._drop_socket(asynchronous=True)
                raise self._explained(error) from None

    def close(self) -> None:
        """Close the sockets at once (linger 0) and the context."""
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
        return _Call(request, now + timeout, self.retry_s, self.liveness_s, on_progress, now, now)

    def _explained(self, error: InstrumentError) -> InstrumentError:
        """Under CurveZMQ a server refusing this client's key is silent too: say so."""
        if not self._curve or not isinstance(error, ServerUnreachable):
            return error
        return ServerUnreachable(
            f"{error}; with CurveZMQ keys a server that refuses this client's key is silent too: "
            "check this client's NAME.key is in the server's allowed/ directory and that "
            "server.key is that server's public key",
            idempotency_key=error.idempotency_key,
        )

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
