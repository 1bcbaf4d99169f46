"""The l4switch baseline: a Layer-4 load balancer in the switch (see target.py and README.md).

Its control code is a pipeline of the switch host (switchhost/pipelines/l4switch.py),
which runs on a switch host with a bare python3; this package holds the C program
and the bench target, and imports nothing itself.
"""
