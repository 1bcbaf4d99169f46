# Back-end agent: one eBPF object with the tc ingress and egress programs.
# Loaded by miresga/control/agent.py; the pattern rule and BPF_CFLAGS are in
# the top-level Makefile (which also generates the Python layouts of agent.h).
BUILD_OUTPUTS += $(BUILD)/bpf/agent.bpf.o
ROLE_PARTS_backend += $(BUILD)/bpf/agent.bpf.o
