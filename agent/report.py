"""What a campaign has done, from its journal alone: ``status`` (JSON) and ``report.html``.

Both read the run folder's SQLite journal and nothing else, so they answer while the campaign
runs, after it finished, and after it was killed (``state``: a campaign that holds no lock on
its folder but is journalled as running was interrupted).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from poreloop.agent.errors import AgentError
from poreloop.agent.store import Store


def _store(out: str | Path) -> Store:
    out = Path(out)
    if not (out / Store.FILE).exists():
        raise AgentError(f"{out} holds no campaign (no {Store.FILE}); give a run folder")
    return Store(out)


def objectives_of(store: Store) -> dict[str, str]:
    return dict(store.meta("config")["objectives"])


def status(out: str | Path) -> dict[str, Any]:
    """The campaign's state as ``poreloop status --json`` prints it."""
    out = Path(out)
    store = _store(out)
    samples = store.samples()
    stages = [s["stage"] for s in samples]
    state = store.meta("state", "running")
    if state == "running" and not store.running():
        state = "interrupted"
    calibrations = store.calibrations()
    return {
        "state": state,
        "iterations": int(store.meta("iteration", 0)),
        "screened": sum(1 for row in store.screens() if row["purpose"] == "screen"),
        "lab": {
            "dispatched": len(samples),
            "fabricated": sum(1 for s in samples if s["lab_id"]),
            "in_flight": sum(
                1 for stage in stages if stage not in ("measured", "failed", "unknown")
            ),
            "measured": stages.count("measured"),
            "failed": stages.count("failed"),
            "unknown": stages.count("unknown"),
        },
        "best": best(samples or _as_samples(store.screens()), objectives_of(store)),
        "calibration": calibrations[-1]["offsets"] if calibrations else {},
        "ray": store.meta("ray", {}),
        "events": [event["message"] for event in store.events()[-5:]],
    }


def _as_samples(screens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Screened recipes in the shape of measured samples: a digital-only campaign's best."""
    return [
        {
            "stage": "measured",
            "recipe": row["recipe"],
            "lab_id": None,
            "results": {"outcome": row["properties"]},
        }
        for row in screens
        if row["purpose"] == "screen" and not row["failed"]
    ]


def ranked(samples: list[dict[str, Any]], objectives: Mapping[str, str]) -> list[dict[str, Any]]:
    """Measured samples, best first by the first objective."""
    name, goal = next(iter(objectives.items()))
    measured = [s for s in samples if s["stage"] == "measured"]
    return sorted(measured, key=lambda s: s["results"]["outcome"][name], reverse=goal == "max")


def best(samples: list[dict[str, Any]], objectives: Mapping[str, str]) -> dict[str, Any]:
    """The best measured sample (one objective) or the Pareto set of them (several)."""
    measured = [s for s in samples if s["stage"] == "measured"]
    if not measured:
        return {}
    values = [{name: s["results"]["outcome"][name] for name in objectives} for s in measured]
    signed = [
        [v[name] * (1 if goal == "max" else -1) for name, goal in objectives.items()]
        for v in values
    ]
    if len(objectives) == 1:
        top = max(range(len(measured)), key=lambda i: signed[i][0])
        return {**values[top], "recipe": measured[top]["recipe"], "sample": measured[top]["lab_id"]}
    front = [
        i
        for i in range(len(measured))
        if not any(
            all(a >= b for a, b in zip(signed[j], signed[i], strict=True))
            and signed[j] != signed[i]
            for j in range(len(measured))
        )
    ]
    return {
        "pareto": [
            {**values[i], "recipe": measured[i]["recipe"], "sample": measured[i]["lab_id"]}
            for i in front
        ]
    }


# --- report.html ------------------------------------------------------------------------------


def write_report(out: str | Path) -> Path:
    """Write ``out/report.html``, self-contained (figures inlined as PNG)."""
    out = Path(out)
    store = _store(out)
    objectives = objectives_of(store)
    samples = store.samples()
    screens = store.screens()
    summary = status(out)
    sections = [
        f"<h1>poreloop campaign: {html.escape(store.meta('config')['name'])}</h1>",
        _summary_table(summary),
        "<h2>Best lab value against lab samples</h2>",
        _figure(_best_so_far, samples, objectives),
    ]
    if len(objectives) > 1:
        sections += ["<h2>Pareto front (lab)</h2>", _figure(_pareto, samples, objectives)]
    sections += [
        "<h2>Twin against lab</h2>",
        "<p>The twin's prediction of each lab sample before calibration (neutral offsets) and "
        "after (the final fitted offsets), against what the lab measured.</p>",
        _figure(_twin_vs_lab, samples, screens, objectives),
        _discrepancy_table(samples, screens, objectives),
        "<h2>Calibration</h2>",
        _calibration_table(store.calibrations()),
        "<h2>Best measured structure beside its twin</h2>",
        _best_structures(out, samples, screens, objectives),
        "<h2>Top lab recipes</h2>",
        _top_table(samples, objectives),
    ]
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>poreloop report</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:2px 6px;"
        "font-size:90%}img{max-width:100%}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>"
    )
    path = out / "report.html"
    path.write_text(page)
    return path


def _figure(draw: Any, *args: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), layout="constrained")
    FigureCanvasAgg(fig)
    draw(fig, *args)
    return _inline(fig)


def _inline(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"<img src='data:image/png;base64,{data}'>"


def _best_so_far(fig: Any, samples: list[dict[str, Any]], objectives: Mapping[str, str]) -> None:
    ax = fig.subplots()
    for name, goal in objectives.items():
        best, xs, ys = -math.inf, [], []
        sign = 1 if goal == "max" else -1
        for number, sample in enumerate(samples, start=1):
            if sample["stage"] == "measured":
                value = sample["results"]["outcome"][name]
                ax.plot(number, value, "o", color="0.6", ms=4)
                best = max(best, sign * value)
            elif sample["stage"] in ("failed", "unknown"):
                ax.plot(number, math.nan, "x")
            if math.isfinite(best):
                xs.append(number)
                ys.append(sign * best)
        ax.step(xs, ys, where="post", label=f"best {name}")
    ax.set_xlabel("lab samples")
    ax.set_ylabel("measured value")
    ax.legend()


def _pareto(fig: Any, samples: list[dict[str, Any]], objectives: Mapping[str, str]) -> None:
    first, second = list(objectives)[:2]
    ax = fig.subplots()
    measured = [s["results"]["outcome"] for s in samples if s["stage"] == "measured"]
    ax.plot([m[first] for m in measured], [m[second] for m in measured], "o", color="0.6")
    front = best(samples, objectives).get("pareto", [])
    front.sort(key=lambda m: m[first])
    ax.plot([m[first] for m in front], [m[second] for m in front], "o-", color="C3", label="front")
    ax.set_xlabel(first)
    ax.set_ylabel(second)
    ax.legend()


def _predictions(
    screens: list[dict[str, Any]], sample: int
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The twin's check predictions of a lab sample: (neutral calibration, final calibration)."""
    checks = [row for row in screens if row["purpose"] == "check" and row["sample"] == sample]
    before = next((row for row in checks if row["calibration"] is None), None)
    after = next((row for row in reversed(checks) if row["calibration"] is not None), None)
    return before, after


def _twin_vs_lab(
    fig: Any,
    samples: list[dict[str, Any]],
    screens: list[dict[str, Any]],
    objectives: Mapping[str, str],
) -> None:
    axes = fig.subplots(1, len(objectives), squeeze=False)[0]
    for ax, name in zip(axes, objectives, strict=True):
        lows, highs = [], []
        for label, pick, marker in (("before calibration", 0, "s"), ("after", 1, "o")):
            xs, ys = [], []
            for sample in samples:
                if sample["stage"] != "measured":
                    continue
                row = _predictions(screens, sample["id"])[pick]
                if row is not None and name in row["properties"]:
                    xs.append(sample["results"]["outcome"][name])
                    ys.append(row["properties"][name])
            ax.plot(xs, ys, marker, label=label, alpha=0.8)
            lows += xs + ys
            highs += xs + ys
        if lows:
            ax.plot([min(lows), max(highs)], [min(lows), max(highs)], "k--", lw=0.8)
        ax.set_xlabel(f"lab {name}")
        ax.set_ylabel(f"twin {name}")
        ax.legend()


DISCREPANCY_METRICS = ("porosity", "tau_pore_z", "mean_pore_radius_um", "fraction_active")
"""Structure metrics compared between the twin's structure and the segmented scan."""


def discrepancy(
    samples: list[dict[str, Any]], screens: list[dict[str, Any]], objectives: Mapping[str, str]
) -> dict[str, dict[str, float]]:
    """Mean twin − lab per objective and structure metric, before and after calibration."""
    found: dict[str, dict[str, list[float]]] = {}
    for sample in samples:
        if sample["stage"] != "measured":
            continue
        scan = sample["results"].get("measured_structure", {}).get("properties", {})
        lab = {**scan, **sample["results"]["outcome"]}
        for when, row in zip(("before", "after"), _predictions(screens, sample["id"]), strict=True):
            if row is None:
                continue
            for name in (*objectives, *DISCREPANCY_METRICS):
                if name in lab and name in row["properties"]:
                    difference = row["properties"][name] - lab[name]
                    if math.isfinite(difference):
                        found.setdefault(name, {}).setdefault(when, []).append(difference)
    return {
        name: {when: sum(values) / len(values) for when, values in by_when.items()}
        for name, by_when in found.items()
    }


def _discrepancy_table(
    samples: list[dict[str, Any]], screens: list[dict[str, Any]], objectives: Mapping[str, str]
) -> str:
    table = discrepancy(samples, screens, objectives)
    rows = [
        [name, _fmt(values.get("before")), _fmt(values.get("after"))]
        for name, values in table.items()
    ]
    note = (
        "<p>Structure metrics compare the twin's structure as generated with the segmented "
        "scan, so they include the segmentation's bias (calibration itself compares virtual "
        "scans of the twin with the scans, like with like).</p>"
    )
    return _table(["mean twin − lab", "before calibration", "after"], rows) + note


def _calibration_table(calibrations: list[dict[str, Any]]) -> str:
    if not calibrations:
        return "<p>No calibration yet (it needs three scanned samples).</p>"
    names = list(calibrations[-1]["offsets"])
    rows = [
        [
            str(c["iteration"]),
            str(c["samples"]),
            *(_fmt(c["offsets"].get(n)) for n in names),
            _fmt(c["metrics"].get("misfit")),
        ]
        for c in calibrations
    ]
    return _table(["iteration", "scans", *names, "rms misfit"], rows)


def _best_structures(
    out: Path,
    samples: list[dict[str, Any]],
    screens: list[dict[str, Any]],
    objectives: Mapping[str, str],
) -> str:
    top = best(samples, objectives)
    chosen = top.get("sample") or (top.get("pareto") or [{}])[0].get("sample")
    sample = next((s for s in samples if s["lab_id"] == chosen and chosen), None)
    if sample is None:
        return "<p>No measured sample yet.</p>"
    from poreloop.twins.microstructure import Microstructure

    measured = Microstructure.load(out / sample["results"]["measured_structure"]["structure"])
    parts = [f"<h3>lab sample {html.escape(chosen)} (segmented scan)</h3>", _slices(measured)]
    twin_file = out / "structures" / f"twin-{sample['id']}.npz"
    if twin_file.exists():
        parts += ["<h3>its twin (calibrated)</h3>", _slices(Microstructure.load(twin_file))]
    return "\n".join(parts)


def _slices(micro: Any) -> str:
    import tempfile

    from poreloop.twins.plot import plot_slices

    with tempfile.TemporaryDirectory() as folder:
        path = plot_slices(micro, Path(folder) / "slices.png")
        data = base64.b64encode(path.read_bytes()).decode()
    return f"<img src='data:image/png;base64,{data}'>"


def _top_table(samples: list[dict[str, Any]], objectives: Mapping[str, str], n: int = 10) -> str:
    measured = ranked(samples, objectives)
    if not measured:
        return "<p>No measured sample yet.</p>"
    parameters = list(measured[0]["recipe"])
    properties = ("porosity", "tau_pore_z", "fraction_active")
    rows = []
    for s in measured[:n]:
        scan = s["results"].get("measured_structure", {}).get("properties", {})
        fade, life = s["results"].get("cycle_life"), s["results"].get("life")
        retention = (
            f"{fade['capacity_fraction'][-1]:.1%} after {fade['cycles'][-1]}" if fade else None
        )
        predicted = f"{life['cycles']:.0f} ({life['low']:.0f}-{life['high']:.0f})" if life else None
        rows.append(
            [
                s["lab_id"],
                *(_fmt(s["results"]["outcome"][o]) for o in objectives),
                _fmt(retention),
                _fmt(predicted),
                *(_fmt(scan.get(p)) for p in properties),
                *(_fmt(s["recipe"][p]) for p in parameters),
            ]
        )
    header = [
        "sample",
        *objectives,
        "capacity kept (cycles)",
        "life to 80 %, predicted (90 %)",
        *(f"scan {p}" for p in properties),
    ]
    return _table([*header, *parameters], rows)


def _summary_table(summary: dict[str, Any]) -> str:
    rows = [
        [key, html.escape(json.dumps(value))] for key, value in summary.items() if key != "events"
    ]
    return _table(["", ""], rows, escape=False)


def _table(header: list[str], rows: list[list[str]], escape: bool = True) -> str:
    clean = html.escape if escape else (lambda text: text)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{clean(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
