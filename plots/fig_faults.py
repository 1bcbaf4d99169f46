"""Faults: successful requests per second through each fault run, per target.

One panel per fault; one line per target (successful responses per second,
every one checked against the manifest); crosses mark bins with failed or
corrupt responses; the dashed line is the moment the fault struck.  Drawn
from the fault rows alone (analysis.results.fault_rows: the result files,
or faults.csv, whose `bins` column holds each run's series).
"""

from __future__ import annotations

import json
from pathlib import Path

from analysis.results import fault_rows
from plots import common, style

STEM = "fig_faults"
TITLE = "Faults: successful requests/s before and after the fault"


def load_runs(results_dir) -> list[dict]:
    """Fault rows that ran, with their prober series decoded (`series`)."""
    runs = []
    for r in fault_rows(Path(results_dir)):
        if r["status"] == "ok" and isinstance(r.get("bins"), str) and r["bins"]:
            runs.append({**r, "series": json.loads(r["bins"])})
    return runs


def draw_faults(results_dir, out_dir) -> list[Path]:
    # heavy: imported when a table or figure is made, so `python -m bench` starts fast
    import matplotlib.pyplot as plt

    runs = load_runs(results_dir)
    if not runs:
        if any(r["status"] == "ok" for r in fault_rows(Path(results_dir))):
            return common.placeholder(out_dir, STEM, TITLE,
                                      "these fault rows carry no per-bin series (a faults.csv "
                                      "written before the `bins` column)")
        return []
    faults = sorted({r["fault"] for r in runs})
    fig, axes = plt.subplots(len(faults), 1, figsize=(7, 2.4 * len(faults)), squeeze=False,
                             sharex=True)
    names = style.target_order({r["target"] for r in runs})
    for ax, fault in zip(axes[:, 0], faults):
        for i, t in enumerate(names):
            mine = [r for r in runs if r["fault"] == fault and r["target"] == t]
            for k, r in enumerate(mine):
                p = r["series"]
                b = p["bin_s"]
                xs = [j * b - float(r["at_s"]) for j in range(len(p["ok"]))]
                ax.plot(xs, [v / b for v in p["ok"]], color=style.colour(t, i), lw=1.2,
                        label=style.label(t) if k == 0 else None)
                bad = [(x, ok / b) for x, ok, f, c in zip(xs, p["ok"], p["failed"], p["corrupt"])
                       if f or c]
                if bad:
                    ax.scatter(*zip(*bad), marker="x", color=style.colour(t, i), s=18, zorder=3)
        ax.axvline(0, color="black", ls="--", lw=0.8)
        ax.set_title(fault.replace("_", " "), fontsize=10)
        ax.set_ylabel("ok requests/s")
        ax.set_ylim(bottom=0)
    axes[-1, 0].set_xlabel("seconds since the fault (x: a bin with failed or corrupt responses)")
    axes[0, 0].legend(loc="lower left", fontsize=8, ncol=len(names))
    fig.tight_layout()
    common.finish(fig, TITLE, "A time-resolved prober (bench/faults.py) beside the target, "
                              "one line per run; every completed response is checked against "
                              "the manifest.")
    return common.save(fig, out_dir, STEM)


def report_lines(results_dir) -> list[str]:
    """The faults section of report.md."""
    rows = fault_rows(Path(results_dir))
    if not rows:
        return []
    out = ["## Faults during a run", "",
           "Time-resolved prober beside the target (bench/faults.py); every completed response "
           "is checked against the manifest.  Recovery: from the fault to the end of the last "
           "100 ms bin with a failure.", "",
           "| target | fault | rep | failed | corrupt | recovery | kept serving | ok/s before -> after "
           "| refused |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (style.target_order([r["target"]]), r["fault"],
                                         r["repetition"])):
        if r["status"] == "not_applicable":
            out.append(f"| {style.label(r['target'])} | {r['fault']} | {r['repetition']} | "
                       f"n/a: {r['error']} | | | | | |")
            continue
        if r["status"] != "ok":
            out.append(f"| {style.label(r['target'])} | {r['fault']} | {r['repetition']} | "
                       f"run FAILED: {r['error']} | | | | | |")
            continue
        rec = f"{r['recovery_s']:.2f} s" if r["recovered"] else "**not recovered**"
        out.append(f"| {style.label(r['target'])} | {r['fault']} | {r['repetition']} | "
                   f"{int(r['requests_failed'])} | {int(r['responses_corrupt'])}"
                   f"{'' if r['intact'] else ' **CORRUPT**'} | {rec} | "
                   f"{'yes' if r['kept_serving'] else '**STUCK**'} | "
                   f"{r['ok_per_s_before']:.0f} -> {r['ok_per_s_after']:.0f} | "
                   f"{_refused(r)} |")
    if any(r["fault"] in ATTACK_MEANING for r in rows):
        out += ["", "Refused: the counters that moved during an attack, the target's own "
                "(Miresga's switch, front-end and agents; HAProxy's request errors), else the "
                "kernel's answers on its hosts (RSTs, challenge ACKs). What each attack is:",
                ""]
        out += [f"- {name}: {text}" for name, text in ATTACK_MEANING.items()
                if any(r["fault"] == name for r in rows)]
    return out + [""]


#: The attacks (bench/faults.py), as the report explains them.
ATTACK_MEANING = {
    "forged_ack": "ACKs carrying a request with made-up numbers and no handshake, from the "
                  "extra host. Miresga's switch drops them on the SYN cookie (cookie_bad); "
                  "against HAProxy or nginx the load balancer host's kernel answers each "
                  "with a RST (its OutRsts), against the l4switch a back-end's kernel does.",
    "spoofed_syn": "SYNs from the client side of the back-ends' live connections to their "
                   "service port, plain and fused. Miresga's switch drops fused SYNs not "
                   "from a front-end (fused_syn_forged), its agents keep live entries "
                   "(syn_plain_kept, syn_live_kept); for other targets the back-end's kernel "
                   "answers with a challenge ACK (TCPChallengeACK) and the flow goes on.",
    "small_segments": "Connections that send a header one byte a segment and never finish "
                      "it. Miresga's front-end copies the bytes together and bounds what it "
                      "holds (coalesced, hold_full), then answers 408; HAProxy's and "
                      "nginx's kernels coalesce them in the socket buffer and the request "
                      "times out (HAProxy counts a request error).",
}


def _refused(r: dict) -> str:
    """The counters that moved: the target's own, else its hosts' kernels'."""
    if r["fault"] not in ATTACK_MEANING:
        return ""
    try:
        c = json.loads(r.get("refusal_counters") or "{}")
    except (TypeError, ValueError):
        return "-"
    own = [f"{_short(k)} {v}" for k, v in sorted((c.get("target") or {}).items()) if v]
    if own:
        return ", ".join(own)
    kernel = [f"kernel {k} {v} ({role})" for role, d in sorted((c.get("kernel") or {}).items())
              for k, v in sorted(d.items()) if v]
    return ", ".join(kernel) or "none counted"


def _short(path: str) -> str:
    """switch.counters.cookie_bad -> cookie_bad; frontends.*.errors.408 -> errors.408."""
    parts = [p for p in path.split(".") if p not in ("*", "counters", "packets")]
    tail = parts[-1]
    return f"{parts[-2]}.{tail}" if tail.isdigit() or tail == "errors" else tail


if __name__ == "__main__":
    import sys

    style.apply_theme()
    for p in draw_faults(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else
                         Path(sys.argv[1]) / "figures"):
        print(p)
