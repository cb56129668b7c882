# Pooling kernels: the loops of docs/pooling.md, written as the equations read.
#
# Preconditions, guaranteed by cycnn/pool.py before any call (which is why setup.py turns
# bounds and wraparound checks off):
#   * every array is C-contiguous; x, y, dy and dx share one dtype (float32 or float64);
#   * the batch and channel axes are merged: one "plane" per (n, c) pair, so x and dx are
#     (N*C, H, W) (or (N*C, H*W) for the max-pool backward) and y, dy, argmax are
#     (N*C, OH, OW) (or (N*C, OH*OW));
#   * 1 <= KH <= H, 1 <= KW <= W, sh >= 1, sw >= 1, OH = (H - KH) // sh + 1 and
#     OW = (W - KW) // sw + 1 (rows and columns that no full window reaches are dropped);
#   * argmax holds indices into one H*W plane, written by max_pool2d_forward, so
#     0 <= argmax < H*W; threads >= 1.
# So every index below stays inside its array. The kernels write into preallocated outputs
# and return nothing. Every loop runs over planes with prange: a plane of dx belongs to one
# thread, so the scatters in the backward passes never race.

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
    cdef floating acc
    cdef floating area = <floating>(KH * KW)
    # y[n,c,i,j] = (1 / (KH*KW)) * sum_{p,q} x[n, c, i*sh+p, j*sw+q]
    for nc in prange(NC, nogil=True, num_threads=threads, schedule="static"):
        for i in range(OH):
            for j in range(OW):
                acc = 0
                for p in range(KH):
                    for q in range(KW):
                        acc = acc + x[nc, i * sh + p, j * sw + q]
                y[nc, i, j] = acc / area


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
