# Convolution kernels: the loops of docs/conv-forward.md, docs/conv-weight-gradient.md and
# docs/conv-input-gradient.md, written as the equations read.
#
# Preconditions, guaranteed by cycnn/conv.py before any call (which is why setup.py turns
# bounds and wraparound checks off):
#   * every array is C-contiguous and of one dtype (float32 or float64);
#   * xp is the input already zero-padded: (N, C, HP, WP);
#   * w is (F, C, KH, KW), b is (F,), y and dy are (N, F, OH, OW) with
#     OH = (HP - KH) // sh + 1 >= 1 and OW = (WP - KW) // sw + 1 >= 1;
#   * dxp has the shape of xp and dw the shape of w; threads >= 1.
# So every index below stays inside its array. The kernels write into preallocated outputs
# and return nothing.
#
# Like every CNN library, "convolution" here is a cross-correlation: the kernel is not flipped.

from cython cimport floating
from cython.parallel cimport prange

cdef extern from *:
    """
    #ifdef _OPENMP
    #define CYCNN_OPENMP 1
    #else
    #define CYCNN_OPENMP 0
    #endif
    """
    int CYCNN_OPENMP

#: True when this module was compiled with OpenMP (its prange loops can use threads).
OPENMP = bool(CYCNN_OPENMP)


def conv2d_forward(const floating[:, :, :, ::1] xp, const floating[:, :, :, ::1] w,
                   const floating[::1] b, floating[:, :, :, ::1] y,
                   Py_ssize_t sh, Py_ssize_t sw, int threads):
    cdef Py_ssize_t N = y.shape[0], F = y.shape[1], OH = y.shape[2], OW = y.shape[3]
    cdef Py_ssize_t C = w.shape[1], KH = w.shape[2], KW = w.shape[3]
    cdef Py_ssize_t n, f, c, i, j, p, q
    cdef floating wv
    # y[n,f,i,j] = b[f] + sum_{c,p,q} w[f,c,p,q] * xp[n, c, i*sh+p, j*sw+q]
    for n in prange(N, nogil=True, num_threads=threads, schedule="static"):
        for f in range(F):
            for i in range(OH):
                for j in range(OW):
                    y[n, f, i, j] = b[f]
            for c in range(C):
                for p in range(KH):
                    for q in range(KW):
                        wv = w[f, c, p, q]
                        for i in range(OH):
                            for j in range(OW):
                                y[n, f, i, j] += wv * xp[n, c, i * sh + p, j * sw + q]


def conv2d_backward_weight(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] xp,
                           floating[:, :, :, ::1] dw, Py_ssize_t sh, Py_ssize_t sw,
                           int threads):
    cdef Py_ssize_t N = dy.shape[0], F = dy.shape[1], OH = dy.shape[2], OW = dy.shape[3]
    cdef Py_ssize_t C = dw.shape[1], KH = dw.shape[2], KW = dw.shape[3]
    cdef Py_ssize_t n, f, c, i, j, p, q
    cdef floating acc
    # dw[f,c,p,q] = sum_{n,i,j} dy[n,f,i,j] * xp[n, c, i*sh+p, j*sw+q]
    for f in prange(F, nogil=True, num_threads=threads, schedule="static"):
        for c in range(C):
            for p in range(KH):
                for q in range(KW):
                    acc = 0
                    for n in range(N):
                        for i in range(OH):
                            for j in range(OW):
                                acc = acc + dy[n, f, i, j] * xp[n, c, i * sh + p, j * sw + q]
                    dw[f, c, p, q] = acc


def conv2d_backward_input(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] w,
                          floating[:, :, :, ::1] dxp, Py_ssize_t sh, Py_ssize_t sw,
                          int threads):
    cdef Py_ssize_t N = dy.shape[0], F = dy.shape[1], OH = dy.shape[2], OW = dy.shape[3]
    cdef Py_ssize_t C = w.shape[1], KH = w.shape[2], KW = w.shape[3]
    cdef Py_ssize_t n, f, c, i, j, p, q
    cdef floating wv
    # dxp[n, c, i*sh+p, j*sw+q] += w[f,c,p,q] * dy[n,f,i,j]   (summed over f, i, j, p, q:
    # each output scatters its gradient back to the inputs it read; dxp starts at zero)
    for n in prange(N, nogil=True, num_threads=threads, schedule="static"):
        for c in range(C):
            for f in range(F):
                for p in range(KH):
                    for q in range(KW):
                        wv = w[f, c, p, q]
                        for i in range(OH):
                            for j in range(OW):
                                dxp[n, c, i * sh + p, j * sw + q] += wv * dy[n, f, i, j]
