"""The physical world: instrument protocol, server, client, drivers and simulated backends."""
