"""CurveZMQ: key files, an allowed client is served, any other key (or none) gets no service."""

from __future__ import annotations

import logging
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from poreloop.instruments import InstrumentClient
from poreloop.instruments.auth import ALLOWED_DIR, Keys, check_loopback, make_keys
from poreloop.instruments.errors import InstrumentError, ServerUnreachable
from poreloop.instruments.server import Server
from poreloop.instruments.sim.oven import SimOven

from .conftest import HEARTBEAT_S, TIME_SCALE

SAFE = {"temperature_c": 120.0, "duration_s": 60.0}


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    """A keys directory: a server pair, an allowed client, and a stranger not in the list."""
    directory = tmp_path / "keys"
    for name in ("server", "client", "stranger"):
        make_keys(directory, name)
    (directory / ALLOWED_DIR).mkdir()
    shutil.copy(directory / "client.key", directory / ALLOWED_DIR)
    return directory


@pytest.fixture
def secure_server(keys_dir: Path, tmp_path: Path) -> Iterator[Server]:
    oven = SimOven(time_scale=TIME_SCALE, seed=7)
    server = Server(
        oven,
        "tcp://127.0.0.1:*",
        tmp_path / "journal.sqlite",
        heartbeat_s=HEARTBEAT_S,
        keys=Keys.for_server(keys_dir),
    ).start()
    yield server
    server.stop()


def test_key_files_keep_the_secret_to_the_owner(tmp_path: Path) -> None:
    public, secret = make_keys(tmp_path / "k", "lab1")
    assert (public.name, secret.name) == ("lab1.key", "lab1.key_secret")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert "secret-key" in secret.read_text() and "secret-key" not in public.read_text()
    with pytest.raises(InstrumentError, match="refusing to overwrite"):
        make_keys(tmp_path / "k", "lab1")


def test_an_allowed_client_is_served(secure_server: Server, keys_dir: Path) -> None:
    keys = Keys.for_client(keys_dir)
    with InstrumentClient(secure_server.endpoint, retry_s=0.5, liveness_s=5.0, keys=keys) as c:
        assert c.call("status", timeout=10.0)["instrument"] == "oven"
        assert c.call("dry", SAFE, timeout=10.0)["run"] == 1


@pytest.mark.parametrize("who", ["stranger", "no keys"])
def test_a_client_not_in_the_allow_list_gets_no_service(
    secure_server: Server, keys_dir: Path, who: str
) -> None:
    keys = Keys.for_client(keys_dir, name="stranger") if who == "stranger" else None
    with (
        InstrumentClient(secure_server.endpoint, retry_s=0.2, liveness_s=0.6, keys=keys) as c,
        pytest.raises(
            ServerUnreachable,
            match="did not accept this client's key" if keys else "not listening at .*; start it",
        ),
    ):
        c.call("dry", SAFE, timeout=10.0)
    assert secure_server.journal.counts() == {}


def test_a_revoked_key_is_refused_and_a_new_key_served_without_a_restart(
    secure_server: Server, keys_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    allowed = keys_dir / ALLOWED_DIR
    client_keys = Keys.for_client(keys_dir)
    with InstrumentClient(
        secure_server.endpoint, retry_s=0.2, liveness_s=0.6, keys=client_keys
    ) as c:
        assert c.call("status", timeout=10.0)["instrument"] == "oven"
        (allowed / "client.key").unlink()
        with caplog.at_level(logging.WARNING), pytest.raises(ServerUnreachable):
            c.call("dry", SAFE, timeout=10.0)  # the connection made before the revocation
    with (
        caplog.at_level(logging.WARNING),
        InstrumentClient(
            secure_server.endpoint, retry_s=0.2, liveness_s=0.6, keys=client_keys
        ) as c,
        pytest.raises(ServerUnreachable),
    ):
        c.call("status", timeout=10.0)  # a new handshake
    assert secure_server.journal.counts() == {}
    public_key = (keys_dir / "client.key").read_text().split('public-key = "')[1].split('"')[0]
    refused = [r.getMessage() for r in caplog.records if "refused client key" in r.getMessage()]
    assert len(refused) == 1 and public_key in refused[0]  # once, not on every reconnect

    shutil.copy(keys_dir / "stranger.key", allowed)
    stranger = Keys.for_client(keys_dir, name="stranger")
    with InstrumentClient(secure_server.endpoint, retry_s=0.5, liveness_s=5.0, keys=stranger) as c:
        assert c.call("dry", SAFE, timeout=10.0)["run"] == 1


def test_keys_are_required_off_loopback_and_checked(tmp_path: Path, keys_dir: Path) -> None:
    oven = SimOven()
    with pytest.raises(InstrumentError, match="loopback"):
        Server(oven, "tcp://0.0.0.0:*", tmp_path / "j.sqlite")
    empty = Keys(secret=keys_dir / "server.key_secret", allowed=tmp_path / "nobody")
    with pytest.raises(InstrumentError, match="no client could connect"):
        Server(oven, "tcp://0.0.0.0:*", tmp_path / "j.sqlite", keys=empty)
    with pytest.raises(InstrumentError, match="expected a secret key"):
        Keys(secret=keys_dir / "server.key", server_public=keys_dir / "server.key").client_options()


@pytest.mark.parametrize(
    "bind", ["tcp://127.0.0.1:*", "tcp://localhost:5555", "tcp://[::1]:5555", "ipc:///tmp/x"]
)
def test_loopback_binds_are_allowed(bind: str) -> None:
    check_loopback(bind)
