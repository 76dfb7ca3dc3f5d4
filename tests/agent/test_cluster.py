"""Screening on Ray: the same results as the plain functions, failures as results, dead actors
replaced, and a real cluster joined by address."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from poreloop.agent.cluster import ScreeningPool
from poreloop.twins import get_twin
from poreloop.twins.critics.chain import get_chain

SHAPE = (24, 24, 24)
RECIPE = {"voxel_size_um": 0.5, "particle_radius_um": 2.0, "thickness_um": 50.0}


def recipes(n: int) -> list[dict]:
    space = get_twin("li_ion_electrode").space
    return [space.complete({**RECIPE, "compression": 0.05 * i}) for i in range(n)]


@pytest.mark.slow
def test_screening_on_ray_equals_the_plain_functions(ray_address: str) -> None:
    twin, chain = get_twin("li_ion_electrode"), get_chain("electrode")
    jobs = [(i, recipe, 10 + i, {}) for i, recipe in enumerate(recipes(3))]
    with ScreeningPool("li_ion_electrode", "electrode", SHAPE, workers=2) as pool:
        results = sorted(pool.screen(jobs), key=lambda result: result.key)
    for (_, recipe, seed, _), result in zip(jobs, results, strict=True):
        expected = chain.evaluate(twin.generate(recipe, shape=SHAPE, seed=seed)).properties
        assert not result.failed
        assert result.properties == pytest.approx(expected, rel=1e-9)


@pytest.mark.slow
def test_a_recipe_the_twin_cannot_make_is_a_failed_result(ray_address: str) -> None:
    bad = {**recipes(1)[0], "particle_radius_um": 10.0}  # 20 voxels: the 24³ box cannot hold it
    jobs = [(0, bad, 0, {}), (1, recipes(1)[0], 1, {})]
    with ScreeningPool("li_ion_electrode", "electrode", SHAPE, workers=1) as pool:
        failed, ok = sorted(pool.screen(jobs), key=lambda result: result.key)
    assert failed.failed and "TwinError" in failed.reason and "in-plane box" in failed.reason
    assert not ok.failed and ok.properties["energy_density_wh_l_1c"] > 0


@pytest.mark.slow
def test_a_killed_actor_is_replaced_and_its_work_redone(ray_address: str) -> None:
    import ray

    jobs = [(i, recipe, i, {}) for i, recipe in enumerate(recipes(6))]
    with ScreeningPool("li_ion_electrode", "electrode", SHAPE, workers=2) as pool:
        undisturbed = {r.key: r for r in pool.screen(jobs)}
        results = pool.screen(jobs)
        first = next(results)
        ray.kill(pool.actors()[0])  # a twin actor dies with work queued on it
        again = {r.key: r for r in [first, *results]}
    assert pool.replaced >= 1
    assert sorted(again) == list(range(6))
    for key, result in again.items():  # redone elsewhere: the same answer, failures included
        assert (result.failed, result.reason) == (undisturbed[key].failed, undisturbed[key].reason)
        assert result.properties == pytest.approx(undisturbed[key].properties, rel=1e-9)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_screening_joins_a_ray_cluster_by_address(tmp_path: Path) -> None:
    """A Ray head started apart (``ray start --head``), joined as a lab's cluster would be."""
    port, ray_cli = _free_port(), str(Path(sys.executable).with_name("ray"))
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # unix sockets: a short path
    # Ray's token authentication is for a cluster across machines; a loopback test opts out
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "disabled"}
    log = (tmp_path / "head.log").open("w")
    head = subprocess.Popen(  # --block: the head's processes live and die with this one
        [
            ray_cli,
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
    )
    try:
        probe = (
            "import json; from poreloop.agent.cluster import ScreeningPool, connect;"
            "from tests.agent.test_cluster import recipes, SHAPE;"
            f"cm = connect(address='127.0.0.1:{port}'); cm.__enter__();"
            "import ray; cpus = ray.cluster_resources().get('CPU');"
            "pool = ScreeningPool('li_ion_electrode', 'electrode', SHAPE, workers=1);"
            "r = [x.properties['energy_density_wh_l_1c'] for x in pool.screen([(0, recipes(1)[0], 0, {})])];"
            "pool.close(); cm.__exit__(None, None, None); print(json.dumps([cpus, r]))"
        )
        for _ in range(60):  # the head takes some seconds to listen
            done = subprocess.run(
                [sys.executable, "-c", probe],
                capture_output=True,
                text=True,
                timeout=300,
                cwd=Path(__file__).resolve().parents[2],
                env=env,
            )
            if done.returncode == 0 or "Failed to connect" not in done.stderr:
                break
        assert done.returncode == 0, done.stderr[-3000:] + (tmp_path / "head.log").read_text()
        cpus, energies = json.loads(done.stdout.strip().splitlines()[-1])
        assert cpus == 1.0 and energies[0] > 0  # the head's one CPU, not this machine's
    finally:
        head.terminate()  # by PID: `ray stop` would stop every Ray on the machine
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)
