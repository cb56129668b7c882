# The kernels of _conv.pyx compiled with -mavx2 -mfma (see setup.py and cycnn/_dispatch.py).
include "_conv.pyx"
