"""Critics (P-models): microstructure → properties with units → cell performance."""
