"""The simulated lab's shared state: a directory of samples and durable run counters.

Layout under ``lab_dir``::

    samples/<sample_id>/sample.json     what a real lab's records hold: {"sample_id", "recipe"
                                         (as set), "status", "created_run"}
    truth/<sample_id>.npz               the TRUE structure the robot made (Microstructure.save)
    truth/<sample_id>.json              the ground truth: the true recipe (hidden offsets and
                                         batch scatter applied), the structure's seed, defects
    counters/<name>                     one line per started run, appended and fsynced

Only the simulated instruments read ``truth/``: a campaign sees what a lab would (the records,
scans, measurements), never the truth it is meant to learn.

Every lab instrument (robot, inspector, xrd, tomograph) reads and writes samples only through
these helpers, so ids stay unique across server restarts and a half-written sample is never read.
``LabInstrument`` is their common base: it refuses an unknown ``sample_id`` before anything runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from poreloop.instruments.base import ActionContext, Instrument
from poreloop.instruments.errors import ErrorCode, InvalidRequest
from poreloop.instruments.records import META_FILE
from poreloop.twins.errors import TwinError
from poreloop.twins.microstructure import Microstructure

SAMPLE_ID = re.compile(r"S\d{5,}")
TRUTH_DIR = "truth"
SAMPLE_COUNTER = "samples"


def run_count(lab_dir: str | Path, name: str) -> int:
    """How many runs of counter ``name`` have started (0 before the first)."""
    path = Path(lab_dir) / "counters" / name
    if not path.exists():
        return 0
    return len(path.read_text().splitlines())


def next_run(lab_dir: str | Path, name: str) -> int:
    """Count one more run of ``name`` durably (locked, fsynced) and return its 1-based number."""
    path = Path(lab_dir) / "counters" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.write(f"{name}\n")
            handle.flush()
            os.fsync(handle.fileno())
            handle.seek(0)
            return len(handle.read().splitlines())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sample_dir(lab_dir: str | Path, sample_id: str) -> Path:
    """The folder of an existing sample; InvalidRequest (invalid_params) for an unknown id."""
    folder = Path(lab_dir) / "samples" / str(sample_id)
    if not SAMPLE_ID.fullmatch(str(sample_id)) or not (folder / META_FILE).is_file():
        known = sorted(p.name for p in (Path(lab_dir) / "samples").glob("S*") if p.is_dir())
        hint = f"known: {', '.join(known[-5:])}" if known else "the lab holds no sample yet"
        raise InvalidRequest(
            f"no sample '{sample_id}' in the lab at {lab_dir}; expected an id the robot's "
            f"fabricate returned ({hint})",
            ErrorCode.invalid_params,
        )
    return folder


def load_sample(lab_dir: str | Path, sample_id: str) -> tuple[Microstructure, dict[str, Any]]:
    """The true structure of sample ``sample_id`` and its record merged with its truth."""
    folder = sample_dir(lab_dir, sample_id)
    truth = Path(lab_dir) / TRUTH_DIR
    meta = {
        **json.loads((folder / META_FILE).read_text()),
        **json.loads((truth / f"{sample_id}.json").read_text()),
    }
    try:
        micro = Microstructure.load(truth / f"{sample_id}.npz")
    except TwinError as error:
        raise InvalidRequest(
            f"sample '{sample_id}' has no readable structure: {error}", ErrorCode.invalid_params
        ) from None
    return micro, meta


def save_sample(
    lab_dir: str | Path,
    micro: Microstructure,
    meta: dict[str, Any],
    truth: dict[str, Any],
    run: int | None = None,
) -> str:
    """Store a new sample: its record ``meta`` and, apart, its true structure and ``truth``;
    return its id ``S<run:05d>``.

    ``run`` is the robot's run number (counted with ``next_run(lab_dir, "samples")`` before the
    work starts); without it one is counted here. The truth is written before the record, and
    the record atomically, so a sample whose record exists is complete.
    """
    if run is None:
        run = next_run(lab_dir, SAMPLE_COUNTER)
    sample_id = f"S{run:05d}"
    hidden = Path(lab_dir) / TRUTH_DIR
    hidden.mkdir(parents=True, exist_ok=True)
    micro.save(hidden / f"{sample_id}.npz")
    write_json(hidden / f"{sample_id}.json", truth)
    folder = Path(lab_dir) / "samples" / sample_id
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / META_FILE, {**meta, "sample_id": sample_id, "created_run": run})
    return sample_id


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file, fsynced, then renamed over."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class LabInstrument(Instrument):
    """An instrument of the simulated lab at ``lab_dir``, reproducible by ``seed``;
    ``time_scale`` wall seconds per simulated second (0: no waiting).

    ``validate`` also refuses params naming a ``sample_id`` the lab does not hold.
    """

    def __init__(self, lab_dir: str | Path, seed: int = 0, time_scale: float = 1.0) -> None:
        self.lab_dir = Path(lab_dir)
        self.seed = seed
        self.time_scale = time_scale

    def start_run(
        self, ctx: ActionContext, simulated_s: float, steps: int = 20
    ) -> tuple[np.random.Generator, int]:
        """Count one run of this instrument, take its ``simulated_s`` of simulated time, and
        give its noise generator, seeded by (seed, run). Call it once the request is accepted:
        a refusal must not count a run."""
        run = next_run(self.lab_dir, self.kind)
        ctx.pass_time(simulated_s * self.time_scale, steps)
        return np.random.default_rng([self.seed, run]), run

    def validate(self, action: str, params: dict[str, Any]) -> BaseModel:
        parsed = super().validate(action, params)
        sample_id = getattr(parsed, "sample_id", None)
        if sample_id is not None:
            sample_dir(self.lab_dir, sample_id)
        return parsed
