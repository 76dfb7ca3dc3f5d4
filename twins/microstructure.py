"""Labelled voxel images of porous materials and their file formats.

A ``Microstructure`` is what twins generate, tomographs measure and critics score. It
round-trips through a multi-page ImageJ TIFF (opens in Fiji as a stack, voxel size in µm)
and through ``.npz``; both keep the phase names and the provenance.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from pydantic import BaseModel, ConfigDict

from poreloop.twins.errors import TwinError

_FORMAT = "poreloop.microstructure/1"


ASSUMED_VOXEL_SIZE_UM = 1.0
"""The voxel size of a file that stores none and was given none (recorded as assumed)."""

MAX_PHASES = 16
"""The most distinct ids a label image read from a file may hold: more is a grey image (an
8-bit scan), which read as labels would make every grey value a phase."""

SEGMENT_HINT = "segment it first: poreloop segment FILE --phases pore,active,cbd --out labels.tif"


class GreyImageError(TwinError):
    """A file holds grey values, not phase labels (see ``SEGMENT_HINT``)."""


class Provenance(BaseModel):
    """Where a structure came from: the twin, the recipe and seed it was made with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    twin: str = "unknown"
    recipe: dict[str, float | int | str] = {}
    seed: int | None = None
    version: str = ""
    source: str = ""
    assumed: dict[str, float] = {}
    """What reading the file had to assume because it did not say (``voxel_size_um``)."""


@dataclass(frozen=True, eq=False, repr=False)
class Microstructure:
    """Labelled voxels. labels: ``(nx, ny, nz)`` (or ``(nx, ny)`` for an image) uint8 phase ids."""

    labels: np.ndarray
    voxel_size_um: float
    phases: dict[int, str]
    provenance: Provenance = field(default_factory=Provenance)
    periodic: tuple[int, ...] = ()
    """Axes along which the box wraps, its last slice joined to its first (a twin's box cut
    from a coating periodic in-plane); a crop or a scan is periodic along none."""

    def __post_init__(self) -> None:
        labels = self.labels
        if not isinstance(labels, np.ndarray) or labels.ndim not in (2, 3):
            raise TwinError(
                f"labels must be a 2D or 3D array, got {getattr(labels, 'shape', labels)!r}"
            )
        if labels.dtype != np.uint8:
            raise TwinError(f"labels must be uint8 phase ids, got dtype {labels.dtype}")
        if not (np.isfinite(self.voxel_size_um) and self.voxel_size_um > 0):
            raise TwinError(f"voxel_size_um must be a positive number, got {self.voxel_size_um}")
        if not (
            isinstance(self.periodic, tuple)
            and all(isinstance(a, int) and 0 <= a < labels.ndim for a in self.periodic)
            and list(self.periodic) == sorted(set(self.periodic))
        ):
            raise TwinError(
                f"periodic must be a sorted tuple of distinct axes below {labels.ndim}, got "
                f"{self.periodic!r}"
            )
        present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256))
        unnamed = sorted(set(present.tolist()) - set(self.phases))
        if unnamed:
            raise TwinError(
                f"labels hold phase ids {unnamed} that have no name in phases {self.phases}"
            )

    def __repr__(self) -> str:
        """What it is, not its voxels: shape, voxel size, phases and where it came from."""
        origin = self.provenance.twin
        if origin == "unknown":
            origin = self.provenance.source or "unknown"
        seed = "" if self.provenance.seed is None else f", seed {self.provenance.seed}"
        return (
            f"<Microstructure {'x'.join(map(str, self.shape))} voxels of "
            f"{self.voxel_size_um:g} um, phases {self.phases}, from {origin}{seed}>"
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return self.labels.shape

    def phase_id(self, name: str) -> int:
        for pid, pname in self.phases.items():
            if pname == name:
                return pid
        raise TwinError(f"no phase named '{name}'; phases are {self.phases}")

    def phase_fractions(self) -> dict[str, float]:
        """Volume fraction of every named phase (absent phases give 0)."""
        counts = np.bincount(self.labels.ravel(), minlength=256) / self.labels.size
        return {name: float(counts[pid]) for pid, name in sorted(self.phases.items())}

    SUFFIXES = (".tif", ".tiff", ".npz")
    """The files ``save`` writes and ``load`` reads."""

    def save(self, path: str | Path) -> Path:
        """Write ``.tif``/``.tiff`` (ImageJ stack) or ``.npz``, chosen by the suffix."""
        path = Path(path)
        meta = self._meta()
        if path.suffix.lower() in (".tif", ".tiff"):
            spacing = self.voxel_size_um
            tifffile.imwrite(
                path,
                self.labels,
                imagej=True,
                resolution=(1 / spacing, 1 / spacing),
                metadata={
                    "spacing": spacing,
                    "unit": "um",
                    "axes": "ZYX" if self.labels.ndim == 3 else "YX",
                    "Info": json.dumps(meta),
                },
            )
        elif path.suffix.lower() == ".npz":
            np.savez_compressed(path, labels=self.labels, meta=json.dumps(meta))
        else:
            raise TwinError(f"cannot save to '{path}': expected a .tif, .tiff or .npz suffix")
        return path

    @classmethod
    def load(cls, path: str | Path, voxel_size_um: float | None = None) -> Microstructure:
        """Read a file written by ``save`` or a foreign segmented TIFF stack.

        A foreign file's phase ids get names ``phase_<id>``; ``voxel_size_um`` overrides the
        size stored in the file (foreign files often carry none: then 1 µm is assumed and
        recorded in ``provenance.assumed``).
        """
        path = Path(path)
        if not path.is_file():
            raise TwinError(f"no such file: '{path}'")
        suffix = path.suffix.lower()
        try:
            if suffix in (".tif", ".tiff"):
                labels, meta, stored_size = read_tiff(path)
            elif suffix == ".npz":
                with np.load(path, allow_pickle=False) as data:
                    labels, meta = data["labels"], json.loads(str(data["meta"]))
                stored_size = meta.get("voxel_size_um")
            else:
                raise TwinError(f"cannot read '{path}': expected a .tif, .tiff or .npz file")
        except TwinError:
            raise
        except Exception as exc:  # zipfile and json raise many kinds on a corrupt file
            raise TwinError(f"cannot read '{path}': {type(exc).__name__}: {exc}") from None
        labels = as_labels(labels, path)
        if meta.get("format") == _FORMAT:
            phases = {int(k): str(v) for k, v in meta["phases"].items()}
            provenance = Provenance(**meta["provenance"])
            periodic = tuple(meta.get("periodic", ()))
        else:
            phases = {int(v): f"phase_{v}" for v in np.unique(labels)}
            provenance = Provenance(source=str(path))
            periodic = ()
        size, assumed = voxel_size(voxel_size_um, stored_size, provenance.assumed)
        provenance = provenance.model_copy(update={"assumed": assumed})
        return cls(labels, size, phases, provenance, periodic)

    def _meta(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "voxel_size_um": self.voxel_size_um,
            "phases": {str(k): v for k, v in self.phases.items()},
            "provenance": self.provenance.model_dump(),
            "periodic": list(self.periodic),
        }


def voxel_size(
    given: float | None, stored: float | None, assumed: dict[str, float]
) -> tuple[float, dict[str, float]]:
    """The voxel size to use (given, else stored, else ``ASSUMED_VOXEL_SIZE_UM``) and the
    assumptions updated: a size given now is no longer one, a size nobody gave is recorded."""
    assumed = dict(assumed)
    if given is not None:
        assumed.pop("voxel_size_um", None)
        return float(given), assumed
    if stored:
        return float(stored), assumed
    assumed["voxel_size_um"] = ASSUMED_VOXEL_SIZE_UM
    return ASSUMED_VOXEL_SIZE_UM, assumed


def read_tiff(path: Path) -> tuple[np.ndarray, dict[str, Any], float | None]:
    """The array, our metadata (or {}) and the stored voxel size (or None) of a TIFF stack."""
    log = logging.getLogger("tifffile")  # it logs what it cannot read; we say it in one line
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with tifffile.TiffFile(path) as tif:
            array = tif.asarray()
            ij = tif.imagej_metadata or {}
            frame = tif.pages[0].shape
    except Exception as exc:  # tifffile raises many kinds on a corrupt file
        raise TwinError(f"cannot read '{path}': {type(exc).__name__}: {exc}") from None
    finally:
        log.setLevel(level)
    if "images" in ij and array.size != int(ij["images"]) * int(np.prod(frame)):
        raise TwinError(  # tifffile returns what it can of a cut stack
            f"'{path}' is truncated or corrupt: its ImageJ header promises {ij['images']} "
            f"images of {frame}, only {array.size // int(np.prod(frame))} could be read"
        )
    meta: dict[str, Any] = {}
    if "Info" in ij:
        try:
            meta = json.loads(ij["Info"])
        except json.JSONDecodeError:
            meta = {}
    size = meta.get("voxel_size_um") or ij.get("spacing")
    return array, meta, size


def as_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    """Check that an array read from a file is a segmented label image and make it uint8
    (``GreyImageError`` where it holds grey values)."""
    labels = np.squeeze(labels)
    if labels.ndim not in (2, 3):
        raise TwinError(
            f"'{path}' holds an array of shape {labels.shape}; expected a 2D image or 3D stack"
        )
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != np.bool_:
        raise GreyImageError(
            f"'{path}' holds {labels.dtype} grey values, not phase ids; {SEGMENT_HINT}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise GreyImageError(
            f"'{path}' holds values {labels.min()}..{labels.max()}, grey values rather than "
            f"phase ids 0..255; {SEGMENT_HINT}"
        )
    labels = labels.astype(np.uint8)
    distinct = np.count_nonzero(np.bincount(labels.ravel(), minlength=256))
    if distinct > MAX_PHASES:
        raise GreyImageError(
            f"'{path}' holds {distinct} distinct values, more than the {MAX_PHASES} phases a "
            f"label image may have: a grey image; {SEGMENT_HINT}"
        )
    return labels


def check_writable(path: Path, suffixes: tuple[str, ...] = ()) -> None:
    """Fail before the work, not after it, on an output path that cannot be written."""
    if suffixes and path.suffix.lower() not in suffixes:
        raise TwinError(f"cannot write '{path}': expected a suffix {', '.join(suffixes)}")
    if not path.parent.is_dir():
        raise TwinError(f"cannot write '{path}': no directory '{path.parent}'; create it first")
