"""Server and client over real loopback sockets: refusals, safety, leases, faults, concurrency."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poreloop.instruments import InstrumentClient
from poreloop.instruments.errors import (
    ActionFailed,
    DeadlineError,
    ErrorCode,
    InstrumentError,
    InvalidRequest,
    RefusedError,
    ServerUnreachable,
)
from poreloop.instruments.journal import Journal
from poreloop.instruments.protocol import (
    LEASE_TTL_S,
    VERSION,
    Error,
    Progress,
    Request,
    Result,
    decode,
    encode,
)
from poreloop.instruments.server import Faults, Server
from poreloop.instruments.sim.oven import SimOven

from .conftest import Served

SAFE = {"temperature_c": 120.0, "duration_s": 60.0}  # 60 ms of wall time
LONG = {"temperature_c": 120.0, "duration_s": 800.0}  # 0.8 s of wall time


@pytest.fixture
def served(serve_oven: Callable[..., Served]) -> Served:
    return serve_oven()


@pytest.fixture
def client(served: Served) -> Iterator[InstrumentClient]:
    with InstrumentClient(served.endpoint, retry_s=0.3, liveness_s=1.0) as client:
        yield client


@pytest.fixture
def raw(served: Served) -> Iterator[zmq.Socket]:
    """A bare DEALER socket, for frames no client would send."""
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, 2000)
    socket.connect(served.endpoint)
    yield socket
    socket.close(linger=0)
    context.term()


def in_thread(function: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run ``function`` in a thread; the list gets its return value or exception."""
    box: list[object] = []

    def target() -> None:
        try:
            box.append(function())
        except Exception as error:
            box.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def wait_until_running(client: InstrumentClient) -> dict:
    """Status once an action is running, polled every 10 ms."""
    for _ in range(200):
        status = client.call("status")
        if any(job["state"] == "running" for job in status["running"]):
            return status
        time.sleep(0.01)
    raise AssertionError("no action started running within 2 s")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    frames=st.one_of(
        st.lists(st.binary(max_size=40), min_size=1, max_size=5),
        st.tuples(
            st.just(VERSION),
            st.sampled_from([b"request", b"result", b"progress", b"nonsense"]),
            st.binary(max_size=80),
        ).map(list),
    )
)
def test_fuzzed_frames_get_an_error_reply_and_the_server_keeps_answering(
    raw: zmq.Socket, client: InstrumentClient, frames: list[bytes]
) -> None:
    raw.send_multipart(frames)
    reply = decode(raw.recv_multipart())
    assert isinstance(reply, Error)
    assert reply.code in (ErrorCode.malformed, ErrorCode.unknown_version)
    assert client.call("noop") == {}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    action=st.sampled_from(["status", "abort", "clear_estop", "acquire_lease", "noop", "zzz"]),
    params=st.dictionaries(st.sampled_from(["idempotency_key", "ttl_s", "x"]), JSON, max_size=3),
)
def test_fuzzed_requests_get_one_final_reply(
    served: Served, raw: zmq.Socket, action: str, params: dict
) -> None:
    request = Request(id="r", idempotency_key=uuid.uuid4().hex, action=action, params=params)
    raw.send_multipart(encode(request))
    reply = decode(raw.recv_multipart())
    assert isinstance(reply, Result | Error)
    assert reply.idempotency_key == request.idempotency_key
    assert served.oven.runs() == 0


def test_unknown_version_and_a_non_request_are_named(raw: zmq.Socket) -> None:
    raw.send_multipart([b"poreloop/9", b"request", b"{}"])
    reply = decode(raw.recv_multipart())
    assert reply.code == ErrorCode.unknown_version and "poreloop/1" in reply.message
    raw.send_multipart(encode(Progress(elapsed_s=1.0)))
    reply = decode(raw.recv_multipart())
    assert reply.code == ErrorCode.malformed and "only take requests" in reply.message


@pytest.mark.parametrize(
    ("action", "params", "instrument", "code"),
    [
        ("dyr", SAFE, None, ErrorCode.unknown_action),
        ("dry", {"temperature_c": 120.0}, None, ErrorCode.invalid_params),
        ("dry", {**SAFE, "colour": "red"}, None, ErrorCode.invalid_params),
        ("abort", {"idempotency_key": 3}, None, ErrorCode.invalid_params),
        ("dry", SAFE, "tomograph", ErrorCode.unknown_instrument),
    ],
)
def test_bad_requests_get_named_codes(
    served: Served, action: str, params: dict, instrument: str | None, code: ErrorCode
) -> None:
    with (
        InstrumentClient(served.endpoint, instrument=instrument) as client,
        pytest.raises(InvalidRequest) as caught,
    ):
        client.call(action, params)
    assert caught.value.code == code
    assert served.oven.runs() == 0


def test_a_key_reused_for_another_request_is_refused(client: InstrumentClient) -> None:
    client.call("dry", SAFE, idempotency_key="k")
    with pytest.raises(InvalidRequest, match="use a new key") as caught:
        client.call("dry", {**SAFE, "temperature_c": 90.0}, idempotency_key="k")
    assert caught.value.code == ErrorCode.key_conflict


def test_a_safety_limit_refuses_and_nothing_runs(served: Served, client: InstrumentClient) -> None:
    with pytest.raises(RefusedError, match="temperature_c=250.0 degC exceeds the safety limit"):
        client.call("dry", {"temperature_c": 250.0, "duration_s": 60.0})
    assert served.oven.runs() == 0
    assert client.call("status")["journal"] == {"failed": 1}


def test_estop_latches_until_cleared(served: Served, client: InstrumentClient) -> None:
    client.call("estop")
    for _ in range(2):
        with pytest.raises(RefusedError, match="clear_estop") as caught:
            client.call("dry", SAFE)
        assert caught.value.code == ErrorCode.estop
    assert client.call("status")["estop"] is True
    assert served.oven.runs() == 0
    client.call("clear_estop")
    assert client.call("dry", SAFE)["run"] == 1


def test_estop_stops_a_running_motion(served: Served, client: InstrumentClient) -> None:
    with InstrumentClient(served.endpoint) as other:
        thread, box = in_thread(lambda: other.call("dry", LONG))
        wait_until_running(client)
        assert len(client.call("estop")["stopped"]) == 1
        thread.join()
    assert isinstance(box[0], RefusedError) and box[0].code == ErrorCode.estop


def test_abort_stops_a_running_action(served: Served, client: InstrumentClient) -> None:
    with InstrumentClient(served.endpoint) as other:
        thread, box = in_thread(lambda: other.call("dry", LONG))
        key = wait_until_running(client)["running"][0]["idempotency_key"]
        assert client.call("abort", {"idempotency_key": key}) == {"aborted": [key]}
        thread.join()
    assert isinstance(box[0], ActionFailed) and box[0].code == ErrorCode.aborted


def test_a_lease_held_by_another_client_is_refused(served: Served) -> None:
    with (
        InstrumentClient(served.endpoint, holder="campaign-a") as a,
        InstrumentClient(served.endpoint, holder="campaign-b") as b,
    ):
        a.call("acquire_lease", {"ttl_s": 60})
        for action, params in [("dry", SAFE), ("acquire_lease", {}), ("clear_estop", {})]:
            with pytest.raises(RefusedError, match="leased by 'campaign-a'") as caught:
                b.call(action, params)
            assert caught.value.code == ErrorCode.lease_held
        assert b.call("status")["lease"]["holder"] == "campaign-a"
        assert a.call("dry", SAFE)["run"] == 1
        a.call("release_lease")
        assert b.call("dry", SAFE)["run"] == 2


def test_a_lease_is_short_and_ends_with_its_client(served: Served) -> None:
    with InstrumentClient(served.endpoint, holder="campaign-a") as a:
        assert a.call("acquire_lease")["expires_in_s"] == LEASE_TTL_S
    with InstrumentClient(served.endpoint, holder="campaign-b") as b:
        assert b.call("status")["lease"] is None  # released when campaign-a's client closed
        assert b.call("dry", SAFE)["run"] == 1


def test_a_lease_is_renewed_while_its_holder_lives_and_lapses_when_it_dies(
    served: Served, raw: zmq.Socket
) -> None:
    with (
        InstrumentClient(served.endpoint, holder="campaign-a") as a,
        InstrumentClient(served.endpoint, holder="campaign-b") as b,
    ):
        with a.lease(ttl_s=0.6):
            time.sleep(1.5)  # 2.5 lifetimes: alive only because it is renewed
            with pytest.raises(RefusedError, match="leased by 'campaign-a'"):
                b.call("dry", SAFE)
        assert b.call("status")["lease"] is None
    dead = Request(
        id="r", idempotency_key="k", action="acquire_lease", params={"ttl_s": 0.3}, holder="ghost"
    )
    raw.send_multipart(encode(dead))  # a holder that never renews nor releases: it died
    assert isinstance(decode(raw.recv_multipart()), Result)
    time.sleep(0.4)
    with InstrumentClient(served.endpoint, holder="campaign-b") as b:
        assert b.call("dry", SAFE)["run"] == 1


@pytest.mark.parametrize("action", ["release_lease", "clear_estop"])
def test_an_operator_overrides_a_lease_saying_why_and_it_is_logged(
    served: Served, action: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        InstrumentClient(served.endpoint, holder="campaign-a") as a,
        InstrumentClient(served.endpoint, holder="person:alice") as alice,
        InstrumentClient(served.endpoint) as nobody,
    ):
        a.call("estop")
        a.call("acquire_lease", {"ttl_s": 600})
        with pytest.raises(RefusedError, match=r'override it: release_lease with \{"override"'):
            alice.call(action)
        with pytest.raises(InvalidRequest, match="needs the operator's name as holder"):
            nobody.call(action, {"override": "stuck"})
        with caplog.at_level(logging.WARNING):
            alice.call(action, {"override": "campaign-a crashed in the night"})
        assert (
            f"oven.{action} by 'person:alice' overrides the lease of 'campaign-a': "
            "campaign-a crashed in the night" in caplog.text
        )
        status = alice.call("status")
        assert (status["lease"] is None) == (action == "release_lease")
        assert status["estop"] == (action == "release_lease")


def test_a_dropped_reply_is_retried_under_the_same_key_and_runs_once(
    serve_oven: Callable[..., Served],
) -> None:
    served = serve_oven(Faults(drop_replies=1))
    with InstrumentClient(served.endpoint, retry_s=0.2, liveness_s=1.0) as client:
        outcome = client.call("dry", SAFE)
        assert outcome["run"] == 1
        assert served.server.faults.drop_replies == 0
        assert client.call("status")["journal"] == {"done": 1}
    assert served.oven.runs() == 1


def test_a_corrupted_reply_is_asked_again_and_the_action_runs_once(
    serve_oven: Callable[..., Served],
) -> None:
    served = serve_oven(Faults(corrupt_replies=1))
    with InstrumentClient(served.endpoint, retry_s=0.2, liveness_s=1.0) as client:
        assert client.call("dry", SAFE)["run"] == 1
        assert served.server.faults.corrupt_replies == 0
        assert client.call("status")["journal"] == {"done": 1}
    assert served.oven.runs() == 1


def test_delayed_replies_arrive(serve_oven: Callable[..., Served]) -> None:
    served = serve_oven(Faults(delay_s=0.15))
    with InstrumentClient(served.endpoint, retry_s=0.5, liveness_s=1.0) as client:
        start = time.monotonic()
        assert client.call("noop") == {}
        assert time.monotonic() - start >= 0.15
        assert client.call("dry", SAFE)["run"] == 1
    assert served.oven.runs() == 1


def test_a_long_action_does_not_block_status_and_sends_heartbeats(
    served: Served, client: InstrumentClient
) -> None:
    beats: list[Progress] = []
    with InstrumentClient(served.endpoint) as other:
        thread, box = in_thread(lambda: other.call("dry", LONG, on_progress=beats.append))
        wait_until_running(client)
        start = time.monotonic()
        status = client.call("status")
        assert time.monotonic() - start < 0.3  # the action has 0.6 s to go
        assert status["running"][0]["action"] == "dry"
        thread.join()
    assert box[0]["run"] == 1
    assert len(beats) >= 8  # 0.8 s at one heartbeat per 50 ms
    fractions = [beat.fraction for beat in beats]
    assert fractions == sorted(fractions) and fractions[-1] > 0.5


def test_the_async_twin_runs_concurrently_with_status(served: Served) -> None:
    async def scenario() -> tuple[dict, dict]:
        with (
            InstrumentClient(served.endpoint) as mover,
            InstrumentClient(served.endpoint) as watcher,
        ):
            dry = asyncio.create_task(mover.acall("dry", LONG))
            await asyncio.sleep(0.2)
            status = await watcher.acall("status")
            return await dry, status

    outcome, status = asyncio.run(scenario())
    assert outcome["run"] == 1
    assert [job["action"] for job in status["running"]] == ["dry"]


def test_a_deadline_raises_and_the_server_stops_the_action(
    served: Served, client: InstrumentClient
) -> None:
    start = time.monotonic()
    with pytest.raises(DeadlineError) as caught:
        client.call("dry", LONG, timeout=0.2)
    assert 0.2 <= time.monotonic() - start < 0.5
    key = caught.value.idempotency_key
    time.sleep(0.15)  # the server's own deadline check runs at the next heartbeat
    with pytest.raises(DeadlineError, match="passed its deadline"):
        client.call("dry", LONG, idempotency_key=key)
    assert served.oven.runs() == 1


def test_a_dead_server_is_detected_within_the_liveness_window(tmp_path: Path) -> None:
    server = Server(SimOven(), "tcp://127.0.0.1:*", tmp_path / "j.sqlite")
    endpoint = server.endpoint
    server.start()
    server.stop()
    with InstrumentClient(endpoint, retry_s=0.1, liveness_s=0.4) as client:
        start = time.monotonic()
        with pytest.raises(ServerUnreachable, match="within 0.4 s") as caught:
            client.call("status", timeout=5.0)
        assert 0.4 <= time.monotonic() - start < 0.8
        assert caught.value.idempotency_key


@pytest.mark.parametrize("bind", ["tcp://0.0.0.0:5555", "tcp://192.168.1.4:5555", "tcp://*:5555"])
def test_a_bind_off_loopback_is_refused_without_keys(tmp_path: Path, bind: str) -> None:
    with pytest.raises(InstrumentError, match="expected a loopback bind"):
        Server(SimOven(), bind, tmp_path / "j.sqlite")


def test_a_stopping_server_aborts_running_actions_and_journals_it(
    served: Served, client: InstrumentClient, tmp_path: Path
) -> None:
    with InstrumentClient(served.endpoint, retry_s=0.1, liveness_s=0.3) as other:
        thread, box = in_thread(lambda: other.call("dry", LONG))
        key = wait_until_running(client)["running"][0]["idempotency_key"]
        served.server.stop()
        thread.join()
    assert isinstance(box[0], ServerUnreachable) and box[0].idempotency_key == key
    entry = Journal(tmp_path / "journal.sqlite").get(key)
    assert (entry.state, entry.error_code) == ("failed", ErrorCode.aborted)


def test_describe_lists_actions_with_schemas_and_limits(client: InstrumentClient) -> None:
    description = client.call("describe")
    dry = description["actions"]["dry"]
    assert dry["motion"] is True
    assert dry["limits"][0]["param"] == "temperature_c" and dry["limits"][0]["high"] == 200.0
    assert set(dry["params"]["properties"]) == {"temperature_c", "duration_s"}


def test_one_client_serves_calls_from_successive_event_loops(
    served: Served, client: InstrumentClient
) -> None:
    async def both() -> list[dict]:
        return await asyncio.gather(client.acall("dry", SAFE), client.acall("noop"))

    assert asyncio.run(both())[0]["run"] == 1
    assert asyncio.run(both())[0]["run"] == 2
    assert client.call("noop") == {}


def test_a_retry_interval_past_the_liveness_window_is_refused() -> None:
    with pytest.raises(InstrumentError, match="retry_s < liveness_s"):
        InstrumentClient("tcp://127.0.0.1:5555", retry_s=5.0, liveness_s=1.0)
