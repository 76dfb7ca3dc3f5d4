"""``python -m poreloop.instruments.server KIND [--flags]``: the same options as
``poreloop instrument serve`` (``ServerOptions``), plus fault injection for tests."""

from poreloop.instruments.server.entry import main

main()
