"""What a lab folder holds that anyone may browse: the sample records and what the
instruments' journals recorded for them (``poreloop lab samples``).

Layout under ``lab_dir`` (the simulated lab's; a real lab's adapters keep the same records)::

    samples/<sample_id>/sample.json     {"sample_id", "recipe" (as set), "status", "created_run"}
    journals/<kind>.sqlite              each instrument's exactly-once journal

It never reads ``truth/``, which only the simulated instruments may (``instruments.sim.lab``).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from poreloop.instruments.errors import ErrorCode, InvalidRequest
from poreloop.instruments.journal import read_outcomes

META_FILE = "sample.json"


def list_samples(lab_dir: str | Path) -> list[dict[str, Any]]:
    """What a lab holds, as its records say (never its truth): every sample's record, with the
    scans and measurements its instruments' journals (``journals/KIND.sqlite``) recorded as done
    for it, oldest first: ``{"instrument", "action", "at" (epoch s), "result"}``."""
    lab_dir = Path(lab_dir)
    if not (lab_dir / "samples").is_dir():
        raise InvalidRequest(
            f"no lab at '{lab_dir}': expected the folder an instrument served with --lab-dir "
            "(it holds samples/ and journals/)",
            ErrorCode.invalid_params,
        )
    samples = {
        folder.name: {**json.loads((folder / META_FILE).read_text()), "measurements": []}
        for folder in sorted((lab_dir / "samples").iterdir())
        if (folder / META_FILE).is_file()
    }
    for journal in sorted((lab_dir / "journals").glob("*.sqlite")):
        try:
            outcomes = read_outcomes(journal)
        except sqlite3.Error as exc:
            raise InvalidRequest(
                f"cannot read the journal '{journal}': {exc}", ErrorCode.invalid_params
            ) from None
        for action, at, result in outcomes:
            sample = samples.get(str(result.get("sample_id")))
            if sample is not None and action != "fabricate":
                entry = {"instrument": journal.stem, "action": action, "at": at, "result": result}
                sample["measurements"].append(entry)
    for sample in samples.values():
        sample["measurements"].sort(key=lambda entry: entry["at"])
    return list(samples.values())
