# Convolution kernels: the loops of docs/conv-forward.md, docs/conv-weight-gradient.md,
# docs/conv-input-gradient.md and docs/conv-dilation-groups.md, written as the equations read.
#
# Preconditions, guaranteed by cycnn/conv.py before any call (which is why setup.py turns
# bounds and wraparound checks off):
#   * every array is C-contiguous and of one dtype (float32 or float64);
#   * xp is the input already padded: (N, C, HP, WP);
#   * groups G >= 1 divides C and F; w is (F, Cg, KH, KW) with Cg = C / G, and filter f
#     reads the Cg channels of its group, c0 = (f // (F / G)) * Cg onwards;
#   * the dilation (rh, rw) >= 1 puts tap (p, q) at (p * rh, q * rw) within the window;
#   * b is (F,), y and dy are (N, F, OH, OW) with (OH - 1) * sh + (KH - 1) * rh < HP and
#     (OW - 1) * sw + (KW - 1) * rw < WP (conv.py's output-size formula, or a larger xp);
#   * dxp has the shape of xp and dw the shape of w; threads >= 1.
# So every index below stays inside its array. The kernels write into preallocated outputs
# and return nothing. A transposed convolution (conv.py) runs the same three loops with
# the roles of its arrays exchanged.
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
                   Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t rh, Py_ssize_t rw,
                   Py_ssize_t groups, int threads):
    cdef Py_ssize_t N = y.shape[0], F = y.shape[1], OH = y.shape[2], OW = y.shape[3]
    cdef Py_ssize_t Cg = w.shape[1], KH = w.shape[2], KW = w.shape[3], Fg = F // groups
    cdef Py_ssize_t n, f, c, c0, i, j, p, q
    cdef floating wv
    # y[n,f,i,j] = b[f] + sum_{c,p,q} w[f,c,p,q] * xp[n, c0+c, i*sh+p*rh, j*sw+q*rw]
    # with c0 = (f // Fg) * Cg the first channel of filter f's group
    for n in prange(N, nogil=True, num_threads=threads, schedule="static"):
        for f in range(F):
            c0 = (f // Fg) * Cg
            for i in range(OH):
                for j in range(OW):
                    y[n, f, i, j] = b[f]
            for c in range(Cg):
                for p in range(KH):
                    for q in range(KW):
                        wv = w[f, c, p, q]
                        for i in range(OH):
                            for j in range(OW):
                                y[n, f, i, j] += wv * xp[n, c0 + c, i * sh + p * rh,
                                                         j * sw + q * rw]


def conv2d_backward_weight(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] xp,
                           floating[:, :, :, ::1] dw, Py_ssize_t sh, Py_ssize_t sw,
                           Py_ssize_t rh, Py_ssize_t rw, Py_ssize_t groups, int threads):
    cdef Py_ssize_t N = dy.shape[0], F = dy.shape[1], OH = dy.shape[2], OW = dy.shape[3]
    cdef Py_ssize_t Cg = dw.shape[1], KH = dw.shape[2], KW = dw.shape[3], Fg = F // groups
    cdef Py_ssize_t n, f, c, c0, i, j, p, q
    cdef floating acc
    # dw[f,c,p,q] = sum_{n,i,j} dy[n,f,i,j] * xp[n, c0+c, i*sh+p*rh, j*sw+q*rw]
    # with c0 = (f // Fg) * Cg, as in the forward pass
    for f in prange(F, nogil=True, num_threads=threads, schedule="static"):
        c0 = (f // Fg) * Cg
        for c in range(Cg):
            for p in range(KH):
                for q in range(KW):
                    acc = 0
                    for n in range(N):
                        for i in range(OH):
                            for j in range(OW):
                                acc = acc + dy[n, f, i, j] * xp[n, c0 + c, i * sh + p * rh,
                                                                j * sw + q * rw]
                    dw[f, c, p, q] = acc


def conv2d_backward_input(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] w,
                          floating[:, :, :, ::1] dxp, Py_ssize_t sh, Py_ssize_t sw,
                          Py_ssize_t rh, Py_ssize_t rw, Py_ssize_t groups, int threads):
    cdef Py_ssize_t N = dy.shape[0], F = dy.shape[1], OH = dy.shape[2], OW = dy.shape[3]
    cdef Py_ssize_t C = dxp.shape[1], Cg = w.shape[1], KH = w.shape[2], KW = w.shape[3]
    cdef Py_ssize_t Fg = F // groups
    cdef Py_ssize_t n, f, c, g, i, j, p, q
    cdef floating wv
    # dxp[n, c, i*sh+p*rh, j*sw+q*rw] += w[f, c - g*Cg, p, q] * dy[n,f,i,j]   (summed over
    # the filters f of channel c's group g = c // Cg and over i, j, p, q: each output
    # scatters its gradient back to the inputs it read; dxp starts at zero)
    for n in prange(N, nogil=True, num_threads=threads, schedule="static"):
        for c in range(C):
            g = c // Cg
            for f in range(g * Fg, g * Fg + Fg):
                for p in range(KH):
                    for q in range(KW):
                        wv = w[f, c - g * Cg, p, q]
                        for i in range(OH):
                            for j in range(OW):
                                dxp[n, c, i * sh + p * rh, j * sw + q * rw] += wv * dy[n, f, i, j]


# --- The im2col route (docs/performance.md) -------------------------------------------
# The same sums as above, arranged so that one matrix product does the arithmetic:
# lay every window of xp out as a column, then y = w (F x C*KH*KW) @ cols. Row r of cols
# is the kernel tap (c, p, q) with r = (c*KH + p)*KW + q; column k is the output
# position (n, i, j) with k = (n*OH + i)*OW + j. With groups, the rows of one group's
# channels are one block of Cg*KH*KW consecutive rows, and conv.py multiplies each group's
# filters with its own block. The Python side (conv.py) allocates cols for a chunk of the
# batch and calls BLAS through NumPy.

def im2col(const floating[:, :, :, ::1] xp, floating[:, ::1] cols,
           Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
           Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t rh, Py_ssize_t rw, int threads):
    cdef Py_ssize_t N = xp.shape[0], C = xp.shape[1]
    cdef Py_ssize_t r, n, c, i, j, p, q, k
    # cols[(c*KH + p)*KW + q, (n*OH + i)*OW + j] = xp[n, c, i*sh + p*rh, j*sw + q*rw]
    for r in prange(C * KH * KW, nogil=True, num_threads=threads, schedule="static"):
        c = r // (KH * KW)
        p = (r // KW) % KH
        q = r % KW
        for n in range(N):
            for i in range(OH):
                k = (n * OH + i) * OW
                if sw == 1:  # the common case, as a loop gcc can vectorise
                    for j in range(OW):
                        cols[r, k + j] = xp[n, c, i * sh + p * rh, j + q * rw]
                else:
                    for j in range(OW):
                        cols[r, k + j] = xp[n, c, i * sh + p * rh, j * sw + q * rw]


def col2im(const floating[:, ::1] dcols, floating[:, :, :, ::1] dxp,
           Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
           Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t rh, Py_ssize_t rw, int threads):
    cdef Py_ssize_t N = dxp.shape[0], C = dxp.shape[1]
    cdef Py_ssize_t NB = (N + 7) // 8  # blocks of up to 8 samples
    cdef Py_ssize_t t, n, c, i, j, p, q, r, k
    # dxp[n, c, i*sh + p*rh, j*sw + q*rw] += dcols[(c*KH + p)*KW + q, (n*OH + i)*OW + j]
    # (the transpose of im2col: every column sends its gradient back to the window it
    # was copied from). Task t owns channel c of a block of samples, so no two threads
    # write the same element, and each reads its rows of dcols front to back.
    for t in prange(C * NB, nogil=True, num_threads=threads, schedule="static"):
        c = t // NB
        for p in range(KH):
            for q in range(KW):
                r = (c * KH + p) * KW + q
                for n in range((t % NB) * 8, min(N, (t % NB) * 8 + 8)):
                    for i in range(OH):
                        k = (n * OH + i) * OW
                        if sw == 1:  # the common case, as a loop gcc can vectorise
                            for j in range(OW):
                                dxp[n, c, i * sh + p * rh, j + q * rw] += dcols[r, k + j]
                        else:
                            for j in range(OW):
                                dxp[n, c, i * sh + p * rh, j * sw + q * rw] += dcols[r, k + j]


def bias_transpose(const floating[:, ::1] yt, const floating[::1] b,
                   floating[:, :, ::1] y, int threads):
    cdef Py_ssize_t N = y.shape[0], F = y.shape[1], P = y.shape[2]
    cdef Py_ssize_t n, f, k
    # y[n, f, k] = yt[f, n*P + k] + b[f]   (the product comes out filter-major)
    for n in prange(N, nogil=True, num_threads=threads, schedule="static"):
        for f in range(F):
            for k in range(P):
                y[n, f, k] = yt[f, n * P + k] + b[f]


def transpose_nf(const floating[:, :, ::1] dy, floating[:, ::1] dyt, int threads):
    cdef Py_ssize_t N = dy.shape[0], F = dy.shape[1], P = dy.shape[2]
    cdef Py_ssize_t n, f, k
    # dyt[f, n*P + k] = dy[n, f, k]
    for f in prange(F, nogil=True, num_threads=threads, schedule="static"):
        for n in range(N):
            for k in range(P):
                dyt[f, n * P + k] = dy[n, f, k]
