"""The one exception family of the digital space."""

from __future__ import annotations


class TwinError(ValueError):
    """A twin, recipe, parameter space or microstructure file was not what was expected.

    The message names what was expected, what was got and, where it helps, how to fix it;
    the CLI prints it as one line with exit code 2.
    """


class CriticError(TwinError):
    """A critic could not score a structure, or was given one it cannot read.

    A structure that is valid but does not percolate is not an error: critics return an
    explicit flagged result for it.
    """
