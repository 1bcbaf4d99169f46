"""What the runner's test modules share: a small workload file and a console that
prints nothing."""

from __future__ import annotations

import os

from rich.console import Console

WORKLOADS = """
[objects]
sizes = ["1KB", "10KB"]
per_size = 2
seed = 5

[[workload]]
name = "1KB"
size = "1KB"

[[workload]]
name = "10KB"
size = "10KB"

[[workload]]
name = "mix"
mix = { "1KB" = 60, "10KB" = 40 }

[[workload]]
name = "rr"
size = "1KB"
reroute = true
"""


def quiet() -> Console:
    return Console(file=open(os.devnull, "w"))
