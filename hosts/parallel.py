"""Work that is independent across hosts runs on all of them at once.

Deploying, checking, starting web servers and reading host facts are one
SSH round trip after another on a real testbed; done host by host they cost
the sum, done in parallel the slowest host.
"""

from __future__ import annotations

import concurrent.futures as cf
from typing import Callable


def for_each_host(hosts: list, fn: Callable, what: str = "", progress: bool = False) -> dict:
    """fn(host) for every host at once; {host name: result, or the exception it raised}.

    With `progress`, one transient progress line counts hosts as they finish.
    """
    from rich.progress import Progress

    results: dict = {}
    if not hosts:
        return results
    with cf.ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        futures = {pool.submit(fn, h): h for h in hosts}
        with Progress(transient=True, disable=not progress) as bar:
            task = bar.add_task(f"{what} ({len(hosts)} hosts)", total=len(hosts))
            for fut in cf.as_completed(futures):
                h = futures[fut]
                try:
                    results[h.name] = fut.result()
                except Exception as e:  # the caller decides how to report it
                    results[h.name] = e
                bar.advance(task)
    return results


def raise_first(results: dict) -> dict:
    """Re-raise the first exception of for_each_host's results (in host order)."""
    for r in results.values():
        if isinstance(r, BaseException):
            raise r
    return results
