"""Experiment files: targets x workloads x parameters x repetitions, as data.

    [campaign]
    name = "default"                  # results go to results/<name>/
    workloads = "workloads/default.toml"
    repetitions = 3
    seed = 1
    # interleave = true               # repetition-major: every target once per repetition

    [[target]]
    name = "direct"                   # a registered target (targets/)
    # label = "direct-b2"             # to run one target twice with other params
    # params = { backend = "backend2" }

    [parameters]                      # closed loop (wrk); a list sweeps, a scalar is fixed
    workload = ["1KB", "10KB", "traffic2"]
    conn_mode = ["keep-alive", "close"]
    connections = 64
    threads = 2
    duration_s = 10
    warmup_s = 2

    [openloop]                        # latency vs offered load: bench/loadcurve.py
    workload = ["1KB"]
    rates = [1000, 4000]              # requests/s, absolute, the same for every target

Everything is validated before a testbed is built; an unknown target,
workload or field, or a mix whose weights do not sum to 100%, is refused
with the field named.  `points()` expands the file into a deterministic run
list: targets in file order (each is deployed once), then repetitions (so a
slow minute of a shared machine does not hit every repetition of one point),
then workloads, then parameter combinations in field order; then the
target's open-loop points (workload, connection mode, rising rate).

With `interleave = true` repetitions come first, then targets: each target is
deployed (and verified) once per repetition, and a slow stretch of a shared
machine hits one repetition of every target instead of every repetition of
one target, which matters when targets are compared as ratios of one run.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bench.faults import FaultPoint, FaultsSpec
from bench.loadcurve import OpenLoopSpec
from bench.loadcurve import points as openloop_points
from common.errors import ConfigError, format_validation_error
from common.paths import REPO_ROOT
from targets.base import available
from workloads.model import WorkloadFile, load_workloads

EXPERIMENTS_DIR = REPO_ROOT / "experiments"
FORMAT_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"

ConnMode = Literal["keep-alive", "close"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CampaignSpec(_Strict):
    name: Annotated[str, Field(pattern=FORMAT_NAME)] | None = None
    # Paths: see resolve().
    workloads: str = "workloads/default.toml"
    repetitions: int = Field(default=1, ge=1, le=1000)
    seed: int = 1
    topology: str | None = None
    interleave: bool = False


class TargetSpec(_Strict):
    name: str
    label: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")] | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.label or self.name


def _listify(v):
    return v if isinstance(v, list) else [v]


class Parameters(_Strict):
    """Load parameters; every field takes one value or a list to sweep."""

    workload: list[str] = Field(min_length=1)
    conn_mode: list[ConnMode] = Field(default=["keep-alive"], min_length=1)
    connections: list[Annotated[int, Field(ge=1, le=100000)]] = Field(default=[64], min_length=1)
    threads: list[Annotated[int, Field(ge=1, le=256)]] = Field(default=[2], min_length=1)
    duration_s: list[Annotated[int, Field(ge=1, le=86400)]] = Field(default=[10], min_length=1)
    warmup_s: list[Annotated[int, Field(ge=0, le=3600)]] = Field(default=[2], min_length=1)
    timeout_s: list[Annotated[int, Field(ge=1, le=600)]] = Field(default=[10], min_length=1)
    # The 1 KB latency probe beside a mix: few connections, paced.
    probe_connections: list[Annotated[int, Field(ge=1, le=64)]] = Field(default=[2], min_length=1)
    probe_interval_ms: list[Annotated[float, Field(gt=0, le=10000)]] = Field(default=[10.0],
                                                                            min_length=1)
    # CPUs every front-end host may use (a CFS quota, bench/budget.py); none: no cap.
    frontend_cpu_cores: list[Annotated[float, Field(ge=0.01, le=256)] | None] = Field(
        default=[None], min_length=1)

    @field_validator("*", mode="before")
    @classmethod
    def _to_list(cls, v):
        return _listify(v)

    @model_validator(mode="after")
    def _threads_vs_connections(self) -> "Parameters":
        for c in self.connections:
            for t in self.threads:
                if c < t:
                    raise ValueError(f"connections: {c} is fewer than threads = {t} "
                                     f"(wrk gives every thread at least one connection)")
        return self

    def swept(self) -> list[str]:
        """Fields other than the workload with more than one value."""
        return [f for f in SWEEP_ORDER if len(getattr(self, f)) > 1]


SWEEP_ORDER = ("conn_mode", "connections", "threads", "duration_s", "warmup_s", "timeout_s",
               "probe_connections", "probe_interval_ms", "frontend_cpu_cores")
_SLUG = {"connections": "c", "threads": "t", "duration_s": "d", "warmup_s": "w",
         "timeout_s": "to", "probe_connections": "pc", "probe_interval_ms": "pi",
         "frontend_cpu_cores": "fe"}


class ExperimentFile(_Strict):
    campaign: CampaignSpec = CampaignSpec()
    target: list[TargetSpec] = Field(min_length=1)
    parameters: Parameters
    faults: FaultsSpec | None = None
    openloop: OpenLoopSpec | None = None


@dataclass(frozen=True)
class Point:
    """One run point: what is measured, and where its result file goes."""

    index: int
    target: TargetSpec
    workload: str
    repetition: int
    params: dict[str, Any]      # one value per Parameters field but workload
    slug: str

    @property
    def id(self) -> str:
        return f"{self.target.key}/{self.workload}/{self.slug}/rep{self.repetition}"

    @property
    def relpath(self) -> str:
        return self.id + ".json"


@dataclass
class Experiment:
    source: Path
    spec: ExperimentFile
    workloads: WorkloadFile
    workloads_path: Path

    @property
    def name(self) -> str:
        return self.spec.campaign.name or self.source.stem

    @property
    def targets(self) -> list[TargetSpec]:
        return list(self.spec.target)

    def points(self) -> list[Point]:
        p = self.spec.parameters
        fields = list(SWEEP_ORDER)
        swept = set(p.swept())
        out: list[Point] = []
        reps = range(1, self.spec.campaign.repetitions + 1)
        order = (itertools.product(reps, self.spec.target) if self.spec.campaign.interleave
                 else ((rep, t) for t in self.spec.target for rep in reps))
        for rep, t in order:
            for w in p.workload:
                for combo in itertools.product(*(getattr(p, f) for f in fields)):
                    params = dict(zip(fields, combo))
                    if params["frontend_cpu_cores"] is None:
                        # No budget: the point's parameters as before budgets existed,
                        # so results measured then are still this point's.
                        del params["frontend_cpu_cores"]
                    slug = params["conn_mode"] + f"-c{params['connections']}-t{params['threads']}"
                    for f in fields:
                        if f in ("conn_mode", "connections", "threads") or f not in params:
                            continue
                        if f in swept or f == "frontend_cpu_cores":
                            slug += f"-{_SLUG[f]}{params[f]:g}"
                    out.append(Point(len(out), t, w, rep, params, slug))
            out += openloop_points(self.spec.openloop, t, rep, len(out))
        return out + self.fault_points(len(out))

    def fault_targets(self) -> list[TargetSpec]:
        f = self.spec.faults
        if f is None:
            return []
        if f.targets is not None:
            return [t for t in self.spec.target if t.key in f.targets]
        known = available()
        return [t for t in self.spec.target if t.name in known and known[t.name].layer7]

    def fault_points(self, start: int = 0) -> list[FaultPoint]:
        f = self.spec.faults
        out: list[FaultPoint] = []
        for t in self.fault_targets():
            for rep in range(1, f.repetitions + 1):
                for name in f.run:
                    out.append(FaultPoint(start + len(out), t, name, rep, f))
        return out


def resolve(rel: str, source: Path, field: str) -> Path:
    """A path written in an experiment file, found the same wherever the file is.

    Absolute; starting with ./ or ../, relative to the file's own directory;
    else relative to the file's directory if it is there, or to the checkout
    (`workloads/default.toml`), so an experiment copied out of experiments/
    still finds the shipped files.  A path that names a file in both places,
    two different files, is refused: which one a run read would depend on
    where its experiment file happened to be.
    """
    p = Path(rel)
    beside, checkout = source.parent / p, REPO_ROOT / p
    if p.is_absolute() or rel.startswith(("./", "../")):
        if not beside.exists():
            raise ConfigError(f"{source}: {field}: no file {str(beside.resolve())!r}")
        return beside
    found = [c for c in (beside, checkout) if c.exists()]
    if not found:
        raise ConfigError(f"{source}: {field}: no file {rel!r}, neither beside the experiment "
                          f"({beside.parent.resolve()}) nor in the checkout ({REPO_ROOT})")
    if len(found) == 2 and beside.resolve() != checkout.resolve():
        raise ConfigError(f"{source}: {field}: {rel!r} names two files, {beside.resolve()} "
                          f"beside the experiment and {checkout} in the checkout; write "
                          f"\"./{rel}\" for the first or an absolute path")
    return found[0]


def parse_experiment(data: dict, source: Path) -> Experiment:
    src = str(source)
    try:
        spec = ExperimentFile.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, src)) from None
    wpath = resolve(spec.campaign.workloads, source, "campaign.workloads")
    workloads = load_workloads(wpath)
    problems = []
    for i, w in enumerate(spec.parameters.workload):
        if w not in workloads.names:
            problems.append(f"{src}: parameters.workload[{i}]: unknown workload {w!r}; "
                            f"{wpath.name} defines {', '.join(workloads.names)}")
    known = available()
    keys: dict[str, int] = {}
    for i, t in enumerate(spec.target):
        if t.name not in known:
            problems.append(f"{src}: target[{i}].name: unknown target {t.name!r}; known: "
                            f"{', '.join(sorted(known))}")
            continue
        try:
            known[t.name].check_params(t.params, src, f"target[{i}].params")
        except ConfigError as e:
            problems.append(str(e))
        if t.key in keys:
            problems.append(f"{src}: target[{i}]: {t.key!r} is already target[{keys[t.key]}]; "
                            f"give one a label")
        keys[t.key] = i
    if spec.faults is not None and spec.faults.targets is not None:
        for i, key in enumerate(spec.faults.targets):
            if key not in keys:
                problems.append(f"{src}: faults.targets[{i}]: {key!r} is not a target of this "
                                f"experiment ({', '.join(keys)})")
    if spec.openloop is not None:
        for i, w in enumerate(spec.openloop.workload):
            if w not in workloads.names:
                problems.append(f"{src}: openloop.workload[{i}]: unknown workload {w!r}; "
                                f"{wpath.name} defines {', '.join(workloads.names)}")
        for i, key in enumerate(spec.openloop.targets or []):
            if key not in keys:
                problems.append(f"{src}: openloop.targets[{i}]: {key!r} is not a target of "
                                f"this experiment ({', '.join(keys)})")
    if spec.campaign.topology is not None:
        try:
            resolve(spec.campaign.topology, source, "campaign.topology")
        except ConfigError as e:
            problems.append(str(e))
    if problems:
        raise ConfigError("\n".join(problems))
    return Experiment(source, spec, workloads, wpath)


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    if not path.exists() and not path.suffix and (EXPERIMENTS_DIR / f"{path}.toml").exists():
        path = EXPERIMENTS_DIR / f"{path}.toml"  # `bench run quick`
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read experiment: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_experiment(data, path)


def topology_path(exp: Experiment) -> Path | None:
    t = exp.spec.campaign.topology
    return resolve(t, exp.source, "campaign.topology") if t else None
