"""Messages, framing, the journal, the instrument contract and the simulated oven, without sockets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import BaseModel

from poreloop.instruments.base import Action, ActionContext, Instrument
from poreloop.instruments.errors import (
    ErrorCode,
    InstrumentError,
    InvalidRequest,
    ProtocolError,
    RefusedError,
)
from poreloop.instruments.journal import Journal
from poreloop.instruments.protocol import (
    VERSION,
    Accepted,
    Error,
    Message,
    Progress,
    Request,
    Result,
    decode,
    encode,
)
from poreloop.instruments.sim import make_simulated
from poreloop.instruments.sim.oven import DryParams, SimOven

MESSAGES: list[Message] = [
    Request(
        id="r1",
        idempotency_key="k1",
        instrument="oven",
        action="dry",
        params={"temperature_c": 120.0, "duration_s": 60},
        deadline_s=5.0,
        holder="campaign-a",
    ),
    Accepted(request_id="r1", idempotency_key="k1", state="running"),
    Progress(request_id="r1", idempotency_key="k1", fraction=0.25, elapsed_s=1.5),
    Result(request_id="r1", idempotency_key="k1", outcome={"run": 1}, replayed=True),
    Error(request_id=None, idempotency_key=None, code=ErrorCode.estop, message="latched"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.kind)
def test_every_message_round_trips(message: Message) -> None:
    frames = encode(message)
    assert frames[0] == VERSION and frames[1] == message.kind.encode()
    assert decode(frames) == message


@pytest.mark.parametrize(
    ("frames", "code", "words"),
    [
        ([VERSION, b"request"], ErrorCode.malformed, "expected 3 frames"),
        ([b"poreloop/0", b"request", b"{}"], ErrorCode.unknown_version, "poreloop/1"),
        ([VERSION, b"reqest", b"{}"], ErrorCode.malformed, "message kind"),
        ([VERSION, b"request", b"{not json"], ErrorCode.malformed, "do not parse"),
        ([VERSION, b"request", b"\xff\xfe"], ErrorCode.malformed, "do not parse"),
        ([VERSION, b"request", b'{"id": "r"}'], ErrorCode.malformed, "idempotency_key"),
        (
            encode(MESSAGES[0])[:2] + [json.dumps({**MESSAGES[0].model_dump(), "x": 1}).encode()],
            ErrorCode.malformed,
            "x: Extra inputs are not permitted",
        ),
    ],
)
def test_decode_names_the_problem(frames: list[bytes], code: ErrorCode, words: str) -> None:
    with pytest.raises(ProtocolError, match=words) as caught:
        decode(frames)
    assert caught.value.code == code
    assert "\n" not in str(caught.value)


def test_journal_settles_rows_a_dead_server_left(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.receive("ran", "dry", "f")
    journal.start("ran")
    journal.receive("queued", "dry", "f")
    journal.receive("finished", "dry", "f")
    journal.start("finished")
    journal.finish("finished", {"run": 1})
    journal.close()

    reopened = Journal(tmp_path / "j.sqlite")
    assert reopened.recovered == {"unknown": 1, "not_started": 1}
    assert reopened.get("ran").state == "unknown"
    queued = reopened.get("queued")
    assert (queued.state, queued.error_code) == ("failed", ErrorCode.not_started)
    assert reopened.get("finished").outcome == {"run": 1}
    assert reopened.get("never") is None
    reopened.close()


def test_limits_refuse_before_the_hook_and_name_the_value() -> None:
    oven = SimOven()
    with pytest.raises(RefusedError, match=r"temperature_c=250.0 degC exceeds .* 200.0 degC"):
        oven.validate("dry", {"temperature_c": 250, "duration_s": 10})
    with pytest.raises(InvalidRequest, match="did you mean 'dry'") as caught:
        oven.validate("dyr", {})
    assert caught.value.code == ErrorCode.unknown_action
    with pytest.raises(InvalidRequest, match="duration_s") as caught:
        oven.validate("dry", {"temperature_c": 100, "duration_s": -1})
    assert caught.value.code == ErrorCode.invalid_params
    assert oven.runs() == 0


def test_an_action_without_a_hook_is_caught_at_class_definition() -> None:
    class Empty(BaseModel):
        pass

    with pytest.raises(TypeError, match=r"_spin\(self, params, ctx\)"):

        class Spinner(Instrument):
            kind: ClassVar[str] = "spinner"
            actions: ClassVar[dict[str, Action]] = {"spin": Action(Empty, Empty)}


def test_oven_is_reproducible_by_seed_and_hotter_dries_more() -> None:
    def dry(temperature_c: float, seed: int) -> dict:
        oven = SimOven(time_scale=0.0, seed=seed)
        params = DryParams(temperature_c=temperature_c, duration_s=3600)
        return oven.perform("dry", params, ActionContext())

    assert dry(120, seed=3) == dry(120, seed=3)
    assert dry(120, seed=3) != dry(120, seed=4)
    residual = [dry(t, seed=3)["residual_moisture_ppm"] for t in (60, 100, 140, 180)]
    assert all(a > b for a, b in zip(residual, residual[1:], strict=False))
    # At the 120 degC reference the time constant is one hour: exp(-1) of the water is left.
    at_reference = dry(120, seed=3)
    ratio = at_reference["residual_moisture_ppm"] / at_reference["initial_moisture_ppm"]
    assert ratio == pytest.approx(0.3679, rel=0.05)


def test_make_simulated_suggests_a_known_kind() -> None:
    with pytest.raises(InstrumentError, match="did you mean 'oven'"):
        make_simulated("ovn")
    with pytest.raises(InstrumentError, match="bad options"):
        make_simulated("oven", colour="red")
