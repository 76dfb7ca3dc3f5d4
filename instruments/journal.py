"""The exactly-once journal: idempotency key -> state and outcome, in SQLite, committed first.

States: ``received`` (journaled, not started) -> ``running`` (the hook may have moved something)
-> ``done`` (outcome recorded) or ``failed`` (error recorded). Every transition is committed
(WAL, synchronous=FULL) before the server acts on it, so after a crash a ``running`` row means
"maybe happened": on open it becomes ``unknown`` and is never run again. A ``received`` row
never started, so it becomes ``failed`` with code ``not_started``. Rows are never deleted.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from instruments.errors import ErrorCode

State = Literal["received", "running", "done", "failed", "unknown"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
    idempotency_key TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    outcome TEXT,
    error_code TEXT,
    error_message TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
)
"""


@dataclass(frozen=True)
class Entry:
    """One journaled request: what was asked (``fingerprint``), where it got, what came of it."""

    idempotency_key: str
    action: str
    fingerprint: str
    state: State
    outcome: dict[str, Any] | None
    error_code: ErrorCode | None
    error_message: str | None


class Journal:
    """Thread-safe SQLite journal at ``path``; opening it settles rows a dead server left open."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self.recovered = self._settle()

    def _settle(self) -> dict[str, int]:
        """Mark rows left by a dead server: running -> unknown, received -> failed(not_started)."""
        now = time.time()
        with self._lock:
            unknown = self._db.execute(
                "UPDATE actions SET state='unknown', updated=? WHERE state='running'", (now,)
            ).rowcount
            not_started = self._db.execute(
                "UPDATE actions SET state='failed', error_code=?, error_message=?, updated=? "
                "WHERE state='received'",
                (
                    ErrorCode.not_started.value,
                    "the server stopped before this action started, so nothing moved; "
                    "call again with a new idempotency key",
                    now,
                ),
            ).rowcount
        return {"unknown": unknown, "not_started": not_started}

    def get(self, key: str) -> Entry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT idempotency_key, action, fingerprint, state, outcome, error_code, "
                "error_message FROM actions WHERE idempotency_key=?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        outcome = json.loads(row[4]) if row[4] is not None else None
        code = ErrorCode(row[5]) if row[5] is not None else None
        return Entry(row[0], row[1], row[2], row[3], outcome, code, row[6])

    def receive(self, key: str, action: str, fingerprint: str) -> None:
        """Journal a new request as ``received``; the key must not be journaled yet."""
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO actions (idempotency_key, action, fingerprint, state, created, updated) "
                "VALUES (?, ?, ?, 'received', ?, ?)",
                (key, action, fingerprint, now, now),
            )

    def start(self, key: str) -> None:
        """Commit ``running`` before the hook moves anything."""
        self._update(key, "state='running'", ())

    def finish(self, key: str, outcome: dict[str, Any]) -> None:
        self._update(key, "state='done', outcome=?", (json.dumps(outcome),))

    def fail(self, key: str, code: ErrorCode, message: str) -> None:
        self._update(key, "state='failed', error_code=?, error_message=?", (code.value, message))

    def counts(self) -> dict[str, int]:
        """How many journaled requests are in each state."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM actions GROUP BY state").fetchall()
        return dict(rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _update(self, key: str, assignments: str, values: tuple[Any, ...]) -> None:
        with self._lock:
            self._db.execute(
                f"UPDATE actions SET {assignments}, updated=? WHERE idempotency_key=?",
                (*values, time.time(), key),
            )
