"""The exactly-once journal: idempotency key -> state and outcome, in SQLite, committed first.

States: ``received`` (journaled, not started) -> ``running`` (the hook may have moved something)
-> ``done`` (outcome recorded) or ``failed`` (error recorded). Under an approval gate a motion
waits as ``held`` (its request recorded) until a person approves it (-> ``received``) or rejects
it (-> ``failed``), the decision kept beside the request; a ``held`` row survives a restart as it
is and is never run without approval. Every transition is committed
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

from poreloop.instruments.errors import ErrorCode

State = Literal["held", "received", "running", "done", "failed", "unknown"]

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
    updated REAL NOT NULL,
    request TEXT
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
    request: dict[str, Any] | None = None
    created: float = 0.0


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
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(actions)")}
        if "request" not in columns:  # a journal written before the approval gate
            self._db.execute("ALTER TABLE actions ADD COLUMN request TEXT")
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
            row = self._db.execute(f"{_SELECT} WHERE idempotency_key=?", (key,)).fetchone()
        return None if row is None else _entry(row)

    def held(self) -> list[Entry]:
        """The requests waiting for approval, oldest first."""
        with self._lock:
            rows = self._db.execute(f"{_SELECT} WHERE state='held' ORDER BY created").fetchall()
        return [_entry(row) for row in rows]

    def receive(self, key: str, action: str, fingerprint: str) -> None:
        """Journal a new request as ``received``; the key must not be journaled yet."""
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO actions (idempotency_key, action, fingerprint, state, created, updated) "
                "VALUES (?, ?, ?, 'received', ?, ?)",
                (key, action, fingerprint, now, now),
            )

    def hold(self, key: str, request: dict[str, Any]) -> None:
        """Commit ``held`` with what a restarted server needs to list and later run it."""
        self._update(key, "state='held', request=?", (json.dumps(request),))

    def release(self, key: str) -> None:
        """An approved request: ``held`` -> ``received``, to run as any other."""
        self._update(key, "state='received'", ())

    def decide(self, key: str, decision: dict[str, Any]) -> None:
        """Record a person's decision on a held request beside it (``request["decision"]``),
        so that a retried approve or reject is answered with it."""
        self._update(
            key,
            "request=json_set(COALESCE(request, '{}'), '$.decision', json(?))",
            (json.dumps(decision),),
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


def read_outcomes(path: str | Path) -> list[tuple[str, float, dict[str, Any]]]:
    """``(action, finished at (epoch s), outcome)`` of every request a journal records as done,
    oldest first. Opened read-only: a server may be using it, and opening it as a ``Journal``
    would settle its open rows as if that server were dead."""
    db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT action, updated, outcome FROM actions WHERE state='done' ORDER BY updated"
        ).fetchall()
    finally:
        db.close()
    return [(action, updated, json.loads(outcome)) for action, updated, outcome in rows]


_SELECT = (
    "SELECT idempotency_key, action, fingerprint, state, outcome, error_code, error_message, "
    "request, created FROM actions"
)


def _entry(row: tuple[Any, ...]) -> Entry:
    outcome = json.loads(row[4]) if row[4] is not None else None
    code = ErrorCode(row[5]) if row[5] is not None else None
    request = json.loads(row[7]) if row[7] is not None else None
    return Entry(row[0], row[1], row[2], row[3], outcome, code, row[6], request, row[8])
