"""Argparse ``type=`` readers shared by the command groups: a bad value is a usage error."""

from __future__ import annotations

import argparse
import json
from typing import Any


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    return key.strip(), value.strip()


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'")
    return value


def phase_names(text: str) -> dict[int, str]:
    """``0=pore,85=active`` (ids named), or ``pore,active,cbd`` (ids 0, 1, 2 in that order)."""
    parts = text.split(",")
    if not any("=" in part for part in parts):
        parts = [f"{pid}={name}" for pid, name in enumerate(parts)]
    names: dict[int, str] = {}
    for part in parts:
        key, sep, name = part.partition("=")
        if not sep or not key.strip().isdigit() or not name.strip():
            raise argparse.ArgumentTypeError(
                f"expected ID=NAME,... like 0=pore,1=solid or NAME,... like pore,solid, got '{text}'"
            )
        if int(key) in names:
            raise argparse.ArgumentTypeError(f"phase id {int(key)} is named twice in '{text}'")
        names[int(key)] = name.strip()
    if len(set(names.values())) < len(names):
        raise argparse.ArgumentTypeError(f"a phase name is given to two ids in '{text}'")
    return names


def axes(text: str) -> tuple[str, ...]:
    found = tuple(a.strip() for a in text.split(","))
    if not found or any(a not in ("x", "y", "z") for a in found):
        raise argparse.ArgumentTypeError(f"expected axes among x,y,z like z or x,z, got '{text}'")
    return found


def periodic_axes(text: str) -> tuple[int, ...]:
    """``x,y`` → (0, 1); ``none`` → ()."""
    if text.strip() == "none":
        return ()
    try:
        return tuple(sorted({"xyz".index(a) for a in axes(text)}))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected axes among x,y,z like x,y, or none, got '{text}'"
        ) from None


def shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(positive_int(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a shape like 64,64,96 (positive integers), got '{text}'"
        ) from None


def json_object(text: str) -> dict[str, Any]:
    """A JSON object, e.g. ``--params '{"duration_s": 60}'``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"expected a JSON object like '{{\"duration_s\": 60}}', got '{text}' ({exc})"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"expected a JSON object like '{{\"duration_s\": 60}}', got a "
            f"{type(value).__name__}: '{text}'"
        )
    return value
