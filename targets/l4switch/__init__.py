"""The l4switch baseline: a Layer-4 load balancer in the switch (see target.py and README.md).

Nothing here is imported by the package itself: l4switchd runs on a switch host
with a bare python3 and must not pull in the bench target (target.py).
"""
