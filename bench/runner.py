"""`python -m bench run EXPERIMENT`: run a campaign, one result file per run point.

    python -m bench run experiments/quick.toml [--force] [--results DIR]
                        [--topology FILE | --inventory FILE] [--prefix P]
                        [--target KEY]... [--workload NAME]... [--only FIELD=VALUE]...
                        [--dry-run]

The campaign is validated completely before anything is created: the
experiment (every target's parameters), the topology or inventory, the roles
each target needs on it, the slice the filters select, the --prefix (its form,
and no testbed up under it), the results already there (a point measured with
other parameters is refused unless --force), and that no other run holds the
campaign's directory.  A refused run creates no directory and leaves
results/latest where it was.  --dry-run stops there and lists the points (done,
todo, changed) with an estimate of the run's length.  Then:
the testbed comes up and nginx starts on every back-end (once, shared by all
targets); only then is the campaign's directory created and results/latest
pointed at it, so a run whose hosts cannot be reached or whose testbed does not
build leaves neither.  For each target in turn: deploy, start, wait healthy,
verify integrity (every object, sha256), then measure each of its points; stop.
Points whose result file already holds a successful run with the same
parameters are skipped (resume) unless --force.  A point that fails (wrk
fails or prints nothing, the target is unhealthy) is written as a failed
result with the output and logs, and the campaign goes on; failed points are
run again by the next invocation.  A point with no meaning for its target
(bench/reroute.py: the re-route workload where there is no L7 decision) is
recorded as not applicable, not run.  Ctrl-C (or SIGTERM) stops at once, keeps
every finished point and takes the testbed down.

Each point: a warm-up run of wrk (its numbers are kept in the raw section,
not measured), then the measured run; under a mix the 1 KB probe runs beside
it for the same duration, and under every workload a checksumming client
(bench/bodies.py) samples the bodies: one that differs from the manifest
fails the point.  CPU per role is the delta over the measured run.
Every client host of the testbed drives a share of the load, merged into one
run (bench/clients.py).  The experiment's open-loop points (`[openloop]`,
bench/loadcurve.py) run after each target's wrk points, on its deployment
(`--only load=open`, `--only rate=R` select them).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import signal
import time
import traceback
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from analysis.results import FORMAT, FORMAT_VERSION, read_result, write_result, write_tidy
from bench import bodies as body_check
from bench import clients, loadcurve, metadata
from bench.budget import FrontendBudget, check_supported
from bench.cpu import CpuSampler
from bench.estimate import estimate
from bench.experiment import SWEEP_ORDER, Parameters, load_experiment, topology_path
from bench.faults import FaultPoint, run_fault
from bench.integrity import verify
from bench.loadcurve import OpenLoopPoint
from bench.netstat import NetstatSampler
from bench.reroute import (NOT_APPLICABLE, alternating_headers, integrity_alternation,
                           load_threads, not_applicable, reroute_metrics)
from bench.wrk import LATENCY_HISTOGRAM_KEYS, WrkJob, WrkRunner
from common.errors import ConfigError, Error
from common.paths import RESULTS_ROOT
from common.service import bench_service
from hosts.backends import BackendServers, ObjectStore
from hosts.inventory import load_inventory
from hosts.remote import RemoteTestbed
from hosts.testbed import EmulatedTestbed, check_prefix, require_congestion_control
from hosts.topology import DEFAULT_TOPOLOGY, Role, load_topology
from targets.base import available, make_target
from workloads.model import parse_size


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run an experiment: targets x workloads x parameters")
    p.add_argument("experiment", help="experiment file (experiments/NAME.toml, or NAME)")
    p.add_argument("--force", action="store_true",
                   help="re-run points that are done, and overwrite points measured with "
                        "other parameters")
    p.add_argument("--results", default=str(RESULTS_ROOT),
                   help="results root; the campaign writes to ROOT/<campaign>/ (default results)")
    p.add_argument("--topology", "-t", default=None,
                   help="topology file (default: the experiment's, else testbeds/emulated.toml)")
    p.add_argument("--inventory", "-i", default=None,
                   help="run on the real hosts of an inventory over SSH instead of an emulated "
                        "testbed (see docs/remote.md)")
    p.add_argument("--no-deploy", action="store_true",
                   help="with --inventory: do not ship and build this checkout on the hosts")
    p.add_argument("--prefix", "-p", default=None,
                   help="emulated testbed's namespace prefix (default: wl + random, so runs "
                        "never collide)")
    p.add_argument("--target", action="append", default=[], metavar="KEY",
                   help="run only this target (its name, or label); repeat for several")
    p.add_argument("--workload", action="append", default=[], metavar="NAME",
                   help="run only this workload; repeat for several")
    p.add_argument("--only", action="append", default=[], metavar="FIELD=VALUE",
                   help="run only the points whose parameter FIELD (conn_mode, connections, "
                        "..., repetition) has VALUE; repeat for several (values of one field: "
                        "any of them)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate, list the points and estimate the run's length; start nothing")
    p.set_defaults(func=_run)


def _run(args) -> int:
    exp = load_experiment(args.experiment)
    if args.inventory and args.topology:
        raise ConfigError("give --topology (emulated testbed) or --inventory (real hosts), "
                          "not both")
    if args.no_deploy and not args.inventory:
        raise ConfigError("--no-deploy: only with --inventory (an emulated testbed runs this "
                          "checkout; there is nothing to deploy)")
    if args.prefix and args.inventory:
        raise ConfigError("--prefix: only for an emulated testbed (with --inventory, the "
                          "inventory's testbed.name prefixes what the run leaves on the hosts)")
    if args.prefix:
        check_prefix(args.prefix)
    inventory = None
    if args.inventory:
        inventory = load_inventory(args.inventory)  # refused here, before any host is touched
    select = Selection.parse(exp, args.target, args.workload, args.only)
    campaign = Campaign(exp, Path(args.results), force=args.force, topology=args.topology,
                        prefix=args.prefix, inventory=inventory, deploy=not args.no_deploy,
                        select=select)
    if args.dry_run:
        return _dry_run(campaign)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        summary = campaign.run()
    finally:
        signal.signal(signal.SIGTERM, old)
    return 0 if summary["failed"] == 0 else 1


def _dry_run(campaign: "Campaign") -> int:
    """The run list on stdout, one point a line; what would happen, on stderr."""
    changed = dict(campaign.changed())
    todo = {p.id for p in campaign.todo()}
    for p in campaign.points:
        if p.id in changed:
            word = "changed"
        elif p.id not in todo:
            word = "done"
        else:
            word = "redo" if campaign.force and campaign.is_done(p) else "todo"
        print(f"{word:<8}{p.id}", flush=True)
    est = estimate(campaign, [p for p in campaign.points if p.id in todo])
    console = campaign.console
    console.print(f"{len(campaign.points)} points: {len(campaign.points) - len(todo)} done, "
                  f"{len(todo)} to run -> {campaign.dir}")
    if todo:
        console.print(f"estimated duration: {est.describe()}")
    if changed and not campaign.force:
        console.print(f"[bold red]{len(changed)} points were measured with other parameters: "
                      f"the run would be refused without --force[/]")
    return 0


class Selection:
    """The slice of a campaign that --target, --workload and --only select."""

    def __init__(self, targets: set[str], workloads: set[str], only: dict[str, list]):
        self.targets, self.workloads, self.only = targets, workloads, only

    @property
    def everything(self) -> bool:
        return not (self.targets or self.workloads or self.only)

    @classmethod
    def parse(cls, exp, targets: list[str], workloads: list[str], only: list[str]) -> "Selection":
        """Checked against the experiment: each filter must name something it has."""
        src = exp.source
        keys = [t.key for t in exp.targets]
        for t in targets:
            if t not in keys:
                raise ConfigError(f"--target {t}: not a target of {src} ({', '.join(keys)})")
        wls = list(dict.fromkeys(list(exp.spec.parameters.workload) + (
            exp.spec.openloop.workload if exp.spec.openloop is not None else [])))
        for w in workloads:
            if w not in wls:
                raise ConfigError(f"--workload {w}: not a workload of {src} ({', '.join(wls)})")
        fields: dict[str, list] = {}
        for item in only:
            name, eq, text = item.partition("=")
            if not eq or not text:
                raise ConfigError(f"--only {item}: give FIELD=VALUE (e.g. conn_mode=close)")
            if name in OPEN_FIELDS:
                fields.setdefault(name, []).append(_open_field(exp, item, name, text))
                continue
            if name == "repetition":
                reps = exp.spec.campaign.repetitions
                if not text.isdigit() or not 1 <= int(text) <= reps:
                    raise ConfigError(f"--only {item}: {src} has repetitions 1 to {reps}")
                fields.setdefault(name, []).append(int(text))
                continue
            if name not in SWEEP_ORDER:
                raise ConfigError(f"--only {item}: {name!r} is not a parameter; filter on "
                                  f"{', '.join(SWEEP_ORDER + OPEN_FIELDS)}, repetition (or use "
                                  f"--target, --workload)")
            try:
                value = getattr(Parameters.model_validate({"workload": ["-"], name: text}),
                                name)[0]
            except ValidationError as e:
                raise ConfigError(f"--only {item}: {e.errors()[0]['msg']}") from None
            have = list(getattr(exp.spec.parameters, name))
            if name == "conn_mode" and exp.spec.openloop is not None:
                have += exp.spec.openloop.conn_mode
            if value not in have:
                raise ConfigError(f"--only {item}: {src} runs {name} = "
                                  f"{', '.join(str(v) for v in have)}")
            fields.setdefault(name, []).append(value)
        return cls(set(targets), set(workloads), fields)

    def __call__(self, point) -> bool:
        if self.targets and point.target.key not in self.targets:
            return False
        if "repetition" in self.only and point.repetition not in self.only["repetition"]:
            return False
        if isinstance(point, FaultPoint):
            # A fault run has no workload or load parameters: a filter on them leaves it out.
            return not self.workloads and not (set(self.only) - {"repetition"})
        if self.workloads and point.workload not in self.workloads:
            return False
        if isinstance(point, OpenLoopPoint):
            # Filters on a wrk parameter it does not have leave it out.
            return all(point.params.get(f) in vals for f, vals in self.only.items()
                       if f != "repetition")
        if "rate" in self.only or ("load" in self.only and "closed" not in self.only["load"]):
            return False
        return all(point.params.get(f) in vals for f, vals in self.only.items()
                   if f not in ("repetition", "load"))


#: What `--only` filters on beside the wrk parameters: the load (open or closed)
#: and the open-loop rate.
OPEN_FIELDS = ("load", "rate")


def _open_field(exp, item: str, name: str, text: str):
    src = exp.source
    if name == "load":
        if text not in ("open", "closed"):
            raise ConfigError(f"--only {item}: load is open or closed")
        return text
    rates = exp.spec.openloop.all_rates() if exp.spec.openloop is not None else []
    try:
        value = float(text)
    except ValueError:
        value = None
    if value not in rates:
        raise ConfigError(f"--only {item}: {src} runs open-loop rates "
                          f"{', '.join(f'{r:g}' for r in rates) or '(none)'}")
    return value


def testbed_hosts(topology) -> dict[str, list[str]]:
    """Role -> host names, of a topology or an inventory."""
    return {r.value: [h.name for h in topology.hosts(r)] for r in Role}


class RunRefused(Error):
    """The run would overwrite or race with results: nothing was started."""


def point_seed(campaign_seed: int, point_id: str) -> int:
    """The wrk sampler's seed: a function of the point, not of its position in the list."""
    h = hashlib.sha256(f"{campaign_seed}:{point_id}".encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def open_testbed(topology_file: Path, prefix: str, inventory=None, deploy: bool = True):
    """The testbed a campaign runs on, as a context manager that takes it down.

    Emulated (network namespaces) from a topology file, or the real hosts of
    an inventory over SSH (reached, cleaned up, deployed and checked before
    the first point); everything after this line only uses the testbed's
    hosts through the host interface.
    """
    if inventory is not None:
        return RemoteTestbed(inventory).session(deploy=deploy)
    return EmulatedTestbed(load_topology(topology_file), prefix=prefix)


def probe_size(objects) -> str:
    return "1KB" if "1KB" in objects.sizes else min(objects.sizes, key=objects.size_bytes)


class Campaign:
    def __init__(self, exp, results_root: Path, force: bool = False, topology: str | None = None,
                 prefix: str | None = None, console=None, wrk_binary: str = "wrk",
                 inventory=None, deploy: bool = True, select: Selection | None = None):
        self.exp = exp
        self.dir = Path(results_root) / exp.name
        self.force = force
        self.topology_file = Path(topology) if topology else (topology_path(exp) or DEFAULT_TOPOLOGY)
        self.prefix = prefix
        self.inventory = inventory
        self.deploy = deploy
        self.points = [p for p in exp.points() if select is None or select(p)]
        if not self.points:
            raise ConfigError(f"{exp.source}: the filters select no point")
        # The testbed the run will use, read now: a missing or bad file, or a
        # target it cannot carry, is refused before anything starts.
        self.topology = inventory if inventory is not None else load_topology(self.topology_file)
        if inventory is None:
            require_congestion_control(self.topology)
        self._check_roles()
        check_supported(self.points, inventory)
        if console is None:
            console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.console = console
        self.metadata: dict = {}
        self.wrk_binary = wrk_binary  # tests substitute a wrk that fails
        self._lock_fd: int | None = None

    def _check_roles(self) -> None:
        hosts = testbed_hosts(self.topology)
        known = available()
        used = {p.target.key for p in self.points}
        where = self.topology.source or str(self.topology_file)
        problems = []
        for i, t in enumerate(self.exp.targets):
            if t.key not in used:
                continue
            cls = known[t.name]
            params = cls.check_params(t.params, str(self.exp.source), f"target[{i}].params")
            for field, problem in cls.testbed_problems(params, hosts):
                at = f"target[{i}].{field}" if field else f"target[{i}] ({t.key})"
                problems.append(f"{self.exp.source}: {at}: {problem} (testbed {where})")
        if problems:
            raise ConfigError("\n".join(problems))

    # ----------------------------------------------------------- points
    def path(self, point) -> Path:
        return self.dir / point.relpath

    def parameters(self, point) -> dict[str, Any]:
        if isinstance(point, FaultPoint):
            return {"campaign": self.exp.name, "point_id": point.id,
                    "target": point.target.key, "target_name": point.target.name,
                    "target_params": dict(point.target.params),
                    "repetition": point.repetition, "fault": point.fault,
                    **point.spec.model_dump(exclude={"run", "targets", "repetitions"})}
        if isinstance(point, OpenLoopPoint):
            return loadcurve.parameters(self, point, self._workload_parameters(point))
        wl = self.exp.workloads.get(point.workload)
        return {**self._workload_parameters(point), **point.params,
                "threads": load_threads(wl, point.params["threads"], point.params["connections"])}

    def _workload_parameters(self, point) -> dict[str, Any]:
        wl = self.exp.workloads.get(point.workload)
        return {
            "campaign": self.exp.name, "point_id": point.id,
            "target": point.target.key, "target_name": point.target.name,
            "target_params": dict(point.target.params),
            "repetition": point.repetition,
            "workload": wl.name, "workload_label": wl.display, "workload_kind": wl.kind,
            "size_bytes": wl.size_bytes, "size_label": wl.classes()[0][0] if wl.size else None,
            "mix": wl.mix_percent() if wl.kind == "mix" else None,
            "mean_size_bytes": wl.mean_size(),
            # The latency probe's object size under a mix: 1 KB as in the paper.
            "probe_size": probe_size(self.exp.workloads.objects) if wl.kind == "mix" else None,
            "objects": self.exp.workloads.objects.model_dump(),
            "seed": point_seed(self.exp.spec.campaign.seed, point.id),
        }

    def is_done(self, point) -> bool:
        doc = read_result(self.path(point))
        return (doc is not None and doc.get("status") in ("ok", NOT_APPLICABLE)
                and doc.get("parameters") == self.parameters(point))

    def todo(self) -> list:
        """The points this invocation runs: all with --force, else those not done."""
        return list(self.points) if self.force else [p for p in self.points if not self.is_done(p)]

    def changed(self) -> list[tuple[str, str]]:
        """(point id, what differs) for every point whose result file was measured
        with other parameters than this experiment gives it."""
        out = []
        for p in self.points:
            doc = read_result(self.path(p))
            if doc is None:
                continue
            old, new = doc.get("parameters") or {}, self.parameters(p)
            if old != new:
                diff = [f"{k} = {old.get(k)!r} there, {new.get(k)!r} here"
                        for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
                out.append((p.id, "; ".join(diff)))
        return out

    def refuse_changed(self) -> None:
        changed = [] if self.force else self.changed()
        if changed:
            shown = "\n".join(f"  {self.dir / pid}.json: {diff}" for pid, diff in changed[:10])
            more = f"\n  ... and {len(changed) - 10} more" if len(changed) > 10 else ""
            raise RunRefused(f"{len(changed)} points of {self.dir} were measured with other "
                             f"parameters; running would overwrite them:\n{shown}{more}\n"
                             f"Give the campaign another name (or --results DIR) to keep them, "
                             f"or --force to overwrite them.")

    @contextlib.contextmanager
    def lock(self):
        """The campaign directory, for this run alone: a second run of the same campaign
        would write the same result files."""
        self._claim()
        try:
            yield
        finally:
            self._release()

    def _claim(self, create: bool = True) -> bool:
        """Hold the campaign directory's lock, or RunRefused if another run holds it.

        With create=False only a directory that is there already is locked: a run that
        is refused, or fails before its first result, must leave no directory behind.
        True if this call took the lock."""
        if self._lock_fd is not None or (not create and not self.dir.is_dir()):
            return False
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunRefused(f"{self.dir} is in use by another run (pid {holder}); wait for "
                             f"it to end, or give this one --results DIR") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        return True

    def _release(self) -> None:
        if self._lock_fd is not None:
            # The file stays: unlinking a lock file races with its next taker.
            os.close(self._lock_fd)
            self._lock_fd = None

    # -------------------------------------------------------------- run
    def run(self) -> dict:
        """Run the points not done.  Refused (RunRefused), with nothing created, if
        a point was measured with other parameters or another run holds the directory.

        The campaign directory is created, locked and results/latest pointed at it
        once the testbed and the back-ends are up, just before the first result: a
        run that fails before (a host that cannot be reached, a testbed that does not
        build) leaves neither.  A directory that is there already is locked at once,
        so a second run of a campaign under way is refused before it builds anything.
        """
        self.refuse_changed()
        try:
            if self._claim(create=False):
                self.refuse_changed()  # again, now that no other run can write
            return self._run_locked()
        finally:
            self._release()

    def _run_locked(self) -> dict:
        todo = self.todo()
        summary = {"points": len(self.points), "skipped": len(self.points) - len(todo),
                   "ok": 0, "failed": 0, "interrupted": False, "dir": str(self.dir)}
        self.console.print(f"campaign [bold]{self.exp.name}[/]: {len(self.points)} points, "
                           f"{summary['skipped']} already done, {len(todo)} to run -> {self.dir}")
        if todo:
            try:
                self._run_points(todo, summary)
            except KeyboardInterrupt:
                summary["interrupted"] = True
                self.console.print(f"[yellow]interrupted[/]: {summary['ok'] + summary['failed']} "
                                   f"points finished and kept; the testbed is down")
                if self.dir.is_dir():
                    write_tidy(self.dir)
                raise
        else:
            self._start_writing()
        tidy = write_tidy(self.dir)
        self.console.print(f"done: {summary['ok']} ok, {summary['failed']} failed, "
                           f"{summary['skipped']} skipped" + (f"; tidy table {tidy}" if tidy else ""))
        return summary

    def _start_writing(self) -> None:
        """The first result is next: the campaign directory, locked, and results/latest."""
        if self._claim():
            self.refuse_changed()  # another run may have written while this one started
        self._point_latest()

    def _point_latest(self) -> None:
        """results/latest -> this campaign, so `python -m bench plots` finds it."""
        link = self.dir.parent / "latest"
        tmp = self.dir.parent / f".latest.tmp{os.getpid()}"
        try:
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.dir.name)
            tmp.replace(link)
        except OSError:
            pass

    def _run_points(self, todo: list, summary: dict) -> None:
        prefix = self.prefix or ("wl" + secrets.token_hex(3))
        # One deployment per group: per target, or per (target, repetition)
        # when the campaign interleaves repetitions over targets.
        interleave = self.exp.spec.campaign.interleave
        groups: dict[tuple, list] = {}
        for p in todo:
            rep = p.repetition if interleave and not isinstance(p, FaultPoint) else None
            groups.setdefault((p.target.key, rep), []).append(p)

        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                            console=self.console, transient=False)
        with progress, open_testbed(self.topology_file, prefix, self.inventory,
                                    self.deploy) as tb:
            task = progress.add_task("starting the testbed and back-ends", total=len(todo))
            store = ObjectStore(self.exp.workloads.objects)
            backends = BackendServers(tb, store)
            try:
                backends.start()
                self.metadata = metadata.collect(tb)
                self.metadata["campaign"] = {"name": self.exp.name,
                                             "experiment_file": str(self.exp.source),
                                             "workloads_file": str(self.exp.workloads_path),
                                             "objects_key": store.key}
                sampler = CpuSampler(list(tb.hosts.values()))
                objs = self.exp.workloads.objects
                service = bench_service([h.name for h in tb.backends], vip=str(tb.vip),
                                        port=tb.vip_port, small_prefix=objs.prefix(
                                            min(objs.sizes, key=objs.size_bytes)))
                ctx = _Context(tb, backends, store, sampler, service)
                ctx.wrk_binary = self.wrk_binary
                self._start_writing()
                for key, points in groups.items():
                    self._run_target(ctx, points, progress, task, summary)
            finally:
                backends.stop()

    def _run_target(self, ctx, points, progress, task, summary) -> None:
        spec = points[0].target
        points = self._skip_not_applicable(ctx, points, progress, task, summary)
        if not points:
            return
        progress.update(task, description=f"{spec.key}: deploying")
        target = None
        integrity = None
        try:
            target = make_target(spec.name, ctx.tb, ctx.service, spec.params)
            target.deploy()
            target.start()
            target.wait_healthy(target.health_timeout_s)
            progress.update(task, description=f"{spec.key}: verifying every object")
            rep = verify(ctx.tb.clients[0], target.endpoint.url, ctx.store.manifest(),
                         rounds=target.integrity_rounds,
                         alternate=integrity_alternation(ctx.service, target.layer7))
            integrity = rep.to_dict()
            style = "green" if rep.passed else "bold red"
            self.console.print(f"{spec.key}: [{style}]{rep.summary()}[/]")
        except KeyboardInterrupt:
            if target is not None:
                target.stop()
            raise
        except Exception as e:  # noqa: BLE001 - every failure becomes failed points
            logs = getattr(e, "logs", None) or (target.logs() if target is not None else {})
            err = f"target {spec.key} failed to come up: {type(e).__name__}: {e}"
            self.console.print(f"[bold red]{err}[/]")
            for p in points:
                self._write(p, self._failed(p, err, {}, logs, integrity, traceback.format_exc()))
                summary["failed"] += 1
                progress.advance(task)
            if target is not None:
                target.stop()
            return
        try:
            for p in points:
                progress.update(task, description=f"{p.id}")
                if isinstance(p, FaultPoint):
                    doc = self._run_fault(ctx, target, p, integrity)
                elif isinstance(p, OpenLoopPoint):
                    doc = loadcurve.run_point(self, ctx, target, p, integrity)
                else:
                    doc = self._run_point(ctx, target, p, integrity)
                self._write(p, doc)
                if doc["status"] in ("ok", NOT_APPLICABLE):
                    summary["ok"] += 1
                else:
                    summary["failed"] += 1
                self.console.print(_one_line(doc))
                progress.advance(task)
        finally:
            target.stop()
            # The next deployment starts without the last point's budget.
            FrontendBudget(target, None).apply()

    def _skip_not_applicable(self, ctx, points, progress, task, summary) -> list:
        """Record the points that have no meaning for their target (bench/reroute.py) and
        return the others: a target with nothing left to measure is not deployed."""
        layer7 = available()[points[0].target.name].layer7
        left = []
        for p in points:
            why = None if isinstance(p, FaultPoint) else not_applicable(
                self.exp.workloads.get(p.workload), p.params["conn_mode"], layer7,
                p.target.name, ctx.service)
            if why is None:
                left.append(p)
                continue
            doc = self._base(p, None)
            doc.update(status=NOT_APPLICABLE, error=why,
                       target={"name": p.target.name, "layer7": layer7})
            self._write(p, doc)
            summary["ok"] += 1
            self.console.print(_one_line(doc))
            progress.advance(task)
        return left

    # ----------------------------------------------------------- a point
    def _write(self, point, doc: dict) -> None:
        write_result(self.path(point), doc)

    def _base(self, point, integrity) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "campaign": self.exp.name,
                "point_id": point.id, "status": None, "error": None,
                "parameters": self.parameters(point), "integrity": integrity,
                "metrics": None, "target": None, "raw": {}, "logs": {},
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "elapsed_s": None,
                "metadata": self.metadata}

    def _failed(self, point, error, raw, logs, integrity, trace=None) -> dict:
        doc = self._base(point, integrity)
        doc.update(status="failed", error=error, raw=raw, logs=logs)
        if trace:
            doc["logs"] = {**logs, "traceback": trace}
        return doc

    def _run_fault(self, ctx, target, point, integrity) -> dict:
        return _fault_doc(self, ctx, target, point, integrity)

    def _run_point(self, ctx, target, point, integrity) -> dict:
        t0 = time.monotonic()
        doc = self._base(point, integrity)
        doc["target"] = target.describe()
        par = doc["parameters"]
        wl = self.exp.workloads.get(point.workload)
        objs = self.exp.workloads.objects
        client = ctx.tb.clients[0]
        runner = WrkRunner(client, binary=ctx.wrk_binary)
        url = target.endpoint.url
        close = par["conn_mode"] == "close"
        classes = [{"name": label, "weight": w, "paths": objs.paths(label)}
                   for label, w in wl.classes()]
        common = dict(url=url, threads=par["threads"], connections=par["connections"],
                      timeout_s=par["timeout_s"], close=close)
        if wl.kind == "reroute":
            common["alternate"] = alternating_headers(ctx.service, classes[0]["paths"][0])

        def fail(error: str) -> dict:
            doc.update(status="failed", error=error,
                       logs={**target.logs(), **{f"nginx-{k}": v for k, v in ctx.backends.logs().items()}},
                       elapsed_s=time.monotonic() - t0)
            return doc

        try:
            if not target.healthy():
                try:
                    target.wait_healthy(10)
                except Error as e:
                    return fail(f"target unhealthy before the point: {e}")
            budget = FrontendBudget(target, par.get("frontend_cpu_cores")).apply()
            if par["warmup_s"] > 0:
                warm = clients.run_wrk(ctx.tb.clients, WrkJob(
                    classes=classes, duration_s=par["warmup_s"], seed=par["seed"] + 1,
                    role="warmup", **common), ctx.wrk_binary)
                doc["raw"]["warmup"] = warm.raw()
                # A warm-up too short for one large response to finish is
                # still a warm-up: only errors, or no result at all, fail it.
                warm_errors = (warm.data or {}).get("errors") or {}
                if not warm.ok and (warm.data is None or any(warm_errors.values())):
                    return fail(warm.error)
            stats_before = target.stats()
            served_before = ctx.requests_served()
            budget.snapshot()
            cpu0 = ctx.sampler.snapshot()
            net0 = ctx.netstat.snapshot()
            probe = None
            if wl.kind == "mix":
                probe_size = par["probe_size"]
                probe = runner.start(WrkJob(
                    url=url, classes=[{"name": probe_size, "weight": 1,
                                       "paths": objs.paths(probe_size)}],
                    threads=1, connections=par["probe_connections"],
                    duration_s=par["duration_s"], timeout_s=par["timeout_s"], close=close,
                    delay_ms=par["probe_interval_ms"], seed=par["seed"] + 2, role="probe"))
            checker = body_check.BodyCheck(
                client, url, ctx.store.manifest(), [p for c in classes for p in c["paths"]],
                par["duration_s"], par["timeout_s"]).start()
            try:
                # The load from every client host, the probe beside it from the first.
                load = clients.run_wrk(ctx.tb.clients, WrkJob(
                    classes=classes, duration_s=par["duration_s"], seed=par["seed"],
                    role="load", **common), ctx.wrk_binary)
            except BaseException:
                if probe is not None:
                    probe.abort()
                checker.abort()
                raise
            cpu1 = ctx.sampler.snapshot()
            net1 = ctx.netstat.snapshot()
            budget_out = budget.result()
            probe_out = probe.finish() if probe is not None else None
            doc["bodies"] = checker.finish()
            stats_after = target.stats()
            served_after = ctx.requests_served()
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001
            doc["logs"]["traceback"] = traceback.format_exc()
            return fail(f"{type(e).__name__}: {e}")

        doc["raw"]["load"] = load.raw()
        if probe_out is not None:
            doc["raw"]["probe"] = probe_out.raw()
        doc["target"]["stats"] = {"before": stats_before, "after": stats_after}
        if not load.ok:
            return fail(load.error)
        if probe_out is not None and not probe_out.ok:
            return fail(probe_out.error)
        if body_check.problem(doc.get("bodies")):
            return fail(body_check.problem(doc["bodies"]))
        header_bytes = ctx.header_bytes(url, close)
        doc["metrics"] = {
            "load": _load_metrics(load.data, header_bytes, wl, objs),
            "probe": _probe_metrics(probe_out.data) if probe_out is not None else None,
            "cpu": ctx.sampler.delta(cpu0, cpu1),
            "netstat": ctx.netstat.delta(net0, net1),
            "response_header_bytes": header_bytes,
            "l7": reroute_metrics(ctx.service, stats_before, stats_after, served_before,
                                  served_after, load.data["requests"]),
            "frontend_budget": budget_out,
        }
        doc["status"] = "ok"
        doc["elapsed_s"] = time.monotonic() - t0
        return doc


def _fault_doc(campaign: "Campaign", ctx, target, point, integrity) -> dict:
    t0 = time.monotonic()
    doc = campaign._base(point, integrity)
    doc.update(kind="fault", target=target.describe())
    try:
        if not target.healthy():
            target.wait_healthy(10)
        out = run_fault(ctx, target, point)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001
        out = {"status": "failed", "error": f"{type(e).__name__}: {e}",
               "logs": {**target.logs(), "traceback": traceback.format_exc()}}
    doc.update(out)
    if doc["status"] == "ok" and not target.healthy():
        # The campaign goes on with this deployment: bring it back or say so.
        try:
            target.wait_healthy(30)
        except Exception as e:  # noqa: BLE001
            doc["after"] = f"target not healthy after the fault: {e}"
    doc["elapsed_s"] = time.monotonic() - t0
    return doc


class _Context:
    """What every point of a campaign shares: testbed, back-ends, objects, CPU sampler."""

    wrk_binary = "wrk"

    def __init__(self, tb, backends, store, sampler, service):
        self.tb, self.backends, self.store = tb, backends, store
        self.sampler, self.service = sampler, service
        self.netstat = NetstatSampler(tb.clients)
        self.fault_procs: list = []  # processes a fault started (a SYN flood), stopped by undo
        self._headers: dict[tuple[str, bool], int | None] = {}

    def requests_served(self) -> dict[str, int] | None:
        """Requests each back-end answered so far, or None if one did not say."""
        try:
            return self.backends.requests_served()
        except Error:
            return None

    def header_bytes(self, url: str, close: bool) -> int | None:
        """Bytes of response header per response (status line to blank line) of this target."""
        key = (url, close)
        if key not in self._headers:
            path = self.store.objects.paths(self.store.objects.sizes[0])[0]
            hdr = "-H 'Connection: close' " if close else ""
            r = self.tb.clients[0].run(f"curl -s {hdr}-D - -o /dev/null {url}{path} | wc -c",
                                       check=False, timeout=20)
            n = r.stdout.strip()
            self._headers[key] = int(n) if r.ok and n.isdigit() and int(n) > 0 else None
        return self._headers[key]


def _load_metrics(data: dict, header_bytes: int | None, wl, objs) -> dict:
    m = {k: data[k] for k in ("requests", "requests_per_s", "bytes", "bytes_per_s",
                              "duration_us", "latency_us", "errors", "drawn")}
    m.update({k: data.get(k) for k in LATENCY_HISTOGRAM_KEYS})
    m["status_errors"] = data["errors"].get("status", 0)
    m["clients"] = data.get("clients")
    # Goodput: response bodies only.  wrk counts every byte it read, headers
    # included; subtract one header per response (measured with curl).
    if header_bytes is not None:
        m["goodput_bytes_per_s"] = max(0.0, data["bytes_per_s"]
                                       - data["requests_per_s"] * header_bytes)
    else:
        m["goodput_bytes_per_s"] = None
    drawn = data.get("drawn") or {}
    total = sum(drawn.values())
    m["drawn_share"] = {k: v / total for k, v in drawn.items()} if total else {}
    m["drawn_mean_size_bytes"] = (sum(parse_size(k) * v for k, v in drawn.items()) / total
                                  if total else None)
    return m


def _probe_metrics(data: dict) -> dict:
    return {**{k: data[k] for k in ("requests", "requests_per_s", "duration_us", "latency_us",
                                    "errors")},
            **{k: data.get(k) for k in LATENCY_HISTOGRAM_KEYS}}


def _one_line(doc: dict) -> str:
    if doc["status"] == NOT_APPLICABLE:
        return f"[dim]n/a[/] {doc['point_id']}: {doc['error']}"
    if doc.get("kind") == "fault":
        if doc["status"] != "ok":
            return f"[red]FAILED[/] {doc['point_id']}: {doc['error']}"
        o = doc["outcome"]
        rec = f"recovered in {o['recovery_s']:.1f} s" if o["recovered"] else "[red]not recovered[/]"
        return (f"[green]ok[/] {doc['point_id']}: {o['requests_failed']} failed, "
                f"{o['responses_corrupt']} corrupt, {rec}, "
                + ("kept serving" if o["kept_serving"] else "[bold red]STUCK[/]"))
    if doc.get("kind") == "openloop":
        return loadcurve.one_line(doc)
    if doc["status"] != "ok":
        return f"[red]FAILED[/] {doc['point_id']}: {doc['error']}"
    m = doc["metrics"]["load"]
    p99 = m["latency_us"]["percentiles"]["99"] / 1000
    line = (f"[green]ok[/] {doc['point_id']}: {m['requests_per_s']:,.0f} req/s, "
            f"{(m['goodput_bytes_per_s'] or m['bytes_per_s']) * 8 / 1e9:.2f} Gbit/s, "
            f"p99 {p99:.2f} ms")
    probe = doc["metrics"].get("probe")
    if probe:
        line += f"; 1KB probe p99 {probe['latency_us']['percentiles']['99'] / 1000:.2f} ms"
    if doc.get("bodies"):
        line += f"; {doc['bodies']['checked']} bodies checked"
    rr = (doc["metrics"].get("l7") or {}).get("per_load_request")
    if doc["parameters"].get("workload_kind") == "reroute" and rr is not None:
        line += f"; re-routed {rr:.0%} of requests"
    if doc.get("integrity") and not doc["integrity"].get("passed"):
        line += " [bold red](integrity FAILED)[/]"
    return line


__all__ = ["Campaign", "point_seed"]
