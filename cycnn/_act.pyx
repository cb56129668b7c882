# ReLU's backward pass as one loop: dx[i] = dy[i] where x[i] > 0, else 0.
#
# The rule is docs/relu.md's: the gradient passes where the input was positive and is
# exactly 0 elsewhere, even where dy is inf or NaN (a product dy * (x > 0) would make
# inf * 0 = NaN there), and a NaN input compares False, so it passes nothing. NumPy needs
# three passes and two temporaries for this; one pass reading dy and x and writing dx
# runs at memory speed, and gcc turns the select into a vector blend.
#
# Preconditions, guaranteed by cycnn/activations.py before any call (which is why setup.py
# turns bounds and wraparound checks off):
#   * dy, x and dx are C-contiguous 1-D views of one float dtype and of one length;
#   * threads >= 1.

from cython cimport floating
from cython.parallel cimport prange


cdef void _relu_backward_run(const floating* dy, const floating* x, floating* dx,
                             Py_ssize_t n) noexcept nogil:
    # raw pointers, so that gcc sees no aliasing store and vectorises (see _fastpool.pyx)
    cdef Py_ssize_t i
    for i in range(n):
        dx[i] = dy[i] if x[i] > 0 else 0


def relu_backward(const floating[::1] dy, const floating[::1] x, floating[::1] dx,
                  int threads):
    cdef Py_ssize_t n = dx.shape[0], block, start, k
    if n == 0:
        return
    # one contiguous block per thread, the last one shorter
    block = (n + threads - 1) // threads
    for k in prange(threads, nogil=True, num_threads=threads, schedule="static"):
        start = k * block
        if start < n:
            _relu_backward_run(&dy[0] + start, &x[0] + start, &dx[0] + start,
                               min(block, n - start))
