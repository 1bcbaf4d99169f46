#!/usr/bin/env bash
# The open-loop load generator's Python (workloads/openloop/loadgen.py) on a
# client host: python3 and two PyPI packages, hdrhistogram and uvloop, which
# Debian does not package together.  A venv of its own inside this checkout
# (build/loadgen-venv), with the versions requirements.lock pins; bench/openloop.py
# runs the generator from there.  Built by `make build` here and by `make
# host-client` on a real testbed's client hosts (only they run it); skipped
# when already current.  A host that cannot reach PyPI goes on without it, with
# a warning: the runner names what is missing when the generator is used there.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${1:-$repo/build/loadgen-venv}"
pins=$(grep -E '^(hdrhistogram|uvloop|pbr|setuptools)==' "$repo/requirements.lock" | sort)
if [[ "$(cat "$venv/.installed" 2>/dev/null)" == "$pins" ]]; then
  touch "$venv/.installed"  # current: newer than what make compares it with
  exit 0
fi
echo "  VENV    $venv (the open-loop generator's hdrhistogram, uvloop)"
python3 -m venv --clear "$venv"
# shellcheck disable=SC2086  # one pin a word
if "$venv/bin/pip" install -q --disable-pip-version-check --retries 1 --timeout 15 $pins; then
  echo "$pins" > "$venv/.installed"
else
  echo "loadgen-venv: WARNING: pip could not install $(echo $pins); the open-loop" \
       "generator will not run on this host" >&2
fi
