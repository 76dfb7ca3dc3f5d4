"""The campaign journal: one SQLite database (WAL) in the run folder, volumes beside it.

Everything a campaign decides or learns is written here before it acts on it, so a campaign
killed at any instant resumes where it stopped (``poreloop run --resume``):

    meta          config, seeds, package versions, state (running | finished | interrupted)
    screens       every recipe the twin made and what the critics said: ``screen`` (told to
                  the planner as it comes), ``lab`` (the twin's prediction of a lab sample,
                  told with the lab's result) or ``check`` (a comparison, never told)
    samples       every recipe sent to the lab: its stage, the lab's sample id, its results
    dispatches    every instrument call, written with its idempotency key BEFORE it is sent
    calibrations  every fit of the twin's process offsets to the scans
    planner       the planner's state, per iteration, with what it has been told
    events        a log a person reads (dead actors, instrument faults, held motions)

Measured structures are compressed ``.npz`` files under ``structures/`` (``Microstructure.save``).
One connection per thread: the lab pipeline's threads write their own rows.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from poreloop.agent.errors import AgentError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS screens (
    id INTEGER PRIMARY KEY, iteration INTEGER NOT NULL, purpose TEXT NOT NULL,
    sample INTEGER, recipe TEXT NOT NULL, seed INTEGER NOT NULL, calibration INTEGER,
    failed INTEGER NOT NULL, reason TEXT, properties TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY, iteration INTEGER NOT NULL, recipe TEXT NOT NULL,
    stage TEXT NOT NULL, lab_id TEXT, reason TEXT, results TEXT NOT NULL DEFAULT '{}',
    told INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS dispatches (
    key TEXT PRIMARY KEY, sample INTEGER NOT NULL, instrument TEXT NOT NULL,
    action TEXT NOT NULL, params TEXT NOT NULL, state TEXT NOT NULL, outcome TEXT,
    sent REAL NOT NULL, done REAL);
CREATE TABLE IF NOT EXISTS calibrations (
    id INTEGER PRIMARY KEY, iteration INTEGER NOT NULL, offsets TEXT NOT NULL,
    metrics TEXT NOT NULL, samples INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS planner (
    iteration INTEGER PRIMARY KEY, state TEXT NOT NULL, screens_told INTEGER NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL);
"""

STAGES = ("selected", "fabricated", "inspected", "scanned", "measured", "failed", "unknown")
"""A lab sample's stages in order; the last three end it (measured, failed, unknown)."""
FINAL = frozenset({"measured", "failed", "unknown"})


class Store:
    """The journal of the campaign in ``folder`` (``campaign.sqlite``, ``structures/``)."""

    FILE = "campaign.sqlite"
    LOCK = "campaign.lock"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "structures").mkdir(exist_ok=True)
        self.path = self.folder / self.FILE
        self._local = threading.local()
        self._db.executescript(SCHEMA)

    @property
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed durably before the caller acts on what it wrote."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def hold(self) -> Any:
        """Lock the run folder for this process's campaign; released when the process dies,
        so a folder journalled as running but unlocked was interrupted."""
        handle = (self.folder / self.LOCK).open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise AgentError(
                f"a campaign is already running in {self.folder}; wait for it or stop it"
            ) from None
        return handle

    def running(self) -> bool:
        """Whether a live process holds the run folder's lock."""
        path = self.folder / self.LOCK
        if not path.exists():
            return False
        with path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
        return False

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # --- meta -------------------------------------------------------------------------------

    def set_meta(self, **values: Any) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(key, json.dumps(value)) for key, value in values.items()],
            )

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    # --- the digital space --------------------------------------------------------------------

    def add_screens(
        self, iteration: int, rows: list[dict[str, Any]], purpose: str = "screen"
    ) -> list[int]:
        """Record screened recipes: each row has recipe, seed, failed, reason, properties,
        and optionally calibration (id) and sample (the lab sample it predicts)."""
        now = time.time()
        ids = []
        with self._write() as db:
            for row in rows:
                cursor = db.execute(
                    "INSERT INTO screens (iteration, purpose, sample, recipe, seed, calibration,"
                    " failed, reason, properties, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        iteration,
                        purpose,
                        row.get("sample"),
                        json.dumps(row["recipe"]),
                        row["seed"],
                        row.get("calibration"),
                        int(row["failed"]),
                        row.get("reason"),
                        json.dumps(row["properties"]),
                        now,
                    ),
                )
                ids.append(int(cursor.lastrowid or 0))
        return ids

    def screens(self) -> list[dict[str, Any]]:
        return [_decoded(row) for row in self._db.execute("SELECT * FROM screens ORDER BY id")]

    # --- the lab ------------------------------------------------------------------------------

    def add_sample(self, iteration: int, recipe: dict[str, Any]) -> int:
        now = time.time()
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO samples (iteration, recipe, stage, created, updated)"
                " VALUES (?, ?, 'selected', ?, ?)",
                (iteration, json.dumps(recipe), now, now),
            )
            return cursor.lastrowid or 0

    def update_sample(
        self,
        sample: int,
        stage: str,
        results: dict[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        """Move a sample to ``stage``, merging ``results`` into what it has measured."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage '{stage}'; expected one of {STAGES}")
        with self._write() as db:
            row = db.execute("SELECT results FROM samples WHERE id = ?", (sample,)).fetchone()
            merged = {**json.loads(row["results"]), **(results or {})}
            assignments = ", ".join(f"{name} = ?" for name in fields)
            db.execute(
                f"UPDATE samples SET stage = ?, results = ?, updated = ?"
                f"{', ' + assignments if fields else ''} WHERE id = ?",
                (stage, json.dumps(merged), time.time(), *fields.values(), sample),
            )

    def samples(self) -> list[dict[str, Any]]:
        return [_decoded(row) for row in self._db.execute("SELECT * FROM samples ORDER BY id")]

    def sample(self, sample: int) -> dict[str, Any]:
        row = self._db.execute("SELECT * FROM samples WHERE id = ?", (sample,)).fetchone()
        return _decoded(row)

    def begin_dispatch(
        self, key: str, sample: int, instrument: str, action: str, params: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Journal an instrument call before it is sent; a key seen before returns its row
        (a resumed campaign re-asks under the same key, so the lab replays, never redoes)."""
        with self._write() as db:
            row = db.execute("SELECT * FROM dispatches WHERE key = ?", (key,)).fetchone()
            if row is not None:
                return _decoded(row)
            db.execute(
                "INSERT INTO dispatches (key, sample, instrument, action, params, state, sent)"
                " VALUES (?, ?, ?, ?, ?, 'sent', ?)",
                (key, sample, instrument, action, json.dumps(params), time.time()),
            )
        return None

    def end_dispatch(self, key: str, state: str, outcome: dict[str, Any] | str) -> None:
        """``state``: done | failed | unknown; ``outcome``: the result or the reason."""
        with self._write() as db:
            db.execute(
                "UPDATE dispatches SET state = ?, outcome = ?, done = ? WHERE key = ?",
                (state, json.dumps(outcome), time.time(), key),
            )

    def dispatches(self) -> list[dict[str, Any]]:
        return [_decoded(row) for row in self._db.execute("SELECT * FROM dispatches ORDER BY sent")]

    # --- learning -----------------------------------------------------------------------------

    def add_calibration(
        self, iteration: int, offsets: dict[str, float], metrics: dict[str, Any], samples: int
    ) -> int:
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO calibrations (iteration, offsets, metrics, samples, created)"
                " VALUES (?, ?, ?, ?, ?)",
                (iteration, json.dumps(offsets), json.dumps(metrics), samples, time.time()),
            )
            return cursor.lastrowid or 0

    def calibrations(self) -> list[dict[str, Any]]:
        return [_decoded(row) for row in self._db.execute("SELECT * FROM calibrations ORDER BY id")]

    def save_planner(
        self, iteration: int, state: dict[str, Any], screens_told: int, samples_told: list[int]
    ) -> None:
        """The planner's state and what it holds (screens up to an id, these lab samples), in
        one transaction, so a resumed campaign tells it exactly what it missed."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO planner (iteration, state, screens_told, created)"
                " VALUES (?, ?, ?, ?)",
                (iteration, json.dumps(state), screens_told, time.time()),
            )
            db.executemany("UPDATE samples SET told = 1 WHERE id = ?", [(s,) for s in samples_told])

    def planner_state(self) -> tuple[dict[str, Any] | None, int]:
        """The last saved planner state (None before the first) and the screens it holds."""
        row = self._db.execute(
            "SELECT state, screens_told FROM planner ORDER BY iteration DESC LIMIT 1"
        ).fetchone()
        return (None, 0) if row is None else (json.loads(row["state"]), row["screens_told"])

    def log(self, kind: str, message: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO events (time, kind, message) VALUES (?, ?, ?)",
                (time.time(), kind, message),
            )

    def events(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self._db.execute("SELECT * FROM events ORDER BY id")]


_JSON_COLUMNS = ("recipe", "properties", "results", "params", "outcome", "offsets", "metrics")


def _decoded(row: sqlite3.Row) -> dict[str, Any]:
    record = dict(row)
    for column in _JSON_COLUMNS:
        if record.get(column) is not None:
            record[column] = json.loads(record[column])
    return record
