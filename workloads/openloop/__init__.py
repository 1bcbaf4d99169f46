"""The open-loop load generator that runs on client hosts (loadgen.py)."""
