"""Exactly once across server death: servers in subprocesses, killed and restarted on one journal."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

import pytest

from poreloop.instruments import InstrumentClient
from poreloop.instruments.errors import ServerUnreachable, UnknownOutcome
from poreloop.instruments.server import CRASH_EXIT_CODE

from .conftest import OvenProcess

DRY = {"temperature_c": 120.0, "duration_s": 400.0}  # 0.4 s of wall time


def test_an_action_cut_by_a_crash_has_an_unknown_outcome_and_never_reruns(
    oven_process: Callable[..., OvenProcess],
) -> None:
    crashing = oven_process(crash_at=0.5)
    with InstrumentClient(crashing.endpoint, retry_s=0.2, liveness_s=0.5) as client:
        with pytest.raises(ServerUnreachable) as caught:
            client.call("dry", DRY)
        assert crashing.process.wait(timeout=5) == CRASH_EXIT_CODE
        assert crashing.runs() == 1

        oven_process(bind=crashing.endpoint)
        key = caught.value.idempotency_key
        for _ in range(2):
            with pytest.raises(UnknownOutcome, match="never run again") as unknown:
                client.call("dry", DRY, idempotency_key=key)
            assert unknown.value.idempotency_key == key
        assert client.call("status")["journal"] == {"unknown": 1}
    assert crashing.runs() == 1


def test_a_call_finished_before_a_crash_returns_its_recorded_result_after_restart(
    oven_process: Callable[..., OvenProcess],
) -> None:
    first = oven_process()
    with InstrumentClient(first.endpoint, retry_s=0.2, liveness_s=2.0) as client:
        outcome = client.call("dry", DRY, idempotency_key="dry-1")
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=5)

        oven_process(bind=first.endpoint)
        assert client.call("dry", DRY, idempotency_key="dry-1") == outcome
        assert client.call("dry", DRY)["run"] == 2
    assert first.runs() == 2


def test_a_client_waiting_through_a_crash_reconnects_to_the_restarted_server(
    oven_process: Callable[..., OvenProcess],
) -> None:
    crashing = oven_process(crash_at=0.5)

    def restart_after_the_crash() -> None:
        crashing.process.wait(timeout=10)
        oven_process(bind=crashing.endpoint)

    restarter = threading.Thread(target=restart_after_the_crash)
    restarter.start()
    with (
        InstrumentClient(crashing.endpoint, retry_s=0.2, liveness_s=8.0) as client,
        pytest.raises(UnknownOutcome),
    ):
        client.call("dry", DRY)
    restarter.join()
    assert crashing.runs() == 1
