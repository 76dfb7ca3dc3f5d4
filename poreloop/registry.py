"""Names to implementations, and the messages for a name or a schema that does not fit.

Every package keeps its extension points in a ``Registry`` (twins, chains, planners,
simulated instruments, envs); entries may be lazy ``"package.module:attr"`` strings, as in
gymnasium's registration, so a registry can be listed without importing what it names.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Generic, TypeVar

from pydantic import ValidationError

T = TypeVar("T")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """A '; did you mean ...?' suffix for an unknown name, or the list of known names."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; known: {', '.join(known)}" if known else "; none is known"


def validation_summary(error: ValidationError) -> str:
    """One line: where the first schema failure is and what it says, plus how many more."""
    problems = error.errors()
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "the input"
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{where}: {message}{more}"


def load_entry_point(entry: str) -> object:
    """The object that ``"package.module:attr"`` names (ImportError/AttributeError if none)."""
    module_name, sep, attribute = entry.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected 'package.module:attr', got '{entry}'")
    return getattr(importlib.import_module(module_name), attribute)


class Registry(MutableMapping[str, T], Generic[T]):
    """Named implementations of one extension point, resolved on first use.

    ``registry[name]`` behaves as a dict (``KeyError`` on a miss); ``registry.lookup(name)``
    raises the package's own error with a "did you mean" suggestion, which is what a user sees.
    """

    def __init__(self, kind: str, error: type[Exception], entries: dict[str, T | str]) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, T | str] = dict(entries)

    def lookup(self, name: str) -> T:
        if name not in self._entries:
            raise self.error(f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}")
        return self[name]

    def __getitem__(self, name: str) -> T:
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = self._entries[name] = load_entry_point(entry)  # type: ignore[assignment]
        return entry  # type: ignore[return-value]

    def __setitem__(self, name: str, entry: T | str) -> None:
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"
