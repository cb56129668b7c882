# The fast convolution route (docs/performance-results.md): the same sums as the loops of
# cycnn/_conv.pyx, which stay the readable reference, arranged so that the compiler keeps
# a block of outputs in vector registers. cycnn/conv.py chooses this route for
# algorithm="auto" and tests/test_conv_fast.py checks it against the direct loops.
#
# The idea in three steps (the sizes come from the Python planner, conv._FastPlan):
#
# 1. Shifted planes. A chunk (output rows i0 .. i0+R-1 of gi images n0 .. n0+gi-1) is
#    copied, zero-padded, into a thread's own buffer xq, nq times shifted by a column and
#    split by row phase a < sh:
#        xq[e, c, a, rr, g, jj] = xp[n0 + g, c, top + rr*sh + a, jj*sw + e]
#    (xp is x zero-padded, top = i0*sh, e < nq, rr < Hqc = R + (KH - 1) // sh, jj < Wc).
#    Tap (c, p, q) of output (n0 + g, i0 + ii, j) then reads xq at koff[k] + t with
#        koff[k] = (((q % nq*C + c)*sh + p % sh)*Hqc + p // sh)*gi*Wc + q // nq*(nq // sw)
#        t = (ii*gi + g)*Wc + j
#    for k = (c*KH + p)*KW + q: for every tap, the chunk's outputs are one run of
#    consecutive "lanes" t. Strides and padding are gone, and so is the im2col copy.
#    With nq = KW (one copy per kernel column) every lane is an output (Wc = OW); with
#    nq = sw (one per column phase, nq*Wc elements copied instead of KW*OW) the lanes
#    j >= OW of each row of Wc = OW + (KW - 1) // sw are computed and thrown away. The
#    planner picks nq (KW, or a multiple of sw), and interleaves gi images row by row so
#    that small images fill whole register tiles.
# 2. Register tiles. y[f, t] = b[f] + sum_k w[f, k] * xq[koff[k] + t] is a matrix product
#    whose right-hand operand is read straight from xq. _nn_tile keeps MR filters x NV
#    vectors of lanes in registers for the whole sum. The weight gradient
#    dw[f, k] = sum_t dy[f, t] * xq[koff[k] + t] is a dot product along the lanes
#    (_dot_tile: MR filters x KR taps, a vector of partial sums each), and the input
#    gradient sends sum_f w[f, k] * dy[f, t] back through the same offsets, straight from
#    the registers of each tile.
# 3. Whole chunks per thread. One parallel region per pass; a thread takes a chunk
#    (forward) or a group of images (backward) through every step in its own buffers,
#    which conv.py sizes to a share of the L2 cache. Weight gradients are summed per group
#    and the groups added in a fixed order, so no result depends on the thread count.
#
# Preconditions, guaranteed by cycnn/conv.py (_FastPlan and the pass functions) before any
# call, which is why setup.py turns bounds and wraparound checks off:
#   * every array is C-contiguous and of one dtype (float32 or float64); x is (N, C, H, W)
#     unpadded, w (F, C, KH, KW), b (F,), y and dy (N, F, OH, OW) as conv_output_size gives
#     them for the padding (pt, pb), (pl, pr) and the strides sh, sw;
#   * 1 <= rows <= OH, 1 <= gi, Hqc = rows + (KH - 1) // sh, nq = KW or nq % sw == 0 and
#     Wc = OW + (KW - 1) // nq * (nq // sw); koff holds the offsets above for
#     k < K = C*KH*KW and 0 for the padding taps up to kpad >= roundup(K, KR) and
#     roundup(K, MR); ldw = roundup(rows*gi*Wc, NV*L) lanes (L = vector lanes of the
#     dtype) and sq >= koff[k] + ldw for every k, so no tile reads past the end of xq;
#   * dtap is a permutation of 0 .. K-1 and doff[j] = koff[dtap[j]] for j < K, so the
#     input gradient's tiles write inside dxq for the same reason;
#   * ws holds the packed weights (pw elements) and then `threads` blocks of `per`
#     elements (layout below), plus 64 bytes of slack for alignment; pdw is (G, Fp, Kdot),
#     pdb (G, Fp), bad (G,) with 1 <= G <= the number of image blocks; threads >= 1 and
#     sum_threads >= 1.
# So every index below stays inside its array. Lanes beyond a chunk's last output are
# computed on zeros and dropped; in the backward pass they meet zeros of dy, which is why
# conv.py takes another route when x or w holds a NaN or an infinity (0 * inf = NaN).

from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.stdint cimport int64_t, uintptr_t
from libc.string cimport memset

cdef extern from *:
    """
    /* The register tiles of each build variant: the forward and input-gradient kernel
       keeps MR rows (filters, or taps) by CYCNN_NV vectors of outputs in registers, the
       weight-gradient kernel MR filters by KR taps, each a vector of partial sums. Two row
       counts per build, A and B, so that 6, 16 or 32 filters fill whole tiles: 18 or 24
       of the 32 registers of AVX-512, 9 or 12 of the 16 of AVX2 and SSE2. Three vectors
       per row: gcc 12 vectorises a lane loop of two vectors badly (it keeps the partial
       sums in memory), and one of three well. */
    #if defined(__AVX512F__)
    #  define CYCNN_VBYTES 64
    #  define CYCNN_MR_A 6
    #  define CYCNN_KR_A 4
    #  define CYCNN_MR_B 8
    #  define CYCNN_KR_B 3
    #else
    #  if defined(__AVX__)
    #    define CYCNN_VBYTES 32
    #  else
    #    define CYCNN_VBYTES 16
    #  endif
    #  define CYCNN_MR_A 3
    #  define CYCNN_KR_A 4
    #  define CYCNN_MR_B 4
    #  define CYCNN_KR_B 3
    #endif
    #define CYCNN_NV 3
    #define CYCNN_MR_MAX (CYCNN_MR_A > CYCNN_MR_B ? CYCNN_MR_A : CYCNN_MR_B)
    #define CYCNN_NN_ACC (CYCNN_MR_MAX * CYCNN_NV * CYCNN_VBYTES / 4)
    #define CYCNN_DOT_ACC 24
    """
    enum: CYCNN_VBYTES
    enum: CYCNN_NV
    enum: CYCNN_MR_A
    enum: CYCNN_KR_A
    enum: CYCNN_MR_B
    enum: CYCNN_KR_B
    enum: CYCNN_MR_MAX
    enum: CYCNN_NN_ACC
    enum: CYCNN_DOT_ACC

#: the register tiles this build offers, as (MR, KR) pairs: MR rows of the forward /
#: input-gradient tile (by NV vectors of lanes) and MR x KR for the weight gradient
#: (conv._FastPlan sizes everything from it)
TILE = {"vector_bytes": CYCNN_VBYTES, "nv": CYCNN_NV,
        "shapes": ((CYCNN_MR_A, CYCNN_KR_A), (CYCNN_MR_B, CYCNN_KR_B))}


# --------------------------------------------------------------------------- micro-kernels

cdef inline void _nn_tile(const floating* a, const floating* src, const int64_t* off,
                          Py_ssize_t K, const floating* init, floating* out,
                          Py_ssize_t ldo, const int64_t* dst, Py_ssize_t nd,
                          const Py_ssize_t MR) noexcept nogil:
    # acc[r, l] = init[r] + sum_{k<K} a[k, r] * src[off[k] + l]   (r < MR, l < NV*L), then
    #   out[r*ldo + l] = acc[r, l]               when dst is NULL (init NULL: zeros), or
    #   out[dst[r] + l] += acc[r, l] for r < nd  otherwise (the input gradient, sent back)
    # Every call passes MR as a literal, so gcc compiles one copy per MR; the lane loop has
    # a constant length of NV vectors, so it becomes NV vector FMAs per row, and all MR*NV
    # accumulators stay in registers across the k loop.
    cdef floating acc[CYCNN_NN_ACC]
    cdef Py_ssize_t NL = CYCNN_NV * (CYCNN_VBYTES // sizeof(floating))
    cdef Py_ssize_t k, r, l
    cdef const floating* s
    cdef floating* d
    cdef floating v
    for r in range(MR):
        v = init[r] if init != NULL else 0
        for l in range(NL):
            acc[r * NL + l] = v
    for k in range(K):
        s = src + off[k]
        for r in range(MR):
            v = a[k * MR + r]
            for l in range(NL):
                acc[r * NL + l] += v * s[l]
    if dst == NULL:
        for r in range(MR):
            for l in range(NL):
                out[r * ldo + l] = acc[r * NL + l]
    else:
        for r in range(nd):
            d = out + dst[r]
            for l in range(NL):
                d[l] += acc[r * NL + l]


cdef inline void _dot_tile(const floating* a, Py_ssize_t lda, const floating* src,
                           const int64_t* off, Py_ssize_t T, floating* out,
                           Py_ssize_t ldo, const Py_ssize_t MR,
                           const Py_ssize_t KR) noexcept nogil:
    # out[r, s] += sum_{t<T} a[r*lda + t] * src[off[s] + t]   (r < MR, s < KR)
    # gcc vectorises the t loop with one vector of partial sums per (r, s).
    cdef floating acc[CYCNN_DOT_ACC]
    cdef Py_ssize_t t, r, s
    for r in range(MR * KR):
        acc[r] = 0
    for t in range(T):
        for r in range(MR):
            for s in range(KR):
                acc[r * KR + s] += a[r * lda + t] * src[off[s] + t]
    for r in range(MR):
        for s in range(KR):
            out[r * ldo + s] += acc[r * KR + s]


# --------------------------------------------------------------------------- copies

cdef floating* _aligned(floating* p) noexcept nogil:
    """p moved forward to the next 64-byte boundary (ws has the slack for it)."""
    cdef uintptr_t skip = (64 - (<uintptr_t>p) % 64) % 64
    return p + skip // sizeof(floating)


cdef void _pack_weights(const floating* w, Py_ssize_t F, Py_ssize_t K, Py_ssize_t Fp,
                        Py_ssize_t mr, floating* ap, Py_ssize_t Kdx, Py_ssize_t mrd,
                        const int64_t* dtap, floating* wt) noexcept nogil:
    # ap[fb, k, r] = w[fb*mr + r, k] (0 for rows >= F): mr filters' weights per tap, side
    # by side, as _nn_tile reads them in the forward pass;
    # wt[kb, f, r] = w[f, dtap[kb*mrd + r]] (0 for taps >= K): the transpose, for the input
    # gradient, its taps in the order dtap. Either may be NULL (not wanted).
    cdef Py_ssize_t f, k
    if ap != NULL:
        memset(ap, 0, Fp * K * sizeof(floating))
        for f in range(F):
            for k in range(K):
                ap[((f // mr) * K + k) * mr + f % mr] = w[f * K + k]
    if wt != NULL:
        memset(wt, 0, Kdx * F * sizeof(floating))
        for f in range(F):
            for k in range(K):
                wt[((k // mrd) * F + f) * mrd + k % mrd] = w[f * K + dtap[k]]


cdef floating _pack_chunk(const floating* x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H,
                          Py_ssize_t W, Py_ssize_t n0, Py_ssize_t gi, Py_ssize_t top,
                          Py_ssize_t Hqc, Py_ssize_t Wc, Py_ssize_t nq, Py_ssize_t sh,
                          Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, floating* xq,
                          Py_ssize_t sq) noexcept nogil:
    # xq[e, c, a, rr, g, jj] = x[n0 + g, c, top + rr*sh + a - pt, jj*sw + e - pl] (0 outside
    # x and for images n0 + g >= N), then zeros up to sq. Returns the sum of v - v over the
    # copied values: 0 when they are all finite, NaN when one is NaN or infinite.
    cdef Py_ssize_t e, c, a, rr, g, jj, h, lo, hi, d
    cdef floating* row = xq
    cdef const floating* src
    cdef floating check = 0
    cdef floating v
    for e in range(nq):
        # the columns jj whose source jj*sw + e - pl lies in [0, W)
        lo = (pl - e + sw - 1) // sw if pl > e else 0
        d = W - 1 + pl - e
        hi = d // sw + 1 if d >= 0 else 0
        if hi > Wc:
            hi = Wc
        if lo > hi:
            lo = hi
        for c in range(C):
            for a in range(sh):
                for rr in range(Hqc):
                    h = top + rr * sh + a - pt
                    for g in range(gi):
                        if h < 0 or h >= H or n0 + g >= N:
                            memset(row, 0, Wc * sizeof(floating))
                        else:
                            src = x + (((n0 + g) * C + c) * H + h) * W + e - pl
                            for jj in range(lo):
                                row[jj] = 0
                            # contiguous, and every other column: loops gcc vectorises
                            if sw == 1:
                                for jj in range(lo, hi):
                                    v = src[jj]
                                    row[jj] = v
                                    check = check + (v - v)
                            elif sw == 2:
                                for jj in range(lo, hi):
                                    v = src[2 * jj]
                                    row[jj] = v
                                    check = check + (v - v)
                            else:
                                for jj in range(lo, hi):
                                    v = src[jj * sw]
                                    row[jj] = v
                                    check = check + (v - v)
                            for jj in range(hi, Wc):
                                row[jj] = 0
                        row += Wc
    d = row - xq
    memset(row, 0, (sq - d) * sizeof(floating))
    return check


cdef void _unpack_y(const floating* yw, Py_ssize_t ld, floating* y, Py_ssize_t N,
                    Py_ssize_t F, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t Wc, Py_ssize_t n0,
                    Py_ssize_t gi, Py_ssize_t i0, Py_ssize_t R) noexcept nogil:
    # y[n0 + g, f, i0 + ii, j] = yw[f, (ii*gi + g)*Wc + j] for j < OW
    cdef Py_ssize_t f, ii, g, j
    cdef const floating* s
    cdef floating* d
    for g in range(min(gi, N - n0)):
        for f in range(F):
            for ii in range(R):
                s = yw + f * ld + (ii * gi + g) * Wc
                d = y + (((n0 + g) * F + f) * OH + i0 + ii) * OW
                for j in range(OW):
                    d[j] = s[j]


cdef void _pack_dy(const floating* dy, Py_ssize_t N, Py_ssize_t F, Py_ssize_t Fp,
                   Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t Wc, Py_ssize_t n0, Py_ssize_t gi,
                   Py_ssize_t i0, Py_ssize_t R, floating* dyw, Py_ssize_t ld,
                   floating* db) noexcept nogil:
    # dyw[f, (ii*gi + g)*Wc + j] = dy[n0 + g, f, i0 + ii, j], zero for the lanes and rows
    # f >= F that hold no output; db[f] += the chunk's sum of dy[., f]
    cdef Py_ssize_t f, ii, g, j
    cdef const floating* s
    cdef floating* d
    cdef floating acc
    memset(dyw, 0, Fp * ld * sizeof(floating))
    for f in range(F):
        acc = 0
        for g in range(min(gi, N - n0)):
            for ii in range(R):
                s = dy + (((n0 + g) * F + f) * OH + i0 + ii) * OW
                d = dyw + f * ld + (ii * gi + g) * Wc
                for j in range(OW):
                    d[j] = s[j]
                    acc = acc + s[j]
        db[f] += acc


cdef void _unpack_dx(const floating* dxq, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H,
                     Py_ssize_t W, Py_ssize_t n0, Py_ssize_t gi, Py_ssize_t top,
                     Py_ssize_t Hqc, Py_ssize_t Wc, Py_ssize_t nq, Py_ssize_t sh,
                     Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, floating* dx) noexcept nogil:
    # dx[n0 + g, c, h, w] += dxq[e, c, a, rr, g, jj] for h + pt = top + rr*sh + a and
    # w + pl = jj*sw + e: the transpose of _pack_chunk. Chunks overlap by the rows their
    # windows share, so the caller zeroes dx first and every chunk adds.
    cdef Py_ssize_t e, c, a, rr, g, jj, h, lo, hi, d
    cdef const floating* row = dxq
    cdef floating* dst
    for e in range(nq):
        lo = (pl - e + sw - 1) // sw if pl > e else 0
        d = W - 1 + pl - e
        hi = d // sw + 1 if d >= 0 else 0
        if hi > Wc:
            hi = Wc
        for c in range(C):
            for a in range(sh):
                for rr in range(Hqc):
                    h = top + rr * sh + a - pt
                    for g in range(gi):
                        if 0 <= h < H and n0 + g < N:
                            dst = dx + (((n0 + g) * C + c) * H + h) * W + e - pl
                            if sw == 1:
                                for jj in range(lo, hi):
                                    dst[jj] += row[jj]
                            else:
                                for jj in range(lo, hi):
                                    dst[jj * sw] += row[jj]
                        row += Wc


# --------------------------------------------------------------------------- tile loops
# Each loop calls its micro-kernel with MR (and KR) as literals, one branch per shape.

cdef void _forward_tiles(const floating* ap, const floating* bp, const floating* xq,
                         const int64_t* koff, Py_ssize_t K, Py_ssize_t Fp, Py_ssize_t mr,
                         Py_ssize_t ntile, floating* yw, Py_ssize_t ldw) noexcept nogil:
    # yw[f, t] = b[f] + sum_k w[f, k] * xq[koff[k] + t], tile by tile, mr filters at a time
    # (the tile's lanes of xq stay in L1 while every block of filters reads them)
    cdef Py_ssize_t NL = CYCNN_NV * (CYCNN_VBYTES // sizeof(floating))
    cdef Py_ssize_t t, fb
    for t in range(ntile):
        if mr == CYCNN_MR_A:
            for fb in range(Fp // CYCNN_MR_A):
                _nn_tile(ap + fb * CYCNN_MR_A * K, xq + t * NL, koff, K, bp + fb * CYCNN_MR_A,
                         yw + fb * CYCNN_MR_A * ldw + t * NL, ldw, NULL, 0, CYCNN_MR_A)
        else:
            for fb in range(Fp // CYCNN_MR_B):
                _nn_tile(ap + fb * CYCNN_MR_B * K, xq + t * NL, koff, K, bp + fb * CYCNN_MR_B,
                         yw + fb * CYCNN_MR_B * ldw + t * NL, ldw, NULL, 0, CYCNN_MR_B)


cdef void _dw_tiles(const floating* dyw, Py_ssize_t ldw, const floating* xq,
                    const int64_t* koff, Py_ssize_t Fp, Py_ssize_t Kdot, Py_ssize_t mr,
                    Py_ssize_t T, floating* pdw) noexcept nogil:
    # pdw[f, k] += sum_{t<T} dyw[f, t] * xq[koff[k] + t], in tiles of mr filters x KR taps
    cdef Py_ssize_t fb, kb
    if mr == CYCNN_MR_A:
        for fb in range(Fp // CYCNN_MR_A):
            for kb in range(Kdot // CYCNN_KR_A):
                _dot_tile(dyw + fb * CYCNN_MR_A * ldw, ldw, xq, koff + kb * CYCNN_KR_A, T,
                          pdw + fb * CYCNN_MR_A * Kdot + kb * CYCNN_KR_A, Kdot,
                          CYCNN_MR_A, CYCNN_KR_A)
    else:
        for fb in range(Fp // CYCNN_MR_B):
            for kb in range(Kdot // CYCNN_KR_B):
                _dot_tile(dyw + fb * CYCNN_MR_B * ldw, ldw, xq, koff + kb * CYCNN_KR_B, T,
                          pdw + fb * CYCNN_MR_B * Kdot + kb * CYCNN_KR_B, Kdot,
                          CYCNN_MR_B, CYCNN_KR_B)


cdef void _dx_tiles(const floating* wt, const floating* dyw, const int64_t* foff,
                    Py_ssize_t F, Py_ssize_t K, Py_ssize_t mrd, Py_ssize_t ntile,
                    const int64_t* doff, floating* dxq) noexcept nogil:
    # dxq[doff[j] + t] += sum_f wt[j, f] * dyw[f, t] for taps j < K: the gradient of every
    # lane goes straight back to the element of xq it was read from, a tile (mrd taps by
    # NV vectors of lanes) at a time, so no (taps x lanes) buffer is ever written. The
    # channel varies fastest along the taps (conv.py orders them so): with at least mrd
    # channels the taps of one tile write to different planes of dxq, and an addition
    # never reloads a vector that the previous row of the tile has just stored at an
    # overlapping address (that stalls the store-to-load forwarding).
    cdef Py_ssize_t NL = CYCNN_NV * (CYCNN_VBYTES // sizeof(floating))
    cdef Py_ssize_t t, kb, j
    for t in range(ntile):
        if mrd == CYCNN_MR_A:
            for kb in range((K + CYCNN_MR_A - 1) // CYCNN_MR_A):
                j = kb * CYCNN_MR_A
                _nn_tile(wt + j * F, dyw + t * NL, foff, F, NULL, dxq + t * NL, 0,
                         doff + j, min(CYCNN_MR_A, K - j), CYCNN_MR_A)
        else:
            for kb in range((K + CYCNN_MR_B - 1) // CYCNN_MR_B):
                j = kb * CYCNN_MR_B
                _nn_tile(wt + j * F, dyw + t * NL, foff, F, NULL, dxq + t * NL, 0,
                         doff + j, min(CYCNN_MR_B, K - j), CYCNN_MR_B)


# --------------------------------------------------------------------------- passes

def forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
            const floating[::1] b, const int64_t[::1] koff, floating[:, :, :, ::1] y,
            floating[::1] ws, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
            Py_ssize_t rows, Py_ssize_t gi, Py_ssize_t nq, Py_ssize_t Wc, Py_ssize_t mr,
            Py_ssize_t sq, Py_ssize_t ldw, Py_ssize_t pw, Py_ssize_t per, int threads):
    # y[n, f, i, j] = b[f] + sum_k w[f, k] * xq[koff[k] + t]; a task is `rows` output rows
    # of gi images. ws: ap (Fp*K) and bp (Fp) in the first pw elements, then one block of
    # `per` per thread: xq (sq elements), yw (Fp rows of ldw lanes). Fp = roundup(F, mr).
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = y.shape[1], OH = y.shape[2], OW = y.shape[3]
    cdef Py_ssize_t KH = w.shape[2], KW = w.shape[3], K = C * KH * KW
    cdef Py_ssize_t Fp = (F + mr - 1) // mr * mr
    cdef Py_ssize_t Hqc = rows + (KH - 1) // sh
    cdef Py_ssize_t NL = CYCNN_NV * (CYCNN_VBYTES // sizeof(floating))
    cdef Py_ssize_t nch = (OH + rows - 1) // rows, nblk = (N + gi - 1) // gi
    cdef Py_ssize_t task, n0, i0, R, f
    cdef floating* xq
    cdef floating* yw
    cdef floating* base = _aligned(&ws[0])
    cdef floating* ap = base
    cdef floating* bp = base + Fp * K
    cdef const floating* xs = &x[0, 0, 0, 0]
    cdef floating* ys = &y[0, 0, 0, 0]
    cdef const int64_t* k0 = &koff[0]
    _pack_weights(&w[0, 0, 0, 0], F, K, Fp, mr, ap, 0, 1, NULL, NULL)
    for f in range(Fp):
        bp[f] = b[f] if f < F else 0
    with nogil, parallel(num_threads=threads):
        xq = base + pw + threadid() * per
        yw = xq + sq
        for task in prange(nblk * nch, schedule="dynamic"):
            n0 = (task // nch) * gi
            i0 = (task % nch) * rows
            R = min(rows, OH - i0)
            _pack_chunk(xs, N, C, H, W, n0, gi, i0 * sh, Hqc, Wc, nq, sh, sw, pt, pl, xq, sq)
            _forward_tiles(ap, bp, xq, k0, K, Fp, mr, (R * gi * Wc + NL - 1) // NL, yw, ldw)
            _unpack_y(yw, ldw, ys, N, F, OH, OW, Wc, n0, gi, i0, R)


def backward(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
             const floating[:, :, :, ::1] w, const int64_t[::1] koff,
             const int64_t[::1] foff, const int64_t[::1] dtap, const int64_t[::1] doff,
             floating[:, :, :, ::1] dx, floating[:, ::1] dw,
             floating[::1] db, floating[:, :, ::1] pdw, floating[:, ::1] pdb,
             signed char[::1] bad, floating[::1] ws, bint need_dx, Py_ssize_t sh,
             Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t rows, Py_ssize_t gi,
             Py_ssize_t nq, Py_ssize_t Wc, Py_ssize_t mr, Py_ssize_t mrd, Py_ssize_t sq,
             Py_ssize_t ldw, Py_ssize_t pw, Py_ssize_t per, int threads, int sum_threads):
    # dw[f, k] = sum over groups (in order) of sum_{n in group, t} dy[n, f, t] * xq[koff[k] + t]
    # db[f]    = the same sums of dy[n, f]
    # dx[n]    = sum_f w[f, k] * dy[n, f, t] sent back through koff[k] + t (need_dx; dx is
    #            (1, 1, 1, 1) and unused otherwise), the taps in the order dtap:
    #            doff[j] = koff[dtap[j]]
    # A group is a run of blocks of gi images; bad[g] = 1 when group g met a non-finite x.
    # Fp = roundup(F, mr) rows of dy (the tiles of dw have mr filters), Kdx = roundup(K, mrd)
    # taps (those of dx have mrd). ws: wt (Kdx*F) in the first pw elements, then per
    # thread: xq (sq), dyw (Fp x ldw), and for need_dx dxq (sq).
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = dy.shape[1], OH = dy.shape[2], OW = dy.shape[3]
    cdef Py_ssize_t KH = w.shape[2], KW = w.shape[3], K = C * KH * KW
    cdef Py_ssize_t G = pdw.shape[0], Fp = pdw.shape[1], Kdot = pdw.shape[2]
    cdef Py_ssize_t Kdx = (K + mrd - 1) // mrd * mrd
    cdef Py_ssize_t Hqc = rows + (KH - 1) // sh
    cdef Py_ssize_t NL = CYCNN_NV * (CYCNN_VBYTES // sizeof(floating))
    cdef Py_ssize_t nch = (OH + rows - 1) // rows, nblk = (N + gi - 1) // gi
    cdef Py_ssize_t g, blk, n0, ch, i0, R, ntile, T, f, k, gg
    cdef floating check, acc
    cdef floating* xq
    cdef floating* dyw
    cdef floating* dxq
    cdef floating* base = _aligned(&ws[0])
    cdef floating* wt = base
    cdef const floating* dys = &dy[0, 0, 0, 0]
    cdef const floating* xs = &x[0, 0, 0, 0]
    cdef floating* dxs = &dx[0, 0, 0, 0]
    cdef const int64_t* k0 = &koff[0]
    cdef const int64_t* f0 = &foff[0]
    cdef const int64_t* d0 = &doff[0]
    cdef floating* pdw0 = &pdw[0, 0, 0]
    cdef floating* pdb0 = &pdb[0, 0]
    if need_dx:
        _pack_weights(&w[0, 0, 0, 0], F, K, Fp, mr, NULL, Kdx, mrd, &dtap[0], wt)
    with nogil, parallel(num_threads=threads):
        xq = base + pw + threadid() * per
        dyw = xq + sq
        dxq = dyw + Fp * ldw
        for g in prange(G, schedule="dynamic"):
            memset(pdw0 + g * Fp * Kdot, 0, Fp * Kdot * sizeof(floating))
            memset(pdb0 + g * Fp, 0, Fp * sizeof(floating))
            bad[g] = 0
            for blk in range(g * nblk // G, (g + 1) * nblk // G):
                n0 = blk * gi
                if need_dx:
                    memset(dxs + n0 * C * H * W, 0, min(gi, N - n0) * C * H * W * sizeof(floating))
                for ch in range(nch):
                    i0 = ch * rows
                    R = min(rows, OH - i0)
                    ntile = (R * gi * Wc + NL - 1) // NL
                    T = ntile * NL
                    check = _pack_chunk(xs, N, C, H, W, n0, gi, i0 * sh, Hqc, Wc, nq, sh, sw,
                                        pt, pl, xq, sq)
                    if check != 0:
                        bad[g] = 1
                    _pack_dy(dys, N, F, Fp, OH, OW, Wc, n0, gi, i0, R, dyw, ldw, pdb0 + g * Fp)
                    _dw_tiles(dyw, ldw, xq, k0, Fp, Kdot, mr, T, pdw0 + g * Fp * Kdot)
                    if need_dx:
                        memset(dxq, 0, sq * sizeof(floating))
                        _dx_tiles(wt, dyw, f0, F, K, mrd, ntile, d0, dxq)
                        _unpack_dx(dxq, N, C, H, W, n0, gi, i0 * sh, Hqc, Wc, nq, sh, sw, pt,
                                   pl, dxs)
    # the groups' partial sums, added in group order (a row of taps at a time), in a
    # region of their own: inside the one above, a thread done with its groups would wait
    # for the other at a barrier, asleep, and waking it costs tens of microseconds; a
    # short sum (sum_threads = 1) wakes no one
    for f in prange(F, nogil=True, schedule="static", num_threads=sum_threads):
        for k in range(K):
            dw[f, k] = 0
        acc = 0
        for gg in range(G):
            for k in range(K):
                dw[f, k] += pdw0[(gg * Fp + f) * Kdot + k]
            acc = acc + pdb0[gg * Fp + f]
        db[f] = acc
