"""CurveZMQ on an instrument link: key pairs, an allow-list of client keys, socket set-up.

Every side holds its own key pair (``NAME.key`` public, ``NAME.key_secret`` secret, made by
``make_keys`` or ``poreloop instrument keys``). A client also holds the server's public key; a
server holds a directory of the public keys of the clients it serves, so one client is revoked
by deleting its file: the server reads the directory again when it changes (``AllowList``), so a
revoked client is refused from its next message on and a new key is served, without a restart.
A client whose key is not there never completes the handshake (or, already connected, has its
messages dropped) and gets no reply at all: it gives up after its liveness window with
ServerUnreachable. The server logs each refused key.

A keys directory, as the CLI uses it: the server reads ``server.key_secret`` and ``allowed/*.key``;
a client reads ``NAME.key_secret`` (``client`` unless told) and ``server.key``. Without keys a
server binds loopback only (``check_loopback``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import cast

import zmq
import zmq.auth
from pydantic import BaseModel, ConfigDict
from zmq.auth.thread import ThreadAuthenticator

from poreloop.instruments.errors import InstrumentError

SERVER_NAME = "server"
CLIENT_NAME = "client"
ALLOWED_DIR = "allowed"
REFUSAL_LOG_PERIOD_S = 60.0
"""A refused key is logged once per this period, not on every reconnect of its client."""

log = logging.getLogger(__name__)


def make_keys(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write a new key pair ``directory/name.key`` and ``.key_secret``; returns both paths.

    The secret file is created readable by its owner only before any key is written to it;
    an existing pair is never overwritten.
    """
    directory = Path(directory)
    if not name or Path(name).name != name or name.startswith("."):
        raise InstrumentError(
            f"expected a plain key name like 'client-lab1', got '{name}'; drop any '/' or leading '.'"
        )
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise InstrumentError(
                f"key file '{path}' exists, refusing to overwrite it; pick another --name or "
                "delete the old pair"
            )
    directory.mkdir(parents=True, exist_ok=True)
    os.close(os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    made = zmq.auth.create_certificates(directory, name)
    return Path(made[0]), Path(made[1])


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    """(public, secret) z85 keys of a key file; one-line InstrumentError when it is unusable."""
    try:
        public_key, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as error:
        raise InstrumentError(
            f"cannot read CurveZMQ key file '{path}' ({error}); make one with "
            "`poreloop instrument keys DIR --name NAME`"
        ) from None
    if secret and secret_key is None:
        raise InstrumentError(
            f"expected a secret key in '{path}', got a public key file only; pass NAME.key_secret"
        )
    return public_key, secret_key


class Keys(BaseModel):
    """The CurveZMQ keys of one side of a link.

    ``secret``: this side's ``NAME.key_secret``. A client sets ``server_public`` (the server's
    ``NAME.key``); a server sets ``allowed`` (a directory of allowed clients' ``*.key`` files).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: Path
    server_public: Path | None = None
    allowed: Path | None = None

    @classmethod
    def for_server(cls, directory: str | Path, name: str = SERVER_NAME) -> Keys:
        """A server's keys from a keys directory: ``name.key_secret`` and ``allowed/``."""
        directory = Path(directory)
        return cls(secret=directory / f"{name}.key_secret", allowed=directory / ALLOWED_DIR)

    @classmethod
    def for_client(
        cls, directory: str | Path, name: str = CLIENT_NAME, server: str = SERVER_NAME
    ) -> Keys:
        """A client's keys from a keys directory: ``name.key_secret`` and ``server.key``."""
        directory = Path(directory)
        return cls(
            secret=directory / f"{name}.key_secret", server_public=directory / f"{server}.key"
        )

    def secure_server(self, socket: zmq.Socket) -> tuple[ThreadAuthenticator, AllowList]:
        """Make ``socket`` (not yet bound) a CURVE server that serves allowed keys only.

        Returns the started authenticator, which the owner stops before terminating the context,
        and the allow-list it asks at each handshake, which the owner asks for each message.
        """
        if self.allowed is None:
            raise InstrumentError(
                f"expected a directory of allowed client keys for a server, got none beside "
                f"'{self.secret}'; set allowed=DIR with the clients' *.key files"
            )
        if not self.allowed.is_dir() or not any(self.allowed.glob("*.key")):
            raise InstrumentError(
                f"expected client public keys (*.key) in '{self.allowed}', got none: no client "
                "could connect; copy each allowed client's NAME.key there"
            )
        public_key, secret_key = _load(self.secret, secret=True)
        authenticator = ThreadAuthenticator(socket.context)
        authenticator.start()
        allow_list = AllowList(self.allowed)
        authenticator.configure_curve_callback(domain="*", credentials_provider=allow_list)
        socket.curve_secretkey = secret_key
        socket.curve_publickey = public_key
        socket.curve_server = True
        return authenticator, allow_list

    def client_options(self) -> dict[int, bytes]:
        """Socket options that make a DEALER a CURVE client of the server whose key we hold.

        Read once and set on every new socket before it connects.
        """
        if self.server_public is None:
            raise InstrumentError(
                f"expected the server's public key for a client, got none beside '{self.secret}'; "
                "set server_public=PATH to the server's NAME.key"
            )
        public_key, secret_key = _load(self.secret, secret=True)
        server_key, _ = _load(self.server_public, secret=False)
        return {
            zmq.CURVE_SECRETKEY: cast(bytes, secret_key),  # _load(secret=True) refuses none
            zmq.CURVE_PUBLICKEY: public_key,
            zmq.CURVE_SERVERKEY: server_key,
        }

    def allowed_count(self) -> int:
        """How many client keys the allow-list holds now."""
        return len(list(self.allowed.glob("*.key"))) if self.allowed is not None else 0


class AllowList:
    """The client public keys in ``directory`` (``*.key``), read again whenever its files change.

    pyzmq's ``configure_curve`` reads the directory once, so a deleted key would be served until
    a restart; this is its credentials provider instead (``callback``, at each handshake), and
    the server asks ``allows`` for every message, since a connected client never shakes hands
    again. A change is seen from the names, sizes and modification times of the key files.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._seen: tuple[tuple[str, int, int], ...] | None = None
        self._keys: frozenset[bytes] = frozenset()
        self._logged: dict[bytes, float] = {}

    def allows(self, client_key: bytes) -> bool:
        """Whether the z85 public key ``client_key`` is in the directory now; logs a refusal."""
        allowed = client_key in self._current()
        if not allowed:
            self._log_refusal(client_key)
        return allowed

    def callback(self, domain: str, client_key: bytes) -> bool:
        """pyzmq's credentials-provider hook, called at each CURVE handshake."""
        return self.allows(client_key)

    def _current(self) -> frozenset[bytes]:
        with self._lock:
            files = sorted(self.directory.glob("*.key")) if self.directory.is_dir() else []
            seen = []
            for path in files:
                with contextlib.suppress(OSError):  # deleted since the listing: not allowed
                    stat = path.stat()
                    seen.append((path.name, stat.st_mtime_ns, stat.st_size))
            if tuple(seen) != self._seen:
                self._keys = frozenset(self._read(self.directory / name for name, _, _ in seen))
                self._seen = tuple(seen)
                log.info("allow-list %s: %d client keys", self.directory, len(self._keys))
            return self._keys

    @staticmethod
    def _read(paths: Iterable[Path]) -> Iterator[bytes]:
        """The public keys of ``paths``; a file that cannot be read allows nobody, and says so."""
        for path in paths:
            try:
                yield zmq.auth.load_certificate(path)[0]
            except (OSError, ValueError) as error:
                log.warning("ignored client key file %s: %s", path, error)

    def _log_refusal(self, client_key: bytes) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._logged.get(client_key, -math.inf) < REFUSAL_LOG_PERIOD_S:
                return
            if len(self._logged) >= 1024:  # many strangers: forget those logged long ago
                self._logged = {
                    key: at for key, at in self._logged.items() if now - at < REFUSAL_LOG_PERIOD_S
                }
            self._logged[client_key] = now
        log.warning(
            "refused client key %s: not in %s (its NAME.key holds this public-key)",
            client_key.decode(errors="replace"),
            self.directory,
        )


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
