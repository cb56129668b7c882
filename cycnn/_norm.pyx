# Batch-norm kernels: the loops of docs/more-layers.md, one channel per thread.
#
# Preconditions, guaranteed by cycnn/norm.py before any call (which is why setup.py turns
# bounds and wraparound checks off):
#   * x, y, xhat, dy and dx are C-contiguous (N, C, L) views of one dtype (float32 or
#     float64), L = H*W for maps and 1 for (N, C) features; all have the same shape;
#   * the per-channel vectors have length C; N*L = M >= 1 (>= 2 for batch statistics);
#   * threads >= 1.
# Every loop runs over channels with prange: all the values of a channel, and every output
# written for it, belong to one thread, so nothing races and each sum is accumulated in
# one fixed order (in double, whatever the dtype): the results do not depend on the
# thread count.

from cython cimport floating
from cython.parallel cimport prange


def batch_stats(const floating[:, :, ::1] x, double[::1] mean, double[::1] var,
                int threads):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t n, c, k
    cdef double s, d, m
    # mean[c] = (1/M) sum_{n,k} x[n,c,k];  var[c] = (1/M) sum_{n,k} (x[n,c,k] - mean[c])^2
    # (two passes: the squares of deviations, not the difference of two large sums)
    for c in prange(C, nogil=True, num_threads=threads, schedule="static"):
        s = 0
        for n in range(N):
            for k in range(L):
                s = s + x[n, c, k]
        m = s / (N * L)
        s = 0
        for n in range(N):
            for k in range(L):
                d = x[n, c, k] - m
                s = s + d * d
        mean[c] = m
        var[c] = s / (N * L)


def batch_norm_forward(const floating[:, :, ::1] x, const double[::1] mean,
                       const double[::1] inv_std, const floating[::1] w,
                       const floating[::1] b, floating[:, :, ::1] xhat,
                       floating[:, :, ::1] y, int threads):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t n, c, k
    cdef double h
    # xhat[n,c,k] = (x[n,c,k] - mean[c]) * inv_std[c];  y[n,c,k] = w[c] * xhat[n,c,k] + b[c]
    for c in prange(C, nogil=True, num_threads=threads, schedule="static"):
        for n in range(N):
            for k in range(L):
                h = (x[n, c, k] - mean[c]) * inv_std[c]
                xhat[n, c, k] = <floating>h
                y[n, c, k] = <floating>(w[c] * h + b[c])


def batch_norm_backward(const floating[:, :, ::1] dy, const floating[:, :, ::1] xhat,
                        const double[::1] inv_std, const floating[::1] w,
                        floating[:, :, ::1] dx, double[::1] dw, double[::1] db,
                        bint batch_stats, int threads):
    cdef Py_ssize_t N = dy.shape[0], C = dy.shape[1], L = dy.shape[2]
    cdef Py_ssize_t n, c, k
    cdef double sb, sw, scale, mb, mw
    # db[c] = sum_{n,k} dy;  dw[c] = sum_{n,k} dy * xhat;  and with dxhat = w[c] * dy,
    # dx = (s/M) (M dxhat - sum dxhat - xhat sum(dxhat xhat))
    #    = w[c] * inv_std[c] * (dy - db[c]/M - xhat * dw[c]/M)    (batch statistics)
    # dx = w[c] * inv_std[c] * dy                                  (running statistics)
    for c in prange(C, nogil=True, num_threads=threads, schedule="static"):
        sb = 0
        sw = 0
        for n in range(N):
            for k in range(L):
                sb = sb + dy[n, c, k]
                sw = sw + dy[n, c, k] * xhat[n, c, k]
        db[c] = sb
        dw[c] = sw
        scale = w[c] * inv_std[c]
        mb = sb / (N * L) if batch_stats else 0.0
        mw = sw / (N * L) if batch_stats else 0.0
        for n in range(N):
            for k in range(L):
                dx[n, c, k] = <floating>(scale * (dy[n, c, k] - mb - xhat[n, c, k] * mw))
