"""``poreloop segment``: a grey-value scan → a label image the twins and critics read."""

from __future__ import annotations

import argparse
from pathlib import Path

from poreloop.agent.cli.types import phase_names, positive_float


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
        "--method", default="tomograph", help="tomograph (the default) or multiotsu"
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
