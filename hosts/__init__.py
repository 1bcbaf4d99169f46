"""Hosts and the testbeds made of them: the host interface (a namespace here, a machine over SSH), topologies and inventories, the emulated and the remote testbed, the back-end web servers."""
