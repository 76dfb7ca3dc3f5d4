"""The simulated lab's shared state: a directory of samples and durable run counters.

Layout under ``lab_dir``::

    samples/<sample_id>/structure.npz   the TRUE structure the robot made (Microstructure.save)
    samples/<sample_id>/sample.json     {"sample_id", "recipe", "seed", "status", "defects",
                                         "created_run"}
    counters/<name>                     one line per started run, appended and fsynced

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
from poreloop.twins.errors import TwinError
from poreloop.twins.microstructure import Microstructure

SAMPLE_ID = re.compile(r"S\d{5,}")
STRUCTURE_FILE = "structure.npz"
META_FILE = "sample.json"
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
    """The true structure and the metadata of sample ``sample_id``."""
    folder = sample_dir(lab_dir, sample_id)
    meta = json.loads((folder / META_FILE).read_text())
    try:
        micro = Microstructure.load(folder / STRUCTURE_FILE)
    except TwinError as error:
        raise InvalidRequest(
            f"sample '{sample_id}' has no readable structure: {error}", ErrorCode.invalid_params
        ) from None
    return micro, meta


def save_sample(
    lab_dir: str | Path, micro: Microstructure, meta: dict[str, Any], run: int | None = None
) -> str:
    """Store a new sample and return its id ``S<run:05d>``.

    ``run`` is the robot's run number (counted with ``next_run(lab_dir, "samples")`` before the
    work starts); without it one is counted here. The structure is written before the json, and
    the json atomically, so a sample whose json exists is complete.
    """
    if run is None:
        run = next_run(lab_dir, SAMPLE_COUNTER)
    sample_id = f"S{run:05d}"
    folder = Path(lab_dir) / "samples" / sample_id
    folder.mkdir(parents=True, exist_ok=True)
    micro.save(folder / STRUCTURE_FILE)
    record = {**meta, "sample_id": sample_id, "created_run": run}
    write_json(folder / META_FILE, record)
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
