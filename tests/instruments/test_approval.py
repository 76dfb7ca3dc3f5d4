"""The approval gate: a held motion runs only once a person approves it, never on its own."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from poreloop.agent.cli import main
from poreloop.instruments.client import InstrumentClient
from poreloop.instruments.errors import (
    ActionFailed,
    DeadlineError,
    ErrorCode,
    InvalidRequest,
    RefusedError,
)
from poreloop.instruments.journal import Journal
from poreloop.instruments.server import Server
from poreloop.instruments.sim.oven import SimOven

HEARTBEAT_S = 0.05
TIME_SCALE = 1e-3  # one simulated second is one wall millisecond
DRY = {"temperature_c": 120.0, "duration_s": 60.0}


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[Callable[[], tuple[Server, SimOven]]]:
    """Factory: an oven server with the approval gate on the same journal; stopped at teardown."""
    started: list[Server] = []

    def start() -> tuple[Server, SimOven]:
        oven = SimOven(tmp_path / "runs.txt", time_scale=TIME_SCALE, seed=7)
        server = Server(
            oven,
            "tcp://127.0.0.1:*",
            tmp_path / "journal.sqlite",
            heartbeat_s=HEARTBEAT_S,
            approval=True,
        ).start()
        started.append(server)
        return server, oven

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


def _propose(
    pool: ThreadPoolExecutor, endpoint: str, key: str, liveness_s: float = 6.0
) -> Future[dict[str, Any]]:
    """The agent's dry call under ``key`` in a thread: it blocks while the request is held."""

    def call() -> dict[str, Any]:
        with InstrumentClient(
            endpoint, holder="agent", retry_s=0.2, liveness_s=liveness_s
        ) as client:
            return client.call("dry", DRY, timeout=30.0, idempotency_key=key)

    return pool.submit(call)


def _pending(endpoint: str) -> list[dict[str, Any]]:
    with InstrumentClient(endpoint, holder="alice") as client:
        return client.call("pending", timeout=5.0)["pending"]


def _wait_pending(endpoint: str, count: int = 1) -> list[dict[str, Any]]:
    give_up = time.monotonic() + 5.0
    while len(pending := _pending(endpoint)) < count:
        assert time.monotonic() < give_up, "the request never showed up as pending"
        time.sleep(0.02)
    return pending


def test_held_motion_waits_for_approval_then_runs_once(
    gated: Callable[[], tuple[Server, SimOven]], pool: ThreadPoolExecutor
) -> None:
    server, oven = gated()
    future = _propose(pool, server.endpoint, "k-approve", liveness_s=0.6)
    (held,) = _wait_pending(server.endpoint)
    assert held["idempotency_key"] == "k-approve"
    assert (held["action"], held["params"], held["holder"]) == ("dry", DRY, "agent")
    assert held["age_s"] >= 0
    time.sleep(1.0)  # longer than the caller's liveness window: heartbeats keep it waiting
    assert oven.runs() == 0 and not future.done()
    with InstrumentClient(server.endpoint, holder="alice") as person:
        approved = person.call("approve", {"idempotency_key": "k-approve"}, timeout=5.0)
        assert approved == {"approved": "k-approve", "action": "dry", "by": "alice"}
        outcome = future.result(timeout=10.0)
        assert outcome["run"] == 1
        # a retry (the first reply lost) gets the same answer, and nothing runs again
        assert person.call("approve", {"idempotency_key": "k-approve"}, timeout=5.0) == approved
        with pytest.raises(InvalidRequest, match="was already approved by 'alice'; it cannot be"):
            person.call("reject", {"idempotency_key": "k-approve", "reason": "no"}, timeout=5.0)
        with pytest.raises(InvalidRequest, match="'nonsense' .unknown."):
            person.call("approve", {"idempotency_key": "nonsense"}, timeout=5.0)
    with InstrumentClient(server.endpoint, holder="agent") as agent:
        again = agent.call("dry", DRY, timeout=5.0, idempotency_key="k-approve")
    assert again == outcome and oven.runs() == 1
    assert _pending(server.endpoint) == []


def test_the_proposer_cannot_approve_itself(
    gated: Callable[[], tuple[Server, SimOven]], pool: ThreadPoolExecutor
) -> None:
    server, oven = gated()
    future = _propose(pool, server.endpoint, "k-self")
    _wait_pending(server.endpoint)
    with (
        InstrumentClient(server.endpoint, holder="agent") as agent,
        pytest.raises(RefusedError, match="cannot approve it too"),
    ):
        agent.call("approve", {"idempotency_key": "k-self"}, timeout=5.0)
    with (
        InstrumentClient(server.endpoint) as anonymous,
        pytest.raises(InvalidRequest, match="approver's name"),
    ):
        anonymous.call("approve", {"idempotency_key": "k-self"}, timeout=5.0)
    assert oven.runs() == 0 and not future.done()
    with InstrumentClient(server.endpoint, holder="alice") as person:
        person.call("approve", {"idempotency_key": "k-self"}, timeout=5.0)
    assert future.result(timeout=10.0)["run"] == 1


def test_rejected_request_reaches_the_client_and_never_runs(
    gated: Callable[[], tuple[Server, SimOven]], pool: ThreadPoolExecutor
) -> None:
    server, oven = gated()
    future = _propose(pool, server.endpoint, "k-reject")
    _wait_pending(server.endpoint)
    with InstrumentClient(server.endpoint, holder="alice") as person:
        answer = person.call(
            "reject", {"idempotency_key": "k-reject", "reason": "too hot"}, timeout=5.0
        )
    assert answer["rejected"] == "k-reject"
    with pytest.raises(ActionFailed, match="rejected by 'alice': too hot") as caught:
        future.result(timeout=10.0)
    assert caught.value.code == ErrorCode.rejected
    assert oven.runs() == 0 and _pending(server.endpoint) == []
    assert server.journal.get("k-reject").state == "failed"
    server.stop()
    server, oven = gated()  # the decision is journaled: a retry after a restart replays it
    with InstrumentClient(server.endpoint, holder="alice") as person:
        retry = {"idempotency_key": "k-reject", "reason": "too hot"}
        assert person.call("reject", retry, timeout=5.0) == answer
        with pytest.raises(InvalidRequest, match="already rejected by 'alice'"):
            person.call("approve", {"idempotency_key": "k-reject"}, timeout=5.0)
    assert oven.runs() == 0


def test_held_request_survives_a_restart_still_pending(
    gated: Callable[[], tuple[Server, SimOven]], pool: ThreadPoolExecutor
) -> None:
    server, oven = gated()
    lost = _propose(pool, server.endpoint, "k-restart", liveness_s=0.6)
    _wait_pending(server.endpoint)
    server.stop()
    lost.exception(timeout=10.0)
    server, oven = gated()
    (held,) = _pending(server.endpoint)
    assert (held["idempotency_key"], held["holder"], held["params"]) == ("k-restart", "agent", DRY)
    time.sleep(10 * HEARTBEAT_S)
    assert oven.runs() == 0
    future = _propose(pool, server.endpoint, "k-restart")
    time.sleep(5 * HEARTBEAT_S)
    assert not future.done()
    with InstrumentClient(server.endpoint, holder="alice") as person:
        person.call("approve", {"idempotency_key": "k-restart"}, timeout=5.0)
    assert future.result(timeout=10.0)["run"] == 1 and oven.runs() == 1


def test_cli_lists_refuses_and_approves(
    gated: Callable[[], tuple[Server, SimOven]],
    pool: ThreadPoolExecutor,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, oven = gated()
    future = _propose(pool, server.endpoint, "k-cli")
    _wait_pending(server.endpoint)
    assert main(["instrument", "approve", server.endpoint]) == 0
    assert "k-cli  dry" in capsys.readouterr().out
    assert main(["instrument", "approve", server.endpoint, "k-cli", "--reject"]) == 2
    assert main(["instrument", "approve", server.endpoint, "k-cli", "--as", "agent"]) == 2
    assert "cannot approve it too" in capsys.readouterr().err
    assert oven.runs() == 0
    assert main(["instrument", "approve", server.endpoint, "k-cli", "--as", "alice"]) == 0
    assert future.result(timeout=10.0)["run"] == 1


def test_held_request_ends_at_its_deadline_without_moving(
    gated: Callable[[], tuple[Server, SimOven]],
) -> None:
    server, oven = gated()
    with (
        InstrumentClient(server.endpoint, holder="agent") as agent,
        pytest.raises(DeadlineError),
    ):
        agent.call("dry", DRY, timeout=0.3, idempotency_key="k-late")
    give_up = time.monotonic() + 5.0
    while server.journal.get("k-late").state == "held":
        assert time.monotonic() < give_up, "the held request outlived its deadline"
        time.sleep(0.02)
    assert server.journal.get("k-late").error_code == ErrorCode.deadline
    with (
        InstrumentClient(server.endpoint, holder="alice") as person,
        pytest.raises(InvalidRequest, match="not held: it is failed"),
    ):
        person.call("approve", {"idempotency_key": "k-late"}, timeout=5.0)
    assert oven.runs() == 0


def test_a_journal_from_before_the_gate_opens(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "CREATE TABLE actions (idempotency_key TEXT PRIMARY KEY, action TEXT NOT NULL, "
            "fingerprint TEXT NOT NULL, state TEXT NOT NULL, outcome TEXT, error_code TEXT, "
            "error_message TEXT, created REAL NOT NULL, updated REAL NOT NULL)"
        )
        db.execute("INSERT INTO actions VALUES ('k', 'dry', 'f', 'done', '{}', NULL, NULL, 1, 1)")
    journal = Journal(path)
    entry = journal.get("k")
    journal.close()
    assert entry is not None and (entry.state, entry.outcome, entry.request) == ("done", {}, None)
