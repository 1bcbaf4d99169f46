"""Result files and the tidy table.  The format is documented in docs/results-format.md.

One JSON file per run point, results/<campaign>/<target>/<workload>/<slug>/rep<k>.json,
written atomically, holding every parameter, the metrics, the raw tool
output and the campaign's metadata.  `tidy()` gathers any set of them into
one pandas DataFrame with one row per run point and one column per parameter
and metric, so `seaborn` can plot it with `hue="target"` as is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

FORMAT = "miresga-bench-result"
# 2: latency_us from the recorded histogram (bench/wrk.py), `histogram`
# beside it, wrk's own summary as latency_us_wrk; load average and steal.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
TIDY_NAME = "tidy.csv"
#: The status of a point with no meaning for its target (bench/reroute.py): recorded, not run.
NOT_APPLICABLE = "not_applicable"
FAULTS_NAME = "faults.csv"

# Tidy columns, in order: parameters first, then outcome, then metrics.
PARAM_COLUMNS = ["campaign", "point_id", "target", "target_name", "repetition", "workload",
                 "workload_label", "workload_kind", "size_bytes", "size_label", "mix",
                 "mean_size_bytes", "conn_mode", "connections", "threads", "duration_s",
                 "warmup_s", "timeout_s", "probe_size", "probe_connections", "probe_interval_ms",
                 "frontend_cpu_cores", "seed"]
# Kinds of result document that are rows of the tidy table: wrk's closed-loop
# points and the open-loop points (bench/loadcurve.py); `load` tells them apart.
TABLE_KINDS = {"point": "closed", "openloop": "open"}


def write_result(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False, default=str) + "\n")
    tmp.replace(path)


def read_result(path: Path) -> dict | None:
    """A result document, or None if the file is not a (complete) result of this format."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return None
    if doc.get("format_version") not in READABLE_VERSIONS:
        return None
    return doc


def result_files(root: Path) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.json") if not p.name.startswith("."))


def _get(d: dict | None, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _latency(prefix: str, lat: dict | None) -> dict:
    pct = _get(lat, "percentiles") or {}
    return {f"{prefix}p50_us": pct.get("50"), f"{prefix}p90_us": pct.get("90"),
            f"{prefix}p99_us": pct.get("99"), f"{prefix}p999_us": pct.get("99.9"),
            f"{prefix}mean_us": _get(lat, "mean"), f"{prefix}max_us": _get(lat, "max")}


def tidy_row(doc: dict, path: Path | None = None) -> dict[str, Any]:
    p = doc.get("parameters", {})
    m = doc.get("metrics") or {}
    row: dict[str, Any] = {c: p.get(c) for c in PARAM_COLUMNS}
    row["campaign"] = doc.get("campaign")
    row["point_id"] = doc.get("point_id")
    row["mix"] = json.dumps(p.get("mix"), sort_keys=True) if p.get("mix") else None
    row["layer7"] = _get(doc, "target", "layer7")
    row["status"] = doc.get("status")
    row["error"] = doc.get("error")
    row["integrity_passed"] = _get(doc, "integrity", "passed")
    # Bodies sampled beside the load (bench/bodies.py); a mismatch failed the point.
    row["bodies_checked"] = _get(doc, "bodies", "checked")
    row["bodies_mismatched"] = _get(doc, "bodies", "mismatched")
    load = m.get("load") or {}
    row.update(_open_loop(doc, load))
    row.update({
        "requests": load.get("requests"), "requests_per_s": load.get("requests_per_s"),
        "bytes_per_s": load.get("bytes_per_s"),
        "goodput_bytes_per_s": load.get("goodput_bytes_per_s"),
        "goodput_gbps": (load["goodput_bytes_per_s"] * 8 / 1e9
                         if load.get("goodput_bytes_per_s") is not None else None),
    })
    row.update(_latency("lat_", load.get("latency_us")))
    errors = load.get("errors") or {}
    for k in ("connect", "read", "write", "timeout", "status"):
        row[f"err_{k}"] = errors.get(k)
    probe = m.get("probe") or {}
    row["probe_requests"] = probe.get("requests")
    row.update(_latency("probe_lat_", probe.get("latency_us")))
    row["probe_errors"] = sum((probe.get("errors") or {}).values()) if probe else None
    # The recorded latencies, so that a cell's percentiles come from the merged
    # histogram of its repetitions (analysis/cells.py); empty before format 2.
    row["lat_hist"] = load.get("histogram")
    row["probe_lat_hist"] = probe.get("histogram")
    cpu = m.get("cpu") or {}
    for role in ("client", "switch", "frontend", "backend"):
        row[f"cpu_{role}_s"] = _get(cpu, "per_role_s", role)
    # The load balancer's own cost: front-end CPU per 1,000 requests served
    # (the load's and the probe's).  Meaningful for targets with a front-end.
    served = (load.get("requests") or 0) + (probe.get("requests") or 0)
    fe = row["cpu_frontend_s"]
    row["frontend_cpu_s_per_kreq"] = fe / served * 1000 if fe is not None and served else None
    # A polling front-end (Miresga's, DPDK) also reports the time its loop
    # did work; its process CPU counts the idle polls as well.
    busy = [_get(doc, "target", "stats", when, "summary", "frontend_busy_s")
            for when in ("before", "after")]
    row["frontend_busy_s_per_kreq"] = ((busy[1] - busy[0]) / served * 1000
                                       if None not in busy and served else None)
    # The front-end budget's quota ran out in this share of the measured run's
    # periods: near 0, the budget did not limit the point.
    row["frontend_throttled_share"] = _get(m, "frontend_budget", "throttled_share")
    row["cpu_softirq_s"] = cpu.get("softirq_s")
    row["cpu_system_s"] = cpu.get("system_s")
    row["cpu_window_s"] = cpu.get("window_s")
    row.update(_conditions(cpu))
    row["offloaded_byte_share"] = _offloaded_byte_share(doc)
    row.update(_mechanism(doc))
    row.update(_l7(m.get("l7") or {}))
    row["git_revision"] = _get(doc, "metadata", "git", "revision")
    row["git_dirty"] = _get(doc, "metadata", "git", "dirty")
    row["started_at"] = doc.get("started_at")
    row["result_file"] = str(path) if path is not None else None
    return row


def _open_loop(doc: dict, load: dict) -> dict[str, Any]:
    """The load that was applied: closed loop (wrk) or open loop at `offered_rate`
    (requests/s, all clients together), and for open loop whether the generator kept
    its schedule: the share of requests sent more than late_ms late, and its send
    lag's p99 (a large lag: the generator, not the target, fell behind)."""
    kind = TABLE_KINDS.get(doc.get("kind", "point"))
    p = doc.get("parameters") or {}
    clients = load.get("clients")
    out: dict[str, Any] = {"load": kind, "offered_rate": p.get("rate"),
                           "clients": len(clients) if clients else (1 if load else None),
                           "achieved_ratio": None, "late": None, "late_share": None,
                           "waited_for_connection": None, "send_lag_p99_us": None,
                           "failed": None, "late_ms": p.get("late_ms")}
    if kind == "open" and load:
        out.update(achieved_ratio=load.get("achieved_ratio"), late=load.get("late"),
                   late_share=load.get("late_share"),
                   waited_for_connection=load.get("waited_for_connection"),
                   send_lag_p99_us=_get(load, "send_lag_us", "percentiles", "99"),
                   failed=load.get("failed"))
    return out


def closed_loop(df):
    """The rows of closed-loop (wrk) points: what Figure 4 and the claims about
    saturation read.  Tables written before open-loop points have no `load`."""
    if df.empty or "load" not in df:
        return df
    return df[df["load"].fillna("closed") == "closed"]


def open_loop(df):
    """The rows of open-loop points."""
    if df.empty or "load" not in df:
        return df.iloc[0:0]
    return df[df["load"] == "open"]


def _conditions(cpu: dict) -> dict[str, Any]:
    """What else the machines did during the point: CPU steal over the measured window
    (seconds, and as a share of every CPU's time), and the highest load average
    of any machine at the end of the window."""
    machines = list((cpu.get("machines") or {}).values())
    steal = [_get(m, "seconds", "steal") for m in machines]
    steal_s = sum(steal) if steal and None not in steal else None
    cpus = sum(m.get("cpus") or 0 for m in machines) or None
    window = cpu.get("window_s")
    loads = [m["loadavg_end"] for m in machines if m.get("loadavg_end")]
    return {"cpus": cpus, "cpu_steal_s": steal_s,
            "cpu_steal_share": (steal_s / (window * cpus)
                                if steal_s is not None and window and cpus else None),
            **{f"load{n}": (max(x[i] for x in loads) if loads else None)
               for i, n in enumerate((1, 5, 15))}}


def _offloaded_byte_share(doc: dict) -> float | None:
    """Bytes the switch moved alone over all bytes of the point (switch + front-end),
    from the target's counters before and after; None for targets without them."""
    def delta(key):
        a, b = (_get(doc, "target", "stats", w, "summary", key) for w in ("before", "after"))
        return b - a if a is not None and b is not None else None

    off, fe = delta("offloaded_bytes"), delta("frontend_bytes")
    if off is None or fe is None or off + fe <= 0:
        return None
    return off / (off + fe)


def _mechanism(doc: dict) -> dict[str, Any]:
    """Per connection the clients opened in the window (their kernels' ActiveOpens):
    packets the switch handed to a front-end (Miresga's counters; None for other
    targets), and per 1,000: segments the clients received twice (PAWS drops and
    the duplicate SACKs they sent) and out of order (bench/netstat.py)."""
    total = _get(doc, "metrics", "netstat", "total") or {}
    conns = total.get("ActiveOpens")
    out: dict[str, Any] = {"client_conns": conns, "frontend_pkts_per_conn": None,
                           "client_dup_per_kconn": None, "client_ofo_per_kconn": None}
    if not conns or conns <= 0:
        return out
    a, b = (_get(doc, "target", "stats", w, "summary", "frontend_packets")
            for w in ("before", "after"))
    if a is not None and b is not None:
        out["frontend_pkts_per_conn"] = (b - a) / conns
    dup = [total.get(k) for k in ("PAWSEstab", "TCPDSACKOldSent", "TCPDSACKOfoSent")]
    if None not in dup:
        out["client_dup_per_kconn"] = 1000 * sum(dup) / conns
    if total.get("TCPOFOQueue") is not None:
        out["client_ofo_per_kconn"] = 1000 * total["TCPOFOQueue"] / conns
    return out


def _l7(l7: dict) -> dict[str, Any]:
    """The point's L7 decisions (bench/reroute.py): re-routes (requests that changed
    cluster on their connection; Miresga's front-end counts them, None elsewhere) per
    request of the load, the requests each cluster's back-ends answered, and the smaller
    cluster's share of them."""
    served = l7.get("cluster_requests") or {}
    total = sum(served.values())
    return {"reroute_rate": l7.get("per_load_request") or l7.get("rate"),
            "cluster_requests": json.dumps(served, sort_keys=True) if served else None,
            "cluster_min_share": min(served.values()) / total if total > 0 else None}


def tidy(paths: Iterable[Path] | Path):
    """One row per result file (pandas DataFrame); unreadable files are skipped."""
    # heavy: imported when a table or figure is made, so `python -m bench` starts fast
    import pandas as pd

    if isinstance(paths, (str, Path)):
        paths = result_files(Path(paths))
    rows = []
    for path in paths:
        doc = read_result(path)
        # Fault runs have a table of their own (fault_rows).
        if doc is not None and doc.get("kind", "point") in TABLE_KINDS:
            rows.append(tidy_row(doc, path))
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(["campaign", "point_id"], kind="stable").reset_index(drop=True)
    return df


def load_table(source: Path):
    """The tidy table of a results directory: from its result files, or, for a directory
    that holds only the tables (a committed reference), from its tidy.csv.  A path
    to a .csv file is read as a tidy table."""
    source = Path(source)
    if source.is_file() and source.suffix == ".csv":
        return read_tidy_csv(source)
    df = tidy(source)
    if df.empty and (source / TIDY_NAME).is_file():
        return read_tidy_csv(source / TIDY_NAME)
    return df


def read_tidy_csv(path: Path):
    """A tidy.csv written by write_tidy (or `bench plots`), with the columns older
    tables lack added empty."""
    # heavy: imported when a table or figure is made, so `python -m bench` starts fast
    import pandas as pd

    try:
        df = pd.read_csv(path, low_memory=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ValueError(f"{path}: not a tidy table: {e}") from None
    missing = [c for c in ("point_id", "target", "workload", "conn_mode", "status")
               if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a tidy table: no column {', '.join(missing)}")
    for col in OPTIONAL_COLUMNS:
        if col not in df.columns:
            df[col] = None
    if "load" not in df.columns:
        df["load"] = "closed"  # every point was wrk's before open-loop points
    return df


# Columns added after the first tables were committed: empty when read from those.
OPTIONAL_COLUMNS = ("lat_hist", "probe_lat_hist", "cpus", "cpu_steal_s", "cpu_steal_share",
                    "load1", "load5", "load15", "offloaded_byte_share", "frontend_busy_s_per_kreq",
                    "client_conns", "frontend_pkts_per_conn", "client_dup_per_kconn",
                    "client_ofo_per_kconn",
                    "layer7", "git_dirty", "started_at", "bodies_checked", "bodies_mismatched",
                    "offered_rate", "clients", "achieved_ratio", "late", "late_share",
                    "waited_for_connection", "send_lag_p99_us", "failed", "late_ms")


def fault_rows(results_dir: Path) -> list[dict]:
    """One row per fault result: for the report and figure.  `bins` holds the prober's
    series (JSON: bin_s, ok, failed, corrupt per bin), so that the figure can be
    drawn from faults.csv alone."""
    rows = []
    for f in result_files(results_dir):
        doc = read_result(f)
        if doc is None or doc.get("kind") != "fault":
            continue
        o = doc.get("outcome") or {}
        probe = doc.get("probe") or {}
        bins = ({k: probe[k] for k in ("bin_s", "ok", "failed", "corrupt")}
                if all(k in probe for k in ("bin_s", "ok", "failed", "corrupt")) else None)
        fault = doc.get("fault") or {}
        rows.append({"target": doc["parameters"]["target"], "fault": doc["parameters"]["fault"],
                     "repetition": doc["parameters"]["repetition"], "status": doc["status"],
                     "error": doc.get("error"),
                     **{k: v for k, v in o.items() if k not in ("errors", "refusals")},
                     "errors": json.dumps(o["errors"], sort_keys=True) if "errors" in o else None,
                     **_refusal_columns(o.get("refusals")),
                     "at_s": fault.get("at_s"),
                     **_fault_columns(fault),
                     "bins": json.dumps(bins) if bins else None, "result_file": str(f)})
    if not rows and Path(results_dir).is_dir() and (Path(results_dir) / FAULTS_NAME).is_file():
        rows = _read_faults_csv(Path(results_dir) / FAULTS_NAME)
    return rows


def _fault_columns(fault: dict) -> dict:
    """What the fault recorded of itself (bench/faults.py inject): each scalar field
    as `fault_<field>` (frontend_killed: the front-end, the signal, and how long the
    switch took to take it out of the selection).  Lists and dicts (an attack's
    result) stay in the result file."""
    return {f"fault_{k}": v for k, v in fault.items()
            if k not in ("name", "at_s") and (v is None or isinstance(v, (str, int, float)))}


def _refusal_columns(r: dict | None) -> dict:
    """An attack's refusals (bench/faults.py): every counter's delta as JSON, the
    target's own (`target`, empty where it has none) and its hosts' kernels'."""
    if r is None:
        return {"refusal_counters": None}
    return {"refusal_counters": json.dumps({"target": r.get("counters") or {},
                                            "kernel": r.get("kernel") or {}}, sort_keys=True)}


def _read_faults_csv(path: Path) -> list[dict]:
    import pandas as pd

    df = pd.read_csv(path)
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    for r in rows:
        for col in ("bins", "refusal_counters", "errors"):
            r.setdefault(col, None)
    return rows


def write_tidy(root: Path) -> Path | None:
    """results/<campaign>/tidy.csv (and faults.csv) from the result files under it."""
    # heavy: imported when a table or figure is made, so `python -m bench` starts fast
    import pandas as pd

    faults = fault_rows(Path(root))
    if faults:
        pd.DataFrame(faults).to_csv(Path(root) / FAULTS_NAME, index=False)
    df = tidy(root)
    if df.empty:
        return None
    out = Path(root) / TIDY_NAME
    df.to_csv(out, index=False)
    return out
