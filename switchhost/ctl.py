"""python -m switchhost.ctl: one management op to a running daemon, its result as JSON.

    python -m switchhost.ctl --key ctl.key [--connect 127.0.0.1:7470] OP [NAME=VALUE ...]

    python -m switchhost.ctl --key ctl.key stats
    python -m switchhost.ctl --key ctl.key fill count=143360          # miresga: table full
    python -m switchhost.ctl --key ctl.key drain-frontend name=frontend2
    python -m switchhost.ctl --key ctl.key set-pool 'backends=["backend1"]' vip=0

Each NAME=VALUE becomes a field of the request; VALUE is read as JSON, and
as a string if it is not JSON.  The daemon's ops: `ping`, `stats`; the
Miresga pipeline's `fill`, `drain` (synthetic entries: the table-full fault)
and `frontends`, `drain-frontend name=NAME`, `resume-frontend name=NAME`
(the front-end selection, pipelines/fe_liveness.py); the l4switch's `pool`,
`set-pool`, `conns`.  This is how the bench reaches a daemon through the host interface:
it runs on the switch host, over the same authenticated protocol as a
front-end.  Prints the result and exits 0, or prints {"error": ...} and exits 1.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys

from switchhost.client import ControlClient, ControlError
from switchhost.daemon import LISTEN_DEFAULT, hostport
from switchhost.protocol import ProtocolError, read_key


def field(s: str) -> tuple[str, object]:
    name, sep, value = s.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{s!r}: expected NAME=VALUE")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m switchhost.ctl",
                                 description="Ask a running switch host daemon.")
    ap.add_argument("--connect", type=hostport, default=LISTEN_DEFAULT, metavar="HOST:PORT",
                    help=f"its control address (default {LISTEN_DEFAULT[0]}:{LISTEN_DEFAULT[1]})")
    ap.add_argument("--key", required=True, help="the control protocol's key file")
    ap.add_argument("--timeout", type=float, default=300.0, metavar="S")
    ap.add_argument("op")
    ap.add_argument("fields", nargs="*", type=field, metavar="NAME=VALUE")
    args = ap.parse_args(argv)
    try:
        key = read_key(args.key)
        with ControlClient(*args.connect, key=key, timeout=args.timeout) as c:
            out = c.cmd(args.op, **dict(args.fields))
    except (OSError, ValueError, ProtocolError, ControlError) as e:
        where = f"{args.connect[0]}:{args.connect[1]}"
        print(json.dumps({"error": f"switchd at {where}: {type(e).__name__}: {e}"}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
