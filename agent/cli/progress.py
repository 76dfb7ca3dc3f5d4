"""A progress line on stderr for long commands, kept off stdout so their output stays parseable."""

from __future__ import annotations

import sys
from typing import TextIO


class StatusLine:
    """One status line on ``stream`` (stderr by default, looked up when made, so a test's capture
    sees it): rewritten in place on a terminal, a new line each time elsewhere (a log file).
    ``in_place`` tells a caller which, so it can show fewer lines to a log."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.in_place = self.stream.isatty()
        self._open = False

    def show(self, text: str) -> None:
        """Show ``text`` as the current status."""
        if self.in_place:
            self.stream.write(f"\r{text}\x1b[K")
            self._open = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def end(self) -> None:
        """End a line rewritten in place, so what follows starts on its own."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
