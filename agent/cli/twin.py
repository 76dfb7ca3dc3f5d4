"""``poreloop twin``: list the manufacturing twins, generate a microstructure, picture one."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poreloop.agent.cli.progress import StatusLine
from poreloop.agent.cli.types import key_value, positive_float, positive_int, shape

if TYPE_CHECKING:
    from poreloop.twins.microstructure import Microstructure
    from poreloop.twins.space import ParameterSpace


def register(commands: argparse._SubParsersAction) -> None:
    twin = commands.add_parser(
        "twin",
        help="manufacturing twins: list them, generate microstructures, look at them",
        description="Manufacturing twins (recipe → 3D microstructure).",
    )
    twin_commands = twin.add_subparsers(dest="twin_command", required=True, metavar="COMMAND")

    listing = twin_commands.add_parser(
        "list",
        help="every registered twin with its parameters",
        description=(
            "Every registered twin with its phases, parameters (kind, unit, bounds or "
            "choices, default) and linear constraints. --json prints a list of "
            "{name, description, phases: {'<id>': name}, dims, parameters: [{name, kind, "
            "unit, low, high, default, choices, description}], constraints: [text]}; keys "
            "that do not apply to a parameter kind are null."
        ),
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=twin_list)

    generate = twin_commands.add_parser(
        "generate",
        help="generate a microstructure from a recipe",
        description=(
            "Generate a microstructure with twin NAME. Parameters not set with --set take "
            "their defaults (see `poreloop twin list`)."
        ),
    )
    generate.add_argument("name", metavar="NAME", help="registered twin name")
    generate.add_argument(
        "--set",
        dest="values",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        type=key_value,
        help="a recipe parameter (repeatable), e.g. --set voxel_size_um=0.5; overrides --recipe",
    )
    generate.add_argument(
        "--recipe",
        type=Path,
        metavar="FILE",
        help="a YAML mapping of parameter names to values, e.g. configs/recipes/*.yaml",
    )
    box = generate.add_mutually_exclusive_group()
    box.add_argument(
        "--size", type=positive_int, default=128, help="edge of a cubic box in voxels (128)"
    )
    box.add_argument("--shape", type=shape, help="box shape NX,NY,NZ in voxels")
    generate.add_argument("--seed", type=int, default=0, help="random seed (0)")
    generate.add_argument(
        "--out", type=Path, required=True, help="output file: .tif/.tiff (ImageJ stack) or .npz"
    )
    generate.add_argument(
        "--reference",
        type=Path,
        metavar="FILE",
        help="a measured microstructure (.tif/.npz) for twins that reproduce one",
    )
    generate.add_argument(
        "--model",
        type=Path,
        metavar="FILE",
        help="a trained generator (.pt) for the gan twin (`poreloop twin train-gan`)",
    )
    generate.add_argument(
        "--quiet",
        action="store_true",
        help="no progress on stderr (by default the reconstruct twin shows its sweeps)",
    )
    generate.set_defaults(run=twin_generate)

    train_gan = twin_commands.add_parser(
        "train-gan",
        help="train the gan twin's generator on one labelled image",
        description=(
            "Train a SliceGAN generator on IMAGE (a labelled 2D image or 3D stack, every edge at "
            "least the patch): 2D critics, one per axis, judge 32x32 slices of 32^3 generated "
            "patches (--patch) against slices of the image, and for a 3D image a 3D critic judges "
            "the patches against patches of the image; a slice should hold several particles "
            "and pores. Prints the phase fractions as it learns; "
            "then `poreloop twin generate gan --model OUT --size 128` makes larger "
            "realisations. Trains on the CPU, at torch's threads."
        ),
    )
    train_gan.add_argument("image", type=Path, metavar="IMAGE", help="a .tif/.tiff or .npz file")
    train_gan.add_argument("--out", type=Path, required=True, help="generator file to write (.pt)")
    train_gan.add_argument("--steps", type=positive_int, help="generator updates (3000)")
    train_gan.add_argument(
        "--patch",
        type=positive_int,
        help="edge of the training patches, a power of two of 32 or more (32; SliceGAN's 64 "
        "takes ~3 times longer a step)",
    )
    train_gan.add_argument("--seed", type=int, default=0)
    train_gan.add_argument(
        "--voxel-size-um", type=positive_float, help="voxel size in µm, overriding the file's"
    )
    train_gan.set_defaults(run=twin_train_gan)

    show = twin_commands.add_parser(
        "show",
        help="picture the mid-slices of a microstructure file",
        description="Orthogonal mid-slices (xy, xz, yz) with phase legend and a scale bar.",
    )
    show.add_argument("file", type=Path, metavar="FILE", help="a .tif/.tiff or .npz file")
    show.add_argument(
        "--out", type=Path, help="picture to write (.png, .pdf, .svg); default FILE with .png"
    )
    show.add_argument(
        "--voxel-size-um",
        type=positive_float,
        help="voxel size in µm, overriding the file's (foreign files often carry none)",
    )
    show.set_defaults(run=twin_show)


def twin_list(args: argparse.Namespace) -> int:
    from poreloop.twins.manufacturing import TWINS

    twins = [cls for _, cls in sorted(TWINS.items())]
    if args.json:
        print(json.dumps([cls.describe() for cls in twins], indent=2))
        return 0
    if not twins:
        print("no twins registered")
        return 0
    print("\n\n".join(_twin_table(cls.describe(), cls.space) for cls in twins))
    return 0


def twin_train_gan(args: argparse.Namespace) -> int:
    from poreloop.twins.critics.weights import SUFFIX
    from poreloop.twins.errors import TwinError
    from poreloop.twins.manufacturing import gan
    from poreloop.twins.microstructure import Microstructure

    if args.out.suffix != SUFFIX:
        raise TwinError(f"a structure generator is saved as {SUFFIX}, got '{args.out}'")
    image = Microstructure.load(args.image, voxel_size_um=args.voxel_size_um)
    status = StatusLine()
    try:
        generator = gan.train(
            image,
            steps=args.steps or gan.STEPS,
            patch=args.patch or gan.PATCH,
            seed=args.seed,
            log=status.show,
        )
    finally:
        status.end()
    generator.save(args.out)
    trained = generator.trained
    print(
        f"wrote {args.out}: {trained.steps} steps in {trained.seconds:.0f} s on {args.image} "
        f"({', '.join(f'{n} {f:.3f}' for n, f in zip(trained.phases.values(), trained.fractions, strict=True))})"
    )
    return 0


def twin_generate(args: argparse.Namespace) -> int:
    from poreloop.twins.manufacturing import get_twin
    from poreloop.twins.manufacturing.reconstruct import ReconstructionTwin
    from poreloop.twins.microstructure import Microstructure, check_writable
    from poreloop.twins.space import read_recipe

    options = {"model": args.model} if args.model is not None else {}
    twin = get_twin(args.name, reference=args.reference, **options)
    status = None
    if isinstance(twin, ReconstructionTwin) and not args.quiet:
        status = StatusLine()
        twin.on_sweep = _show_sweeps(status)
    check_writable(args.out, Microstructure.SUFFIXES)
    recipe = read_recipe(args.recipe) if args.recipe else {}
    recipe |= twin.space.parse(args.values)
    box = args.shape or (args.size,) * max(twin.dims)
    start = time.perf_counter()
    try:
        micro = twin.generate(recipe, shape=box, seed=args.seed)
    finally:
        if status is not None:
            status.end()
    seconds = time.perf_counter() - start
    micro.save(args.out)
    print(
        f"wrote {args.out}: twin {twin.name}, shape {'x'.join(map(str, micro.shape))}, "
        f"voxel {micro.voxel_size_um:g} um, seed {args.seed}, {seconds:.2f} s"
    )
    print("recipe: " + ", ".join(f"{k}={v}" for k, v in micro.provenance.recipe.items()))
    if twin.summary():
        print(twin.summary())
    print_fractions(micro)
    return 0


def twin_show(args: argparse.Namespace) -> int:
    from poreloop.twins.microstructure import GreyImageError, Microstructure, check_writable
    from poreloop.twins.plot import plot_slices

    out = args.out or args.file.with_suffix(".png")
    check_writable(out)
    try:
        micro = Microstructure.load(args.file, voxel_size_um=args.voxel_size_um)
    except GreyImageError:
        return _show_grey(args.file, out, args.voxel_size_um)
    warn_assumed(micro.provenance.assumed, args.file)
    plot_slices(micro, out)
    print(f"wrote {out}: mid-slices of {args.file}, shape {'x'.join(map(str, micro.shape))}")
    print_fractions(micro)
    return 0


def _show_grey(path: Path, out: Path, voxel_size_um: float | None) -> int:
    """Picture a grey-value scan as it is, unsegmented."""
    from poreloop.twins.critics.segmentation import read_grey
    from poreloop.twins.plot import plot_grey_slices

    grey, size, assumed = read_grey(path, voxel_size_um)
    warn_assumed(assumed, path)
    plot_grey_slices(grey, size, out, path.name)
    print(
        f"wrote {out}: mid-slices of the grey-value scan {path}, shape "
        f"{'x'.join(map(str, grey.shape))}, {grey.dtype} {grey.min()}..{grey.max()}; "
        "`poreloop segment` makes phase labels of it"
    )
    return 0


def _show_sweeps(status: StatusLine) -> Callable[[int, float], None]:
    """The reconstruct twin's sweeps on ``status``: ``reconstruct: sweep 12, S2 correlation
    error 0.0234``."""

    def show(sweep: int, error: float) -> None:
        status.show(f"reconstruct: sweep {sweep}, S2 correlation error {error:.4f}")

    return show


def warn_assumed(assumed: dict[str, float], path: Path) -> None:
    """Say on stderr what reading ``path`` had to assume (a voxel size it does not store)."""
    if "voxel_size_um" in assumed:
        print(
            f"poreloop: {path} stores no voxel size: assumed {assumed['voxel_size_um']:g} "
            "µm; every length, area and energy density scales with it (set --voxel-size-um)",
            file=sys.stderr,
        )


def print_fractions(micro: Microstructure) -> None:
    fractions = micro.phase_fractions()
    width = max(len(name) for name in fractions)
    print("phase fractions:")
    for name, fraction in fractions.items():
        print(f"  {name:<{width}}  {fraction:.4f}")


def _twin_table(entry: dict[str, Any], space: ParameterSpace) -> str:
    phases = ", ".join(f"{pid} {name}" for pid, name in entry["phases"].items())
    header = [f"{entry['name']} — {entry['description']}".rstrip(" —"), f"  phases: {phases}"]
    return "\n".join([*header, *("  " + line for line in str(space).splitlines())])
