"""Workloads as data: the objects the back-ends serve and the response-size distributions.

A workloads file (workloads/default.toml) has one `[objects]` table, the set
of objects every back-end serves, and `[[workload]]` tables, each either a
fixed response size or a mix of sizes with weights in percent:

    [objects]
    sizes = ["1KB", "10KB", "100KB", "1MB", "10MB"]
    per_size = 4
    seed = 20250428

    [[workload]]
    name = "traffic2"
    label = "Traffic 2"
    mix = { "1KB" = 70, "10KB" = 20, "1MB" = 8, "10MB" = 2 }

    [[workload]]
    name = "reroute-1KB"
    size = "1KB"
    reroute = true

A workload with `reroute = true` (a fixed size) sends every request of a
kept-alive connection to the other cluster than the one before it: the
service's L7 rules decide, so only targets that route by path and Host take
part (bench/reroute.py).

Sizes are binary: 1 KB = 1024 bytes, 1 MB = 1024 KB.  The object of size S
number i is served at /obj/S/i.bin and its bytes are SHAKE-256 of
"miresga-bench:<seed>:<path>", so content depends on the name: a response
served for the wrong URL does not match the manifest.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common.errors import ConfigError, format_validation_error

WORKLOADS_DIR = Path(__file__).resolve().parent
DEFAULT_WORKLOADS = WORKLOADS_DIR / "default.toml"

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|MB|GB)\s*$", re.IGNORECASE)
_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
# Mix weights are percentages; internally integers in 1/100 of a percent, so
# the sampler in Lua draws with integer arithmetic only.
WEIGHT_SCALE = 100


def parse_size(text: str) -> int:
    """'10KB' -> 10240.  Binary units, as the labels on the paper's axes."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size like '1KB', '10MB' or '512B'")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def size_label(nbytes: int) -> str:
    """10240 -> '10KB': the canonical label of a size (also its URL directory)."""
    for unit in ("GB", "MB", "KB"):
        if nbytes % _UNITS[unit] == 0 and nbytes >= _UNITS[unit]:
            return f"{nbytes // _UNITS[unit]}{unit}"
    return f"{nbytes}B"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Objects(_Strict):
    """The objects every back-end serves: `per_size` objects of each size."""

    sizes: list[str] = Field(min_length=1)
    per_size: int = Field(default=4, ge=1, le=1000)
    seed: int = 20250428

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v: list[str]) -> list[str]:
        out, seen = [], set()
        for s in v:
            n = parse_size(s)
            if n <= 0:
                raise ValueError(f"{s!r}: a size must be positive")
            if n in seen:
                raise ValueError(f"{s!r} is listed twice")
            seen.add(n)
            out.append(size_label(n))
        return out

    def size_bytes(self, label: str) -> int:
        return parse_size(label)

    def paths(self, label: str) -> list[str]:
        return [f"{self.prefix(label)}{i}.bin" for i in range(self.per_size)]

    def prefix(self, label: str) -> str:
        """The path every object of a size starts with."""
        return f"/obj/{label}/"

    def all_paths(self) -> list[tuple[str, int]]:
        return [(p, parse_size(s)) for s in self.sizes for p in self.paths(s)]


class Workload(_Strict):
    """One response-size distribution: a fixed size, or a mix in percent."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
    label: str | None = None
    size: str | None = None
    mix: dict[str, float] | None = None
    #: every request of a kept-alive connection to the other cluster than the one before
    reroute: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> "Workload":
        if (self.size is None) == (self.mix is None):
            raise ValueError("give exactly one of size (a fixed response size) or mix "
                             "(sizes with weights in percent)")
        if self.reroute and self.size is None:
            raise ValueError("reroute: only with a fixed size (a mix's sizes would go to "
                             "clusters by size, not alternately)")
        if self.size is not None:
            parse_size(self.size)
        if self.mix is not None:
            if not self.mix:
                raise ValueError("mix: empty")
            for k, w in self.mix.items():
                parse_size(k)
                if w <= 0:
                    raise ValueError(f"mix.{k}: weight {w} must be positive")
                if abs(w * WEIGHT_SCALE - round(w * WEIGHT_SCALE)) > 1e-6:
                    raise ValueError(f"mix.{k}: weight {w} has more than two decimals")
            total = sum(self.mix.values())
            if abs(total - 100) > 1e-6:
                raise ValueError(f"mix: weights sum to {total:g}%, not 100%")
        return self

    @property
    def kind(self) -> str:
        if self.reroute:
            return "reroute"
        return "fixed" if self.size is not None else "mix"

    @property
    def display(self) -> str:
        return self.label or self.name

    def classes(self) -> list[tuple[str, int]]:
        """(size label, integer weight) pairs; weights sum to 100 * WEIGHT_SCALE."""
        if self.size is not None:
            return [(size_label(parse_size(self.size)), 100 * WEIGHT_SCALE)]
        return [(size_label(parse_size(k)), int(round(w * WEIGHT_SCALE)))
                for k, w in self.mix.items()]

    def mix_percent(self) -> dict[str, float]:
        return {label: w / WEIGHT_SCALE for label, w in self.classes()}

    def mean_size(self) -> float:
        """Expected response body size in bytes under this distribution."""
        total = 100 * WEIGHT_SCALE
        return sum(parse_size(label) * w for label, w in self.classes()) / total

    @property
    def size_bytes(self) -> int | None:
        return parse_size(self.size) if self.size is not None else None


class WorkloadFile(_Strict):
    objects: Objects
    workload: list[Workload] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> "WorkloadFile":
        names: dict[str, int] = {}
        for i, w in enumerate(self.workload):
            if w.name in names:
                raise ValueError(f"workload[{i}].name: {w.name!r} is already "
                                 f"workload[{names[w.name]}]")
            names[w.name] = i
            for label, _ in w.classes():
                if label not in self.objects.sizes:
                    raise ValueError(f"workload[{i}] ({w.name}): size {label} is not in "
                                     f"objects.sizes ({', '.join(self.objects.sizes)})")
        return self

    def get(self, name: str) -> Workload:
        for w in self.workload:
            if w.name == name:
                return w
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [w.name for w in self.workload]


def parse_workloads(data: dict, source: str = "workloads") -> WorkloadFile:
    try:
        return WorkloadFile.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def load_workloads(path: str | Path = DEFAULT_WORKLOADS) -> WorkloadFile:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read workloads: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_workloads(data, source=str(path))
