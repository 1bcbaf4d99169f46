"""What a set of results was measured under, and what keeps it from being one run.

Every figure, report and claims table states these, so that a number cannot
pass for more than it is:

* **Revisions.**  Points measured at several git revisions, or from a tree
  with uncommitted changes, do not compare one code base: a warning names them.
* **Time windows.**  A campaign runs its points back to back; a pause between
  two consecutive points longer than `GAP_S` (5 minutes) plus twice the
  longest point (warm-up + measured run) means the results were gathered in
  pieces (a resumed or partly re-run campaign) and the machine may not have
  been the same machine: a warning gives the pauses.
* **Smoke tests.**  The quick profile (campaign `quick`), and any campaign
  with fewer than `MIN_REPETITIONS` repetitions of a point or closed-loop runs
  shorter than `MIN_DURATION_S`, is a smoke test: it says the bench works,
  not how fast anything is.
* **Interleaving.**  `interleaved()` decides whether two series can be
  compared repetition by repetition (analysis/stats.py pairs them).
"""

from __future__ import annotations

from analysis.results import closed_loop

GAP_S = 300
MIN_REPETITIONS = 3
MIN_DURATION_S = 5
SMOKE_CAMPAIGNS = ("quick",)


def _ok(df):
    return df[df["status"] == "ok"] if "status" in df else df


def _starts(df):
    # heavy: imported when a table or figure is made, so `python -m bench` starts fast
    import pandas as pd

    if "started_at" not in df:
        return pd.Series([pd.NaT] * len(df), index=df.index)
    return pd.to_datetime(df["started_at"], utc=True, errors="coerce", format="ISO8601")


def revisions(df) -> list[str]:
    """The git revisions of the points (12 digits, `+dirty` for uncommitted changes)."""
    out = set()
    for rev, dirty in zip(df.get("git_revision", []), df.get("git_dirty", [None] * len(df))):
        if isinstance(rev, str) and rev:
            out.add(rev[:12] + ("+dirty" if truthy(dirty) else ""))
    return sorted(out)


def truthy(v) -> bool:
    return v is True or (isinstance(v, str) and v.strip().lower() == "true") or v == 1


def integrity(passed) -> bool | None:
    """A target's integrity over its points.  A point without a check (None: the
    target never came up, or the point is not applicable to it and never ran) is
    not a failed one; None when no point of the target was checked."""
    checked = passed.dropna().map(truthy)
    return None if checked.empty else bool(checked.all())


def gaps(df) -> list[tuple[str, str, float]]:
    """(previous point, next point, seconds) for every pause longer than the rule allows."""
    starts = _starts(df)
    d = df.assign(_start=starts).dropna(subset=["_start"]).sort_values("_start")
    if len(d) < 2:
        return []
    longest = 0.0
    for col in ("warmup_s", "duration_s"):
        if col in d and d[col].notna().any():
            longest += float(d[col].max())
    limit = GAP_S + 2 * longest
    out = []
    ids, starts = list(d["point_id"]), list(d["_start"])
    for i in range(1, len(d)):
        pause = (starts[i] - starts[i - 1]).total_seconds()
        if pause > limit:
            out.append((ids[i - 1], ids[i], pause))
    return out


def warnings(df) -> list[str]:
    """Why these results are not one run of one code base, one line each (Markdown)."""
    if df.empty:
        return []
    out = []
    campaigns = sorted(df["campaign"].dropna().unique()) if "campaign" in df else []
    if len(campaigns) > 1:
        out.append(f"The table mixes {len(campaigns)} campaigns ({', '.join(campaigns)}).")
    revs = revisions(df)
    plain = sorted({r.split("+")[0] for r in revs})
    if len(plain) > 1:
        per = []
        for r in plain:
            targets = sorted(df.loc[df["git_revision"].astype(str).str.startswith(r),
                                    "target"].unique())
            per.append(f"{r} ({', '.join(targets)})")
        out.append(f"Points were measured at {len(plain)} git revisions: {'; '.join(per)}. "
                   "Ratios between targets of different revisions compare the revisions too.")
    if "git_dirty" in df:
        dirty = df[[truthy(v) for v in df["git_dirty"]]]
        if len(dirty):
            out.append(f"{len(dirty)} of {len(df)} points ran from a tree with uncommitted "
                       "changes: their revision does not say what code ran.")
    pauses = gaps(df)
    if pauses:
        longest = max(p[2] for p in pauses)
        first = pauses[0]
        out.append(f"The points were measured in {len(pauses) + 1} separate time windows "
                   f"(a pause of more than {GAP_S // 60} minutes plus twice the longest point "
                   f"between consecutive points; longest pause {longest / 60:.0f} min, first "
                   f"after `{first[0]}`): the machine's conditions may have changed between them.")
    return out


def smoke_test(df) -> str | None:
    """Why these results are a smoke test, or None."""
    if df.empty:
        return None
    why = []
    campaigns = set(df["campaign"].dropna()) if "campaign" in df else set()
    quick = sorted(campaigns & set(SMOKE_CAMPAIGNS))
    if quick:
        why.append(f"the quick profile (campaign {', '.join(quick)})")
    ok = _ok(df)
    if not ok.empty:
        keys = [c for c in ("target", "workload", "conn_mode", "load", "offered_rate",
                            "connections", "threads", "duration_s") if c in ok]
        reps = ok.groupby(keys, dropna=False).size()
        if len(reps) and reps.min() < MIN_REPETITIONS:
            why.append(f"{int(reps.min())} repetition(s) of some points (fewer than "
                       f"{MIN_REPETITIONS})")
        # Only a closed-loop run's length decides: wrk's connections need seconds to
        # reach a steady state.  An open-loop point sends at its rate from the first
        # request, and its histograms are merged over the repetitions.
        closed = closed_loop(ok)
        if "duration_s" in closed and closed["duration_s"].notna().any() \
                and closed["duration_s"].min() < MIN_DURATION_S:
            why.append(f"measured runs of {closed['duration_s'].min():g} s (shorter than "
                       f"{MIN_DURATION_S} s)")
    return "; ".join(why) or None


def interleaved(a, b) -> bool:
    """Whether two series (rows of two cells) can be paired by repetition: both hold the
    same repetitions (at least two), and every point of repetition k of either
    started before any point of repetition k + 1 of either, as a campaign with
    `interleave = true` runs them.  Without start times: no."""
    import pandas as pd

    reps_a, reps_b = sorted(a["repetition"]), sorted(b["repetition"])
    if reps_a != reps_b or len(reps_a) < 2 or len(set(reps_a)) != len(reps_a):
        return False
    both = pd.concat([a.assign(_start=_starts(a)), b.assign(_start=_starts(b))])
    if both["_start"].isna().any():
        return False
    by_rep = both.groupby("repetition")["_start"].agg(["min", "max"]).sort_index()
    ends = by_rep["max"].iloc[:-1].reset_index(drop=True)
    starts = by_rep["min"].iloc[1:].reset_index(drop=True)
    return bool((ends < starts).all())


def table(df) -> list[dict]:
    """Per target: points, load average (1 min, at the end of each measured window) and
    CPU steal, for the report."""
    ok = _ok(df)
    rows = []
    for target, d in ok.groupby("target", sort=False):
        def col(name):
            return d[name].astype(float) if name in d and d[name].notna().any() else None

        load, steal = col("load1"), col("cpu_steal_share")
        cpus = col("cpus")
        starts = _starts(d).dropna()
        rows.append({
            "target": target, "points": len(d),
            "cpus": int(cpus.max()) if cpus is not None else None,
            "load1_median": float(load.median()) if load is not None else None,
            "load1_max": float(load.max()) if load is not None else None,
            "steal_share_max": float(steal.max()) if steal is not None else None,
            "first": starts.min() if len(starts) else None,
            "last": starts.max() if len(starts) else None,
        })
    return rows
