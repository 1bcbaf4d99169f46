# Miresga and its bench.  The two commands a newcomer needs are `make bench`
# and `make test`; both install and build whatever is missing first.

PYTHON ?= python3
CLANG ?= clang
CC ?= gcc
VENV ?= .venv
PROFILE ?= default
EXPERIMENT ?= experiments/$(PROFILE).toml
# Results directory `make plots` draws from; empty = the last campaign run.
RESULTS ?=
PYTEST_ARGS ?=

PY := $(VENV)/bin/python
BUILD := build
ARCH_TRIPLET := $(shell $(CC) -dumpmachine)

ifeq ($(V),1)
Q :=
else
Q := @
endif

.DELETE_ON_ERROR:
.PHONY: all setup build test test-unprivileged bench plots clean distclean

all: build

# ----------------------------------------------------------------- setup
setup: $(VENV)/.installed
	$(Q)bash scripts/setup-system.sh

$(VENV)/.installed: pyproject.toml requirements.lock scripts/setup-system.sh
	$(Q)bash scripts/setup-system.sh
	$(Q)test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(Q)$(PY) -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[test]'
	$(Q)touch $@

# ----------------------------------------------------------------- build
# Every C/eBPF component adds its outputs to BUILD_OUTPUTS in its own
# fragment, so components can change their rules without touching this file.
BUILD_OUTPUTS :=
BPF_CFLAGS := -O2 -g -Wall -Werror -target bpf -D__BPF__ \
	-I miresga/include -I /usr/include/$(ARCH_TRIPLET)
HOST_CFLAGS := -O2 -g -Wall -Wextra -Werror -I miresga/include

# eBPF objects: build/bpf/NAME.bpf.o from the NAME.bpf.c found on vpath.
vpath %.bpf.c miresga/switch miresga/agent targets/l4switch miresga/include
BPF_HEADERS := $(wildcard miresga/include/*.h miresga/switch/*.h miresga/agent/*.h targets/l4switch/*.h)
# The parts each role of a real testbed builds on its own host (no project
# venv there: host-side tools use the Python standard library only).
# Component fragments append to these.
ROLES := client switch frontend backend extra
ROLE_PARTS_client :=
ROLE_PARTS_switch :=
ROLE_PARTS_frontend :=
ROLE_PARTS_backend :=
ROLE_PARTS_extra :=

$(BUILD)/bpf/%.bpf.o: %.bpf.c $(BPF_HEADERS)
	@echo "  BPF     $@"
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# Prints what miresga.h's functions give for fixed inputs; tests hold their
# Python twins to it.
$(BUILD)/miresga-vectors: miresga/include/vectors_probe.c miresga/include/miresga.h
	@echo "  CC      $@"
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(HOST_CFLAGS) $< -o $@
BUILD_OUTPUTS += $(BUILD)/miresga-vectors

# Every struct, enum and constant Python reads or writes, in one BTF (not a
# program), and the Python modules generated from it.  The modules are
# committed, so that Python on a host without clang or bpftool, and the import
# contracts, see them; the build rewrites one only when the C says something
# else (commit it with the header), and tests/test_layouts_btf.py fails when
# one is not what the object says.  The generator needs the standard library
# only: the system python3, as on every host.
$(BUILD)/bpf/layouts.bpf.o: BPF_CFLAGS += -I miresga/agent -I targets/l4switch
PY_LAYOUTS := mg_py_switch=switchhost/layouts_gen.py \
	mg_py_agent=miresga/control/agent_layouts_gen.py \
	mg_py_l4switch=switchhost/pipelines/l4switch_layouts_gen.py
$(BUILD)/py-layouts.stamp: $(BUILD)/bpf/layouts.bpf.o scripts/gen_layouts.py
	$(Q)$(PYTHON) scripts/gen_layouts.py --source build/bpf/layouts.bpf.o $< $(PY_LAYOUTS)
	$(Q)touch $@
BUILD_OUTPUTS += $(BUILD)/bpf/layouts.bpf.o $(BUILD)/py-layouts.stamp

# The open-loop generator's Python, on the hosts that run it (clients).  Its
# recipe leaves no stamp when PyPI is out of reach (a warning, not an error),
# and is tried again by the next build.
$(BUILD)/loadgen-venv/.installed: requirements.lock scripts/loadgen-venv.sh
	$(Q)bash scripts/loadgen-venv.sh $(@D)
ROLE_PARTS_client += $(BUILD)/loadgen-venv/.installed
BUILD_OUTPUTS += $(BUILD)/loadgen-venv/.installed

-include miresga/switch/switch.mk
-include miresga/agent/agent.mk
-include miresga/frontend/frontend.mk
-include targets/l4switch/l4switch.mk

build: setup $(BUILD_OUTPUTS)

# `make host-ROLE`: what `python -m bench remote deploy` builds on a host of
# that role.  A role that does not exist is an error, not an empty build.
.SECONDEXPANSION:
host-%: $$(if $$(filter $$*,$$(ROLES)),$$(ROLE_PARTS_$$*),host-role-unknown-$$*)
	@echo "  built the $* parts"

host-role-unknown-%:
	$(error make host-$*: no role '$*'; the roles are $(ROLES))

# ------------------------------------------------------------ test/bench
# Import contracts first (pyproject.toml, [tool.importlinter]): a package
# that imports upward fails the tests before any of them runs.  Then the
# tests that need no root, as an unprivileged user; then every test, as root.
test: build
	$(Q)$(VENV)/bin/lint-imports --no-cache --no-logo
	$(Q)$(MAKE) -s test-unprivileged
	$(Q)$(PY) -m pytest $(PYTEST_ARGS)

# The tests not marked root (parsing, models, results, plots, the C unit
# tests...) as UNPRIVILEGED: they must pass without root, none may skip, and
# there must be some.  The venv's interpreter may sit where only root can
# reach it (pyenv under /root), so they run on the system python3 with the
# venv's packages (build/venv-unprivileged: a venv whose .pth adds them).
SYSTEM_PYTHON ?= /usr/bin/python3
UNPRIVILEGED ?= nobody:nogroup
UNPRIV_VENV := $(BUILD)/venv-unprivileged

$(UNPRIV_VENV)/.ready: $(VENV)/.installed
	$(Q)test "$$($(SYSTEM_PYTHON) -c 'import sys; print(sys.version_info[:2])')" = \
	  "$$($(PY) -c 'import sys; print(sys.version_info[:2])')" || \
	  { echo "$(SYSTEM_PYTHON) and $(PY) are different Python versions" >&2; exit 1; }
	$(Q)rm -rf $(UNPRIV_VENV)
	$(Q)$(SYSTEM_PYTHON) -m venv --without-pip $(UNPRIV_VENV)
	$(Q)echo "import site; site.addsitedir('$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')')" \
	  > "$$($(UNPRIV_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/project-venv.pth"
	$(Q)touch $@

test-unprivileged: build $(UNPRIV_VENV)/.ready
	$(Q)setpriv --reuid=$(firstword $(subst :, ,$(UNPRIVILEGED))) \
	  --regid=$(lastword $(subst :, ,$(UNPRIVILEGED))) --clear-groups \
	  env HOME=/tmp $(UNPRIV_VENV)/bin/python -m pytest -m "not root" -p no:cacheprovider \
	  --fail-on-skip -q

# The campaign ends with its figures even if some points failed (exit 1:
# they are recorded and reported, and the exit code still says so); a bad
# experiment file (exit 2) or an interrupted run draws nothing.  Then the
# campaigns that do not fit the default one's cross product, each into its
# own results directory with its own figures: the equal front-end budget
# (experiments/budget.toml, about 25 minutes; its budgets would multiply
# every workload of the default campaign).  PROFILE=quick runs none of them.
EXTRA_EXPERIMENTS ?= $(if $(filter default,$(PROFILE)),experiments/budget.toml)

bench: build
	$(Q)$(PY) -m bench run $(EXPERIMENT); rc=$$?; [ $$rc -le 1 ] || exit $$rc; \
	  $(PY) -m bench plots || exit $$?; \
	  for e in $(EXTRA_EXPERIMENTS); do \
	    $(PY) -m bench run $$e; r=$$?; [ $$r -le 1 ] || exit $$r; [ $$r -eq 0 ] || rc=$$r; \
	    $(PY) -m bench plots || exit $$?; \
	  done; exit $$rc

plots: setup
	$(Q)$(PY) -m bench plots $(RESULTS)

clean:
	rm -rf $(BUILD)

distclean: clean
	rm -rf $(VENV) *.egg-info
