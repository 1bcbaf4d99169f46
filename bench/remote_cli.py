"""`python -m bench remote check|deploy|cleanup --inventory FILE`: a testbed of real hosts.

    python -m bench remote check   -i testbeds/lab.toml   # reach every host, check it
    python -m bench remote deploy  -i testbeds/lab.toml   # ship this checkout, build the parts
    python -m bench remote cleanup -i testbeds/lab.toml   # remove what earlier sessions left

The testbed itself is hosts.remote.RemoteTestbed; this is its command line.
"""

from __future__ import annotations

from common.errors import TestbedError
from hosts.inventory import load_inventory
from hosts.remote import RemoteTestbed, parallel


def add_parser(sub) -> None:
    p = sub.add_parser("remote", help="check, deploy to and clean up a testbed of real hosts")
    rsub = p.add_subparsers(dest="action", required=True)
    for action, text in (("check", "reach every host and check its prerequisites"),
                         ("deploy", "ship this checkout, install packages, build the parts"),
                         ("cleanup", "remove what earlier sessions left on the hosts")):
        a = rsub.add_parser(action, help=text)
        a.add_argument("--inventory", "-i", required=True)
        if action == "deploy":
            a.add_argument("--no-install", action="store_true",
                           help="do not install Debian packages, only build")
        a.set_defaults(func=_remote)


def _remote(args) -> int:
    rt = RemoteTestbed(load_inventory(args.inventory))
    if args.action == "cleanup":
        reached = parallel(list(rt.hosts.values()), lambda h: (h.check(), rt._cleanup_host(h))[1],
                           "cleaning up", rt.progress)
        for name, r in sorted(reached.items()):
            print(f"  {name}: " + (f"unreachable: {r}" if isinstance(r, Exception)
                                   else ", ".join(r) or "nothing left over"))
        return 0
    if args.action == "deploy":
        reached = parallel(list(rt.hosts.values()), lambda h: h.check(), "connecting",
                           rt.progress)
        down = {n: r for n, r in reached.items() if isinstance(r, Exception)}
        if down:
            raise TestbedError("unreachable hosts:\n" + "\n".join(
                f"  {n}: {e}" for n, e in sorted(down.items())))
        revs = rt.deploy(install_packages=not args.no_install)
        for name, rev in sorted(revs.items()):
            print(f"  {name}: deployed {rev}")
    rt.up()  # reach, clean, check: raises with every problem of every host
    for name, rep in sorted(rt.check_prerequisites().items()):
        f = rep.facts
        print(f"  {name:<12} ok  kernel {f.get('kernel')}, {f.get('cpus')} x {f.get('cpu_model')}")
    rt.down()
    return 0
