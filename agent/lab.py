"""The campaign's side of the lab: samples flow robot → inspector → tomograph → cycler.

One thread per station, each with its own ``InstrumentClient``, so the robot makes the next
sample while the tomograph scans the last one and the campaign screens the next batch. Every
call is journalled in the ``Store`` under a key made of the campaign id, the sample and the
action BEFORE it is sent: a resumed campaign re-asks under the same key and the instrument's
own journal replays the outcome, so nothing is fabricated twice. An ``UnknownOutcome`` (the
instrument died mid-action) marks the sample ``unknown``, never re-made; an instrument that is
down is re-asked under the same key until ``lab.timeout_s`` runs out, then its sample fails.

What a station learns goes to the store, and the store alone tells the campaign which samples
ended (measured, failed, unknown): a sample's final stage and its results are one write.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from poreloop.agent.store import Store

log = logging.getLogger("poreloop.lab")

RETRY_PAUSE_S = 1.0
SAMPLE_FAULTS = frozenset({"failed", "invalid_params"})
"""Error codes that blame the sample (the action ran and the sample did not hold up, or the
instrument cannot measure it), not the instrument."""
"""Pause between re-asks of an instrument that did not answer."""


class SampleEnded(Exception):
    """A sample leaves the pipeline early: ``stage`` is failed or unknown, with the reason.

    ``recipe_at_fault``: the sample itself failed (it cracked, it cannot carry the current),
    which the planner must learn; False when the lab failed it (an instrument stopped,
    aborted, refused or was rejected by a person), which says nothing about the recipe.
    """

    def __init__(self, stage: str, reason: str, recipe_at_fault: bool = False) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason
        self.recipe_at_fault = recipe_at_fault


class LabPipeline:
    """Lab samples in flight. ``measure``: (sample row, scan result) -> structure metrics and
    predicted objectives of the measured structure (segmentation and critics, the campaign's).
    """

    def __init__(
        self,
        store: Store,
        campaign_id: str,
        endpoints: Mapping[str, str],
        *,
        measure: Callable[[dict[str, Any], dict[str, Any]], dict[str, float]],
        objectives: Mapping[str, str],
        scan_voxel_size_um: float,
        c_rates: tuple[float, ...],
        timeout_s: float,
        holder: str,
        keys: Path | None = None,
    ) -> None:
        self.store = store
        self.campaign_id = campaign_id
        self.endpoints = dict(endpoints)
        self.measure = measure
        self.objectives = dict(objectives)
        self.scan_voxel_size_um = scan_voxel_size_um
        self.c_rates = c_rates
        self.timeout_s = timeout_s
        self.holder = holder
        self.keys = keys
        self._stop = threading.Event()
        self._watcher: Any = None
        self._inboxes: dict[str, queue.Queue[int]] = {name: queue.Queue() for name in STATIONS}
        self._threads = [
            threading.Thread(target=self._serve, args=(name,), name=f"lab-{name}", daemon=True)
            for name in STATIONS
        ]
        for thread in self._threads:
            thread.start()

    # --- the campaign's view ------------------------------------------------------------------

    def submit(self, sample: int) -> None:
        """Start (or, after a resume, continue) a sample at the station its stage calls for."""
        stage = self.store.sample(sample)["stage"]
        self._inboxes[NEXT_STATION[stage]].put(sample)

    def cycle_life(self, sample: int, cycles: int, c_rate: float) -> dict[str, Any] | None:
        """A measured sample's cycle-life test (main thread, after the campaign's last rate
        test), journalled like every call; None when the cycler could not run it."""
        from poreloop.instruments import InstrumentClient

        row = self.store.sample(sample)
        params = {"sample_id": row["lab_id"], "cycles": cycles, "c_rate": c_rate}
        client = InstrumentClient(self.endpoints["cycler"], instrument="cycler", holder=self.holder)
        try:
            fade = self.call(client, sample, "cycle_life", params)
        except SampleEnded as ended:
            self.store.log("cycle_life", f"sample {sample}: {ended.reason}")
            return None
        finally:
            client.close()
        self.store.update_sample(sample, "measured", {"cycle_life": fade})
        return fade

    def held(self) -> list[str]:
        """Robot motions held at its approval gate, as ``key (action)``: a person must approve
        them (``poreloop instrument approve``); screening goes on meanwhile. Main thread only."""
        from poreloop.instruments import InstrumentClient
        from poreloop.instruments.errors import InstrumentError

        if self._watcher is None:
            self._watcher = InstrumentClient(self.endpoints["robot"], holder=self.holder)
        try:
            answer = self._watcher.call("pending", timeout=2.0)
        except InstrumentError:
            return []
        return [f"{held['idempotency_key']} ({held['action']})" for held in answer["pending"]]

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s)

    # --- stations -----------------------------------------------------------------------------

    def _serve(self, name: str) -> None:
        from poreloop.instruments import InstrumentClient
        from poreloop.instruments.auth import Keys

        keys = Keys.for_client(self.keys) if self.keys is not None else None
        client = InstrumentClient(
            self.endpoints[name], instrument=name, holder=self.holder, keys=keys
        )
        inbox = self._inboxes[name]
        try:
            while not self._stop.is_set():
                try:
                    sample = inbox.get(timeout=0.2)
                except queue.Empty:
                    continue
                row = self.store.sample(sample)
                try:
                    following = STATIONS[name](self, client, row)
                except SampleEnded as ended:
                    self.store.update_sample(
                        sample,
                        ended.stage,
                        {"recipe_at_fault": ended.recipe_at_fault},
                        reason=ended.reason,
                    )
                    self.store.log(ended.stage, f"sample {sample}: {ended.reason}")
                    following = None
                except Exception as error:  # a bug must not leave the sample hanging
                    log.exception("lab station %s failed on sample %s", name, sample)
                    reason = f"{name}: {type(error).__name__}: {error}"
                    self.store.update_sample(sample, "failed", reason=reason)
                    following = None
                if following is not None:
                    self._inboxes[following].put(sample)
        finally:
            client.close()

    def call(self, client: Any, sample: int, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """``action`` on the station's instrument, exactly once across crashes and resumes."""
        from poreloop.instruments.errors import InstrumentError, UnknownOutcome

        instrument = client.instrument
        key = f"{self.campaign_id}-s{sample}-{instrument}-{action}"
        earlier = self.store.begin_dispatch(key, sample, instrument, action, params)
        if earlier is not None and earlier["state"] == "done":
            return earlier["outcome"]
        if earlier is not None and earlier["state"] in ("failed", "unknown"):
            raise SampleEnded(
                earlier["state"],
                earlier["outcome"]["reason"],
                earlier["outcome"]["recipe_at_fault"],
            )
        give_up = time.monotonic() + self.timeout_s
        while True:
            try:
                outcome = client.call(action, params, timeout=self.timeout_s, idempotency_key=key)
            except UnknownOutcome as error:
                reason = f"{instrument}.{action} outcome unknown (the instrument died mid-action): {error}"
                self._end(key, "unknown", reason, False)
            except InstrumentError as error:
                if not error.retryable:
                    at_fault = error.code in SAMPLE_FAULTS
                    self._end(key, "failed", f"{instrument}.{action}: {error}", at_fault)
                if time.monotonic() < give_up and not self._stop.is_set():
                    self.store.log("instrument", f"{instrument} did not answer; re-asking: {error}")
                    time.sleep(RETRY_PAUSE_S)
                    continue
                reason = f"{instrument}.{action}: no answer within {self.timeout_s:.0f} s ({error})"
                self._end(key, "unknown", reason, False)
            self.store.end_dispatch(key, "done", outcome)
            return outcome

    def _end(self, key: str, stage: str, reason: str, recipe_at_fault: bool) -> NoReturn:
        """Journal how a call ended the sample, then end it."""
        self.store.end_dispatch(key, stage, {"reason": reason, "recipe_at_fault": recipe_at_fault})
        raise SampleEnded(stage, reason, recipe_at_fault)


def _fabricate(lab: LabPipeline, client: Any, row: dict[str, Any]) -> str:
    made = lab.call(client, row["id"], "fabricate", row["recipe"])
    lab.store.update_sample(
        row["id"], "fabricated", {"robot_status": made["status"]}, lab_id=made["sample_id"]
    )
    return "inspector"


def _inspect(lab: LabPipeline, client: Any, row: dict[str, Any]) -> str:
    seen = lab.call(client, row["id"], "inspect", {"sample_id": row["lab_id"]})
    lab.store.update_sample(row["id"], "inspected", {"inspection": seen})
    robot_status = row["results"].get("robot_status", "ok")
    if robot_status != "ok" or not seen["passed"]:
        raise SampleEnded(
            "failed",
            f"{robot_status if robot_status != 'ok' else 'rejected by inspection'}: "
            f"{seen['cracks_per_mm2']:.0f} cracks/mm², "
            f"{seen['delamination_fraction']:.0%} delaminated, "
            f"{seen['pinholes_per_cm2']:.0f} pinholes/cm²",
            recipe_at_fault=True,
        )
    return "tomograph"


def _scan(lab: LabPipeline, client: Any, row: dict[str, Any]) -> str:
    scan = lab.call(
        client,
        row["id"],
        "scan",
        {"sample_id": row["lab_id"], "voxel_size_um": lab.scan_voxel_size_um},
    )
    measured = lab.measure(row, scan)
    lab.store.update_sample(row["id"], "scanned", {"scan": scan, "measured_structure": measured})
    return "cycler"


def _rate_test(lab: LabPipeline, client: Any, row: dict[str, Any]) -> None:
    from poreloop.twins.critics.cell import c_rate_tag

    test = lab.call(
        client, row["id"], "rate_test", {"sample_id": row["lab_id"], "c_rates": list(lab.c_rates)}
    )
    measured = {}
    for c_rate, energy, capacity in zip(
        test["c_rates"], test["energy_density_wh_l"], test["capacity_mah_cm2"], strict=True
    ):
        measured[f"energy_density_wh_l_{c_rate_tag(c_rate)}"] = energy
        measured[f"capacity_mah_cm2_{c_rate_tag(c_rate)}"] = capacity
    outcome = {name: measured[name] for name in lab.objectives if name in measured}
    missing = sorted(set(lab.objectives) - set(outcome))
    if missing:
        raise SampleEnded("failed", f"the cycler's rate test reported no {missing}")
    lab.store.update_sample(row["id"], "measured", {"rate_test": test, "outcome": outcome})
    return None


Station = Callable[[LabPipeline, Any, dict[str, Any]], "str | None"]
"""(pipeline, client, sample row) -> the next station's instrument, or None when done."""

STATIONS: dict[str, Station] = {
    "robot": _fabricate,
    "inspector": _inspect,
    "tomograph": _scan,
    "cycler": _rate_test,
}
NEXT_STATION = {
    "selected": "robot",
    "fabricated": "inspector",
    "inspected": "tomograph",
    "scanned": "cycler",
}
"""Where a sample in each unfinished stage goes next (also after a resume)."""
