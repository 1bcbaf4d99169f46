# Back-end agent: one eBPF object with the tc ingress and egress programs.
# Loaded by miresga/control/agent.py; the pattern rule and BPF_CFLAGS are in
# the top-level Makefile.
BUILD_OUTPUTS += $(BUILD)/bpf/agent.bpf.o
