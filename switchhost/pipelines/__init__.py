"""The pipelines a switch host runs: Miresga's (miresga.py) and the l4switch baseline's (l4switch.py)."""
