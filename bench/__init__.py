"""The bench: testbeds, hosts, workloads, runner, results."""
