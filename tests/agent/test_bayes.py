"""BoTorch Bayesian optimisation: it must beat space filling, and model what GPs alone miss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from botorch.test_functions.multi_objective import BraninCurrin
from botorch.utils.multi_objective.hypervolume import Hypervolume
from botorch.utils.multi_objective.pareto import is_non_dominated

from poreloop.agent.planners import make_planner
from poreloop.twins.space import Categorical, Continuous, Integer, LinearConstraint, ParameterSpace

FAST = {"num_restarts": 4, "raw_samples": 128, "mc_samples": 64}
SQUARE = ParameterSpace.continuous({"x0": (0.0, 1.0), "x1": (0.0, 1.0)})
BRANIN_CURRIN = BraninCurrin(negate=True).to(torch.double)


def branin_currin(recipe: dict) -> dict[str, float]:
    branin, currin = BRANIN_CURRIN(torch.tensor([[recipe["x0"], recipe["x1"]]]))[0].tolist()
    return {"branin": branin, "currin": currin}


def hypervolume(planner) -> float:
    Y = torch.tensor([[o.values["branin"], o.values["currin"]] for o in planner.observations])
    return Hypervolume(BRANIN_CURRIN.ref_point).compute(Y[is_non_dominated(Y)])


def test_bayes_gains_more_hypervolume_than_sobol_on_branin_currin() -> None:
    """The issue's acceptance test: equal budget (6 space-filling + 12 in batches of 3)."""
    gains = []
    for seed in (0, 1):
        volumes = {}
        for name in ("sobol", "bayes"):
            planner = make_planner(
                name,
                SQUARE,
                objectives={"branin": "max", "currin": "max"},
                seed=seed,
                **({"n_initial": 6, **FAST} if name == "bayes" else {}),
            )
            for batch in (6, 3, 3, 3, 3):
                recipes = planner.ask(batch)
                planner.tell(recipes, [branin_currin(r) for r in recipes])
            volumes[name] = hypervolume(planner)
        gains.append(volumes["bayes"] - volumes["sobol"])
    assert min(gains) > 0, gains


def test_the_reference_point_is_inferred_or_taken_from_thresholds() -> None:
    objectives = {"branin": "max", "currin": {"goal": "min", "threshold": 12.0}}
    planner = make_planner("bayes", SQUARE, objectives=objectives, seed=0, **FAST)
    recipes = planner.ask(6)
    planner.tell(recipes, [branin_currin(r) for r in recipes])
    reference = planner.reference_point()
    front = [o.values["branin"] for o in planner.best()]
    assert reference[0] < min(front)  # inferred just below the worst value on the front
    assert reference[1] == -12.0  # a minimised threshold, in maximisation form
    assert len(planner.ask(1)) == 1


def test_failed_samples_teach_where_not_to_go() -> None:
    """Half the square cracks; once a failure model is learned, proposals avoid it."""
    planner = make_planner("bayes", SQUARE, objectives={"y": "max"}, seed=2, n_initial=6, **FAST)

    def outcome(recipe: dict) -> dict:
        if recipe["x0"] > 0.5:
            return {"failed": True, "reason": "cracked"}
        return {"y": recipe["x0"] + recipe["x1"]}  # best right at the cliff

    for batch in (8, 2, 2, 2, 2):
        recipes = planner.ask(batch)
        planner.tell(recipes, [outcome(r) for r in recipes])
    learned = planner.observations[10:]  # after the first round of learning
    assert sum(o.failed for o in learned) <= 2
    assert planner.surrogate().models_failures
    success = planner.surrogate().predict([{"x0": 0.1, "x1": 0.5}, {"x0": 0.9, "x1": 0.5}])
    assert success["success"][0] > 0.7 > 0.3 > success["success"][1]


def test_outcome_constraints_steer_proposals_to_the_feasible_side() -> None:
    """Maximise x0 + x1 while keeping x0 - x1 <= 0: the optimum sits on the diagonal's edge."""
    planner = make_planner(
        "bayes", SQUARE, objectives={"s": "max"}, constraints=["d <= 0"], seed=0, **FAST
    )
    for batch in (6, 2, 2, 2, 2):
        recipes = planner.ask(batch)
        planner.tell(recipes, [{"s": r["x0"] + r["x1"], "d": r["x0"] - r["x1"]} for r in recipes])
    learned = planner.observations[6:]
    assert sum(o.values["d"] <= 0.05 for o in learned) >= 6
    (best,) = planner.best()
    assert best.values["d"] <= 0 and best.values["s"] > 1.5


def test_integers_categories_and_linear_constraints_are_proposed_as_they_are() -> None:
    space = ParameterSpace(
        parameters=(
            Continuous(name="a", low=0.0, high=1.0),
            Integer(name="layers", low=1, high=5),
            Categorical(name="solvent", choices=("nmp", "water", "ethanol")),
        ),
        constraints=(LinearConstraint(coefficients={"a": 1.0, "layers": 0.2}, bound=1.2),),
    )
    bonus = {"nmp": 0.0, "water": 0.5, "ethanol": 0.1}

    def value(recipe: dict) -> dict[str, float]:
        return {
            "v": bonus[recipe["solvent"]]
            - (recipe["a"] - 0.5) ** 2
            - 0.1 * (recipe["layers"] - 3) ** 2
        }

    planner = make_planner("bayes", space, objectives={"v": "max"}, seed=1, **FAST)
    for batch in (6, 3, 3):
        recipes = planner.ask(batch)
        planner.tell(recipes, [value(r) for r in recipes])
    proposals = planner.ask(3)
    for recipe in proposals:
        assert isinstance(recipe["layers"], int) and recipe["solvent"] in bonus
        assert space.is_feasible(recipe)
    assert len({tuple(r.items()) for r in proposals}) == 3
    (best,) = planner.best()
    assert best.recipe["solvent"] == "water"


def test_a_batch_and_the_pending_queue_never_repeat_a_recipe() -> None:
    planner = make_planner("bayes", SQUARE, objectives={"y": "max"}, seed=0, n_initial=4, **FAST)
    recipes = planner.ask(4)
    planner.tell(recipes, [{"y": -((r["x0"] - 0.3) ** 2)} for r in recipes])
    first, second = planner.ask(3), planner.ask(3)
    points = np.array([[r["x0"], r["x1"]] for r in first + second])
    gaps = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.eye(6)
    assert gaps.min() > 1e-3


def twin_score(recipe: dict) -> float:
    """The digital twin: right trend, biased (tilted and offset)."""
    return lab_score(recipe) + 0.6 * recipe["x0"] + 0.2


def lab_score(recipe: dict) -> float:
    return float(np.sin(3 * recipe["x0"]) + np.cos(2 * recipe["x1"]))


def test_twin_scores_and_lab_results_learn_one_model() -> None:
    """Many twin scores and a few lab results predict the lab better than the lab alone."""
    fidelities = {"twin": 1.0, "lab": 20.0}
    twin_recipes = SQUARE.sample(24, seed=4)
    lab_recipes = twin_recipes[:5]
    both = make_planner("bayes", SQUARE, {"y": "max"}, fidelities=fidelities, seed=0, **FAST)
    both.tell(twin_recipes, [{"y": twin_score(r), "fidelity": "twin"} for r in twin_recipes])
    both.tell(lab_recipes, [{"y": lab_score(r), "fidelity": "lab"} for r in lab_recipes])
    lab_only = make_planner("bayes", SQUARE, {"y": "max"}, seed=0, **FAST)
    lab_only.tell(lab_recipes, [{"y": lab_score(r)} for r in lab_recipes])

    test = SQUARE.sample(200, seed=9, method="random")
    truth = np.array([lab_score(r) for r in test])
    error_both = np.abs(both.surrogate().predict(test)["y"] - truth).mean()
    error_lab = np.abs(lab_only.surrogate().predict(test)["y"] - truth).mean()
    assert error_both < 0.6 * error_lab, (error_both, error_lab)

    proposals = both.ask(2)
    assert all(SQUARE.is_feasible(r) for r in proposals)


def test_a_recipe_goes_to_the_twin_while_the_twin_is_unsure_of_it_then_to_the_lab() -> None:
    twin_recipes = SQUARE.sample(8, seed=4)
    lab_recipes = twin_recipes[:3]
    planner = make_planner(
        "bayes", SQUARE, {"y": "max"}, fidelities={"twin": 1, "lab": 20}, seed=0, **FAST
    )
    planner.tell(twin_recipes, [{"y": twin_score(r), "fidelity": "twin"} for r in twin_recipes])
    planner.tell(lab_recipes, [{"y": lab_score(r), "fidelity": "lab"} for r in lab_recipes])
    grid = SQUARE.sample(256, seed=1)
    seen = np.array([[r["x0"], r["x1"]] for r in twin_recipes])
    distance = [np.linalg.norm(seen - [r["x0"], r["x1"]], axis=1).min() for r in grid]
    far = grid[int(np.argmax(distance))]
    assert planner.choose_fidelity([far]) == ["twin"]
    assert planner.choose_fidelity(twin_recipes[3:]) == ["lab"] * 5


def test_choose_fidelity_needs_fidelities() -> None:
    from poreloop.agent.errors import PlannerError

    planner = make_planner("bayes", SQUARE, {"y": "max"})
    with pytest.raises(PlannerError, match="needs fidelities"):
        planner.choose_fidelity([{"x0": 0.1, "x1": 0.2}])


def test_beyond_its_cap_the_gp_keeps_every_lab_result_and_the_newest_twin_scores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from poreloop.agent.planners import surrogate

    monkeypatch.setattr(surrogate, "MAX_OBSERVATIONS", 10)
    planner = make_planner("bayes", SQUARE, {"y": "max"}, fidelities={"twin": 1, "lab": 20})
    recipes = SQUARE.sample(16, seed=1)
    planner.tell(recipes[:3], [{"y": 1.0, "fidelity": "lab"}] * 3)
    planner.tell(recipes[3:], [{"y": float(i), "fidelity": "twin"} for i in range(13)])
    fitted = surrogate._fitted(planner)
    assert [o.fidelity for o in fitted] == ["lab"] * 3 + ["twin"] * 7
    assert [o.values["y"] for o in fitted[3:]] == [6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]
    assert planner.surrogate().predict(recipes[:2])["y"].shape == (2,)
