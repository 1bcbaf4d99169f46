# The l4switch baseline (tc program for the switch's ports) and a probe of
# its flow hash.  Included by the top-level Makefile, which owns the pattern rule.

# -mcpu=v3: FIN/RST bits are set with atomic OR (BPF_ATOMIC | BPF_OR).
$(BUILD)/bpf/l4switch.bpf.o: BPF_CFLAGS += -mcpu=v3
$(BUILD)/bpf/l4switch.bpf.o: targets/l4switch/l4switch.h targets/l4switch/l4switch_maps.h miresga/include/mg_vip_maps.h \
	miresga/include/mg_pkt.h miresga/include/mg_fwd.h miresga/include/mg_vip_dispatch.h miresga/include/miresga.h

# Prints flow hashes for fixed inputs; tests/test_l4switch.py holds the Python
# flow hash (switchhost/pipelines/l4switch_layouts.py) to them.
$(BUILD)/l4switch-vectors: targets/l4switch/vectors_probe.c targets/l4switch/l4switch.h \
	miresga/include/miresga.h
	@echo "  CC      $@"
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(HOST_CFLAGS) $< -o $@

BUILD_OUTPUTS += $(BUILD)/bpf/l4switch.bpf.o $(BUILD)/l4switch-vectors
ROLE_PARTS_switch += $(BUILD)/bpf/l4switch.bpf.o
