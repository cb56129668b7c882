# Pooling kernels: the loops of docs/pooling.md, written as the equations read.
#
# Preconditions, guaranteed by cycnn/pool.py before any call (which is why setup.py turns
# bounds and wraparound checks off):
#   * every array is C-contiguous; x, y, dy and dx share one dtype (float32 or float64);
#   * the batch and channel axes are merged: one "plane" per (n, c) pair, so x and dx are
#     (N*C, H, W) (or (N*C, H*W) for the max-pool backward) and y, dy, argmax are
#     (N*C, OH, OW) (or (N*C, OH*OW));
#   * the plain kernels (max_pool2d_forward, avg_pool2d_forward, avg_pool2d_backward) get
#     windows that lie inside x: 1 <= KH <= H, 1 <= KW <= W, sh >= 1, sw >= 1,
#     OH = (H - KH) // sh + 1 and OW = (W - KW) // sw + 1 (no padding, no dilation; rows and
#     columns that no full window reaches are dropped);
#   * the *_clipped kernels get any window of PyTorch's rules: window (i, j) starts at
#     (i*sh - pt, j*sw - pl) of x (pt, pl >= 0: it may start in the padding) and its tap
#     (p, q) reads (i*sh - pt + p*rh, j*sw - pl + q*rw); the taps that land inside x are
#     plo[i] <= p < phi[i] and qlo[j] <= q < qhi[j] (geometry.window_taps), and every window
#     has at least one (plo[i] < phi[i], qlo[j] < qhi[j]); average pooling divides window
#     (i, j) by ah[i] * aw[j] (pool.py: the window's area, the count of its taps inside x,
#     or divisor_override), which is never 0;
#   * argmax holds indices into one H*W plane, written by a max_pool2d_forward kernel, so
#     0 <= argmax < H*W; threads >= 1.
# So every index below stays inside its array: padding is never read, only skipped. The
# plain kernels are kept apart because the loops with the same bounds for every window
# run up to a third faster than loops whose bounds change from window to window. The
# kernels write into preallocated outputs and return nothing. Every loop runs over planes
# with prange: a plane of dx belongs to one thread, so the scatters in the backward passes
# never race.

from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t


def max_pool2d_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                       int64_t[:, :, ::1] argmax, Py_ssize_t KH, Py_ssize_t KW,
                       Py_ssize_t sh, Py_ssize_t sw, int threads):
    cdef Py_ssize_t NC = y.shape[0], OH = y.shape[1], OW = y.shape[2], W = x.shape[2]
    cdef Py_ssize_t nc, i, j, p, q, h, w, best_at
    cdef floating v, best
    cdef bint take, has_nan
    # y[n,c,i,j] = max_{p,q} x[n, c, i*sh+p, j*sw+q]; argmax[n,c,i,j] = (i*sh+p)*W + (j*sw+q)
    # of the first maximum in row-major order (strict >, so a tie keeps the earlier cell).
    # A NaN beats every number: the window's first NaN wins and y is NaN, as in PyTorch.
    # Random data makes "is this the new maximum?" a coin toss, so the loop avoids
    # branches on it: best follows the a > b ? a : b pattern (one maxss/maxsd), the index
    # moves by integer arithmetic on the 0/1 comparison, and a window is searched again for
    # its first NaN only when it holds one.
    for nc in prange(NC, nogil=True, num_threads=threads, schedule="static"):
        for i in range(OH):
            for j in range(OW):
                best = x[nc, i * sh, j * sw]
                best_at = (i * sh) * W + j * sw
                has_nan = False
                for p in range(KH):
                    h = i * sh + p
                    for q in range(KW):
                        w = j * sw + q
                        v = x[nc, h, w]
                        take = v > best
                        best_at = best_at + take * (h * W + w - best_at)
                        has_nan = has_nan | (v != v)
                        best = v if v > best else best
                if has_nan:
                    for p in range(KH * KW - 1, -1, -1):  # backwards: the first NaN is kept
                        h = i * sh + p // KW
                        w = j * sw + p % KW
                        if x[nc, h, w] != x[nc, h, w]:
                            best = x[nc, h, w]
                            best_at = h * W + w
                y[nc, i, j] = best
                argmax[nc, i, j] = best_at


def max_pool2d_forward_clipped(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                               int64_t[:, :, ::1] argmax, Py_ssize_t sh, Py_ssize_t sw,
                               Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t rh, Py_ssize_t rw,
                               const int64_t[::1] plo, const int64_t[::1] phi,
                               const int64_t[::1] qlo, const int64_t[::1] qhi, int threads):
    cdef Py_ssize_t NC = y.shape[0], OH = y.shape[1], OW = y.shape[2], W = x.shape[2]
    cdef Py_ssize_t nc, i, j, p, q, h, w, h0, w0, p0, p1, q0, q1, best_at
    cdef floating v, best
    cdef bint take, has_nan
    # y[n,c,i,j] = max_{p,q} x[n, c, h0 + p*rh, w0 + q*rw] over the taps inside x, with
    # (h0, w0) = (i*sh - pt, j*sw - pl); argmax[n,c,i,j] = h*W + w of the first maximum in
    # row-major order (strict >, so a tie keeps the earlier cell).
    # A NaN beats every number: the window's first NaN wins and y is NaN, as in PyTorch.
    # Random data makes "is this the new maximum?" a coin toss, so the loop avoids
    # branches on it: best follows the a > b ? a : b pattern (one maxss/maxsd), the index
    # moves by integer arithmetic on the 0/1 comparison, and a window is searched again for
    # its first NaN only when it holds one. The tap ranges are copied into locals (p0, p1,
    # q0, q1) so that the compiler keeps them in registers across the stores to y.
    for nc in prange(NC, nogil=True, num_threads=threads, schedule="static"):
        for i in range(OH):
            h0 = i * sh - pt
            p0 = plo[i]
            p1 = phi[i]
            for j in range(OW):
                w0 = j * sw - pl
                q0 = qlo[j]
                q1 = qhi[j]
                h = h0 + p0 * rh
                best = x[nc, h, w0 + q0 * rw]
                best_at = h * W + w0 + q0 * rw
                has_nan = False
                for p in range(p0, p1):
                    w = w0 + q0 * rw
                    for q in range(q0, q1):
                        v = x[nc, h, w]
                        take = v > best
                        best_at = best_at + take * (h * W + w - best_at)
                        has_nan = has_nan | (v != v)
                        best = v if v > best else best
                        w = w + rw
                    h = h + rh
                if has_nan:
                    for p in range(p1 - 1, p0 - 1, -1):  # backwards: the first NaN is kept
                        h = h0 + p * rh
                        for q in range(q1 - 1, q0 - 1, -1):
                            w = w0 + q * rw
                            if x[nc, h, w] != x[nc, h, w]:
                                best = x[nc, h, w]
                                best_at = h * W + w
                y[nc, i, j] = best
                argmax[nc, i, j] = best_at


def max_pool2d_backward(const floating[:, ::1] dy, const int64_t[:, ::1] argmax,
                        floating[:, ::1] dx, int threads):
    cdef Py_ssize_t NC = dy.shape[0], OHW = dy.shape[1], HW = dx.shape[1]
    cdef Py_ssize_t nc, k, r
    # dx[n,c,argmax[n,c,k]] += dy[n,c,k]: each window's gradient goes to its one winner;
    # overlapping windows that share a winner add up. dx is zeroed here, plane by plane.
    for nc in prange(NC, nogil=True, num_threads=threads, schedule="static"):
        for r in range(HW):
            dx[nc, r] = 0
        for k in range(OHW):
            dx[nc, argmax[nc, k]] += dy[nc, k]


def avg_pool2d_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                       Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t sw,
                       int threads):
    cdef Py_ssize_t NC = y.shape[0], OH = y.shape[1], OW = y.shape[2]
    cdef Py_ssize_t nc, i, j, p, q
    cdef floating area = <floating>(KH * KW)
    # y[n,c,i,j] = (1 / (KH*KW)) * sum_{p,q} x[n, c, i*sh+p, j*sw+q]
    # The sums of one output row grow tap by tap, j innermost: the adds of neighbouring
    # windows are independent, where one window at a time is a chain of KH*KW dependent
    # adds (in the same order, so the result is the same to the bit).
    for nc in prange(NC, nogil=True, num_threads=threads, schedule="static"):
        for i in range(OH):
            for j in range(OW):
                y[nc, i, j] = 0
            for p in range(KH):
                for q in range(KW):
                    for j in range(OW):
                        y[nc, i, j] += x[nc, i * sh + p, j * sw + q]
            for j in range(OW):
                y[nc, i, j] = y[nc, i, j] / area


def avg_pool2d_forward_clipped(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                               Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                               const int64_t[::1] plo, const int64_t[::1] phi,
                               const int64_t[::1] qlo, const int64_t[::1] qhi,
                               const floating[::1] ah, const floating[::1] aw, int threads):
    cdef Py_ssize_t NC = y.shape[0], OH = y.shape[1], OW = y.shape[2]
    cdef Py_ssize_t nc, i, j, p, q, h0, w0, p0, p1, q0, q1
    cdef floating acc, ahi
    # y[n,c,i,j] = (1 / (ah[i]*aw[j])) * sum_{p,q} x[n, c, h0 + p, w0 + q] over the taps
    # inside x, with (h0, w0) = (i*sh - pt, j*sw - pl); ah[i]*aw[j] is KH*KW without padding
    for nc in prange(NC, nogil=True, num_threads=threads, schedule="static"):
        for i in range(OH):
            h0 = i * sh - pt
            p0 = plo[i]
            p1 = phi[i]
            ahi = ah[i]
            for j in range(OW):
                w0 = j * sw - pl
                q0 = qlo[j]
                q1 = qhi[j]
                acc = 0
                for p in range(p0, p1):
                    for q in range(q0, q1):
                        acc = acc + x[nc, h0 + p, w0 + q]
                y[nc, i, j] = acc / (ahi * aw[j])


def avg_pool2d_backward(const floating[:, :, ::1] dy, floating[:, :, ::1] dx,
                        Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t sw,
                        int threads):
    cdef Py_ssize_t NC = dy.shape[0], OH = dy.shape[1], OW = dy.shape[2]
    cdef Py_ssize_t H = dx.shape[1], W = dx.shape[2]
    cdef Py_ssize_t nc, i, j, p, q, h, w
    cdef floating share
    cdef floating area = <floating>(KH * KW)
    # dx[n, c, i*sh+p, j*sw+q] += dy[n,c,i,j] / (KH*KW): every cell of a window gets an
    # equal share (1/4 for 2x2, 1/9 for 3x3); overlapping windows add up. dx is zeroed here.
    for nc in prange(NC, nogil=True, num_threads=threads, schedule="static"):
        for h in range(H):
            for w in range(W):
                dx[nc, h, w] = 0
        for i in range(OH):
            for j in range(OW):
                share = dy[nc, i, j] / area
                for p in range(KH):
                    for q in range(KW):
                        dx[nc, i * sh + p, j * sw + q] += share


def avg_pool2d_backward_clipped(const floating[:, :, ::1] dy, floating[:, :, ::1] dx,
                                Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                                const int64_t[::1] plo, const int64_t[::1] phi,
                                const int64_t[::1] qlo, const int64_t[::1] qhi,
                                const floating[::1] ah, const floating[::1] aw, int threads):
    cdef Py_ssize_t NC = dy.shape[0], OH = dy.shape[1], OW = dy.shape[2]
    cdef Py_ssize_t H = dx.shape[1], W = dx.shape[2]
    cdef Py_ssize_t nc, i, j, p, q, h, w, h0, w0, p0, p1, q0, q1
    cdef floating share, ahi
    # dx[n, c, h0 + p, w0 + q] += dy[n,c,i,j] / (ah[i]*aw[j]) for the taps inside x: every
    # cell of a window gets an equal share (1/4 for 2x2, 1/9 for 3x3); the padding's share
    # goes nowhere; overlapping windows add up. dx is zeroed here.
    for nc in prange(NC, nogil=True, num_threads=threads, schedule="static"):
        for h in range(H):
            for w in range(W):
                dx[nc, h, w] = 0
        for i in range(OH):
            h0 = i * sh - pt
            p0 = plo[i]
            p1 = phi[i]
            ahi = ah[i]
            for j in range(OW):
                w0 = j * sw - pl
                q0 = qlo[j]
                q1 = qhi[j]
                share = dy[nc, i, j] / (ahi * aw[j])
                for p in range(p0, p1):
                    for q in range(q0, q1):
                        dx[nc, h0 + p, w0 + q] += share
