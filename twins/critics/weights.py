"""Trained networks on disk: weights saved beside what they were trained on, and files that
are not what they claim refused in one line. The U-Net segmenter and the neural critic share it.

A file is ``torch.save({"trained": JSON of a dataclass with a ``format``, "state": weights})``,
read back with ``weights_only=True`` (no pickled code runs).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from poreloop.twins.errors import TwinError

SUFFIX = ".pt"
T = TypeVar("T")
M = TypeVar("M")


def save(path: str | Path, what: str, trained: Any, model: Any) -> None:
    """Write ``model``'s weights (on the CPU) and the dataclass ``trained`` to ``path``."""
    import torch

    path = Path(path)
    if path.suffix != SUFFIX:
        raise TwinError(f"a {what} is saved as {SUFFIX}, got '{path}'")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    torch.save({"trained": json.dumps(asdict(trained)), "state": state}, path)


def load(
    path: str | Path,
    what: str,
    trained_type: Callable[..., T],
    version: int,
    build: Callable[[T, dict[str, Any]], M],
) -> M:
    """``build(trained, state)`` from the file at ``path``; a ``TwinError`` naming ``what``
    for a missing or unreadable file, another format ``version``, or weights of another
    network."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise TwinError(f"no {what} at '{path}'; train one first")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        meta = json.loads(saved["trained"])
        found = meta.get("format")
        if found == version:  # another format's fields are not this one's
            trained = trained_type(**meta)
    except Exception as error:  # any unreadable file is the same user mistake
        # its first sentence: torch's next ones advise loading untrusted files unsafely
        reason = str(error).strip().split(". ")[0].partition("\n")[0]
        raise TwinError(
            f"'{path}' is not a poreloop {what} ({type(error).__name__}: {reason})"
        ) from None
    if found != version:
        raise TwinError(
            f"'{path}' is a {what} of format {found}; this poreloop reads format {version}: "
            "train it again"
        )
    try:
        return build(trained, saved["state"])
    except RuntimeError:  # load_state_dict: weights of another network than this one builds
        raise TwinError(
            f"'{path}' holds weights of another network than this poreloop's {what}: train it again"
        ) from None
