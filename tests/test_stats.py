"""Intervals, merged histograms and wrk's histogram: the numbers behind every figure and claim."""

from __future__ import annotations

import http.server
import random
import subprocess
import threading

import numpy as np
import pytest

from analysis import latency, stats
from analysis.latency import CountTable
from bench.wrk import WrkJob, add_histogram, judge, recorded_counts, wrk_correction_interval_us


# ------------------------------------------------------------------ intervals

@pytest.mark.parametrize("p, df, expected", [
    (0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 3, 3.1824), (0.975, 4, 2.7764),
    (0.975, 9, 2.2622), (0.995, 4, 4.6041), (0.975, 29, 2.0452), (0.025, 4, -2.7764)])
def test_t_quantiles_match_the_tables(p, df, expected):
    """Student's t quantiles, computed without SciPy, agree with the printed tables."""
    assert stats.t_quantile(p, df) == pytest.approx(expected, abs=1e-4)


def _coverage(paired: bool, n: int, trials: int, ratio: float = 3.0) -> float:
    """How often the interval of mean(a) / mean(b) holds the true ratio, on synthetic
    repetitions with 5% noise (and, paired, 5% of noise shared by both sides)."""
    rng = np.random.default_rng(2024)
    hits = 0
    for i in range(trials):
        shared = rng.normal(0, 0.05, n) if paired else 0.0
        a = ratio * (1 + rng.normal(0, 0.05, n) + shared)
        b = 1.0 * (1 + rng.normal(0, 0.05, n) + shared)
        hits += stats.ratio_of_means(a, b, key=f"trial{i}", paired=paired).contains(ratio)
    return hits / trials


def test_interval_holds_the_true_ratio_at_the_stated_rate_independent():
    """Independent series, 5 repetitions each: analysis/stats.py states 96-99% for a
    nominal 95%; over 300 seeded trials the rate must be within binomial noise of that
    (and not 100%: an interval that always holds is too wide to say anything)."""
    rate = _coverage(paired=False, n=5, trials=300)
    assert 0.93 <= rate < 1.0, rate


def test_interval_holds_the_true_ratio_at_the_stated_rate_paired():
    """Paired series (interleaved targets): about 91% with 5 repetitions, as stated; no
    bootstrap reaches beyond the repetitions' range, which misses the truth 6% of the
    time with 5 pairs; with 10 repetitions it is close to 95%."""
    five = _coverage(paired=True, n=5, trials=300)
    ten = _coverage(paired=True, n=10, trials=200)
    assert 0.86 <= five <= 0.97, five
    assert 0.91 <= ten <= 0.99, ten


def test_pairing_narrows_the_interval_when_both_sides_share_the_noise():
    """A slow minute hits both targets of one repetition: the paired interval of the
    ratio is much narrower than the independent one, and both hold the true ratio."""
    rng = np.random.default_rng(7)
    slow = rng.normal(0, 0.2, 5)
    a, b = 2.0 * (1 + slow + rng.normal(0, 0.01, 5)), 1 + slow + rng.normal(0, 0.01, 5)
    paired = stats.ratio_of_means(a, b, "k", paired=True)
    independent = stats.ratio_of_means(a, b, "k", paired=False)
    assert paired.contains(2.0) and independent.contains(2.0)
    assert (paired.high - paired.low) < (independent.high - independent.low) / 4


def test_intervals_are_reproducible_and_one_repetition_has_none():
    """Same data and key: the same interval, in any order of computation; another key
    draws other resamples; one repetition gives the value without an interval."""
    a, b = [10.0, 11.0, 9.5, 10.2, 10.8], [5.0, 5.5, 4.8, 5.1, 5.3]
    first = stats.ratio_of_means(a, b, "cell-x")
    stats.ratio_of_means(a, b, "cell-y")
    assert stats.ratio_of_means(a, b, "cell-x") == first
    assert stats.ratio_of_means(a, b, "cell-y") != first
    one = stats.mean([4.0], "single")
    assert one.value == 4.0 and not one.has_interval and one.fmt() == "4.00"
    assert stats.ratio_of_means([1.0, 2.0], [0.0, 0.0], "zero").fmt() == "n/a"


# ----------------------------------------------------------------- histograms

def _samples(seed: int, n: int, median_us: float) -> list[int]:
    rng = random.Random(seed)
    return [max(1, int(rng.lognormvariate(0, 1.0) * median_us)) for _ in range(n)]


def test_merged_histograms_equal_the_histogram_of_all_samples():
    """Three repetitions on two client hosts: merging their six histograms gives, bucket
    for bucket, the histogram of all samples recorded at once, and every percentile
    (HdrHistogram's and the bootstrap's CountTable) agrees with it."""
    parts = [_samples(seed, 2000 + 500 * seed, 300 * (1 + seed % 3)) for seed in range(6)]
    encoded = [latency.encode(latency.from_counts((v, 1) for v in p)) for p in parts]
    merged = latency.merge(encoded)
    everything = latency.from_counts((v, 1) for p in parts for v in p)
    assert merged.get_total_count() == sum(len(p) for p in parts)
    assert list(merged.counts) == list(everything.counts)
    table = CountTable(encoded)
    for p in (50, 90, 99, 99.9, 99.99):
        assert merged.get_value_at_percentile(p) == everything.get_value_at_percentile(p)
        assert table.percentile(p) == everything.get_value_at_percentile(p)
    # A bootstrap replicate that takes part 0 twice and part 2 once is that merge.
    w = np.zeros((1, 6))
    w[0, 0], w[0, 2] = 2, 1
    again = latency.merge([encoded[0], encoded[0], encoded[2]])
    assert table.percentiles(w, 99)[0] == again.get_value_at_percentile(99)
    # ... and a mean of the parts' p99s is not the p99 of anything here.
    mean_p99 = np.mean([latency.decode(e).get_value_at_percentile(99) for e in encoded])
    assert mean_p99 != pytest.approx(merged.get_value_at_percentile(99), rel=0.01)


def test_percentile_interval_of_merged_repetitions():
    """The p99 of five merged repetitions lies inside its interval, which lies inside the
    range of the repetitions' own p99s."""
    encoded = [latency.encode(latency.from_counts((v, 1) for v in _samples(s, 3000, 500 + 40 * s)))
               for s in range(5)]
    iv = stats.percentile(CountTable(encoded), 99, "p99")
    own = [latency.decode(e).get_value_at_percentile(99) for e in encoded]
    assert iv.low <= iv.value <= iv.high
    assert min(own) <= iv.low and iv.high <= max(own)


# ------------------------------------------------------------- wrk's histogram

def _wrk_stats_correct(data: dict[int, int], expected: int) -> dict[int, int]:
    """wrk 4.1's src/stats.c stats_correct, line for line, on a dict."""
    out = dict(data)
    for n in range(expected * 2, max(data) + 1):
        count = out.get(n, 0)
        m = n - expected
        while count and m > expected:
            out[m] = out.get(m, 0) + count
            m -= expected
    return out


@pytest.mark.parametrize("seed", range(5))
def test_wrk_correction_is_undone_exactly(seed):
    """Whatever the recorded latencies, undoing wrk's coordinated-omission correction
    gives them back exactly, and a wrong interval is refused, not half-undone."""
    rng = random.Random(seed)
    recorded: dict[int, int] = {}
    for v in _samples(seed, 3000, 800) + [rng.randint(20_000, 90_000) for _ in range(5)]:
        recorded[v] = recorded.get(v, 0) + 1
    interval = rng.randint(300, 1500)
    corrected = _wrk_stats_correct(recorded, interval)
    assert sum(corrected.values()) > sum(recorded.values())  # it did add samples
    assert recorded_counts(corrected, interval) == recorded
    with pytest.raises(ValueError, match="not wrk's correction"):
        recorded_counts(corrected, interval + 7)
    assert wrk_correction_interval_us(requests=6400, duration_us=10_000_000,
                                      connections=64) == 100_000
    assert wrk_correction_interval_us(requests=10, duration_us=10_000_000,
                                      connections=64) is None


class _Handler(http.server.BaseHTTPRequestHandler):
    body = bytes(range(256)) * 4
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - the name http.server calls
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def test_wrk_histogram_holds_one_sample_per_request(tmp_path):
    """Debian's wrk with the bench's Lua against a loopback server: the script reads
    wrk's histogram (LuaJIT FFI), and the stored histogram, wrk's correction undone,
    holds exactly one sample per completed request."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        job = WrkJob(url=url, classes=[{"name": "1KB", "weight": 1, "paths": ["/a"]}],
                     threads=2, connections=8, duration_s=2, timeout_s=10)
        script = tmp_path / "bench.lua"
        script.write_text(job.script())
        r = subprocess.run(["wrk", "-t2", "-c8", "-d2s", "--timeout", "10s", "-s", str(script),
                            url], capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    data, error = judge("load", r.returncode, r.stdout, r.stderr)
    assert error is None, (r.stdout, r.stderr)
    assert data.get("latency_histogram_error") is None
    as_wrk_holds_it = sum(data["latency_histogram_us"][1::2])
    add_histogram(data, connections=8)
    assert data["histogram_error"] is None
    h = latency.decode(data["histogram"])
    assert h.get_total_count() == data["requests"] == data["latency_us"]["count"]
    assert as_wrk_holds_it >= data["requests"]
    assert data["latency_us"]["percentiles"]["99"] == h.get_value_at_percentile(99)
    assert data["latency_us_wrk"]["percentiles"]["50"] > 0
