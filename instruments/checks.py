"""The contract checker for hardware adapters, as gymnasium's ``check_env`` is for envs.

The simulated backend of a kind is its contract: an adapter must declare the same actions, each
with the same params and result fields and types, bounds no wider, the same defaults, limits no
looser, and a motion must stay a motion (so the e-stop stops it). A campaign designed against
the simulated lab then never sends real hardware a request the simulation would have refused.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from poreloop.instruments.base import Action, Instrument, Limit
from poreloop.instruments.errors import InstrumentError

LOWER = {"minimum": False, "exclusiveMinimum": True, "minLength": False, "minItems": False}
"""Lower-bound keywords of a JSON schema -> whether the bound itself is excluded."""
UPPER = {"maximum": False, "exclusiveMaximum": True, "maxLength": False, "maxItems": False}
DOCUMENTATION = {"title", "description", "examples", "$defs"}
"""Keywords that may differ between an adapter and its contract."""

Bound = tuple[float, bool] | None
"""(value, excluded), or None for no bound."""


def check_adapter(cls: object, kind: str) -> type[Instrument]:
    """``cls``, once known to be an Instrument honouring the contract of ``kind``.

    Raises InstrumentError naming the action, the field or limit, and both bounds.
    """
    from poreloop.instruments.sim import SIMULATED

    reference = SIMULATED.lookup(kind)
    if not (isinstance(cls, type) and issubclass(cls, Instrument)):
        raise InstrumentError(f"adapter {_name(cls)} is not an Instrument subclass")
    if cls.kind != kind:
        raise InstrumentError(f"adapter {_name(cls)} drives a '{cls.kind}', not a '{kind}'")
    contract = f"the simulated {kind} ({reference.__name__})"
    missing = sorted(set(reference.actions) - set(cls.actions))
    if missing:
        raise InstrumentError(
            f"adapter {_name(cls)} lacks the {kind} actions {missing}; declare them as {contract} does"
        )
    extra = sorted(set(cls.actions) - set(reference.actions))
    if extra:
        raise InstrumentError(
            f"adapter {_name(cls)} declares actions {extra} that {contract} lacks; a {kind} "
            "adapter offers exactly its kind's actions"
        )
    for action, expected in reference.actions.items():
        problem = _action_problem(expected, cls.actions[action], contract)
        if problem is not None:
            raise InstrumentError(
                f"adapter {_name(cls)} breaks the {kind} contract: {action} {problem}"
            )
    return cls


def _action_problem(expected: Action, got: Action, contract: str) -> str | None:
    """What makes the action ``got`` unfit to stand in for ``expected``, or None."""
    if expected.motion and not got.motion:
        return (
            f"is a motion in {contract}, got motion=False; declare it a motion so the e-stop "
            "stops it and motions run one at a time"
        )
    for part in ("params", "result"):
        problem = _schema_problem(
            _schema(getattr(expected, part)), _schema(getattr(got, part)), part, contract
        )
        if problem is not None:
            return problem
    return _limits_problem(expected.limits, got.limits, contract)


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of ``model`` with every ``$ref`` replaced by its definition."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            node = {**target, **{key: value for key, value in node.items() if key != "$ref"}}
        return {key: resolve(value) for key, value in node.items()}

    return resolve(schema)


def _schema_problem(expected: Any, got: Any, where: str, contract: str) -> str | None:
    """The first place where the schema ``got`` differs from ``expected`` or bounds wider."""
    if not (isinstance(expected, dict) and isinstance(got, dict)):
        return _differs(expected, got, where, "schema", contract)
    for keywords, tighter in ((LOWER, 1), (UPPER, -1)):
        expected_bound, got_bound = (
            _bound(expected, keywords, tighter),
            _bound(got, keywords, tighter),
        )
        if _wider(expected_bound, got_bound, tighter):
            side = "lower" if tighter == 1 else "upper"
            return (
                f"{where}: {_text(got_bound, side)} is wider than "
                f"{_text(expected_bound, side)} in {contract}; bound it as tightly or more"
            )
    for keyword in sorted((set(expected) | set(got)) - set(LOWER) - set(UPPER) - DOCUMENTATION):
        want, have = expected.get(keyword), got.get(keyword)
        if keyword == "properties":
            problem = _fields_problem(want or {}, have or {}, where, contract)
        elif keyword in ("items", "additionalProperties") and isinstance(want, dict):
            problem = _schema_problem(want, have, f"{where}[]", contract)
        elif keyword in ("anyOf", "oneOf", "allOf", "prefixItems") and isinstance(want, list):
            problem = _variants_problem(want, have, where, keyword, contract)
        elif keyword == "required":
            problem = _differs(sorted(want or []), sorted(have or []), where, keyword, contract)
        else:
            problem = _differs(want, have, where, keyword, contract)
        if problem is not None:
            return problem
    return None


def _fields_problem(
    expected: dict[str, Any], got: dict[str, Any], where: str, contract: str
) -> str | None:
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or extra:
        return (
            f"{where} fields differ from {contract}: missing {missing}, extra {extra}; "
            "use the same field names"
        )
    for field in expected:
        problem = _schema_problem(expected[field], got[field], f"{where}.{field}", contract)
        if problem is not None:
            return problem
    return None


def _variants_problem(
    expected: list[Any], got: Any, where: str, keyword: str, contract: str
) -> str | None:
    if not isinstance(got, list) or len(got) != len(expected):
        return _differs(expected, got, where, keyword, contract)
    for want, have in zip(expected, got, strict=True):
        problem = _schema_problem(want, have, where, contract)
        if problem is not None:
            return problem
    return None


def _differs(expected: Any, got: Any, where: str, keyword: str, contract: str) -> str | None:
    if expected == got:
        return None
    return (
        f"{where}: '{keyword}' is {_shown(got)} where {contract} has {_shown(expected)}; "
        "declare it the same way"
    )


def _bound(schema: dict[str, Any], keywords: dict[str, bool], tighter: int) -> Bound:
    """The tightest of the bounds ``keywords`` set in ``schema``; ``tighter`` is +1 for lower
    bounds (larger is tighter) and -1 for upper ones."""
    bounds = [(float(schema[key]), excluded) for key, excluded in keywords.items() if key in schema]
    if not bounds:
        return None
    return max(bounds, key=lambda bound: (tighter * bound[0], bound[1]))


def _wider(expected: Bound, got: Bound, tighter: int) -> bool:
    """Whether the bound ``got`` lets through a value that ``expected`` refuses."""
    if expected is None:
        return False
    if got is None:
        return True
    return (tighter * got[0], got[1]) < (tighter * expected[0], expected[1])


def _limits_problem(
    expected: tuple[Limit, ...], got: tuple[Limit, ...], contract: str
) -> str | None:
    """The first limit of ``expected`` that ``got`` loosens or leaves out."""
    for limit in expected:
        for side, tighter, value in (("low", 1, limit.low), ("high", -1, limit.high)):
            if value is None:
                continue
            bounds = [
                getattr(other, side)
                for other in got
                if other.param == limit.param and getattr(other, side) is not None
            ]
            tightest = max(bounds, key=lambda bound: tighter * bound) if bounds else None
            if tightest is None or tighter * tightest < tighter * value:
                unit = f" {limit.unit}" if limit.unit else ""
                declared = f"no {side} limit" if tightest is None else f"{side} {tightest}{unit}"
                return (
                    f"limit on {limit.param}: {declared} is looser than {side} {value}{unit} in "
                    f"{contract}; declare Limit('{limit.param}', {side}={value}) or tighter"
                )
    return None


def _text(bound: Bound, side: str) -> str:
    if bound is None:
        return f"no {side} bound"
    value, excluded = bound
    sign = ">" if side == "lower" else "<"
    return f"{side} bound {sign}{'' if excluded else '='} {value:g}"


def _shown(value: Any) -> str:
    return "absent" if value is None else repr(value)


def _name(cls: object) -> str:
    return f"'{getattr(cls, '__module__', '?')}:{getattr(cls, '__qualname__', cls)}'"
