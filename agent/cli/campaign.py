"""``poreloop run``, ``status`` and ``report``: the closed-loop campaign."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Campaign commands arrive with the campaign (agent.campaign)."""
