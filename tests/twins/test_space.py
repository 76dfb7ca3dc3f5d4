"""ParameterSpace: validation messages, defaults, the unit-cube encoding and constrained sampling."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from poreloop.twins import get_twin
from poreloop.twins.errors import TwinError
from poreloop.twins.space import (
    Categorical,
    Continuous,
    Integer,
    LinearConstraint,
    ParameterSpace,
    read_recipe,
)


def mixed_space(*constraints: LinearConstraint) -> ParameterSpace:
    """x, y in [0, 1] µm, n in 1..10, mode in {a, b, c}; defaults x = y = 0.25, n = 3, mode a."""
    return ParameterSpace(
        parameters=(
            Continuous(name="x", low=0.0, high=1.0, default=0.25, unit="um"),
            Continuous(name="y", low=0.0, high=1.0, default=0.25),
            Integer(name="n", low=1, high=10, default=3),
            Categorical(name="mode", choices=("a", "b", "c"), default="a"),
        ),
        constraints=constraints,
    )


X_PLUS_Y = LinearConstraint(coefficients={"x": 1.0, "y": 1.0}, bound=1.0)


@pytest.fixture
def space() -> ParameterSpace:
    return mixed_space(X_PLUS_Y)


@pytest.fixture
def recipe() -> dict[str, float | int | str]:
    return {"x": 0.5, "y": 0.3, "n": 4, "mode": "b"}


# --- validate ---------------------------------------------------------------------------


def test_validate_normalises_types(space: ParameterSpace) -> None:
    checked = space.validate({"x": 0, "y": np.float32(0.25), "n": 4.0, "mode": "c"})
    assert checked == {"x": 0.0, "y": 0.25, "n": 4, "mode": "c"}
    assert isinstance(checked["x"], float)
    assert isinstance(checked["y"], float)
    assert isinstance(checked["n"], int)


def test_validate_rejects_unknown_name_with_suggestion(space: ParameterSpace, recipe) -> None:
    with pytest.raises(TwinError, match=r"unknown parameter 'mdoe'.*did you mean 'mode'"):
        space.validate({**recipe, "mdoe": "a"})


def test_getitem_suggests_a_close_name(space: ParameterSpace) -> None:
    assert space["n"].kind == "integer"
    with pytest.raises(TwinError, match=r"unknown parameter 'mod'.*did you mean 'mode'"):
        space["mod"]


def test_validate_rejects_missing_value(space: ParameterSpace, recipe) -> None:
    del recipe["n"]
    with pytest.raises(TwinError, match=r"missing a value for 'n'"):
        space.validate(recipe)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("x", 1.5, r"parameter 'x' = 1.5 um is above its upper bound 1.0 um"),
        ("x", -0.1, r"parameter 'x' = -0.1 um is below its lower bound 0.0 um"),
        ("n", 11, r"parameter 'n' = 11 is above its upper bound 10"),
        ("n", 0, r"parameter 'n' = 0 is below its lower bound 1"),
    ],
)
def test_validate_names_parameter_value_and_bound(
    space: ParameterSpace, recipe, name: str, value: float, message: str
) -> None:
    with pytest.raises(TwinError, match=message):
        space.validate({**recipe, name: value})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("x", "0.5", r"'x' expects a number, got '0.5'"),
        ("x", True, r"'x' expects a number, got True"),
        ("x", None, r"'x' expects a number, got None"),
        ("x", math.nan, r"'x' expects a finite number"),
        ("x", math.inf, r"'x' expects a finite number"),
        ("n", 2.5, r"'n' expects an integer, got 2.5"),
        ("n", "3", r"'n' expects an integer, got '3'"),
        ("n", math.nan, r"'n' expects an integer, got nan"),
        ("n", -math.inf, r"'n' expects an integer, got -inf"),
        ("mode", "d", r"'mode' expects one of \['a', 'b', 'c'\], got 'd'"),
        ("mode", 1, r"'mode' expects one of \['a', 'b', 'c'\], got 1"),
    ],
)
def test_validate_rejects_wrong_type(
    space: ParameterSpace, recipe, name: str, value: object, message: str
) -> None:
    with pytest.raises(TwinError, match=message):
        space.validate({**recipe, name: value})


def test_validate_rejects_constraint_violation(space: ParameterSpace, recipe) -> None:
    with pytest.raises(TwinError, match=r"breaks the constraint 1\*x \+ 1\*y <= 1.*= 1\.3"):
        space.validate({**recipe, "x": 0.8, "y": 0.5})
    assert space.validate({**recipe, "x": 0.7, "y": 0.3})["x"] == 0.7  # on the boundary


def test_validate_rejects_a_non_mapping(space: ParameterSpace) -> None:
    with pytest.raises(TwinError, match="a recipe must be a mapping"):
        space.validate([("x", 0.5)])  # type: ignore[arg-type]


# --- defaults ---------------------------------------------------------------------------


def test_complete_fills_defaults(space: ParameterSpace) -> None:
    defaults = {"x": 0.25, "y": 0.25, "n": 3, "mode": "a"}
    assert space.defaults() == defaults
    assert space.complete() == defaults
    assert space.complete({"n": 7}) == {**defaults, "n": 7}
    with pytest.raises(TwinError, match="above its upper bound"):
        space.complete({"n": 70})


def test_complete_reports_parameters_without_default() -> None:
    space = ParameterSpace(
        parameters=(
            Continuous(name="x", low=0, high=1),
            Integer(name="n", low=1, high=3, default=2),
        )
    )
    assert space.defaults() == {"n": 2}
    with pytest.raises(TwinError, match="missing a value for 'x'"):
        space.complete()


# --- unit cube --------------------------------------------------------------------------


BOX = mixed_space()


@settings(max_examples=200, deadline=None)
@given(
    x=st.floats(0.0, 1.0),
    y=st.floats(0.0, 1.0),
    n=st.integers(1, 10),
    mode=st.sampled_from(("a", "b", "c")),
)
def test_unit_cube_round_trip_of_a_recipe(x: float, y: float, n: int, mode: str) -> None:
    recipe = {"x": x, "y": y, "n": n, "mode": mode}
    u = BOX.to_unit(recipe)
    assert u.shape == (BOX.dim,)
    assert np.all((u >= 0) & (u <= 1))
    back = BOX.from_unit(u)
    assert back["n"] == n
    assert back["mode"] == mode
    assert back["x"] == pytest.approx(x, abs=1e-12)
    assert back["y"] == pytest.approx(y, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4))
def test_unit_cube_round_trip_of_a_point(u: list[float]) -> None:
    recipe = BOX.from_unit(np.array(u))
    assert BOX.validate(recipe) == recipe
    again = BOX.to_unit(recipe)
    assert again[:2] == pytest.approx(u[:2], abs=1e-12)  # continuous: the same point
    assert BOX.from_unit(again) == recipe  # integer, categorical: the centre of the same slice


def test_unit_cube_slices_are_equal_for_integers_and_choices() -> None:
    n_values = [BOX.from_unit(np.array([0.5, 0.5, u, 0.5]))["n"] for u in np.linspace(0, 1, 1001)]
    assert np.bincount(n_values)[1:].tolist() == pytest.approx([100] * 10, abs=1)
    modes = [BOX.from_unit(np.array([0.5, 0.5, 0.5, u]))["mode"] for u in np.linspace(0, 1, 999)]
    assert [modes.count(m) for m in "abc"] == [333, 333, 333]
    assert BOX.from_unit(np.array([1.0, 0.0, 1.0, 1.0])) == {
        "x": 1.0,
        "y": 0.0,
        "n": 10,
        "mode": "c",
    }


def test_from_unit_rejects_a_wrong_shape() -> None:
    with pytest.raises(TwinError, match=r"shape \(4,\), got \(3,\)"):
        BOX.from_unit(np.zeros(3))


# --- sampling ---------------------------------------------------------------------------


def test_sample_is_reproducible_per_seed(space: ParameterSpace) -> None:
    assert space.sample(16, seed=1) == space.sample(16, seed=1)
    assert space.sample(16, seed=1) != space.sample(16, seed=2)


def test_sample_stays_inside_bounds_and_constraints(space: ParameterSpace) -> None:
    recipes = space.sample(200, seed=0)
    assert len(recipes) == 200
    for recipe in recipes:
        assert space.validate(recipe) == recipe  # bounds, types and x + y <= 1
    x = np.array([r["x"] for r in recipes])
    y = np.array([r["y"] for r in recipes])
    # the feasible triangle is filled: its far edge and corners are reached
    assert (x + y).max() > 0.95
    assert x.max() > 0.9
    assert y.max() > 0.9
    # uniform on the triangle x + y <= 1: E[x] = 1/3
    assert x.mean() == pytest.approx(1 / 3, abs=0.03)
    assert {r["mode"] for r in recipes} == {"a", "b", "c"}
    assert {r["n"] for r in recipes} == set(range(1, 11))


def test_sample_raises_when_constraints_leave_no_volume() -> None:
    impossible = ParameterSpace(
        parameters=(Continuous(name="x", low=0, high=1), Continuous(name="y", low=0, high=1)),
        constraints=(LinearConstraint(coefficients={"x": 1, "y": 1}, bound=-1),),
    )
    with pytest.raises(TwinError, match=r"found only 0 of 3 feasible recipes.*no volume"):
        impossible.sample(3, seed=0, max_draws=4096)


def test_sample_of_zero_recipes() -> None:
    assert BOX.sample(0, seed=0) == []


def test_is_feasible_and_describe() -> None:
    assert X_PLUS_Y.describe() == "1*x + 1*y <= 1"
    assert X_PLUS_Y.value({"x": 0.5, "y": 0.25}) == 0.75
    space = mixed_space(X_PLUS_Y)
    assert space.is_feasible({"x": 0.5, "y": 0.5})
    assert not space.is_feasible({"x": 0.5, "y": 0.6})


# --- construction -----------------------------------------------------------------------


def test_continuous_box() -> None:
    box = ParameterSpace.continuous({"a": (0.0, 2.0), "b": (-1.0, 1.0)})
    assert box.names == ["a", "b"]
    assert box.dim == 2
    assert box.defaults() == {"a": 1.0, "b": 0.0}
    assert all(p.kind == "continuous" for p in box.parameters)
    assert box.to_unit({"a": 1.0, "b": 1.0}).tolist() == [0.5, 1.0]


@pytest.mark.parametrize(
    ("parameters", "constraints", "message"),
    [
        (
            (Continuous(name="x", low=0, high=1), Integer(name="x", low=0, high=2)),
            (),
            "parameter names must be unique",
        ),
        ((Continuous(name="x", low=1, high=1),), (), r"'x' needs low < high, got \[1.0, 1.0\]"),
        ((Integer(name="n", low=5, high=2),), (), r"'n' needs low < high, got \[5, 2\]"),
        (
            (Continuous(name="x", low=0, high=1),),
            (LinearConstraint(coefficients={"z": 1}, bound=1),),
            "constraint names unknown parameter 'z'",
        ),
        (
            (Continuous(name="x", low=0, high=1), Categorical(name="m", choices=("a", "b"))),
            (LinearConstraint(coefficients={"m": 1}, bound=1),),
            "constraint names categorical parameter 'm'",
        ),
        (
            (
                Continuous(name="x", low=0, high=1, default=0.6),
                Continuous(name="y", low=0, high=1, default=0.6),
            ),
            (X_PLUS_Y,),
            r"the defaults break the constraint 1\*x \+ 1\*y <= 1",
        ),
        (
            (Continuous(name="x", low=0, high=1, default=5),),
            (),
            r"bad default: parameter 'x' = 5.0 is above its upper bound 1.0",
        ),
        (
            (Categorical(name="m", choices=("a", "b"), default="c"),),
            (),
            r"bad default: parameter 'm' expects one of \['a', 'b'\], got 'c'",
        ),
        ((), (), "at least 1 item"),
    ],
)
def test_invalid_spaces_are_rejected(parameters, constraints, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ParameterSpace(parameters=parameters, constraints=constraints)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Continuous(name="2x", low=0, high=1),
        lambda: Continuous(name="x", low=0, high=1, colour="red"),
        lambda: Categorical(name="m", choices=()),
        lambda: LinearConstraint(coefficients={}, bound=1),
    ],
)
def test_invalid_parameters_are_rejected(make) -> None:
    with pytest.raises(ValidationError):
        make()


def test_space_round_trips_through_json(space: ParameterSpace) -> None:
    again = ParameterSpace.model_validate_json(space.model_dump_json())
    assert again == space
    assert again["mode"].choices == ("a", "b", "c")


# --- recipes from text and files (what the CLI and a campaign read) ---------------------------

RECIPES = sorted((Path(__file__).resolve().parents[2] / "configs" / "recipes").glob("*/*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_recipes_are_valid_for_their_twin(path: Path) -> None:
    get_twin(path.parent.name).space.complete(read_recipe(path))


def test_parse_reads_each_text_by_its_parameters_kind() -> None:
    space = ParameterSpace(
        parameters=(
            Continuous(name="x", low=0.0, high=1.0),
            Integer(name="n", low=1, high=9),
            Categorical(name="mode", choices=("a", "b")),
        )
    )
    assert space.parse([("x", "0.5"), ("n", "3"), ("mode", "b")]) == {"x": 0.5, "n": 3, "mode": "b"}
    with pytest.raises(TwinError, match="parameter 'x' expects a number, got 'half'"):
        space.parse([("x", "half")])
    with pytest.raises(TwinError, match="parameter 'x' is set twice"):
        space.parse([("x", "0.1"), ("x", "0.2")])
    with pytest.raises(TwinError, match="unknown parameter 'y'"):
        space.parse([("y", "1")])


def test_read_recipe_refuses_what_is_not_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(TwinError, match="must be a YAML mapping"):
        read_recipe(tmp_path / "list.yaml")
    with pytest.raises(TwinError, match="cannot read recipe"):
        read_recipe(tmp_path / "absent.yaml")


def test_print_shows_a_table_of_parameters_and_constraints(space: ParameterSpace) -> None:
    lines = str(space).splitlines()
    assert lines[0].split()[:5] == ["parameter", "kind", "unit", "range", "default"]
    assert [line.split()[0] for line in lines[1:5]] == ["x", "y", "n", "mode"]
    assert "{a, b, c}" in lines[4]
    assert lines[-1].startswith("constraint: ") and "<=" in lines[-1]
