"""``poreloop segment``: a grey-value scan → a label image the twins and critics read."""

from __future__ import annotations

import argparse
from pathlib import Path

from poreloop.agent.cli.types import phase_names, positive_float, positive_int


def register(commands: argparse._SubParsersAction) -> None:
    segment = commands.add_parser(
        "segment",
        help="segment a grey-value scan (.tif stack) into phase labels",
        description=(
            "Segment a grey-value TIFF stack (a tomograph scan: uint8, uint16 or float) into the "
            "phases named by --phases and write a labelled .tif/.npz that `twin show` and "
            "`critic evaluate` read. The phases' X-ray attenuation orders them from dark to "
            "bright (pore, cbd, active, fibre, ptfe, ysz, ni...); phases of materials it does "
            "not know are listed darkest first with --in-grey-order. Methods: tomograph (3x3x3 median "
            "filter, then multi-level Otsu: what the lab's tomograph pipeline does), multiotsu "
            "(multi-level Otsu on the raw grey values)."
        ),
    )
    segment.add_argument("scan", type=Path, metavar="SCAN", help="a grey-value .tif/.tiff stack")
    segment.add_argument(
        "--phases",
        type=phase_names,
        required=True,
        help="the phases, e.g. pore,active,cbd (ids 0, 1, 2) or 0=pore,85=active,170=cbd",
    )
    segment.add_argument("--out", type=Path, required=True, help="label file to write (.tif, .npz)")
    segment.add_argument(
        "--method",
        default="tomograph",
        help="tomograph (the default), multiotsu, or a trained model file (.pt, from "
        "`poreloop segmenter train`)",
    )
    segment.add_argument(
        "--in-grey-order",
        action="store_true",
        help="--phases is listed darkest first (for phases without a known attenuation)",
    )
    segment.add_argument(
        "--voxel-size-um", type=positive_float, help="voxel size in µm, overriding the file's"
    )
    segment.set_defaults(run=segment_scan)

    segmenter = commands.add_parser(
        "segmenter", help="train a learned segmentation model (a 3D U-Net) on simulated scans"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    train = segmenter.add_parser(
        "train",
        help="train a U-Net on a twin's structures and their simulated scans",
        description=(
            "Generate structures spread over a twin's recipe space, scan each with the "
            "tomograph's forward model (blur, partial volume, noise) at every --exposures, "
            "train a 3D U-Net to recover the true phases, and save it; `poreloop segment "
            "--method MODEL.pt` and a campaign's lab.segmentation use it. Finally two held-out "
            "structures, scanned at 1 s exposure, are segmented by it and by the tomograph "
            "pipeline and the per-phase IoU of each is printed. Trains on this machine's CPU "
            "(or CUDA): 300 steps at the defaults take under a minute on two cores."
        ),
    )
    train.add_argument("--twin", required=True, help="the twin whose structures to learn")
    train.add_argument("--out", type=Path, required=True, help="model file to write (.pt)")
    train.add_argument("--structures", type=positive_int, default=6, help="training structures")
    train.add_argument("--edge", type=positive_int, default=48, help="structure edge, voxels")
    train.add_argument(
        "--exposures",
        type=positive_float,
        nargs="+",
        default=[0.25, 1.0, 4.0],
        help="scan exposures per projection, s (noise falls as 1/sqrt)",
    )
    train.add_argument("--steps", type=positive_int, default=300, help="optimiser steps")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(run=train_segmenter)


def segment_scan(args: argparse.Namespace) -> int:
    from poreloop.agent.cli.twin import print_fractions, warn_assumed
    from poreloop.twins.critics.segmentation import segment_file
    from poreloop.twins.microstructure import Microstructure, check_writable

    check_writable(args.out, Microstructure.SUFFIXES)
    micro = segment_file(
        args.scan, args.phases, args.voxel_size_um, args.method, args.in_grey_order
    )
    warn_assumed(micro.provenance.assumed, args.scan)
    micro.save(args.out)
    shape = "x".join(map(str, micro.shape))
    print(
        f"wrote {args.out}: {args.scan} segmented by {args.method}, shape {shape}, "
        f"voxel {micro.voxel_size_um:g} um"
    )
    print_fractions(micro)
    return 0


def train_segmenter(args: argparse.Namespace) -> int:
    import numpy as np

    from poreloop.agent.cli.progress import StatusLine
    from poreloop.instruments.tomography import render
    from poreloop.twins.critics import segmentation_net, weights
    from poreloop.twins.critics.segmentation import METHODS
    from poreloop.twins.errors import TwinError
    from poreloop.twins.manufacturing import get_twin
    from poreloop.twins.microstructure import Microstructure

    if args.out.suffix != weights.SUFFIX:
        raise TwinError(f"--out must be a {weights.SUFFIX} file, got '{args.out}'")
    twin = get_twin(args.twin)
    structures = segmentation_net.twin_structures(
        twin, args.structures + HELD_OUT, args.edge, args.seed
    )
    training, held_out = structures[:-HELD_OUT], structures[-HELD_OUT:]

    def scan(micro: Microstructure, exposure_s: float, rng: np.random.Generator) -> np.ndarray:
        return render(micro, micro.voxel_size_um, exposure_s, rng)

    status = StatusLine()
    net = segmentation_net.train(
        training,
        scan,
        args.exposures,
        twin=twin.name,
        steps=args.steps,
        seed=args.seed,
        log=status.show,
    )
    status.end()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    net.save(args.out)
    print(f"wrote {args.out}: a U-Net for {', '.join(net.phases)} ({twin.name})")
    rng = np.random.default_rng(args.seed + 1)
    greys = [scan(micro, 1.0, rng) for micro in held_out]
    for name, method in (("unet", net), ("tomograph", METHODS["tomograph"])):
        scores = [
            segmentation_net.phase_iou(method(grey, len(net.phases)), micro)
            for grey, micro in zip(greys, held_out, strict=True)
        ]
        mean = {phase: np.mean([s[phase] for s in scores]) for phase in net.phases}
        print(f"held-out IoU, {name}: " + ", ".join(f"{p} {v:.3f}" for p, v in mean.items()))
    return 0


HELD_OUT = 2
"""Structures kept out of training and segmented at the end for the IoU line."""
