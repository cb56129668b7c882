"""The benchmark scripts still run against the current API (nothing here is timed): the
per-phase profile with each set of routes, the Markdown that run_all.py writes, the
steal time the tables report, the interleaving of timed calls, the region-cost table and
the per-CPU speeds."""

import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import cpu_speeds  # noqa: E402
import profile_step  # noqa: E402
import region_cost  # noqa: E402
import run_all  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("routes, threads", [("before", 1), ("after", 1), ("after-loops", 2),
                                             ("after", 2)])
def test_profile_step_runs_each_set_of_routes(routes, threads):
    p = profile_step.run_child(threads, 2, "digits", routes)
    assert p is not None, "the profile's child process failed (see stderr above)"
    ms = p["ms"]
    assert p["steps"] == 2 and ms["total"] > 0
    assert sum(k.endswith("forward") for k in ms) == 12  # LeNet-5's twelve layers
    assert ms["batching, loss, Python"] >= 0
    sharded = (routes, threads) == ("after", 2)  # the shard workers ran the other half
    assert ("waiting for the shard workers" in ms) == sharded


def test_run_all_keeps_tables_and_line_breaks():
    out = run_all._markdown("cpu: X\nload 1.0\n| a | b |\n|---|---|\n| 1 | 2 |\nafter *x*\n")
    assert out == "load 1.0  \n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nafter \\*x\\*\n"
    assert run_all._markdown("cpu: X\n", machine=True) == "cpu: X\n"


def test_steal_time_is_the_hypervisors_share_of_the_cpu_time_between_readings():
    import _bench

    assert _bench.steal_percent((10, 1000), (30, 1200)) == 10.0
    assert _bench.steal_percent((10, 1000), (10, 1000)) is None  # no time passed
    assert _bench.steal_percent(None, (10, 1000)) is None
    ticks = _bench.cpu_ticks()
    if ticks is not None:  # Linux: a reading of /proc/stat, steal inside the total
        assert 0 <= ticks[0] <= ticks[1]


def test_interleaved_sets_each_state_once_per_change_and_warms_before_timing():
    import _bench

    log = []
    one, two = (lambda: log.append("threads 1")), (lambda: log.append("threads 2"))
    fns = {k: (lambda k=k: log.append(k)) for k in ("a/1", "b/1", "a/2")}
    setup = {"a/1": one, "b/1": one, "a/2": two}
    times = _bench.interleaved(fns, repeat=2, warmup=1, setup=setup)
    assert set(times) == set(fns) and all(t >= 0 for t in times.values())
    # warm-up: each state set once, and each function called once more after a change
    warm = ["threads 1", "a/1", "a/1", "b/1", "threads 2", "a/2", "a/2"]
    # a round: the state changes twice (back to 1 thread, then to 2), and the first
    # function after each change runs once untimed before its timed call
    round_ = ["threads 1", "a/1", "a/1", "b/1", "threads 2", "a/2", "a/2"]
    assert log == warm + round_ * 2


def test_region_cost_prints_a_row_per_pause(capsys):
    region_cost.main(["--calls", "5"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "µs" not in line]
    assert [int(r.split("|")[1]) for r in rows] == list(region_cost.GAPS)


@pytest.mark.parametrize("argv", [["--threads", "0"], ["--calls", "0"]])
def test_region_cost_refuses_counts_the_kernel_cannot_take(argv, capsys):
    with pytest.raises(SystemExit):
        region_cost.main(argv)
    assert "must be" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_cpu_speeds_prints_a_row_per_window_and_unpins(capsys):
    before = os.sched_getaffinity(0)
    cpu_speeds.main(["--windows", "2", "--passes", "2"])
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert [int(r.split("|")[1]) for r in rows] == [1, 2]
    assert all(float(r.split("|")[-2]) >= 1.0 for r in rows)  # slower / faster
    assert os.sched_getaffinity(0) == before


@pytest.mark.parametrize("argv", [["--windows", "0"], ["--passes", "0"]])
def test_cpu_speeds_refuses_empty_windows(argv, capsys):
    with pytest.raises(SystemExit):
        cpu_speeds.main(argv)
    assert "at least 1" in capsys.readouterr().err
