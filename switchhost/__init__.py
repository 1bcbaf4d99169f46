"""The switch host: what runs on the host of an eBPF switch, for every pipeline.

Standard library only: it runs on a real switch host with a bare python3.
"""
