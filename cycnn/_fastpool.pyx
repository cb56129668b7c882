# The fast route of max pooling's forward pass for 2x2 windows with stride 2 (LeNet's and
# most CNNs' pooling), beside the readable loops of cycnn/_pool.pyx, which handle every
# window and which tests/test_pooling_fast.py checks these against. cycnn/pool.py takes
# this route when size == stride == (2, 2). The backward pass needs no twin: the general
# scatter of _pool.pyx (zero a plane, add each dy at its winner) already runs at memory
# speed, and a window-by-window rewrite measured 8x slower on the Sapphire Rapids machine.
#
# With the window fixed at 2x2, the loop over an output row has no inner loops: gcc
# vectorises it across j (even and odd columns of the two input rows), so one pass over x
# writes y and the winners. Rows shorter than a vector (LeNet's 12 and 4 outputs in
# float32 on AVX-512) run as scalar code, where every select is written as a max or a 0/1
# product so that none becomes a branch: on random data that made the 8x8 planes 1.3-1.4x
# faster and the 24x24 ones 1.1-1.2x (Sapphire Rapids, one thread). The rule is
# _pool.pyx's: the first maximum in row-major order wins (ties keep the earlier cell), and
# a NaN beats every number (the window's first NaN wins and y is NaN) - a row holding a NaN
# is done again by the scalar rule.
#
# Preconditions, guaranteed by cycnn/pool.py before any call (which is why setup.py turns
# bounds and wraparound checks off):
#   * x is (NC, H, W), y and argmax (NC, OH, OW), C-contiguous, y of x's float dtype;
#     OH = H // 2 >= 1 and OW = W // 2 >= 1 (a last odd row or column is dropped);
#     threads >= 1.

from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t

# Each plane is done by a plain function on raw pointers: inside a prange body the
# memoryviews' data pointers and strides are shared variables that every store through a
# float pointer might change, so gcc reloads them and vectorises nothing; here they are
# locals.


cdef void _forward_plane(const floating* x, floating* y, int64_t* argmax, Py_ssize_t OH,
                         Py_ssize_t OW, Py_ssize_t W) noexcept nogil:
    cdef Py_ssize_t i, j, p
    cdef const floating* r0
    cdef const floating* r1
    cdef floating a, b, c, d, top, bottom, v
    cdef int64_t at_top, at_bottom, down
    cdef int nan
    for i in range(OH):
        r0 = x + 2 * i * W
        r1 = r0 + W
        nan = 0
        for j in range(OW):
            a = r0[2 * j]
            b = r0[2 * j + 1]
            c = r1[2 * j]
            d = r1[2 * j + 1]
            # the winner of each row of the window, then of the two rows; a later cell
            # wins only if strictly larger. Each select is a max or a 0/1 (no branch,
            # which random data would mispredict half the time in the short rows gcc
            # leaves unvectorised)
            top = b if b > a else a
            at_top = <int64_t>(b > a)
            bottom = d if d > c else c
            at_bottom = W + <int64_t>(d > c)
            down = <int64_t>(bottom > top)
            y[i * OW + j] = bottom if bottom > top else top
            argmax[i * OW + j] = 2 * i * W + 2 * j + at_top + down * (at_bottom - at_top)
            nan = nan | (a != a) | (b != b) | (c != c) | (d != d)
        if nan:  # the scalar rule of _pool.pyx: the window's first NaN wins
            for j in range(OW):
                for p in range(3, -1, -1):
                    v = x[(2 * i + p // 2) * W + 2 * j + p % 2]
                    if v != v:
                        y[i * OW + j] = v
                        argmax[i * OW + j] = (2 * i + p // 2) * W + 2 * j + p % 2


def max_pool2x2_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                        int64_t[:, :, ::1] argmax, int threads):
    cdef Py_ssize_t NC = y.shape[0], OH = y.shape[1], OW = y.shape[2]
    cdef Py_ssize_t H = x.shape[1], W = x.shape[2], nc
    # y[n,c,i,j] = max(x[2i, 2j], x[2i, 2j+1], x[2i+1, 2j], x[2i+1, 2j+1]) and
    # argmax[n,c,i,j] = the flat index of the first of them that holds it
    for nc in prange(NC, nogil=True, num_threads=threads, schedule="static"):
        _forward_plane(&x[0, 0, 0] + nc * H * W, &y[0, 0, 0] + nc * OH * OW,
                       &argmax[0, 0, 0] + nc * OH * OW, OH, OW, W)
