# The kernels of _pool.pyx compiled with -mavx2 -mfma (see setup.py and cycnn/_dispatch.py).
include "_pool.pyx"
