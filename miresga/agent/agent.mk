# Back-end agent: one eBPF object with the tc ingress and egress programs,
# and a host probe of agent.h's layouts for tests/test_agent_layout.py.
# Loaded by miresga/control/agent.py; the pattern rule and BPF_CFLAGS are in
# the top-level Makefile.
BUILD_OUTPUTS += $(BUILD)/bpf/agent.bpf.o
ROLE_PARTS_backend += $(BUILD)/bpf/agent.bpf.o

$(BUILD)/agent-layout-probe: miresga/agent/agent_probe.c miresga/agent/agent.h miresga/include/miresga.h
	@echo "  CC      $@"
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(HOST_CFLAGS) -I miresga/agent $< -o $@
BUILD_OUTPUTS += $(BUILD)/agent-layout-probe
