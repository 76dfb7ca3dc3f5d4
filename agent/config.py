"""A campaign's config: strict pydantic models read from YAML.

    twin:      which twin, which parameters are free (bounds may be narrowed), the rest fixed
    screening: critic chain, box size and voxel size (a resolution, never a design variable)
    objectives, constraints, planner, lab (simulated or running), ray, seeds, output folder

``load_config`` reports every problem at once, one line each (file, field, what is wrong), as a
``ConfigError``; the CLI prints it and exits 2 before anything starts. The config that ran is
written to the run folder with the seeds and package versions (``CampaignConfig.record``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from poreloop.agent.errors import AgentError
from poreloop.registry import did_you_mean
from poreloop.twins.errors import TwinError

if TYPE_CHECKING:
    from poreloop.twins.critics.lifetime import LifetimeModel

RESOLUTION = "voxel_size_um"
"""The twin parameter that is a resolution: set by ``screening.voxel_size_um``, never free."""

MIN_PARTICLE_VOXELS = 1.5
"""Smallest particle radius, in voxels, that a screening box resolves as a particle."""


class ConfigError(AgentError):
    """A campaign config that cannot run; one line per problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TwinConfig(_Strict):
    """The manufacturing twin and its design variables."""

    name: str = Field(default="li_ion_electrode", description="a registered twin")
    free: dict[str, tuple[float, float] | None] | None = Field(
        default=None,
        description="parameters the planner moves, each with narrowed [low, high] bounds or null "
        "for the twin's own; omitted: every parameter but the resolution",
    )
    fixed: dict[str, float | str] = Field(
        default_factory=dict, description="parameters held at a value for the whole campaign"
    )

    @field_validator("name")
    @classmethod
    def _known_twin(cls, name: str) -> str:
        from poreloop.twins.manufacturing import TWINS

        TWINS.lookup(name)  # a TwinError is a ValueError: pydantic reports it at the field
        return name


class SurrogateSettings(_Strict):
    """The neural critic that answers for the chain where it is sure (``poreloop surrogate
    train`` makes it), and how the campaign keeps teaching it."""

    model: Path = Field(
        description="the neural critic (.pt) `poreloop surrogate train CONFIG` writes; its "
        "training set is the .npz beside it"
    )
    trust: float = Field(
        default=0.05,
        gt=0,
        description="the widest 90 % interval, as a fraction of the value, it may answer with",
    )
    audit: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="share of its sure answers the physics chain checks (and it learns from)",
    )
    retrain_every: int = Field(
        default=32,
        ge=0,
        description="physics answers that extend its training set before it is refined; 0: never",
    )
    refine_epochs: PositiveInt = Field(default=20, description="epochs of each refinement")
    # 1440 structures and 70 epochs train in the time that 480 and 200 did, and learn more:
    # R² of log τ of pore and solid 0.936 and 0.943 → 0.940 and 0.950 (48³ benchmark data)
    structures: PositiveInt = Field(default=1440, description="`surrogate train`: structures")
    members: PositiveInt = Field(default=5, description="`surrogate train`: ensemble members")
    epochs: PositiveInt = Field(default=70, description="`surrogate train`: training epochs")


class ScreeningConfig(_Strict):
    """The digital space: how many recipes per iteration, scored by which chain at what size."""

    chain: str = Field(default="electrode", description="a registered critic chain")
    size: PositiveInt = Field(default=48, description="edge of the screening box, voxels")
    voxel_size_um: float = Field(default=0.5, gt=0, description="screening resolution, um")
    batch: int = Field(
        default=64, ge=0, description="recipes screened per iteration; 0: a lab-only campaign"
    )
    surrogate: SurrogateSettings | None = Field(
        default=None, description="a neural critic that answers where it is sure"
    )

    @field_validator("chain")
    @classmethod
    def _known_chain(cls, name: str) -> str:
        from poreloop.twins.critics.chain import CHAINS

        CHAINS.lookup(name)
        return name


class PlannerConfig(_Strict):
    name: Literal["bayes", "rl", "sobol", "random"] = "bayes"
    options: dict[str, Any] = Field(default_factory=dict, description="the planner's options")


class CycleLifeConfig(_Strict):
    top: int = Field(default=0, ge=0, description="cycle-life test the best N lab samples")
    cycles: PositiveInt = 500
    c_rate: float = Field(default=1.0, gt=0)
    lifetime: Path | None = Field(
        default=None,
        description="a lifetime model (`poreloop lifetime train`) that predicts each tested "
        "sample's cycles to 80 % from its first cycles; cycles must then be its early cycles",
    )

    def model(self) -> LifetimeModel | None:
        """The lifetime model, loaded and checked against ``cycles`` (a ConfigError if not)."""
        if self.lifetime is None:
            return None
        from poreloop.twins.critics.lifetime import LifetimeModel
        from poreloop.twins.errors import CriticError

        try:
            model = LifetimeModel.load(self.lifetime)
        except CriticError as error:
            raise ConfigError(f"lab.cycle_life.lifetime: {error}") from None
        if model.early_cycles != self.cycles:
            raise ConfigError(
                f"lab.cycle_life.cycles is {self.cycles} but the lifetime model {self.lifetime} "
                f"reads the first {model.early_cycles}; set cycles: {model.early_cycles}"
            )
        return model


class LabSettings(_Strict):
    """The lab: a simulated one the campaign serves itself, or endpoints of a running lab."""

    simulated: Path | None = Field(
        default=None,
        description="a lab.yaml whose instruments the campaign serves itself, state under OUT/lab",
    )
    endpoints: dict[str, str] | None = Field(
        default=None, description="kind -> tcp:// endpoint of a running lab's instruments"
    )
    keys: Path | None = Field(default=None, description="CurveZMQ client keys DIR")
    samples: PositiveInt = Field(default=12, description="lab budget: samples fabricated")
    per_iteration: int = Field(default=3, ge=1, le=8, description="k recipes sent per iteration")
    timeout_s: float = Field(default=600.0, gt=0, description="longest wait for one action")
    cycle_life: CycleLifeConfig = Field(default_factory=CycleLifeConfig)
    segmentation: str = Field(
        default="tomograph",
        description="how scans are segmented: tomograph, multiotsu, or a trained model file "
        "(.pt, from `poreloop segmenter train`)",
    )
    holder: str = Field(default="poreloop-campaign", description="lease holder name")

    @field_validator("segmentation")
    @classmethod
    def _known_segmentation(cls, method: str) -> str:
        from poreloop.twins.critics.segmentation import method_named

        try:
            method_named(method)
        except TwinError as error:
            raise ValueError(str(error)) from None
        return method

    @model_validator(mode="after")
    def _one_lab(self) -> LabSettings:
        if (self.simulated is None) == (self.endpoints is None):
            raise ValueError("give exactly one of lab.simulated (a lab.yaml) or lab.endpoints")
        if self.endpoints is not None:
            missing = sorted({"robot", "inspector", "tomograph", "cycler"} - set(self.endpoints))
            if missing:
                raise ValueError(f"lab.endpoints lacks {missing}")
            from poreloop.instruments.client import check_endpoint
            from poreloop.instruments.errors import InstrumentError

            for kind, endpoint in self.endpoints.items():
                try:
                    check_endpoint(endpoint)
                except InstrumentError as error:
                    raise ValueError(f"lab.endpoints.{kind}: {error}") from None
        return self


class RayConfig(_Strict):
    address: str | None = Field(
        default=None, description="join this Ray cluster (or RAY_ADDRESS); none: a local Ray"
    )
    num_cpus: PositiveInt | None = Field(default=None, description="local Ray size; none: cores")
    workers: PositiveInt | None = Field(
        default=None, description="twin and critic actors each; none: one per CPU"
    )


class CampaignConfig(_Strict):
    """Everything a campaign needs; ``lab: null`` is a digital-only campaign."""

    name: str = "campaign"
    seed: int = 0
    iterations: PositiveInt = Field(default=10, description="screening iterations at most")
    twin: TwinConfig = Field(default_factory=TwinConfig)
    screening: ScreeningConfig = Field(default_factory=ScreeningConfig)
    objectives: dict[str, Literal["max", "min"]] = Field(min_length=1)
    constraints: list[str] = Field(default_factory=list)
    planner: PlannerConfig = Field(default_factory=PlannerConfig)
    lab: LabSettings | None = None
    ray: RayConfig = Field(default_factory=RayConfig)
    out: Path = Path("runs/campaign")

    @model_validator(mode="after")
    def _consistent(self) -> CampaignConfig:
        from poreloop.twins.manufacturing import TWINS

        space = TWINS[self.twin.name].space
        problems = []
        named = {**(self.twin.free or {}), **self.twin.fixed}
        for name in named:
            if name not in space.names:
                problems.append(
                    f"twin: unknown parameter '{name}' of {self.twin.name}"
                    f"{did_you_mean(name, space.names)}"
                )
        if RESOLUTION in (self.twin.free or {}) or RESOLUTION in self.twin.fixed:
            problems.append(
                f"twin: {RESOLUTION} is the screening resolution, not a design variable; "
                "set screening.voxel_size_um instead"
            )
        both = sorted(set(self.twin.free or {}) & set(self.twin.fixed))
        if both:
            problems.append(f"twin: {both} are both free and fixed; choose one")
        for name, bounds in (self.twin.free or {}).items():
            if bounds is None or name not in space.names:
                continue
            low, high = bounds
            own_low, own_high = space.bounds(name)
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                problems.append(f"twin.free.{name}: expected low < high, got [{low}, {high}]")
            elif low < own_low or high > own_high:
                problems.append(
                    f"twin.free.{name}: [{low}, {high}] leaves the twin's bounds "
                    f"[{own_low}, {own_high}]; narrow them, never widen"
                )
        if RESOLUTION in space.names:
            self._check_resolution(space, problems)
        if self.lab is not None:
            self._check_segmentation(self.lab.segmentation, TWINS[self.twin.name].phases, problems)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def design(self) -> tuple[Any, Any, dict[str, Any]]:
        """The twin, the space the planner designs in (free parameters within their narrowed
        bounds), and the values held fixed (the resolution among them, where the twin has one).
        With ``twin.free`` given, every other parameter is held at the twin's default."""
        from poreloop.envs.design import design_space
        from poreloop.twins import get_twin

        twin = get_twin(self.twin.name)
        fixed: dict[str, Any] = {RESOLUTION: self.screening.voxel_size_um, **self.twin.fixed}
        if RESOLUTION not in twin.space.names:
            fixed.pop(RESOLUTION)
        free = self.twin.free or {}
        held: dict[str, Any] = {
            p.name: p.default
            for p in twin.space.parameters
            if free and p.name not in free and p.name not in fixed
        }
        space = design_space(
            twin.space,
            {**fixed, **held},
            bounds={name: bounds for name, bounds in free.items() if bounds is not None},
        )
        return twin, space, fixed

    def _check_segmentation(self, method: str, phases: dict[int, str], problems: list[str]) -> None:
        """A trained segmentation model must tell the twin's phases apart."""
        from poreloop.twins.critics.segmentation import grey_order, method_named

        learned = getattr(method_named(method), "phases", None)
        names = [phases[p] for p in grey_order(phases)]
        if learned is not None and learned != names:
            problems.append(
                f"lab.segmentation: the model segments {', '.join(learned)}, the twin "
                f"{self.twin.name} has {', '.join(names)}"
            )

    def _check_resolution(self, space: Any, problems: list[str]) -> None:
        """The voxel size must resolve the smallest particle the planner may ask for."""
        voxel = self.screening.voxel_size_um
        if "particle_radius_um" in space.names:
            bounds = (self.twin.free or {}).get("particle_radius_um")
            fixed = self.twin.fixed.get("particle_radius_um")
            smallest = (
                float(fixed)
                if fixed is not None
                else bounds[0]
                if bounds
                else space["particle_radius_um"].low
            )
            if smallest < MIN_PARTICLE_VOXELS * voxel:
                problems.append(
                    f"screening.voxel_size_um: {voxel} um cannot resolve particles of radius "
                    f"{smallest} um (needs <= {smallest / MIN_PARTICLE_VOXELS:.3g}); "
                    "refine the voxels or narrow twin.free.particle_radius_um"
                )
        p = space[RESOLUTION]
        if not p.low <= voxel <= p.high:
            problems.append(f"screening.voxel_size_um: expected {p.low}..{p.high} um, got {voxel}")


def load_config(path: str | Path, **overrides: Any) -> CampaignConfig:
    """The campaign config in YAML file ``path``, with top-level ``overrides`` (e.g. ``out``).

    Raises ConfigError listing every problem, one per line: ``FILE: field: what is wrong``.
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read ({' '.join(str(error).split())})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    data.update({key: value for key, value in overrides.items() if value is not None})
    lab = data.get("lab")
    if isinstance(lab, dict) and str(lab.get("segmentation", "")).endswith(".pt"):
        lab["segmentation"] = str(path.parent / lab["segmentation"])  # relative to the config file
    cycle_life = lab.get("cycle_life") if isinstance(lab, dict) else None
    if isinstance(cycle_life, dict) and isinstance(cycle_life.get("lifetime"), str):
        cycle_life["lifetime"] = os.path.normpath(path.parent / cycle_life["lifetime"])
    screening = data.get("screening")
    surrogate = screening.get("surrogate") if isinstance(screening, dict) else None
    if isinstance(surrogate, dict) and isinstance(surrogate.get("model"), str):
        surrogate["model"] = os.path.normpath(path.parent / surrogate["model"])
    try:
        config = CampaignConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError("\n".join(_problems(path, error))) from None
    if config.lab is not None and config.lab.simulated is not None:
        lab = path.parent / config.lab.simulated  # relative to the config file
        if not lab.is_file():
            raise ConfigError(f"{path}: lab.simulated: no lab config at {lab}")
        config.lab.simulated = lab
    return config


def _problems(path: Path, error: ValidationError) -> list[str]:
    """One line per schema failure: file, dotted field, message (nested model errors split)."""
    lines: list[str] = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"])
        prefix = f"{path}: {where}: " if problem["loc"] else f"{path}: "
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            known = _fields_at(problem["loc"][:-1])
            message = f"unknown setting{did_you_mean(str(problem['loc'][-1]), known)}"
        lines.extend(prefix + line for line in message.splitlines())
    return lines


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The settings the model at ``loc`` (a path into CampaignConfig) accepts."""
    model: Any = CampaignConfig
    for part in loc:
        annotation = model.model_fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next(c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel))
    return list(model.model_fields)
