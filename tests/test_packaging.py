"""The distribution installs one import root, as a user's shared environment needs.

A wheel built from the repository goes into a fresh venv that already holds PyPI's ``envs``:
both must import, each from its own place, and the ``poreloop`` command must answer.
The fresh venv borrows this venv's site-packages for poreloop's dependencies (a ``.pth`` line,
appended after its own site-packages, so PyPI's ``envs`` is found first).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

REPO = Path(__file__).resolve().parents[1]


def _run(*command: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def test_wheel_installs_beside_pypi_envs(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        wheels,
        REPO,
    )
    (wheel,) = wheels.glob("poreloop-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packaged = {name for name in archive.namelist() if name.endswith("/__init__.py")}
    in_repo = {
        f"poreloop/{path.relative_to(REPO).as_posix()}".replace("poreloop/poreloop/", "poreloop/")
        for root in ("poreloop", "agent", "envs", "twins", "instruments")
        for path in (REPO / root).rglob("__init__.py")
    }
    assert packaged == in_repo, "pyproject's packages list and the folders disagree"

    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=True)
    python = fresh / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", "envs==1.4")
    _run(python, "-m", "pip", "install", "--quiet", "--no-deps", wheel)
    site = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip()
    )
    (site / "zz_poreloop_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

    where = _run(
        python,
        "-c",
        "import envs, poreloop.envs, poreloop.twins, poreloop.instruments, poreloop.agent;"
        "print(envs.__file__); print(poreloop.envs.__file__); print(poreloop.envs.ENVS)",
        cwd=tmp_path,
    ).splitlines()
    assert Path(where[0]).is_relative_to(site), "PyPI's envs must stay the one `import envs` finds"
    assert Path(where[1]).is_relative_to(site / "poreloop"), (
        "poreloop.envs must come from the wheel"
    )
    assert "poreloop/ElectrodeDesign-v0" in where[2]
    assert not (site / "twins").exists() and not (site / "agent").exists()
    assert "usage: poreloop" in _run(fresh / "bin" / "poreloop", "--help", cwd=tmp_path)
