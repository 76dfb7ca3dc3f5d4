"""The simulated lab's ground truth stays where only the simulated instruments read it.

A campaign learns the twin–lab gap from what a real lab would give it (records, scans,
measurements); if ``agent/`` or ``envs/`` could read the hidden offsets or the true recipes,
its calibration and its benchmarks would prove nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from poreloop.instruments.records import META_FILE
from poreloop.instruments.sim import lab as sim_lab
from poreloop.instruments.sim import robot as sim_robot

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN_MODULES = ("poreloop.instruments.sim",)
FORBIDDEN_NAMES = {
    sim_lab.TRUTH_DIR,
    "true_recipe",
    "DEFAULT_HIDDEN",
    "hidden",
    *sim_robot.DEFAULT_HIDDEN,
}


def _sources() -> list[Path]:
    return sorted(p for folder in ("agent", "envs") for p in (REPO / folder).rglob("*.py"))


def _imported(node: ast.Import | ast.ImportFrom, path: Path) -> list[str]:
    """Absolute names of the modules (and module attributes) an import statement reaches;
    relative imports are resolved from the file's package under ``poreloop``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    package = ["poreloop", *path.relative_to(REPO).parent.parts]
    base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
    module = ".".join(part for part in (base, node.module or "") if part)
    return [module, *(f"{module}.{alias.name}" for alias in node.names)]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_agent_and_envs_never_read_the_ground_truth(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            bad = [m for m in _imported(node, path) if m.startswith(FORBIDDEN_MODULES)]
            assert not bad, f"{path.name}:{node.lineno} imports the simulated lab: {bad}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
            assert value not in FORBIDDEN_NAMES, f"{path.name}:{node.lineno} {value!r}"
            assert not value.startswith(FORBIDDEN_MODULES), f"{path.name}:{node.lineno} {value!r}"
        if isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            assert name not in FORBIDDEN_NAMES, f"{path.name}:{node.lineno} reads {name}"


def test_a_sample_record_holds_no_truth(tmp_path: Path) -> None:
    from poreloop.instruments.base import ActionContext

    robot = sim_robot.SimRobot(tmp_path, time_scale=0)
    made = robot.perform(
        "fabricate", robot.validate("fabricate", {"particle_radius_um": 2.0}), ActionContext()
    )
    folder = tmp_path / "samples" / made["sample_id"]
    assert sorted(p.name for p in folder.iterdir()) == [META_FILE]
    record = (folder / META_FILE).read_text()
    assert all(name not in record for name in ("true_recipe", "seed", "defects"))
