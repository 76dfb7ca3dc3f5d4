"""Faults a test injects into a server, to prove that the client and the journal cope."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 70
"""Exit status of a server killed by the ``crash_at_fraction`` fault."""


@dataclass
class Faults:
    """What goes wrong on purpose; the counts go down as the faults are spent.

    ``drop_replies``: the next N final replies (Result or Error of an action) are not sent.
    ``delay_s``: every reply leaves this long after it is ready.
    ``crash_at_fraction``: the process exits (os._exit) when an action reports this progress.
    ``corrupt_replies``: the next N final replies leave with their JSON body garbled.
    """

    drop_replies: int = 0
    delay_s: float = 0.0
    crash_at_fraction: float | None = None
    corrupt_replies: int = 0

    def crash_if_due(self, fraction: float) -> None:
        """An action's progress hook: die mid-action, as a power cut would."""
        if self.crash_at_fraction is not None and fraction >= self.crash_at_fraction:
            log.error("fault: crashing the server mid-action at fraction %.2f", fraction)
            os._exit(CRASH_EXIT_CODE)

    def drops(self, key: str) -> bool:
        """Whether the final reply under ``key`` is lost, spending one ``drop_replies``."""
        if self.drop_replies <= 0:
            return False
        self.drop_replies -= 1
        log.warning("fault: dropped the reply to %s", key)
        return True

    def corrupts(self, key: str) -> bool:
        """Whether the final reply under ``key`` is garbled, spending one ``corrupt_replies``."""
        if self.corrupt_replies <= 0:
            return False
        self.corrupt_replies -= 1
        log.warning("fault: corrupted the reply to %s", key)
        return True


def garbled(frames: list[bytes]) -> list[bytes]:
    """``frames`` with the body (last frame) cut in half and ended by bytes no JSON holds."""
    return [*frames[:-1], frames[-1][: len(frames[-1]) // 2] + b"\xff\x00"]
