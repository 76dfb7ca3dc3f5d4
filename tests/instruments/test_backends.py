"""Hardware adapters slot in by name and must honour their kind's contract."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import BaseModel, ConfigDict, Field

from poreloop.instruments.backends import make_instrument
from poreloop.instruments.base import Action, Instrument, Limit
from poreloop.instruments.checks import check_adapter
from poreloop.instruments.errors import InstrumentError
from poreloop.instruments.sim import SIMULATED
from poreloop.instruments.sim.oven import DryParams, DryResult, SimOven

OVEN_LIMIT = SimOven.actions["dry"].limits


class BenchOven(Instrument):
    """A stand-in for a vendor driver: the oven's contract, a different body."""

    kind: ClassVar[str] = "oven"
    actions: ClassVar[dict[str, Action]] = {
        "dry": Action(params=DryParams, result=DryResult, limits=OVEN_LIMIT)
    }

    def _dry(self, params, ctx):
        return DryResult(
            temperature_c=params.temperature_c,
            duration_s=params.duration_s,
            initial_moisture_ppm=500.0,
            residual_moisture_ppm=100.0,
            run=1,
        )


def _oven(params=DryParams, result=DryResult, limits=OVEN_LIMIT, motion=True, **extra):
    """An oven adapter class with the dry action declared as given (plus ``extra`` actions)."""
    declared = {"dry": Action(params=params, result=result, limits=limits, motion=motion)}
    hooks = {f"_{name}": BenchOven._dry for name in ("dry", *extra)}
    return type(
        "Adapter",
        (Instrument,),
        {"kind": "oven", "actions": {**declared, **extra}, **hooks, "__module__": "mylab"},
    )


class HotterParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature_c: float = Field(ge=20, le=500)
    duration_s: float = Field(gt=0, le=7 * 86400)


class ColderStartParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature_c: float = Field(ge=0, le=400)
    duration_s: float = Field(gt=0, le=7 * 86400)


class NarrowerParams(BaseModel):
    """Tighter bounds than the contract: safe, so accepted."""

    model_config = ConfigDict(extra="forbid")
    temperature_c: float = Field(gt=20, le=180)
    duration_s: float = Field(gt=60, le=86400)


class IntegerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature_c: int = Field(ge=20, le=400)
    duration_s: float = Field(gt=0, le=7 * 86400)


class RenamedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature_k: float = Field(ge=293, le=673)
    duration_s: float = Field(gt=0, le=7 * 86400)


class ShortResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature_c: float
    duration_s: float


HOT_OVEN = _oven(params=HotterParams)


class NoActions(Instrument):
    kind: ClassVar[str] = "oven"
    actions: ClassVar[dict[str, Action]] = {}


@pytest.mark.parametrize("kind", sorted(SIMULATED))
def test_every_simulated_instrument_honours_its_own_contract(kind: str) -> None:
    check_adapter(SIMULATED[kind], kind)


def test_sim_and_an_adapter_are_built_by_name():
    assert isinstance(make_instrument("oven"), SimOven)
    assert isinstance(make_instrument("oven", f"{__name__}:BenchOven"), BenchOven)


def test_tighter_bounds_and_limits_are_allowed() -> None:
    check_adapter(_oven(params=NarrowerParams, limits=(Limit("temperature_c", high=150),)), "oven")


@pytest.mark.parametrize(
    ("adapter", "message"),
    [
        (_oven(params=HotterParams), r"dry params\.temperature_c: upper bound <= 500 is wider"),
        (_oven(params=HotterParams), "than upper bound <= 400 in the simulated oven"),
        (_oven(params=ColderStartParams), r"lower bound >= 0 is wider than lower bound >= 20"),
        (_oven(limits=()), "dry limit on temperature_c: no high limit is looser than high 200"),
        (
            _oven(limits=(Limit("temperature_c", high=250.0, unit="degC"),)),
            "high 250.0 degC is looser than high 200.0 degC",
        ),
        (_oven(params=IntegerParams), r"params\.temperature_c: 'type' is 'integer' where"),
        (_oven(params=RenamedParams), r"missing \['temperature_c'\], extra \['temperature_k'\]"),
        (_oven(result=ShortResult), r"dry result fields differ .* missing \['initial_moisture"),
        (
            _oven(motion=False),
            r"dry is a motion in the simulated oven \(SimOven\), got motion=False",
        ),
        (
            _oven(bake=Action(params=DryParams, result=DryResult)),
            r"declares actions \['bake'\] that the simulated oven \(SimOven\) lacks",
        ),
    ],
)
def test_an_adapter_breaking_the_contract_is_refused_by_name(
    adapter: type[Instrument], message: str
) -> None:
    with pytest.raises(InstrumentError, match=message) as caught:
        check_adapter(adapter, "oven")
    assert str(caught.value).startswith("adapter 'mylab:Adapter' ")
    assert "\n" not in str(caught.value)


def test_an_adapter_for_a_kind_without_a_simulation_is_refused() -> None:
    with pytest.raises(InstrumentError, match="unknown simulated instrument 'ovn'; did you mean"):
        check_adapter(BenchOven, "ovn")


@pytest.mark.parametrize(
    ("kind", "backend", "message"),
    [
        ("oven", "no_colon", "must be 'sim' or 'package.module:Class'"),
        ("oven", "no_such_module:X", "cannot load backend"),
        ("oven", f"{__name__}:DryParams", "is not an Instrument subclass"),
        ("robot", f"{__name__}:BenchOven", "drives a 'oven', not a 'robot'"),
        ("oven", f"{__name__}:NoActions", r"lacks the oven actions \['dry'\]"),
        ("oven", f"{__name__}:HOT_OVEN", "upper bound <= 500 is wider"),
    ],
)
def test_a_bad_backend_is_refused_with_a_clear_message(kind, backend, message):
    with pytest.raises(InstrumentError, match=message):
        make_instrument(kind, backend)
