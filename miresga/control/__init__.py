"""Miresga control plane: shared layouts, service model, drivers for the switch, agent and front-end."""
