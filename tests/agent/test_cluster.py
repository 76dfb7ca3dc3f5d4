"""Screening on Ray: the same results as the plain functions, failures as results, dead actors
replaced (and a job that keeps killing them given up on). A campaign joining a cluster by
address: ``tests/integration/test_campaign.py``."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from poreloop.agent.cluster import (
    MAX_DEATHS,
    WORKER_NICENESS,
    Job,
    ScreeningPool,
    ScreenResult,
    connect,
)
from poreloop.agent.errors import AgentError
from poreloop.agent.planners.surrogate import torch_on_one_thread
from poreloop.twins import get_twin
from poreloop.twins.actors import ChainHost, TwinHost
from poreloop.twins.critics.chain import get_chain

SHAPE = (24, 24, 24)
RECIPE = {"voxel_size_um": 0.5, "particle_radius_um": 1.5, "thickness_um": 50.0}
"""Particles of 3 voxels: a 24³ box holds enough of them to percolate, and builds in ~10 ms."""


def jobs(n: int, **evaluate: Any) -> list[Job]:
    """``n`` electrode recipes that differ in calendering, each with its own seed."""
    return [(i, {**RECIPE, "compression": 0.02 * i}, 10 + i, dict(evaluate)) for i in range(n)]


def plain(twin: str, chain: str, job: Job) -> tuple[np.ndarray, dict[str, float]]:
    """What the plain functions make of a job: the labels and the chain's properties, computed
    at one torch thread as a Ray worker of one CPU computes them (the float32 solvers' sums run
    in an order that depends on the thread count, which moves their last digits)."""
    _, recipe, seed, evaluate = job
    micro = get_twin(twin).generate(recipe, shape=SHAPE, seed=seed)
    with torch_on_one_thread():
        return micro.labels, dict(get_chain(chain).evaluate(micro, **evaluate).properties)


def by_key(results: Any) -> dict[Any, ScreenResult]:
    found = {result.key: result for result in results}
    return dict(sorted(found.items(), key=lambda item: str(item[0])))


def test_the_hosts_are_the_plain_twin_and_chain() -> None:
    job = jobs(1, thickness_um=80.0)[0]
    labels, properties = plain("li_ion_electrode", "generic", job)
    _, recipe, seed, evaluate = job
    micro, seconds = TwinHost("li_ion_electrode").generate_timed(recipe, SHAPE, seed)
    with torch_on_one_thread():  # as a Ray worker of one CPU computes
        result = ChainHost("generic").evaluate(micro, **evaluate)
    assert np.array_equal(micro.labels, labels) and seconds > 0
    assert result.properties == properties and result.properties["thickness_um"] == 80.0


@pytest.mark.slow
def test_screening_on_ray_equals_the_plain_functions(ray_session: None) -> None:
    """Determinism through Ray: structures and every property of the electrode chain (PyBaMM
    cell model included) as the plain functions give them; evaluate kwargs pass through."""
    batch = [*jobs(3), ("thick", {**RECIPE}, 7, {"thickness_um": 120.0})]
    with ScreeningPool("li_ion_electrode", "electrode", SHAPE, n_workers=2) as pool:
        results = by_key(pool.screen(batch))
        structures = {key: pool.structure(result).labels for key, result in results.items()}
    assert sorted(results, key=str) == sorted((job[0] for job in batch), key=str)
    for job in batch:
        labels, properties = plain("li_ion_electrode", "electrode", job)
        result = results[job[0]]
        assert not result.failed and result.result.ok
        assert np.array_equal(structures[job[0]], labels)
        assert result.properties == pytest.approx(properties, rel=1e-9)
        assert set(result.timings_s) == {"generate_s", "evaluate_s", "job_s", "elapsed_s"}
        assert result.timings_s["job_s"] >= result.timings_s["evaluate_s"] > 0
    assert results["thick"].properties["thickness_um"] == 120.0
    assert results[0].properties["thickness_um"] == RECIPE["thickness_um"]


def test_recipes_that_cannot_be_made_or_scored_are_failed_results(ray_session: None) -> None:
    too_big = {**RECIPE, "particle_radius_um": 10.0}  # 20 voxels: a 24³ box cannot hold one
    batch = [
        ("too big", too_big, 0, {}),
        ("out of bounds", {**RECIPE, "active_fraction": 0.9}, 0, {}),
        ("no thickness", RECIPE, 0, {"thickness_um": -1.0}),
        *jobs(2),
    ]
    with ScreeningPool("li_ion_electrode", "generic", SHAPE, n_workers=2) as pool:
        results = by_key(pool.screen(batch))
        with pytest.raises(AgentError, match="has no structure: generate: particles"):
            pool.structure(results["too big"])
        assert pool.structure(results["no thickness"]).shape == SHAPE
    assert results["too big"].reason.startswith("generate: particles of radius 20.0 voxels")
    assert results["out of bounds"].reason == (
        "generate: parameter 'active_fraction' = 0.9 is above its upper bound 0.6"
    )
    assert results["no thickness"].reason == "evaluate: expected a positive thickness_um, got -1.0"
    assert all(not results[key].properties for key in ("too big", "out of bounds", "no thickness"))
    assert [results[i].failed for i in (0, 1)] == [False, False]
    assert results[0].properties["porosity"] > 0.2
    assert pool.replaced == 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["twin", "chain"])
def test_a_killed_actor_is_replaced_and_every_job_completes(
    ray_session: None, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    import ray

    batch = jobs(12)  # more than the pool makes ahead of its chains: twins still have work
    caplog.set_level(logging.WARNING, logger="poreloop.cluster")
    with ScreeningPool("li_ion_electrode", "generic", SHAPE, n_workers=2) as pool:
        results = pool.screen(batch)
        first = next(results)  # the others in flight or waiting for an actor
        ray.kill(pool.actors(kind)[0])
        results = by_key([first, *results])
    assert pool.replaced == 1
    assert f"a {kind} actor died" in caplog.text
    assert sorted(results) == list(range(12))
    assert sum(result.deaths for result in results.values()) == 1  # the job it was running
    for job in batch:
        assert not results[job[0]].failed
        expected = plain("li_ion_electrode", "generic", job)[1]
        assert results[job[0]].properties == pytest.approx(expected, rel=1e-9)


@pytest.mark.slow
def test_a_job_that_keeps_killing_its_actor_is_given_up(ray_session: None) -> None:
    """Each chain actor dies as it starts (as under a job that runs it out of memory): the job
    fails after MAX_DEATHS deaths instead of looping, and the pool works on afterwards."""
    import ray

    stop = threading.Event()

    def kill_every_chain_actor(pool: ScreeningPool) -> None:
        killed: set[Any] = set()
        while not stop.is_set():
            for actor in set(pool.actors("chain")) - killed:
                ray.kill(actor)
                killed.add(actor)
            stop.wait(0.05)

    with ScreeningPool("li_ion_electrode", "generic", SHAPE, n_workers=1) as pool:
        killer = threading.Thread(target=kill_every_chain_actor, args=(pool,))
        killer.start()
        try:
            [given_up] = pool.screen(jobs(1))
        finally:
            stop.set()
            killer.join()
        [after] = pool.screen(jobs(1))
    give_up = time.monotonic() + 30  # and no actor it killed lives on, holding a CPU
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        assert time.monotonic() < give_up, "an actor of the closed pool still holds its CPU"
        time.sleep(0.1)
    assert given_up.failed and given_up.deaths == MAX_DEATHS
    assert given_up.reason.startswith(f"evaluate: killed its chain actor {MAX_DEATHS} times (")
    assert given_up.structure is not None  # the twin made it; no chain lived to score it
    assert pool.replaced >= MAX_DEATHS
    assert not after.failed and after.properties["porosity"] > 0.2


def test_a_solve_stopped_at_its_cap_is_a_failed_result_with_the_reason(ray_session: None) -> None:
    """What the campaign tells its planner: failed, with the solves and their residuals."""
    options = {"axes": ("z",), "max_iterations": 2}
    with ScreeningPool("li_ion_electrode", "generic", SHAPE, 1, chain_options=options) as pool:
        (capped,) = pool.screen(jobs(1))
    assert capped.failed and capped.result is not None and capped.result.ok
    assert capped.reason.startswith("the solver stopped at its iteration cap without converging")
    assert "tau_pore_z (residual" in capped.reason
    assert {"tau_pore_z", "tau_active_z"} <= set(capped.result.unconverged)


def test_a_pool_checks_its_twin_and_chain_before_starting_actors(ray_session: None) -> None:
    with pytest.raises(AgentError, match="n_workers must be at least 1, got 0"):
        ScreeningPool("li_ion_electrode", "generic", SHAPE, n_workers=0)
    with pytest.raises(ValueError, match="unknown chain 'electorde'; did you mean 'electrode'"):
        ScreeningPool("li_ion_electrode", "electorde", SHAPE, n_workers=1)


def test_connect_reuses_the_ray_of_this_process_and_leaves_it_running(ray_session: None) -> None:
    import ray

    with connect(address="127.0.0.1:1", num_cpus=64) as cluster:
        assert (cluster.mode, cluster.cpus) == ("reused", 2.0)
    assert ray.is_initialized()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.subprocess
def test_a_local_ray_s_workers_are_not_niced_below_other_work() -> None:
    """In a subprocess (this one's Ray is already up): at Ray's own niceness, 15, a campaign's
    actors would get a few % of a core beside any other busy process."""
    script = (
        "import os, ray\n"
        "from poreloop.agent.cluster import connect\n"
        "def niceness():\n"
        "    return os.nice(0)\n"
        "with connect(num_cpus=1):\n"
        "    print(ray.get(ray.remote(num_cpus=1)(niceness).remote()))\n"
    )
    env = {**os.environ, "RAY_ADDRESS": ""}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) == WORKER_NICENESS


@pytest.mark.subprocess
def test_connect_fails_at_once_where_no_cluster_answers(tmp_path: Path) -> None:
    """In a subprocess (this one's Ray is already up): one line, not minutes of retries."""
    port = _free_port()
    env = {**os.environ, "RAY_ADDRESS": ""}
    script = f"from poreloop.agent.cluster import connect; connect(address='127.0.0.1:{port}')"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode != 0
    assert f"AgentError: no Ray cluster answers at 127.0.0.1:{port}" in done.stderr
