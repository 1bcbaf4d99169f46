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
  # the attacks of the fault runs, under the system python3 of an SSH extra host
  # (here they run under the venv's scapy)
  python3-scapy
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
