"""`python -m bench ...`: the bench's command line.

    python -m bench testbed up [--topology FILE] [--prefix P]
    python -m bench testbed status [--prefix P]
    python -m bench testbed exec HOST [--prefix P] -- CMD...
    python -m bench testbed down [--prefix P]
    python -m bench testbed plan miresga|l4switch [--prefix P] [--service FILE] > plan.json

`testbed plan` prints the switch plan (JSON) of a running testbed for the
switch host's daemon with either pipeline (`python -m switchhost --pipeline
miresga|l4switch --plan`): it runs on a switch host with a bare python3 and
never reads a testbed itself.

The other subcommands live beside what they drive, each module adding its
parsers with `add_parser(sub)`: `run` (bench/runner.py), `up`, `status` and
`down` (bench/session.py), `plots`, `claims` and `compare` (bench/plotting.py),
`remote` (bench/remote_cli.py).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys

from bench import plotting, remote_cli, runner, session
from common.errors import Error
from common.service import default_service, load_service
from hosts.testbed import EmulatedTestbed, running_testbeds, teardown
from hosts.topology import DEFAULT_TOPOLOGY, load_topology
from miresga.config import MiresgaConfig
from switchhost.pipelines.miresga import SwitchPlan
from switchhost.pipelines.l4switch import L4Plan


def add_testbed_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("testbed", help="build, inspect and remove the emulated testbed")
    tsub = p.add_subparsers(dest="action", required=True)
    for action, text in (("up", "build the testbed"), ("down", "remove it and all it runs"),
                         ("status", "show what is up")):
        a = tsub.add_parser(action, help=text)
        a.add_argument("--topology", "-t", default=str(DEFAULT_TOPOLOGY))
        a.add_argument("--prefix", "-p", default=None,
                       help="namespace prefix (default: the topology's name)")
        a.set_defaults(func=_testbed)
    e = tsub.add_parser("exec", help="run a command on a host of the testbed")
    e.add_argument("host")
    e.add_argument("--topology", "-t", default=str(DEFAULT_TOPOLOGY))
    e.add_argument("--prefix", "-p", default=None)
    e.set_defaults(func=_testbed)
    pl = tsub.add_parser("plan", help="print the switch plan (JSON) of a running testbed")
    pl.add_argument("switch", choices=["miresga", "l4switch"],
                    help="which pipeline of the switch host's daemon")
    pl.add_argument("--topology", "-t", default=str(DEFAULT_TOPOLOGY))
    pl.add_argument("--prefix", "-p", default=None)
    pl.add_argument("--service", help="service definition (TOML); default: one cluster of "
                                      "every back-end")
    pl.set_defaults(func=_testbed)


def _prefix(args) -> str:
    if args.prefix:
        return args.prefix
    return load_topology(args.topology).testbed.name


def _testbed(args) -> int:
    if args.action == "up":
        tb = EmulatedTestbed(load_topology(args.topology), prefix=args.prefix, guard=False)
        tb.up()
        print(f"testbed {tb.prefix!r} is up:")
        _print_status(tb.status())
        return 0
    prefix = _prefix(args)
    if args.action == "down":
        # Works from the state file, or from namespace names alone if the
        # state file is gone (a crash before it was written).
        try:
            tb = EmulatedTestbed.from_state(prefix)
            tb.down()
        except Error:
            teardown(prefix)
        print(f"testbed {prefix!r} is down")
        return 0
    if args.action == "status":
        up = running_testbeds()
        if prefix not in up:
            print(f"testbed {prefix!r} is down" + (f"; up: {', '.join(up)}" if up else ""))
            return 1
        _print_status(EmulatedTestbed.from_state(prefix).status())
        return 0
    if args.action == "plan":
        print(_switch_plan(EmulatedTestbed.from_state(prefix), args.switch, args.service))
        return 0
    if args.action == "exec":
        cmd = args.trailing
        if not cmd:
            raise Error("exec: give a command after --")
        host = EmulatedTestbed.from_state(prefix).host(args.host)
        # The command gets this terminal (stdin, stdout, stderr), so an
        # interactive shell, tcpdump or a binary download work as they would
        # on the host itself.
        argv = host.argv(shlex.join(cmd) if len(cmd) > 1 else cmd[0])
        return subprocess.run(argv).returncode
    raise AssertionError(args.action)


def _switch_plan(tb, switch: str, service_file: str | None) -> str:
    names = [h.name for h in tb.backends]
    try:
        if switch == "miresga":
            service = load_service(service_file) if service_file else default_service(names)
            # The deployment's defaults, timeouts included, as the target derives them.
            return SwitchPlan.from_testbed(tb, service,
                                           **MiresgaConfig().switch_plan_params()).to_json()
        service = (load_service(service_file) if service_file
                   else default_service(names, vip=str(tb.vip), port=tb.vip_port))
        return L4Plan.from_testbed(tb, service).to_json()
    except ValueError as e:
        raise Error(f"testbed {tb.prefix!r}: {switch} plan: {e}") from None


def _print_status(st: dict) -> None:
    print(f"  state: {st['state']}")
    for name, h in st["hosts"].items():
        mark = "up" if h["present"] else "MISSING"
        print(f"  {name:<12} {h['role']:<9} {h['netns']:<20} {h['address'] or '-':<18} "
              f"{mark:<8} {h['processes']} processes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    add_testbed_parser(sub)
    runner.add_parser(sub)
    session.add_parser(sub)
    plotting.add_parser(sub)
    remote_cli.add_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after `--` is a command for a host, not options for us.
    trailing: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, trailing = argv[:i], argv[i + 1:]
    args = parser.parse_args(argv)
    args.trailing = trailing
    try:
        return args.func(args)
    except Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`... --dry-run | head`): what it did not read
        # was not wanted.  Point stdout at /dev/null so the interpreter's last
        # flush does not fail again, and exit as a process killed by SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


__all__ = ["main"]
