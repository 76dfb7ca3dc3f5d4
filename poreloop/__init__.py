"""poreloop: a closed-loop lab for porous energy materials.

The packages live under this one import root: ``poreloop.twins`` (the digital space),
``poreloop.envs`` (gymnasium design environments), ``poreloop.instruments`` (the lab over
ZeroMQ) and ``poreloop.agent`` (planners, the campaign, the CLI). This root holds only what
they all share and imports nothing heavy.
"""

from __future__ import annotations

__version__ = "0.1.0"
