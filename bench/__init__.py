"""The bench: `python -m bench`, the runner, experiments, faults, load and CPU measurement."""
