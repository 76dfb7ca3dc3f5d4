"""Twins whose process is periodic in-plane say so, and their boxes do wrap there."""

import numpy as np
import pytest

from poreloop.twins.manufacturing import get_twin


def similarity(labels: np.ndarray, axis: int) -> tuple[np.ndarray, float]:
    """Share of equal labels between each slice across ``axis`` and the next, and between the
    last and the first."""
    slices = np.moveaxis(labels, axis, 0)
    neighbours = np.mean(slices[1:] == slices[:-1], axis=(1, 2))
    return neighbours, float(np.mean(slices[-1] == slices[0]))


@pytest.mark.parametrize(
    ("twin", "periodic"), [("li_ion_electrode", (0, 1)), ("sofc_anode", (0, 1)), ("gdl", ())]
)
def test_a_box_wraps_where_its_twin_says_it_does(twin, periodic):
    """Across a wrap the last and first slices are as alike as neighbours inside the box are;
    across any other side they are far less alike."""
    micro = get_twin(twin).generate(shape=(48, 48, 40), seed=0)
    assert micro.periodic == periodic
    for axis in range(3):
        neighbours, wrap = similarity(micro.labels, axis)
        if axis in periodic:
            assert wrap >= neighbours.min()
        else:
            assert wrap < np.median(neighbours) - 0.1
