"""Versioned instrument messages and their ZeroMQ multipart framing.

A message travels as three frames ``[VERSION, kind, json_body]``; a ROUTER socket adds the
peer's identity frame in front. Every reply names the request's idempotency key so a client
can tell the answer to its current call from a late answer to an earlier one.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from poreloop.instruments.errors import ErrorCode, ProtocolError
from poreloop.registry import validation_summary

VERSION = b"poreloop/1"

READ_ONLY_ACTIONS = frozenset({"status", "describe", "noop", "pending"})
"""Actions every server answers that only read its state: a timed-out one has no outcome to
learn by asking again under its key, it is simply asked again."""

LEASE_TTL_S = 30.0
"""How long a lease lasts unless renewed: a holder that dies frees the instrument this soon."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ClassVar[str]


class Request(_Message):
    """Ask an instrument to perform ``action``; ``deadline_s`` counts from when it arrives."""

    kind: ClassVar[str] = "request"
    id: str = Field(min_length=1, max_length=128)
    idempotency_key: str = Field(min_length=1, max_length=128)
    instrument: str | None = None
    action: str = Field(min_length=1, max_length=128)
    params: dict[str, Any] = Field(default_factory=dict)
    deadline_s: float | None = Field(default=None, gt=0)
    holder: str | None = Field(default=None, max_length=128)


class _Reply(_Message):
    request_id: str | None = None
    idempotency_key: str | None = None


class Accepted(_Reply):
    """The request is journaled and queued, running, or ``held`` for a person's approval.

    Heartbeats follow until it ends, also while it is held.
    """

    kind: ClassVar[str] = "accepted"
    state: Literal["held", "received", "running"] = "received"


class Progress(_Reply):
    """Heartbeat of an action in flight: ``fraction`` done in [0, 1], seconds since it arrived,
    and its ``state`` (``held`` while it waits for a person's approval)."""

    kind: ClassVar[str] = "progress"
    fraction: Annotated[float, Field(ge=0, le=1)] = 0.0
    elapsed_s: float = Field(ge=0)
    state: Literal["held", "received", "running"] = "running"


class Result(_Reply):
    """The action finished; ``replayed`` when the outcome comes from the journal, not a new run."""

    kind: ClassVar[str] = "result"
    outcome: dict[str, Any]
    replayed: bool = False


class Error(_Reply):
    """The request was refused or the action did not complete."""

    kind: ClassVar[str] = "error"
    code: ErrorCode
    message: str


Message = Request | Accepted | Progress | Result | Error
MESSAGES: dict[str, type[_Message]] = {
    cls.kind: cls for cls in (Request, Accepted, Progress, Result, Error)
}


def encode(message: Message) -> list[bytes]:
    """The frames ``[VERSION, kind, json_body]`` of one message."""
    return [VERSION, message.kind.encode(), message.model_dump_json().encode()]


def decode(frames: list[bytes]) -> Message:
    """The message carried by ``frames``; ProtocolError naming the fault when they are not one."""
    if len(frames) != 3:
        raise ProtocolError(
            f"expected 3 frames [version, kind, json body], got {len(frames)}; "
            "send messages built with instruments.protocol.encode"
        )
    version, kind, body = frames
    if version != VERSION:
        raise ProtocolError(
            f"expected protocol version {VERSION!r}, got {bytes(version[:40])!r}; "
            "upgrade the client or the server so both speak the same version",
            ErrorCode.unknown_version,
        )
    cls = MESSAGES.get(bytes(kind).decode("utf-8", "replace"))
    if cls is None:
        raise ProtocolError(
            f"expected a message kind in {sorted(MESSAGES)}, got {bytes(kind[:40])!r}; "
            "send messages built with instruments.protocol.encode"
        )
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise ProtocolError(
            f"expected a JSON object as the {cls.kind} body, got bytes that do not parse ({error})"
        ) from None
    try:
        return cls.model_validate(data)  # type: ignore[return-value]  # cls is one of Message
    except ValidationError as error:
        raise ProtocolError(
            f"expected a {cls.kind} body matching its schema, got {validation_summary(error)}"
        ) from None
