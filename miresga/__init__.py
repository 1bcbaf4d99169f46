"""Miresga: a Layer-7 load balancer split across a programmable switch, a DPDK front-end and an eBPF back-end agent."""
