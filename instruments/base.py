"""The instrument contract: declared actions with params schemas, safety limits and hooks.

A driver subclasses ``Instrument``, sets ``kind`` and ``actions`` and writes one protected hook
``_<action>(params, ctx) -> result`` per action. The public ``validate`` checks the params schema
and every safety limit before anything moves; ``perform`` runs the hook and checks its result.
A simulated backend is the same contract with the hooks acting on a model instead of hardware.
"""

from __future__ import annotations

import threading
import time
from abc import ABC
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from poreloop.instruments.errors import ErrorCode, InvalidRequest, RefusedError
from poreloop.registry import did_you_mean, validation_summary


@dataclass(frozen=True)
class Limit:
    """A safety bound on one numeric parameter, checked before the action starts."""

    param: str
    low: float | None = None
    high: float | None = None
    unit: str = ""
    why: str = ""

    def violation(self, value: float) -> str | None:
        """A one-line refusal naming the limit and the value, or None when the value is safe."""
        unit = f" {self.unit}" if self.unit else ""
        why = f" ({self.why})" if self.why else ""
        if self.high is not None and value > self.high:
            return f"{self.param}={value}{unit} exceeds the safety limit {self.high}{unit}{why}; ask for at most {self.high}{unit}"
        if self.low is not None and value < self.low:
            return f"{self.param}={value}{unit} is below the safety limit {self.low}{unit}{why}; ask for at least {self.low}{unit}"
        return None


@dataclass(frozen=True)
class Action:
    """One thing an instrument does: params and result schemas, safety limits, whether it moves.

    A motion is refused while the emergency stop is latched, and motions of one instrument run
    one at a time.
    """

    params: type[BaseModel]
    result: type[BaseModel]
    limits: tuple[Limit, ...] = ()
    motion: bool = True
    description: str = ""


class ActionStopped(Exception):
    """Raised inside a hook by ``ActionContext`` when the action is told to stop."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class ActionContext:
    """What a running hook sees: progress reporting and cooperative stop (abort, estop, deadline).

    ``on_progress`` is the server's hook for each reported fraction (fault injection uses it).
    """

    on_progress: Callable[[float], None] = lambda fraction: None
    started: float = field(default_factory=time.monotonic)
    fraction: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _stop_code: ErrorCode = field(default=ErrorCode.aborted, init=False)
    _stop_message: str = field(default="", init=False)

    def stop(self, code: ErrorCode, message: str) -> None:
        """Ask the hook to stop at its next ``progress`` or ``sleep``."""
        if not self._stop.is_set():
            self._stop_code, self._stop_message = code, message
            self._stop.set()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def progress(self, fraction: float) -> None:
        """Record ``fraction`` done in [0, 1]; raises ActionStopped when told to stop."""
        self.fraction = min(max(float(fraction), 0.0), 1.0)
        self.on_progress(self.fraction)
        self.check()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of wall time, waking early (ActionStopped) when told to stop."""
        if self._stop.wait(max(seconds, 0.0)):
            self.check()

    def pass_time(self, seconds: float, steps: int = 20) -> None:
        """Wait ``seconds`` of wall time in ``steps``, reporting progress after each; a
        simulated action's way of taking its (scaled) duration."""
        for step in range(1, steps + 1):
            self.sleep(seconds / steps)
            self.progress(step / steps)

    def check(self) -> None:
        """Raise ActionStopped when told to stop; for hooks that wait on hardware themselves."""
        if self._stop.is_set():
            raise ActionStopped(self._stop_code, self._stop_message)


class Instrument(ABC):
    """Base of every instrument driver and simulated backend.

    ``kind`` names the instrument ("oven", "robot" ...); ``actions`` maps each action name to its
    declaration, and the subclass defines the hook ``_<name>(params, ctx)`` for each.
    """

    kind: ClassVar[str]
    actions: ClassVar[dict[str, Action]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        missing = [name for name in getattr(cls, "actions", {}) if not hasattr(cls, f"_{name}")]
        if missing:
            raise TypeError(
                f"{cls.__name__} declares actions {missing} without hooks; define "
                + ", ".join(f"_{name}(self, params, ctx)" for name in missing)
            )

    def validate(self, action: str, params: dict[str, Any]) -> BaseModel:
        """Params parsed by the action's schema, after every safety limit passed.

        Raises InvalidRequest for an unknown action or params failing the schema, RefusedError
        (refused_limit) naming the limit and the value for an unsafe request.
        """
        declared = self.actions.get(action)
        if declared is None:
            raise InvalidRequest(
                f"{self.kind} has no action '{action}'{did_you_mean(action, self.actions)}",
                ErrorCode.unknown_action,
            )
        try:
            parsed = declared.params.model_validate(params)
        except ValidationError as error:
            raise InvalidRequest(
                f"{self.kind}.{action} params do not match its schema: {validation_summary(error)}",
                ErrorCode.invalid_params,
            ) from None
        for limit in declared.limits:
            problem = limit.violation(float(getattr(parsed, limit.param)))
            if problem is not None:
                raise RefusedError(f"{self.kind}.{action} refused: {problem}")
        return parsed

    def perform(self, action: str, params: BaseModel, ctx: ActionContext) -> dict[str, Any]:
        """Run the hook of a validated action and return its result as JSON-ready data."""
        result = getattr(self, f"_{action}")(params, ctx)
        return self.actions[action].result.model_validate(result).model_dump(mode="json")

    def describe(self) -> dict[str, Any]:
        """The actions, their params schemas, limits and motion flags, by action name."""
        return {
            "actions": {
                name: {
                    "description": declared.description,
                    "motion": declared.motion,
                    "params": declared.params.model_json_schema(),
                    "limits": [vars(limit) for limit in declared.limits],
                }
                for name, declared in self.actions.items()
            }
        }
