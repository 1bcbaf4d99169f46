"""`python -m bench remote check|deploy|clean --inventory FILE`: a testbed of real hosts.

    python -m bench remote check   -i testbeds/lab.toml   # reach every host, check it; read-only
    python -m bench remote deploy  -i testbeds/lab.toml   # ship this checkout, build the parts
    python -m bench remote clean   -i testbeds/lab.toml   # remove what earlier sessions left

`check` changes nothing on any host: it connects and reads (docs/remote.md
lists each check and its fix).  `clean` stops the processes earlier sessions
recorded on the hosts and detaches, unpins and unmounts what they left; a
campaign (`bench run --inventory`) does the same before its first point.
The testbed itself is hosts.remote.RemoteTestbed; this is its command line.
"""

from __future__ import annotations

from common.errors import TestbedError
from hosts.inventory import load_inventory
from hosts.remote import RemoteTestbed


def add_parser(sub) -> None:
    p = sub.add_parser("remote", help="check, deploy to and clean a testbed of real hosts")
    rsub = p.add_subparsers(dest="action", required=True)
    for action, text, aliases in (
            ("check", "reach every host and check its prerequisites; changes nothing", []),
            ("deploy", "ship this checkout, install packages, build the parts, check", []),
            ("clean", "stop and remove what earlier sessions left on the hosts", ["cleanup"])):
        a = rsub.add_parser(action, help=text, aliases=aliases)
        a.add_argument("--inventory", "-i", required=True)
        if action == "deploy":
            a.add_argument("--no-install", action="store_true",
                           help="do not install Debian packages, only build")
        a.set_defaults(func=_remote, action=action)


def _remote(args) -> int:
    rt = RemoteTestbed(load_inventory(args.inventory))
    try:
        rt.reach()
        if args.action == "clean":
            for name, r in sorted(rt.clean().items()):
                print(f"  {name}: " + (f"failed: {r}" if isinstance(r, Exception)
                                       else ", ".join(r) or "nothing left over"))
            return 0
        if args.action == "deploy":
            revs = rt.deploy(install_packages=not args.no_install)
            for name, rev in sorted(revs.items()):
                print(f"  {name}: deployed {rev}")
        return _report(rt, deployed=args.action == "deploy")
    finally:
        rt.close()


def _report(rt: RemoteTestbed, deployed: bool) -> int:
    """Every host's problems and warnings, at once; TestbedError if any host has a problem."""
    reports = rt.check_prerequisites()
    for name, rep in sorted(reports.items()):
        f = rep.facts
        state = "ok" if not rep.problems else f"{len(rep.problems)} problems"
        print(f"  {name:<12} {state:<11} kernel {f.get('kernel')}, {f.get('cpus')} x "
              f"{f.get('cpu_model')}")
        for p in rep.problems:
            print(f"      problem: {p}")
        for w in rep.warnings:
            print(f"      warning: {w}")
    bad = sorted(n for n, r in reports.items() if r.problems)
    if bad:
        raise TestbedError(f"{len(bad)} hosts are not ready ({', '.join(bad)})"
                           + ("" if deployed else "; the check changed nothing on any host"))
    return 0
