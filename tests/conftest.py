"""Shared test doubles: tiny twins registered in ``TWINS`` for the duration of one test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from scipy import ndimage

from poreloop.twins.manufacturing import TWINS
from poreloop.twins.manufacturing.base import Shape, Twin
from poreloop.twins.microstructure import Microstructure
from poreloop.twins.space import (
    Categorical,
    Continuous,
    Integer,
    LinearConstraint,
    ParameterSpace,
    Recipe,
)


def thresholded_field(
    shape: Shape, solid_fraction: float, sigma: float, sheets: bool, rng: np.random.Generator
) -> np.ndarray:
    """A periodic Gaussian random field smoothed over ``sigma`` voxels, cut at a quantile.

    Returns ``shape`` uint8 labels (0 pore, 1 solid) whose solid fraction is ``solid_fraction``
    up to ties: blobs keep the highest values, sheets the values nearest zero.
    """
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    if sheets:
        field = -np.abs(field)
    return (field > np.quantile(field, 1 - solid_fraction)).astype(np.uint8)


class FieldTwin(Twin):
    """Test double: a thresholded smoothed random field with one parameter of each kind."""

    name: ClassVar[str] = "toy_field"
    phases: ClassVar[dict[int, str]] = {0: "pore", 1: "solid"}
    space: ClassVar[ParameterSpace] = ParameterSpace(
        parameters=(
            Continuous(
                name="solid_fraction",
                low=0.2,
                high=0.8,
                default=0.5,
                description="volume fraction of the solid phase",
            ),
            Integer(
                name="n_grains",
                low=1,
                high=64,
                default=8,
                description="grains across the shortest box edge; sets the correlation length",
            ),
            Categorical(
                name="mode",
                choices=("blobs", "sheets"),
                default="blobs",
                description="solid as rounded blobs or as thin connected sheets",
            ),
            Continuous(
                name="voxel_size_um",
                low=0.1,
                high=5.0,
                default=1.0,
                unit="um",
                description="edge of one voxel",
            ),
        ),
        constraints=(
            LinearConstraint(coefficients={"solid_fraction": 1.0, "n_grains": 0.01}, bound=1.2),
        ),
    )

    def _generate(self, recipe: Recipe, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        sigma = min(shape) / (4 * int(recipe["n_grains"]))
        return thresholded_field(
            shape, float(recipe["solid_fraction"]), sigma, recipe["mode"] == "sheets", rng
        )


class ReferenceTwin(Twin):
    """Test double: a random field with the pore fraction of a measured reference structure."""

    name: ClassVar[str] = "toy_reference"
    phases: ClassVar[dict[int, str]] = {0: "pore", 1: "solid"}
    space: ClassVar[ParameterSpace] = ParameterSpace(
        parameters=(
            Continuous(
                name="voxel_size_um",
                low=0.1,
                high=5.0,
                default=1.0,
                unit="um",
                description="edge of one voxel",
            ),
        )
    )

    def __init__(self, reference: Microstructure) -> None:
        self.solid_fraction = 1.0 - float(np.mean(reference.labels == 0))

    def _generate(self, recipe: Recipe, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        return thresholded_field(shape, self.solid_fraction, 2.0, False, rng)


@pytest.fixture
def toy_twin(monkeypatch: pytest.MonkeyPatch) -> type[FieldTwin]:
    """``FieldTwin`` registered as 'toy_field' for one test."""
    monkeypatch.setitem(TWINS, FieldTwin.name, FieldTwin)
    return FieldTwin


@pytest.fixture
def toy_reference_twin(monkeypatch: pytest.MonkeyPatch) -> type[ReferenceTwin]:
    """``ReferenceTwin`` registered as 'toy_reference' for one test."""
    monkeypatch.setitem(TWINS, ReferenceTwin.name, ReferenceTwin)
    return ReferenceTwin


@pytest.fixture
def toy_micro() -> Microstructure:
    """A small, non-cubic 3D microstructure from ``FieldTwin``."""
    return FieldTwin().generate({"solid_fraction": 0.4}, shape=(24, 20, 16), seed=3)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the whole test session (2 CPUs, no dashboard), shut down at its end;
    ``address="local"`` so it never joins a Ray that another process started on this machine."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def ray_address(ray_session: None) -> str:
    """The session's Ray GCS address: a campaign in a subprocess joins it (``RAY_ADDRESS``)
    instead of starting its own."""
    import ray

    return ray.get_runtime_context().gcs_address


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[str]:
    """A Ray cluster started apart, as a lab would (``ray start --head``, one CPU, loopback):
    its address. ``--block`` keeps the head's processes tied to the one this fixture stops by
    PID (``ray stop`` would stop every Ray on the machine)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # unix sockets: a short path
    # Ray's token authentication is for a cluster across machines; a loopback test opts out
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "disabled"}
    log_path = tmp_path / "ray-head.log"
    with log_path.open("w") as log:
        head = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("ray")),
                "start",
                "--head",
                "--block",
                f"--port={port}",
                "--num-cpus=1",
                "--include-dashboard=false",
                "--disable-usage-stats",
                f"--temp-dir={temp}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while head.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        assert head.poll() is None, log_path.read_text()
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)
