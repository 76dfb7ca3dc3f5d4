"""The one exception family of the physical world, and the wire error codes it maps to."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Why a request failed, as sent on the wire in an ``Error`` reply."""

    malformed = "malformed"
    unknown_version = "unknown_version"
    unknown_instrument = "unknown_instrument"
    unknown_action = "unknown_action"
    invalid_params = "invalid_params"
    key_conflict = "key_conflict"
    refused_limit = "refused_limit"
    estop = "estop"
    lease_held = "lease_held"
    deadline = "deadline"
    aborted = "aborted"
    not_started = "not_started"
    rejected = "rejected"
    unknown_outcome = "unknown_outcome"
    failed = "failed"
    internal = "internal"


class InstrumentError(RuntimeError):
    """An instrument request could not be sent, was refused, or did not complete.

    The message is one line naming what was expected, what was got and how to fix it; the CLI
    prints it with exit code 2. ``code`` is the wire code; ``idempotency_key`` names the call
    it ended, so the caller can ask again about it without running the action twice.

    ``retryable`` tells a campaign whether calling again under the same idempotency key can
    bring a better answer. Every subclass decides for itself; here it is False because an
    error of unknown cause (an internal bug, an unusable key file) will not go away by asking.
    """

    default_code: ErrorCode = ErrorCode.failed
    retryable: bool = False

    def __init__(
        self, message: str, code: ErrorCode | None = None, idempotency_key: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.idempotency_key = idempotency_key


class ProtocolError(InstrumentError):
    """Frames that are not a well-formed message of this protocol version."""

    default_code = ErrorCode.malformed
    retryable = False
    """The client already ignores a reply garbled in transit; one that reaches the caller means
    the peer speaks another protocol or version, and asking again sends the same frames."""


class InvalidRequest(InstrumentError):
    """A well-formed request the instrument cannot take: unknown action, bad params, key reuse."""

    default_code = ErrorCode.invalid_params
    retryable = False
    """The same request is refused the same way; the caller must change it."""


class RefusedError(InstrumentError):
    """A valid request refused for safety: a limit, a latched emergency stop, or a held lease."""

    default_code = ErrorCode.refused_limit
    retryable = False
    """Someone must act first (lower the ask, clear the e-stop, release the lease); a campaign
    that asked again at once would only be refused again."""


class DeadlineError(InstrumentError):
    """The action did not finish within its deadline."""

    default_code = ErrorCode.deadline
    retryable = True
    """It may still be running: asking again under the same key returns its outcome once it
    ends. If the server itself stopped it, the journal replays that end and nothing moves."""


class ServerUnreachable(InstrumentError):
    """No reply and no heartbeat from the server within the liveness window.

    Call again with the error's ``idempotency_key`` once the server is back to learn the outcome
    without running the action twice.
    """

    default_code = ErrorCode.internal
    retryable = True
    """A restarted or reachable-again server answers the same key from its journal."""


class UnknownOutcome(InstrumentError):
    """The server died while the action was running: it may or may not have happened.

    It is never run again under the same key; the caller inspects the sample and decides.
    """

    default_code = ErrorCode.unknown_outcome
    retryable = False
    """The journal answers this key with the same unknown outcome forever, by design."""


class ActionFailed(InstrumentError):
    """The action started and then stopped: aborted, failed in the instrument, or never began.

    ``rejected``: a person turned down the request at the approval gate; nothing moved.
    """

    retryable = False
    """Its end is journaled and replayed under the same key; trying again is a new request
    with a new key, which is the campaign's decision, not a retry."""


ERRORS_BY_CODE: dict[ErrorCode, type[InstrumentError]] = {
    ErrorCode.malformed: ProtocolError,
    ErrorCode.unknown_version: ProtocolError,
    ErrorCode.unknown_instrument: InvalidRequest,
    ErrorCode.unknown_action: InvalidRequest,
    ErrorCode.invalid_params: InvalidRequest,
    ErrorCode.key_conflict: InvalidRequest,
    ErrorCode.refused_limit: RefusedError,
    ErrorCode.estop: RefusedError,
    ErrorCode.lease_held: RefusedError,
    ErrorCode.deadline: DeadlineError,
    ErrorCode.aborted: ActionFailed,
    ErrorCode.not_started: ActionFailed,
    ErrorCode.rejected: ActionFailed,
    ErrorCode.unknown_outcome: UnknownOutcome,
    ErrorCode.failed: ActionFailed,
    ErrorCode.internal: InstrumentError,
}


def error_for(code: ErrorCode, message: str, idempotency_key: str | None) -> InstrumentError:
    """The exception a client raises for an ``Error`` reply with this code."""
    return ERRORS_BY_CODE[code](message, code, idempotency_key)
