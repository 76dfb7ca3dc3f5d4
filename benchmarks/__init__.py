"""Side-by-side benchmarks against peers, run from the repository root as
``python -m benchmarks.NAME``; a folder of modules, not part of the installed package."""
