"""Every instrument error tells a campaign whether asking again under the same key can help."""

from __future__ import annotations

import pytest

from poreloop.instruments import errors
from poreloop.instruments.errors import ErrorCode, InstrumentError, error_for

FAMILY = [InstrumentError, *InstrumentError.__subclasses__()]


@pytest.mark.parametrize("cls", FAMILY, ids=lambda cls: cls.__name__)
def test_each_error_class_decides_for_itself(cls: type[InstrumentError]) -> None:
    assert "retryable" in vars(cls) and isinstance(cls.retryable, bool)
    assert cls.__module__ == errors.__name__


@pytest.mark.parametrize(
    ("cls", "retryable"),
    [
        (errors.ServerUnreachable, True),
        (errors.DeadlineError, True),
        (errors.InvalidRequest, False),
        (errors.RefusedError, False),
        (errors.ProtocolError, False),
        (errors.UnknownOutcome, False),
        (errors.ActionFailed, False),
        (InstrumentError, False),
    ],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
def test_only_silence_and_a_deadline_are_worth_asking_again(
    cls: type[InstrumentError], retryable: bool
) -> None:
    assert cls("x").retryable is retryable


@pytest.mark.parametrize("code", list(ErrorCode))
def test_a_wire_error_carries_its_class_verdict(code: ErrorCode) -> None:
    error = error_for(code, "message", "key-1")
    assert error.retryable is type(error).retryable and error.idempotency_key == "key-1"
    assert error.retryable is (code == ErrorCode.deadline)
