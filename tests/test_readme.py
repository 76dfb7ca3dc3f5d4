"""The README's command-line tour runs as written: every command in it exits 0.

Runs from the repository root (``python -m pytest``), where README.md and configs/ are.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("poreloop")


def tour() -> list[list[str]]:
    """The commands of the first ``bash`` block after '## Command line', one per line
    (backslash continuations joined)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Command line\n") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README.md's Command line section has no bash block"
    lines = block.group(1).replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip()]


def test_the_tour_has_no_placeholders() -> None:
    commands = tour()
    assert len(commands) >= 5 and all(argv[0] == "poreloop" for argv in commands)
    assert not [argv for argv in commands if any("[" in arg or "HOST" in arg for arg in argv)]


@pytest.mark.slow
def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    poreloop = str(SCRIPT) if SCRIPT.is_file() else shutil.which("poreloop")
    assert poreloop, "the poreloop console script is not installed"
    for argv in tour():
        done = subprocess.run(
            [poreloop, *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{shlex.join(argv)} exited {done.returncode}: {done.stderr}"
