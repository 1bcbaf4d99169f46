# The Miresga switch pipeline (tc program for the switch's ports).
# Included by the top-level Makefile, which owns the pattern rule.

# -mcpu=v3: the seen filter sets bits with atomic OR (BPF_ATOMIC | BPF_OR),
# which the default (v1) instruction set lacks; the kernel has it since 5.12.
$(BUILD)/bpf/switch.bpf.o: BPF_CFLAGS += -mcpu=v3
$(BUILD)/bpf/switch.bpf.o: miresga/switch/switch_maps.h miresga/include/mg_vip_maps.h miresga/include/mg_pkt.h miresga/include/mg_fwd.h \
	miresga/include/mg_vip_dispatch.h

BUILD_OUTPUTS += $(BUILD)/bpf/switch.bpf.o
ROLE_PARTS_switch += $(BUILD)/bpf/switch.bpf.o
