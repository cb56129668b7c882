"""Plant typical bugs one at a time and check that the test suite catches each one.

A test suite that passes proves little unless it would fail on a wrong program. This
script edits the source with one small, realistic mistake (a gradient scatter that
overwrites instead of adding, a gradient not averaged over the batch, a filter not
rotated, ...), runs the tests that should notice, and restores the file. Kernel (.pyx)
mutations are rebuilt into the baseline build only and the tests run with
``CYCNN_FORCE_BASELINE=1``, so the variant builds on disk do not hide the planted bug.

    python scripts/plant_bugs.py            # every mutation
    python scripts/plant_bugs.py --list     # what they are
    python scripts/plant_bugs.py relu-at-0  # one of them

Exit status 1 when a planted bug survives (the tests passed with it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (name, file, original text, planted text, tests that must fail)
MUTATIONS = [
    ("conv-dx-overwrites", "cycnn/_conv.pyx",
     "dxp[n, c, i * sh + p * rh, j * sw + q * rw] += wv * dy[n, f, i, j]",
     "dxp[n, c, i * sh + p * rh, j * sw + q * rw] = wv * dy[n, f, i, j]",
     ["tests/test_conv.py"]),
    ("conv-dw-transposed-taps", "cycnn/_conv.pyx",
     "acc = acc + dy[n, f, i, j] * xp[n, c0 + c, i * sh + p * rh,",
     "acc = acc + dy[n, f, i, j] * xp[n, c0 + c, i * sh + q * rh,",
     ["tests/test_conv.py"]),
    ("im2col-stride-ignored", "cycnn/_conv.pyx",
     "cols[r, k + j] = xp[n, c, i * sh + p * rh, j * sw + q * rw]",
     "cols[r, k + j] = xp[n, c, i * sh + p * rh, j + q * rw]",
     ["tests/test_conv_algorithms.py"]),
    ("col2im-overwrites", "cycnn/_conv.pyx",
     "dxp[n, c, i * sh + p * rh, j + q * rw] += dcols[r, k + j]",
     "dxp[n, c, i * sh + p * rh, j + q * rw] = dcols[r, k + j]",
     ["tests/test_conv_algorithms.py"]),
    ("fast-dx-scatter-overwrites", "cycnn/_fastconv.pyx",
     "                d[l] += acc[r * NL + l]",
     "                d[l] = acc[r * NL + l]",
     ["tests/test_conv_fast.py"]),
    ("fast-planner-ignores-its-costs", "cycnn/conv.py",
     'if FAST_FORCE_COPIES == nq or (FAST_FORCE_COPIES == "most" and nq == KW):',
     'if FAST_FORCE_COPIES in (nq, "most" if nq == KW else None):',
     ["tests/test_conv_fast.py"]),
    ("fast-group-sums-drop-the-last", "cycnn/_fastconv.pyx",
     "        for gg in range(G):\n            for k in range(K):\n"
     "                dw[f, k] += pdw0[(gg * Fp + f) * Kdot + k]",
     "        for gg in range(G - 1):\n            for k in range(K):\n"
     "                dw[f, k] += pdw0[(gg * Fp + f) * Kdot + k]",
     ["tests/test_conv_fast.py"]),
    ("fast-left-padding-off-by-one", "cycnn/_fastconv.pyx",
     "        lo = (pl - e + sw - 1) // sw if pl > e else 0\n        d = W - 1 + pl - e\n"
     "        hi = d // sw + 1 if d >= 0 else 0\n        if hi > Wc:\n            hi = Wc\n"
     "        if lo > hi:",
     "        lo = (pl - e) // sw if pl > e else 0\n        d = W - 1 + pl - e\n"
     "        hi = d // sw + 1 if d >= 0 else 0\n        if hi > Wc:\n            hi = Wc\n"
     "        if lo > hi:",
     ["tests/test_conv_fast.py"]),
    ("fast-groups-overwrite", "cycnn/_fastconv.pyx",
     "dw[f, k] += pdw0[(gg * Fp + f) * Kdot + k]",
     "dw[f, k] = pdw0[(gg * Fp + f) * Kdot + k]",
     ["tests/test_conv_fast.py"]),
    ("fast-db-last-chunk-only", "cycnn/_fastconv.pyx",
     "        db[f] += acc",
     "        db[f] = acc",
     ["tests/test_conv_fast.py"]),
    ("fast-phase-offset-ignored", "cycnn/conv.py",
     "            + q // nq * (nq // sw)\n",
     "            + q // nq\n",
     ["tests/test_conv_fast.py"]),
    ("fast-interleaved-row-pitch", "cycnn/_fastconv.pyx",
     "                s = yw + f * ld + (ii * gi + g) * Wc",
     "                s = yw + f * ld + (g * gi + ii) * Wc",
     ["tests/test_conv_fast.py"]),
    ("fastpool-last-tie-wins", "cycnn/_fastpool.pyx",
     "            down = <int64_t>(bottom > top)",
     "            down = <int64_t>(bottom >= top)",
     ["tests/test_pooling_fast.py"]),
    ("fastpool-bottom-right-index", "cycnn/_fastpool.pyx",
     "at_bottom = W + <int64_t>(d > c)",
     "at_bottom = W",
     ["tests/test_pooling_fast.py"]),
    ("bench-interleaved-timed-cold", "benchmarks/_bench.py",
     "            current = step\n            fn()\n",
     "            current = step\n",
     ["tests/test_benchmarks.py::"
      "test_interleaved_sets_each_state_once_per_change_and_warms_before_timing"]),
    ("fastpool-nan-in-last-cell-missed", "cycnn/_fastpool.pyx",
     "nan = nan | (a != a) | (b != b) | (c != c) | (d != d)",
     "nan = nan | (a != a) | (b != b) | (c != c)",
     ["tests/test_pooling_fast.py"]),
    ("fastpool-route-ignores-stride", "cycnn/pool.py",
     "geo.inside and geo.size == geo.stride == (2, 2) and",
     "geo.inside and geo.size == (2, 2) and",
     ["tests/test_pooling_fast.py"]),
    ("shard-loss-gradient-unscaled", "cycnn/_sharding.py",
     "    dy *= dy.dtype.type(x.shape[0] / N)",
     "    pass",
     ["tests/test_threads.py"]),
    ("shard-gradients-not-summed", "cycnn/_sharding.py",
     "            np.add(total, g[j], out=total)",
     "            np.copyto(total, g[j])",
     ["tests/test_threads.py"]),
    ("shard-weighted-loss-sharded", "cycnn/_sharding.py",
     '    return o["weight"] is None and o["reduction"] == "mean" and \\',
     '    return o["reduction"] == "mean" and \\',
     ["tests/test_threads.py"]),
    ("shard-custom-layer-sent-to-worker", "cycnn/_sharding.py",
     '        layer.per_sample and type(layer).__module__.startswith("cycnn.")',
     "        layer.per_sample",
     ["tests/test_threads.py"]),
    ("shard-worker-keeps-old-model", "cycnn/_sharding.py",
     "        if _same(last_params, params) and layout.x[1][1:] == sample_shape \\",
     "        if layout.x[1][1:] == sample_shape \\",
     ["tests/test_threads.py"]),
    ("shard-stale-answer-read", "cycnn/_sharding.py",
     "                _discard(i)  # its answer may still come: never read a stale one",
     "                pass",
     ["tests/test_threads.py"]),
    ("shard-here-skips-a-shard", "cycnn/_sharding.py",
     "        for s0, s1 in spans[1:]:",
     "        for s0, s1 in spans[2:]:",
     ["tests/test_threads.py"]),
    ("fit-gathers-the-wrong-batch-ahead", "cycnn/training.py",
     "            self.ahead = (b, self.get(b))",
     "            self.ahead = (b, self.get(b - 1))",
     ["tests/test_threads.py"]),
    ("shard-meanwhile-never-called", "cycnn/_sharding.py",
     "        if work is not None:\n            work()",
     "        if work is None:\n            work()",
     ["tests/test_threads.py"]),
    ("shard-sees-process-threads", "cycnn/_threads.py",
     "    return _pins.n or _num_threads",
     "    return _num_threads",
     ["tests/test_threads.py"]),
    ("remembered-check-takes-true-for-1", "cycnn/geometry.py",
     "            if te is int:  # the usual sizes, strides and paddings, without a call each",
     "            if te in (int, bool):  # the usual sizes, strides and paddings, quicker",
     ["tests/test_conv_bad_input.py", "tests/test_pool_options.py"]),
    ("float-dtype-first-array-only", "cycnn/_validate.py",
     "                    if all(a.dtype == dt for a in arrays[1:]):",
     "                    if True:",
     ["tests/test_conv.py"]),
    ("shard-worker-dies-on-ctrl-c", "cycnn/_sharding.py",
     "    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the calling process",
     "    pass",
     ["tests/test_threads.py"]),
    ("shard-fallback-runs-whole-steps", "cycnn/training.py",
     "    threads = StepThreads(get_num_threads(), one=_sharding.in_this_process",
     "    threads = StepThreads(get_num_threads(), one=None and _sharding.in_this_process",
     ["tests/test_threads.py"]),
    ("heap-trimmed-between-steps", "cycnn/_memory.py",
     "TRIM_THRESHOLD = 64 << 20",
     "TRIM_THRESHOLD = 1 << 20",
     ["tests/test_memory.py"]),
    ("plain-loss-not-averaged", "cycnn/losses.py",
     "            denominator = float(len(t))",
     "            denominator = 1.0",
     ["tests/test_loss_options.py"]),
    ("shapes-remembered-past-new-parameters", "cycnn/model.py",
     "if seen is not None and seen[0] == start and seen[2] == params and",
     "if seen is not None and seen[0] == start and",
     ["tests/test_model.py"]),
    ("shard-mapping-not-grown", "cycnn/_sharding.py",
     "        if w is not None and (w.nbytes < nbytes or w.proc.poll() is not None):",
     "        if w is not None and w.proc.poll() is not None:",
     ["tests/test_threads.py"]),
    ("fast-route-takes-dilation-and-groups", "cycnn/conv.py",
     "    fast = plain and groups == 1 and yshape[0] > 0",
     "    fast = yshape[0] > 0",
     ["tests/test_conv_fast.py"]),
    ("fastpool-takes-padded-windows", "cycnn/pool.py",
     "if FAST_2X2 and geo.inside and geo.size == geo.stride == (2, 2)",
     "if FAST_2X2 and geo.size == geo.stride == (2, 2)",
     ["tests/test_pooling_fast.py"]),
    ("maxpool-dx-overwrites", "cycnn/_pool.pyx",
     "dx[nc, argmax[nc, k]] += dy[nc, k]",
     "dx[nc, argmax[nc, k]] = dy[nc, k]",
     ["tests/test_pooling.py"]),
    ("maxpool-last-tie-wins", "cycnn/_pool.pyx",
     "                        w = j * sw + q\n"
     "                        v = x[nc, h, w]\n"
     "                        take = v > best",
     "                        w = j * sw + q\n"
     "                        v = x[nc, h, w]\n"
     "                        take = v >= best",
     ["tests/test_pooling.py"]),
    ("avgpool-wrong-share", "cycnn/_pool.pyx",
     "share = dy[nc, i, j] / area",
     "share = dy[nc, i, j] / (KH + KW)",
     ["tests/test_pooling.py"]),
    ("relu-at-0", "cycnn/_act.pyx",
     "dx[i] = dy[i] if x[i] > 0 else 0",
     "dx[i] = dy[i] if x[i] >= 0 else 0",
     ["tests/test_activations.py"]),
    ("dense-dw-averaged", "cycnn/dense.py",
     "dx, dw, db = dy @ w, dy.T @ x, dy.sum(axis=0)",
     "dx, dw, db = dy @ w, dy.T @ x / x.shape[0], dy.sum(axis=0)",
     ["tests/test_dense.py"]),
    ("ce-not-averaged", "cycnn/losses.py",
     "grad = grad / dt.type(denominator) if denominator else grad",
     "grad = grad",
     ["tests/test_losses.py"]),
    ("reference-no-rotation", "cycnn/reference.py",
     "correlate(dyd_full[:, fi], rotate180(wd[fi]), ",
     "correlate(dyd_full[:, fi], wd[fi], ",
     ["tests/test_conv.py"]),
    ("output-size-off-by-one", "cycnn/geometry.py",
     "        out = room // stride + 1\n",
     "        out = (room + 1) // stride + 1\n",
     ["tests/test_conv.py"]),
    ("sgd-momentum-squared", "cycnn/optim.py",
     "buf *= self.momentum",
     "buf *= self.momentum ** 2",
     ["tests/test_optim.py"]),
    ("fit-same-order-every-epoch", "cycnn/training.py",
     "order = epoch_order(N, seed, epoch) if shuffle else None",
     "order = epoch_order(N, seed, 0) if shuffle else None",
     ["tests/test_vs_torch_training.py", "tests/test_model.py"]),
    ("backward-keeps-cache-after-fit", "cycnn/training.py",
     "    model.clear_cache()  # the last batch",
     "    pass  # the last batch",
     ["tests/test_model.py"]),
    ("sequential-forgets-params-below", "cycnn/model.py",
     "below = below or bool(layer.params)",
     "below = bool(layer.params)",
     ["tests/test_model.py"]),
    ("conv-layer-stride-dropped", "cycnn/layers.py",
     "return (self.stride, self.pads, self.dilation, self.groups, self.padding_mode)",
     "return (1, self.pads, self.dilation, self.groups, self.padding_mode)",
     ["tests/test_layers.py"]),
    ("checkpoint-duplicates-accepted", "cycnn/checkpoint.py",
     "    if dupes:\n        raise fail(",
     "    if False:\n        raise fail(",
     ["tests/test_checkpoint.py"]),
    ("batchnorm-no-variance-path", "cycnn/_norm.pyx",
     "scale * (dy[n, c, k] - mb - xhat[n, c, k] * mw)",
     "scale * (dy[n, c, k] - mb)",
     ["tests/test_more_layers.py"]),
    ("batchnorm-running-var-biased", "cycnn/norm.py",
     "var * (M / (M - 1))",
     "var",
     ["tests/test_more_layers.py"]),
    ("dropout-no-rescale", "cycnn/dropout.py",
     "return x * keep * x.dtype.type(1 / (1 - p)), keep",
     "return x * keep, keep",
     ["tests/test_more_layers.py"]),
    ("sgd-nesterov-ignored", "cycnn/optim.py",
     "g = g + self.momentum * buf if self.nesterov else buf",
     "g = buf",
     ["tests/test_optim.py"]),
    ("adamw-decay-through-the-gradient", "cycnn/optim.py",
     "w *= 1 - self.lr * self.weight_decay",
     "g = g + self.weight_decay * w",
     ["tests/test_training_recipes.py"]),
    ("onecycle-fraction-from-zero", "cycnn/schedules.py",
     "return (t - start) / (end - start), lr0, lr1, m0, m1",
     "return t / end, lr0, lr1, m0, m1",
     ["tests/test_training_recipes.py"]),
    ("augment-same-every-epoch", "cycnn/training.py",
     "aug_rng = np.random.default_rng([seed, epoch, 1])",
     "aug_rng = np.random.default_rng([seed, 0, 1])",
     ["tests/test_training_recipes.py"]),
]


def _build_baseline(restore=False):
    """Rebuild the baseline kernels only; ``restore`` rebuilds as a normal build does, so
    that the build record (cycnn._cpu.REQUESTED) names every variant again, as it did
    before the first mutation."""
    env = dict(os.environ) if restore else dict(os.environ, CYCNN_VARIANTS="")
    if restore:
        env.pop("CYCNN_VARIANTS", None)
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=ROOT,
                   env=env, check=True, capture_output=True)


def _run(tests):
    env = dict(os.environ, CYCNN_FORCE_BASELINE="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                           *tests], cwd=ROOT, env=env, capture_output=True, text=True)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-200:]
    return proc.returncode, last


def plant(name, path, old, new, tests):
    src = ROOT / path
    text = src.read_text()
    if text.count(old) != 1:
        return "stale", f"the text to mutate occurs {text.count(old)} times in {path}"
    kernel = path.endswith(".pyx")
    try:
        src.write_text(text.replace(old, new))
        if kernel:
            _build_baseline()
        rc, last = _run(tests)
    finally:
        src.write_text(text)
        if kernel:
            _build_baseline()
    return ("caught" if rc == 1 else "SURVIVED" if rc == 0 else f"error {rc}"), last


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutations to plant (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.names or m[0] in args.names]
    if args.list or not chosen:
        for name, path, old, new, _tests in MUTATIONS:
            print(f"{name:32} {path}: {old!r} -> {new!r}")
        return 0
    survived = 0
    for name, path, old, new, tests in chosen:
        t0 = time.perf_counter()
        verdict, detail = plant(name, path, old, new, tests)
        survived += verdict != "caught"
        print(f"{verdict:9} {name:32} {time.perf_counter() - t0:5.0f} s  {detail}", flush=True)
    if any(path.endswith(".pyx") for _, path, _, _, _ in chosen):
        _build_baseline(restore=True)  # once: the variant builds are named again
    print(f"{len(chosen) - survived} of {len(chosen)} planted bugs caught")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
