"""The physical world: instrument protocol, server, client, drivers and simulated backends.

``from instruments import InstrumentClient, serve``; both load on first use, so importing the
package stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poreloop.instruments.client import InstrumentClient
    from poreloop.instruments.server import serve

__all__ = ["InstrumentClient", "serve"]


def __getattr__(name: str) -> Any:
    if name == "InstrumentClient":
        from poreloop.instruments.client import InstrumentClient

        return InstrumentClient
    if name == "serve":
        from poreloop.instruments.server import serve

        return serve
    raise AttributeError(f"module 'instruments' has no attribute '{name}'")
