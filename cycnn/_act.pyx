# ReLU as two loops: y[i] = max(x[i], 0) forward, and dx[i] = dy[i] where x[i] > 0, else
# 0, backward.
#
# The rules are docs/dense-softmax.md's. Forward, NaN stays NaN (as np.maximum and PyTorch
# keep it): "not (x <= 0)" holds for x > 0 and for NaN. Backward, the gradient passes where
# the input was positive and is exactly 0 elsewhere, even where dy is inf or NaN (a
# product dy * (x > 0) would make inf * 0 = NaN there), and a NaN input compares False, so
# it passes nothing. NumPy needs three passes and two temporaries for the backward rule;
# one pass reading dy and x and writing dx runs at memory speed, and gcc turns each select
# into a vector blend. Each loop is split into one contiguous block per thread.
#
# Preconditions, guaranteed by cycnn/activations.py before any call (which is why setup.py
# turns bounds and wraparound checks off):
#   * the arrays are C-contiguous 1-D views of one float dtype and of one length;
#   * threads >= 1.

from cython cimport floating
from cython.parallel cimport prange


cdef void _relu_forward_run(const floating* x, floating* y, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        y[i] = x[i] if not (x[i] <= 0) else 0


cdef void _relu_backward_run(const floating* dy, const floating* x, floating* dx,
                             Py_ssize_t n) noexcept nogil:
    # raw pointers, so that gcc sees no aliasing store and vectorises (see _fastpool.pyx)
    cdef Py_ssize_t i
    for i in range(n):
        dx[i] = dy[i] if x[i] > 0 else 0


def relu(const floating[::1] x, const floating[::1] dy, floating[::1] out, bint backward,
         int threads):
    """out = relu(x) (dy unused), or with ``backward`` out = the gradient dx for dy."""
    cdef Py_ssize_t n = out.shape[0], block, start, k
    if n == 0:
        return
    # one contiguous block per thread, the last one shorter
    block = (n + threads - 1) // threads
    for k in prange(threads, nogil=True, num_threads=threads, schedule="static"):
        start = k * block
        if start >= n:
            continue
        if backward:
            _relu_backward_run(&dy[0] + start, &x[0] + start, &out[0] + start,
                               min(block, n - start))
        else:
            _relu_forward_run(&x[0] + start, &out[0] + start, min(block, n - start))
