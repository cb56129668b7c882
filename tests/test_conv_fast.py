"""The fast convolution route (cycnn/_fastconv.pyx, docs/performance-results.md) computes
what the direct loops compute: on a random sweep of shapes, strides and paddings, in both
dtypes, on one and two threads, in every layout the planner can choose (copies per kernel
column or per stride phase, images interleaved, chunks of rows, both tile heights), and
with the same IEEE behaviour for NaN and infinity. The loops of cycnn/_conv.pyx are the
reference here; they are themselves checked against NumPy, PyTorch and finite
differences in tests/test_conv.py."""

import os
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

import cycnn
import cycnn.conv as conv
from conftest import DTYPES, needs_openmp, torch_or_skip
from cycnn import _caches

TOL = {np.float32: dict(rtol=2e-4, atol=2e-4), np.float64: dict(rtol=1e-11, atol=1e-11)}


def _configs(count, seed, max_n=3, max_c=5, max_f=9, max_hw=14):
    """``count`` valid (N, C, H, W, F, KH, KW, stride, padding) drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        N, C, F = (int(rng.integers(1, m + 1)) for m in (max_n, max_c, max_f))
        H, W = (int(v) for v in rng.integers(1, max_hw + 1, size=2))
        KH, KW = (int(v) for v in rng.integers(1, 6, size=2))
        sh, sw = (int(v) for v in rng.integers(1, 4, size=2))
        t, b, l_, r = (int(v) for v in rng.integers(0, 3, size=4))
        if rng.random() < 0.25:  # unpadded layers are common: draw them often
            t = b = l_ = r = 0
        if KH > H + t + b or KW > W + l_ + r:
            continue
        out.append((N, C, H, W, F, KH, KW, (sh, sw), ((t, b), (l_, r))))
    return out


def _id(cfg):
    N, C, H, W, F, KH, KW, (sh, sw), ((t, b), (l_, r)) = cfg
    return f"N{N}C{C}_{H}x{W}_F{F}k{KH}x{KW}_s{sh}{sw}_p{t}{b}{l_}{r}"


def _arrays(cfg, dtype):
    N, C, H, W, F, KH, KW, stride, padding = cfg
    rng = np.random.default_rng(zlib.crc32(repr(cfg).encode()))
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    return x, w, b, rng


def _check_against_direct(cfg, dtype, threads=1, need_dx=True):
    N, C, H, W, F, KH, KW, stride, padding = cfg
    x, w, b, rng = _arrays(cfg, dtype)
    want = cycnn.conv2d_forward(x, w, b, stride, padding, algorithm="direct")
    got = cycnn.conv2d_forward(x, w, b, stride, padding, algorithm="fast", threads=threads)
    assert got.shape == want.shape and got.dtype == dtype
    np.testing.assert_allclose(got, want, **TOL[dtype])
    dy = rng.standard_normal(want.shape).astype(dtype)
    want = cycnn.conv2d_backward(dy, x, w, stride, padding, algorithm="direct", need_dx=need_dx)
    got = cycnn.conv2d_backward(dy, x, w, stride, padding, algorithm="fast", threads=threads,
                                need_dx=need_dx)
    for a, e in zip(got, want):
        if e is None:
            assert a is None
            continue
        assert a.shape == e.shape and a.dtype == dtype
        np.testing.assert_allclose(a, e, **TOL[dtype])
    return got


CONFIGS = _configs(120, seed=15)


def test_configs_cover_the_space():
    """The sweep has strides 1-3 along each axis, paddings larger than the kernel needs
    and none, kernels as large as the padded input, and several images."""
    assert {c[7][0] for c in CONFIGS} == {1, 2, 3} and {c[7][1] for c in CONFIGS} == {1, 2, 3}
    assert any(c[8] == ((0, 0), (0, 0)) for c in CONFIGS)
    # padding at least as wide as the kernel: some outputs read nothing but zeros
    assert any(max(c[8][0]) >= c[5] and max(c[8][1]) >= c[6] for c in CONFIGS)
    assert any(c[5] == c[2] + sum(c[8][0]) for c in CONFIGS)
    assert {c[0] for c in CONFIGS} == {1, 2, 3} and max(c[4] for c in CONFIGS) == 9


@DTYPES
@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_fast_matches_the_direct_loops(cfg, dtype):
    _check_against_direct(cfg, dtype)


@needs_openmp
@DTYPES
@pytest.mark.parametrize("cfg", CONFIGS[:40], ids=_id)
def test_fast_on_two_threads_matches_the_direct_loops(cfg, dtype, always_parallel):
    _check_against_direct(cfg, dtype, threads=2)


@needs_openmp
@DTYPES
def test_thread_count_does_not_change_a_bit(dtype, always_parallel):
    """Bit for bit on 1, 2 and 3 threads. Guaranteed by the route: each output and each
    input gradient is summed by one thread in a fixed order, and the weight gradient is
    summed per group of images, whose number depends on the shapes only, with the groups
    added in order."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((13, 3, 17, 15)).astype(dtype)
    w = rng.standard_normal((10, 3, 3, 4)).astype(dtype)
    b = rng.standard_normal(10).astype(dtype)
    y1 = cycnn.conv2d_forward(x, w, b, (2, 1), 1, algorithm="fast", threads=1)
    dy = rng.standard_normal(y1.shape).astype(dtype)
    g1 = cycnn.conv2d_backward(dy, x, w, (2, 1), 1, algorithm="fast", threads=1)
    for nt in (2, 3):
        np.testing.assert_array_equal(
            cycnn.conv2d_forward(x, w, b, (2, 1), 1, algorithm="fast", threads=nt), y1)
        for a, e in zip(cycnn.conv2d_backward(dy, x, w, (2, 1), 1, algorithm="fast",
                                              threads=nt), g1):
            np.testing.assert_array_equal(a, e)


# --------------------------------------------------------------------------- every layout

#: LeNet-like layers and odd ones: many small images (interleaved), wide images, strides
LAYOUT_CONFIGS = [
    (7, 6, 12, 12, 16, 5, 5, (1, 1), ((0, 0), (0, 0))),
    (5, 1, 28, 28, 6, 5, 5, (1, 1), ((0, 0), (0, 0))),
    (3, 4, 16, 16, 32, 3, 3, (1, 1), ((1, 1), (1, 1))),
    (2, 3, 20, 21, 16, 7, 7, (2, 2), ((3, 3), (3, 3))),
    (4, 2, 9, 30, 5, 3, 4, (3, 2), ((0, 2), (1, 0))),
    (9, 3, 5, 4, 7, 2, 3, (1, 1), ((1, 0), (2, 2))),
]


def _layouts():
    """(config, copies): the planner's choice, one copy per kernel column ("most"), and
    every multiple of the column stride below the kernel width (the layouts it weighs)."""
    for cfg in LAYOUT_CONFIGS:
        sw, KW = cfg[7][1], cfg[6]
        for copies in [None, "most", *range(sw, KW, sw)]:
            yield pytest.param(cfg, copies, id=f"{_id(cfg)}-copies{copies}")


@DTYPES
@pytest.mark.parametrize("cfg, copies", list(_layouts()))
def test_every_copy_layout(cfg, dtype, copies, monkeypatch):
    """Every layout of the input copy gives the direct loops' result, and the planner
    takes the one it is told to."""
    monkeypatch.setattr(conv, "FAST_FORCE_COPIES", copies)
    _check_against_direct(cfg, dtype)
    N, C, H, W, F, KH, KW, stride, padding = cfg
    plan = conv._fast_plan((N, C, H, W), (F, C, KH, KW), stride, padding, np.dtype(dtype),
                           False, False, 1)
    if copies is not None:
        assert plan.nq == (KW if copies == "most" else copies)


def test_the_planner_weighs_the_layouts():
    """With nothing forced, the layout is the cheaper by the planner's costs, not the
    first one it tries: on LeNet's second layer (12x12 inputs, 5x5 kernels) one copy
    would compute 12 lanes per row for 8 outputs, so it takes one copy per kernel column;
    on a wide 3x3 layer the lanes thrown away are few, and it takes one copy."""
    small = conv._fast_plan((64, 6, 12, 12), (16, 6, 5, 5), (1, 1), ((0, 0), (0, 0)),
                            np.dtype(np.float32), True, True, 1)
    wide = conv._fast_plan((8, 64, 56, 56), (64, 64, 3, 3), (1, 1), ((1, 1), (1, 1)),
                           np.dtype(np.float32), True, True, 1)
    assert (small.nq, small.Wc) == (5, 8)
    assert (wide.nq, wide.Wc) == (1, 58)


@DTYPES
@pytest.mark.parametrize("budget", [1, 3000, 40000])
@pytest.mark.parametrize("cfg", LAYOUT_CONFIGS, ids=_id)
def test_small_caches_cut_the_work_into_chunks(cfg, dtype, budget, monkeypatch):
    """A budget of a few kilobytes forces chunks of one or a few output rows (and fewer
    interleaved images); the sums do not change."""
    monkeypatch.setattr(conv, "FAST_CHUNK_BYTES", budget)
    _check_against_direct(cfg, dtype)
    N, C, H, W, F, KH, KW, stride, padding = cfg
    plan = conv._fast_plan((N, C, H, W), (F, C, KH, KW), stride, padding, np.dtype(dtype),
                           True, True, 1)
    assert plan.bytes_per_thread <= budget or (plan.rows == 1 and plan.gi == 1)


@DTYPES
def test_chunks_do_not_change_the_forward_bits(dtype, monkeypatch):
    """Forward, every output is b[f] plus its products added in tap order, whichever
    chunk or tile its lane falls in: the same bits for any chunk size."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 19, 13)).astype(dtype)
    w = rng.standard_normal((9, 4, 3, 3)).astype(dtype)
    y = cycnn.conv2d_forward(x, w, stride=(1, 2), padding=1, algorithm="fast")
    monkeypatch.setattr(conv, "FAST_CHUNK_BYTES", 1)
    np.testing.assert_array_equal(
        cycnn.conv2d_forward(x, w, stride=(1, 2), padding=1, algorithm="fast"), y)


@pytest.mark.parametrize("F", [1, 3, 6, 8, 12, 16, 17, 32])
def test_filter_counts_that_fill_tiles_partly(F):
    """F is padded to whole tiles of either height; the padding rows are never stored."""
    _check_against_direct((2, 3, 10, 11, F, 3, 3, (1, 1), ((1, 1), (1, 1))), np.float32)


def test_need_dx_false_skips_only_dx():
    cfg = LAYOUT_CONFIGS[0]
    full = _check_against_direct(cfg, np.float64)
    part = _check_against_direct(cfg, np.float64, need_dx=False)
    assert part[0] is None
    # the weight gradient's sums do not depend on whether dx is wanted: same partial
    # sums, same order
    np.testing.assert_array_equal(part[1], full[1])
    np.testing.assert_array_equal(part[2], full[2])


def test_auto_takes_the_fast_route_for_three_filters_or_more():
    """... of a plain convolution (zeros padding, no dilation, one group, some images);
    any other goes to im2col, even when the fast route is asked for."""
    assert conv._choose("f", "auto", (3, 1, 3, 3), (1, 3, 4, 4), plain=True) == "fast"
    assert conv._choose("f", "auto", (2, 1, 3, 3), (1, 2, 4, 4), plain=True) == "direct"
    assert conv._choose("f", "fast", (1, 1, 3, 3), (1, 1, 4, 4), plain=True) == "fast"
    assert conv._choose("f", "auto", (3, 1, 3, 3), (1, 3, 4, 4), plain=False) == "im2col"
    assert conv._choose("f", "fast", (6, 1, 3, 3), (1, 6, 4, 4), 2, plain=True) == "im2col"
    assert conv._choose("f", "fast", (3, 1, 3, 3), (0, 3, 4, 4), plain=True) == "im2col"
    assert conv._choose("f", "auto", (6, 1, 3, 3), (1, 6, 4, 4), 3, plain=True) == "direct"


def test_clear_workspace_frees_the_fast_buffers():
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 9))
    w = np.random.default_rng(2).standard_normal((4, 3, 3, 3))
    y = cycnn.conv2d_forward(x, w, algorithm="fast")
    assert ("fast", np.dtype(np.float64)) in conv._local.bufs
    cycnn.clear_workspace()
    assert not getattr(conv._local, "bufs", None)
    np.testing.assert_array_equal(cycnn.conv2d_forward(x, w, algorithm="fast"), y)


# --------------------------------------------------------------------------- NaN and inf

@DTYPES
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("where", ["x", "w", "dy", "x-inf"])
def test_nan_and_inf_land_where_the_direct_loops_put_them(where, dtype):
    """The fast route's thrown-away lanes meet zeros of dy; with a NaN or an infinity in
    x or w that would make extra NaNs (0 * inf), so the backward pass hands those cases to
    the im2col route. The NaN patterns equal the direct loops' in every output."""
    cfg = (2, 3, 11, 10, 7, 3, 4, (2, 1), ((1, 0), (2, 1)))
    N, C, H, W, F, KH, KW, stride, padding = cfg
    x, w, b, rng = _arrays(cfg, dtype)
    if where == "x":
        x[1, 2, 4, 5] = np.nan
    elif where == "x-inf":
        x[0, 1, 3, 3] = np.inf
    elif where == "w":
        w[4, 1, 2, 0] = np.nan
    y_d = cycnn.conv2d_forward(x, w, b, stride, padding, algorithm="direct")
    y_f = cycnn.conv2d_forward(x, w, b, stride, padding, algorithm="fast")
    dy = rng.standard_normal(y_d.shape).astype(dtype)
    if where == "dy":
        dy[1, 3, 2, 2] = np.nan
    g_d = cycnn.conv2d_backward(dy, x, w, stride, padding, algorithm="direct")
    g_f = cycnn.conv2d_backward(dy, x, w, stride, padding, algorithm="fast")
    for got, want in zip((y_f,) + g_f, (y_d,) + g_d):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], **TOL[dtype])
    assert (~np.isfinite(g_d[1])).any() == (where != "w")  # dw does not depend on w


def test_non_finite_w_backward_is_exact_on_one_tap():
    """An infinity in one tap of w: dx is inf (or NaN where +inf meets -inf) exactly
    where that tap reads, as in the direct loops."""
    x = np.ones((1, 1, 6, 6))
    w = np.ones((3, 1, 3, 3))
    w[1, 0, 1, 1] = np.inf
    dy = np.ones((1, 3, 4, 4))
    dx_f = cycnn.conv2d_backward(dy, x, w, algorithm="fast")[0]
    dx_d = cycnn.conv2d_backward(dy, x, w, algorithm="direct")[0]
    np.testing.assert_array_equal(dx_f, dx_d)
    assert np.isinf(dx_f[0, 0, 1:5, 1:5]).all() and np.isfinite(dx_f[0, 0, 0]).all()


# --------------------------------------------------------------------------- every build

VARIANT_SCRIPT = textwrap.dedent("""
    import numpy as np
    import cycnn
    import cycnn.conv as conv
    kernels = cycnn.build_info()["kernels"]["_fastconv"]
    rng = np.random.default_rng(7)
    shapes = [((5, 6, 12, 12), (16, 6, 5, 5), 1, 0), ((2, 3, 17, 16), (32, 3, 7, 7), 2, 3),
              ((3, 2, 9, 8), (6, 2, 3, 2), (2, 1), ((1, 0), (0, 2)))]
    for dtype, tol in ((np.float32, 2e-4), (np.float64, 1e-10)):
        for xs, ws, stride, padding in shapes:
            for copies in (None, "most"):
                conv.FAST_FORCE_COPIES = copies
                x = rng.standard_normal(xs).astype(dtype)
                w = rng.standard_normal(ws).astype(dtype)
                b = rng.standard_normal(ws[0]).astype(dtype)
                want = cycnn.conv2d_forward(x, w, b, stride, padding, algorithm="direct")
                dy = rng.standard_normal(want.shape).astype(dtype)
                wants = (want,) + cycnn.conv2d_backward(dy, x, w, stride, padding,
                                                        algorithm="direct")
                for threads in (1, 2):
                    kw = dict(algorithm="fast", threads=threads)
                    got = (cycnn.conv2d_forward(x, w, b, stride, padding, **kw),) + \\
                        cycnn.conv2d_backward(dy, x, w, stride, padding, **kw)
                    for g, e in zip(got, wants):
                        assert g.dtype == dtype and g.shape == e.shape
                        np.testing.assert_allclose(g, e, rtol=tol, atol=tol)
    print("variant ok:", kernels)
""")


def _cpu_has(variant):
    from cycnn import _dispatch
    needs = dict(_dispatch.variants()).get(variant)
    return needs is not None and set(needs) <= _dispatch.cpu_features()


@pytest.mark.parametrize("env, expected", [
    ({"CYCNN_FORCE_BASELINE": "1"}, "baseline"),
    ({"CYCNN_VARIANT": "avx2", "CYCNN_FORCE_BASELINE": "0"}, "avx2"),
    ({"CYCNN_VARIANT": "avx512", "CYCNN_FORCE_BASELINE": "0"}, "avx512"),
], ids=["baseline", "avx2", "avx512"])
def test_every_build_this_cpu_runs(env, expected):
    """Each build variant's register tiles (different heights, vector widths and, for
    SSE2, no FMA) give the direct loops' result, on 1 and 2 threads."""
    from cycnn import _dispatch
    if expected != "baseline" and not _cpu_has(expected):
        pytest.skip(f"this CPU cannot run the {expected} build")
    if expected != "baseline" and expected not in _dispatch.built("_fastconv"):
        pytest.skip(f"the {expected} build was not compiled (CYCNN_VARIANTS="
                    f"{os.environ.get('CYCNN_VARIANTS', '')!r} at build time)")
    proc = subprocess.run([sys.executable, "-c", VARIANT_SCRIPT], env=dict(os.environ, **env),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("variant ok: ", 1)[1].strip().startswith(expected)


# --------------------------------------------------------------------------- cache sizes

def _fake_sysfs(root, caches):
    for k, (level, kind, size, shared) in enumerate(caches):
        d = root / f"index{k}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
        (d / "shared_cpu_list").write_text(f"{shared}\n")


def test_cache_sizes_from_sysfs(tmp_path):
    _fake_sysfs(tmp_path, [(1, "Data", "48K", "0"), (1, "Instruction", "32K", "0"),
                           (2, "Unified", "2048K", "0"), (3, "Unified", "105M", "0-1")])
    found = _caches.detect(tmp_path)
    assert (found["L1d"], found["L2"], found["L3"]) == (48 * 1024, 2 << 20, 105 << 20)
    assert found["shared_by"] == {"L1d": 1, "L2": 1, "L3": 2}
    assert set(found["source"].values()) == {"sysfs"}


def test_cache_sizes_default_when_the_os_says_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(_caches.os, "sysconf_names", {}, raising=False)
    found = _caches.detect(tmp_path / "missing")
    assert {k: found[k] for k in _caches.DEFAULTS} == _caches.DEFAULTS
    assert set(found["source"].values()) == {"default"}


def test_a_shared_l2_is_shared_out(tmp_path, monkeypatch):
    """Four cores sharing a 4 MiB L2 (as on some Intel E-core clusters) give each 1 MiB."""
    _fake_sysfs(tmp_path, [(2, "Unified", "4096K", "0-3")])
    monkeypatch.setattr(_caches, "CACHES", _caches.detect(tmp_path))
    assert _caches.per_core("L2") == 1 << 20


@pytest.mark.parametrize("text, value", [("48K", 49152), ("2048K", 2 << 20), ("105M", 105 << 20),
                                         ("512", 512), ("1G", 1 << 30)])
def test_parse_size(text, value):
    assert _caches._parse_size(text) == value


def test_build_info_names_the_caches_and_the_chunk_size():
    info = cycnn.build_info()
    assert set(info["caches"]) >= {"L1d", "L2", "L3"}
    assert info["caches"]["L2"] > 0
    assert info["fast_chunk_bytes"] == conv.FAST_CHUNK_BYTES


def test_chunks_follow_the_l2_budget():
    """A larger budget never gives smaller chunks, and LeNet's layers fit one image (or
    several) per chunk in a quarter of a megabyte."""
    shape = ((32, 16, 32, 32), (32, 16, 3, 3), (1, 1), ((1, 1), (1, 1)))
    rows = [conv._FastPlan(*shape, np.float32, True, True, 1, budget).rows
            for budget in (1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22)]
    assert rows == sorted(rows) and rows[0] < rows[-1] == 32
    lenet2 = conv._FastPlan((64, 6, 12, 12), (16, 6, 5, 5), (1, 1), ((0, 0), (0, 0)),
                            np.float32, True, True, 1, 1 << 18)
    assert lenet2.rows == 8 and lenet2.gi >= 1


# --------------------------------------------------------------------------- routing
# The fast route takes plain convolutions (zeros padding, no dilation, one group), batched
# or not; every other argument goes to the im2col or direct loops, explicitly, even when
# algorithm="fast" is asked for. Each case is checked against the direct loops.

ROUTING_CASES = {
    "plain": dict(),
    "unbatched": dict(unbatched=True),
    "dilation": dict(dilation=2),
    "dilation-rows": dict(dilation=(2, 1)),
    "groups": dict(groups=2),
    "depthwise": dict(groups=4),
    "reflect": dict(padding_mode="reflect"),
    "replicate": dict(padding_mode="replicate"),
    "circular": dict(padding_mode="circular"),
    "empty-batch": dict(N=0),
}


def _routing_arrays(case, dtype):
    kw = dict(ROUTING_CASES[case])
    N = kw.pop("N", 3)
    unbatched = kw.pop("unbatched", False)
    G = kw.get("groups", 1)
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    x = rng.standard_normal((N, 4, 9, 8)).astype(dtype)
    w = rng.standard_normal((8, 4 // G, 3, 3)).astype(dtype)
    b = rng.standard_normal(8).astype(dtype)
    if unbatched:
        x = x[0]
    return x, w, b, kw, rng


def _spy_fast(monkeypatch):
    calls = []
    real = conv._fastconv

    class Spy:
        TILE = real.TILE

        def __getattr__(self, name):
            fn = getattr(real, name)
            if name in ("forward", "backward"):
                def spied(*args):
                    calls.append(name)
                    return fn(*args)
                return spied
            return fn

    monkeypatch.setattr(conv, "_fastconv", Spy())
    return calls


@DTYPES
@pytest.mark.parametrize("algorithm", ["auto", "fast"])
@pytest.mark.parametrize("case", list(ROUTING_CASES))
def test_every_argument_is_routed_to_a_route_that_takes_it(case, algorithm, dtype,
                                                           monkeypatch):
    x, w, b, kw, rng = _routing_arrays(case, dtype)
    calls = _spy_fast(monkeypatch)
    want = cycnn.conv2d_forward(x, w, b, 1, 1, algorithm="direct", **kw)
    got = cycnn.conv2d_forward(x, w, b, 1, 1, algorithm=algorithm, **kw)
    assert got.shape == want.shape and got.dtype == dtype
    np.testing.assert_allclose(got, want, **TOL[dtype])
    dy = rng.standard_normal(want.shape).astype(dtype)
    wants = cycnn.conv2d_backward(dy, x, w, 1, 1, algorithm="direct", **kw)
    gots = cycnn.conv2d_backward(dy, x, w, 1, 1, algorithm=algorithm, **kw)
    for g, e in zip(gots, wants):
        assert g.shape == e.shape and g.dtype == dtype
        np.testing.assert_allclose(g, e, **TOL[dtype])
    fast = case in ("plain", "unbatched")
    assert calls == (["forward", "backward"] if fast else []), calls


def test_the_routing_agrees_with_pytorch_on_every_argument():
    torch = torch_or_skip()
    F = torch.nn.functional
    for case in ROUTING_CASES:
        x, w, b, kw, rng = _routing_arrays(case, np.float64)
        mode = kw.pop("padding_mode", "zeros")
        xt = torch.from_numpy(x)
        if mode != "zeros":
            xt = F.pad(xt, (1, 1, 1, 1), mode=mode)
        want = F.conv2d(xt, torch.from_numpy(w), torch.from_numpy(b), 1,
                        1 if mode == "zeros" else 0, **kw).numpy()
        got = cycnn.conv2d_forward(x, w, b, 1, 1, padding_mode=mode, **kw)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10, err_msg=case)
