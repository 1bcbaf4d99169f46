# The DPDK front-end (miresga-frontend) and its test harness
# (miresga-frontend-test: parser unit tests, a packet-in/packet-out driver of
# the state machine for tests/, and the fuzz runner), plus the same harness
# built with AddressSanitizer and UndefinedBehaviorSanitizer
# (miresga-frontend-test-asan) that tests/ run the state machine and the
# fuzzer against too.  Included by the top-level Makefile, which owns BUILD, Q
# and BUILD_OUTPUTS.

FE_DIR := miresga/frontend
FE_OBJDIR := $(BUILD)/frontend
FE_LIB_SRCS := fe_config.c fe_flow.c fe_http.c fe_offload.c fe_offload_key.c fe_port.c fe_rules.c \
	fe_stats.c fe_answer.c fe_backend.c fe_client.c fe_close.c fe_dispatch.c fe_emit.c fe_hold.c fe_lcore.c \
	fe_entry.c fe_server.c fe_timer.c fe_ack.c fe_drain.c fe_offload_queue.c
FE_LIB_OBJS := $(addprefix $(FE_OBJDIR)/,$(FE_LIB_SRCS:.c=.o))
FE_HEADERS := $(wildcard $(FE_DIR)/*.h) miresga/include/miresga.h

# Deferred (=) on purpose: on a fresh machine libdpdk-dev is installed by
# `setup`, which runs before these recipes but after this file is read.
FE_DPDK_CFLAGS = $(shell pkg-config --cflags libdpdk)
FE_DPDK_LIBS = $(shell pkg-config --libs libdpdk)
FE_CFLAGS = -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE -I miresga/include -I $(FE_DIR) \
	$(FE_DPDK_CFLAGS)
# libcrypto: HMAC-SHA256 of the switch host's control protocol (fe_offload.c).
FE_LDLIBS = $(FE_DPDK_LIBS) -lbpf -lcrypto -lpthread

$(FE_OBJDIR)/%.o: $(FE_DIR)/%.c $(FE_HEADERS)
	@echo "  CC      $@"
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(FE_CFLAGS) -c $< -o $@

$(FE_OBJDIR)/fe_test.o: $(FE_DIR)/test/fe_test.c $(FE_HEADERS)
	@echo "  CC      $@"
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(FE_CFLAGS) -c $< -o $@

$(BUILD)/miresga-frontend: $(FE_LIB_OBJS) $(FE_OBJDIR)/fe_main.o
	@echo "  LD      $@"
	$(Q)$(CC) $^ -o $@ $(FE_LDLIBS)

$(BUILD)/miresga-frontend-test: $(FE_LIB_OBJS) $(FE_OBJDIR)/fe_test.o
	@echo "  LD      $@"
	$(Q)$(CC) $^ -o $@ $(FE_LDLIBS)

# The control-protocol client alone, driven from stdin by tests/test_switch_channel.py.
$(FE_OBJDIR)/fe_offload_test.o: $(FE_DIR)/test/fe_offload_test.c $(FE_HEADERS)
	@echo "  CC      $@"
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(FE_CFLAGS) -c $< -o $@

$(BUILD)/miresga-offload-test: $(FE_OBJDIR)/fe_offload_test.o $(FE_OBJDIR)/fe_offload.o \
		$(FE_OBJDIR)/fe_offload_key.o $(FE_OBJDIR)/fe_port.o
	@echo "  LD      $@"
	$(Q)$(CC) $^ -o $@ $(FE_LDLIBS)

# The sanitized harness: every front-end object compiled again with ASan and
# UBSan, any report fatal (-fno-sanitize-recover), linked against the same
# DPDK.  DPDK itself is not instrumented: memory it hands out (mbufs,
# rte_malloc) is invisible to ASan, which is why the fuzz runner also parses
# each header from an exact-size malloc'd copy (fe_test.c).
FE_ASAN_OBJDIR := $(BUILD)/frontend-asan
FE_SANITIZE := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FE_ASAN_OBJS := $(addprefix $(FE_ASAN_OBJDIR)/,$(FE_LIB_SRCS:.c=.o))

$(FE_ASAN_OBJDIR)/%.o: $(FE_DIR)/%.c $(FE_HEADERS)
	@echo "  CC      $@"
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(FE_CFLAGS) -O1 $(FE_SANITIZE) -c $< -o $@

$(FE_ASAN_OBJDIR)/fe_test.o: $(FE_DIR)/test/fe_test.c $(FE_HEADERS)
	@echo "  CC      $@"
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(FE_CFLAGS) -O1 $(FE_SANITIZE) -c $< -o $@

$(BUILD)/miresga-frontend-test-asan: $(FE_ASAN_OBJS) $(FE_ASAN_OBJDIR)/fe_test.o
	@echo "  LD      $@"
	$(Q)$(CC) $(FE_SANITIZE) $^ -o $@ $(FE_LDLIBS)

BUILD_OUTPUTS += $(BUILD)/miresga-frontend $(BUILD)/miresga-frontend-test \
	$(BUILD)/miresga-frontend-test-asan $(BUILD)/miresga-offload-test
ROLE_PARTS_frontend += $(BUILD)/miresga-frontend

# The af_xdp port's XDP program, loaded by DPDK's PMD (xdp_prog=); the
# pattern rule and BPF_CFLAGS are in the top-level Makefile.
vpath %.bpf.c $(FE_DIR)
$(BUILD)/bpf/fe_xsk.bpf.o: $(FE_DIR)/fe_xsk.h
BUILD_OUTPUTS += $(BUILD)/bpf/fe_xsk.bpf.o
ROLE_PARTS_frontend += $(BUILD)/bpf/fe_xsk.bpf.o
