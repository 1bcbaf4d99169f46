"""Front-end cost: CPU seconds on the front-end host per 1,000 requests, by response size.

One series per L7 target (the ones with a front-end: HAProxy, nginx, Miresga);
one panel per connection mode.  A software L7 load balancer relays every
response byte, so its cost grows with the response; Miresga's front-end only
sees requests, so the point of the design is that its line stays flat.
Line: mean over repetitions; band: its 95% confidence interval.
"""

from __future__ import annotations

from plots import common

STEM = "fig_frontend_cost"
TITLE = "Front-end CPU per 1,000 requests vs response size (closed loop, saturated)"


def draw(df, out_dir):
    d = common.prepare(df)
    if not d.empty:
        d = d[(d["workload_kind"] == "fixed") & (d["layer7"].map(lambda v: v is True or v == 1
                                                                  or v == "True"))
              & d["frontend_cpu_s_per_kreq"].notna()]
    if d.empty:
        return common.placeholder(out_dir, STEM, TITLE,
                                  "no successful fixed-size runs of an L7 target")
    caption = (f"CPU seconds of every process on the front-end host (its cgroup) over the "
               f"measured run, per 1,000 requests served. A polling front-end (Miresga's "
               f"DPDK loop) counts its idle polls too. {common.wrk_load(d)} "
               f"{common.interval_note(d)} {common.provenance(d)}")
    return common.line_panels(d, [("frontend_cpu_s_per_kreq", "CPU", "-")],
                              "front-end CPU s / 1,000 requests", TITLE, caption, out_dir, STEM)


if __name__ == "__main__":
    raise SystemExit(common.main(draw))
