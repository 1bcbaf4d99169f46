#!/usr/bin/env bash
# Installs, idempotently, the Debian packages every role of the bench needs.
# A second run checks dpkg and returns in well under a second.
set -euo pipefail

packages=(
  # eBPF toolchain: switch pipeline, back-end agent, l4switch
  clang llvm libbpf-dev libbpf1 bpftool libelf-dev zlib1g-dev linux-libc-dev
  # DPDK front-end; libssl-dev: libcrypto's HMAC for its control protocol client
  dpdk dpdk-dev libdpdk-dev pkg-config build-essential libssl-dev
  # its ports on the emulated testbed (dependencies of libdpdk-dev today; named
  # because the front-end cannot start without them): af_packet, and af_xdp
  # with libxdp (AF_XDP sockets) and libbpf (the front-end fills its XDP
  # program's map itself: -lbpf)
  librte-net-af-packet23 librte-net-af-xdp23 libxdp1
  # systems under test and load generation
  wrk nginx-light haproxy curl
  # h2load: HTTP/1.1 pipelining (-m) in the hand-off's end-to-end tests
  nghttp2-client
  # the wrk Lua sampler is tested standalone with the same LuaJIT wrk links
  luajit
  # testbed plumbing and the SSH transport
  iproute2 iputils-ping hping3 ethtool openssh-server openssh-client netcat-openbsd procps psmisc
  # python venv
  python3-venv
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  [[ "$status" == "ii "* ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $EUID -ne 0 ]]; then
    echo "setup: missing packages (${missing[*]}); run as root to install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
  apt-get update -qq
  # policy-rc.d keeps the packages' own services (nginx, haproxy, sshd) from
  # starting in the root namespace: the bench starts its own instances.
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# bpffs is where the control plane pins maps; debugfs is not needed.
if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
fi
mkdir -p /run/sshd

# The open-loop load generator (workloads/openloop/loadgen.py) runs on client
# hosts with python3 and two PyPI packages, hdrhistogram and uvloop, which
# Debian does not package together: a venv of its own inside this checkout,
# with the versions requirements.lock pins, on every host this script sets
# up (bench/openloop.py runs it from there).  Skipped when already current.
# A host that cannot reach PyPI goes on without it: only a client needs it,
# and the runner names what is missing when it is used there.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
loadgen_venv="$repo/build/loadgen-venv"
loadgen_pins=$(grep -E '^(hdrhistogram|uvloop|pbr|setuptools)==' "$repo/requirements.lock" | sort)
if [[ "$(cat "$loadgen_venv/.installed" 2>/dev/null)" != "$loadgen_pins" ]]; then
  echo "setup: installing the open-loop generator's venv ($loadgen_venv)"
  python3 -m venv --clear "$loadgen_venv"
  # shellcheck disable=SC2086  # one pin a word
  if "$loadgen_venv/bin/pip" install -q --disable-pip-version-check --retries 1 --timeout 15 \
      $loadgen_pins; then
    echo "$loadgen_pins" > "$loadgen_venv/.installed"
  else
    echo "setup: WARNING: pip could not install $(echo $loadgen_pins); the open-loop" \
         "generator will not run on this host" >&2
  fi
fi
