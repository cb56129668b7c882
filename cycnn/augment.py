"""Data augmentation in NumPy: random affine warps of image batches, seeded.

A handwritten digit moved by two pixels, turned by eight degrees or drawn 10 % larger is
still the same digit, so training on such variants of the training images teaches the
network what does *not* matter. :class:`RandomAffine` draws one small transformation per
image and resamples the image with bilinear interpolation; :func:`affine_warp` is the
deterministic warp underneath.

The warp maps every output pixel ``(i, j)`` back to a source point in the input and
interpolates there. With ``(ci, cj) = ((H - 1) / 2, (W - 1) / 2)`` the image centre, ``A``
the 2x2 matrix and ``t`` the shift (both in ``(row, column)`` coordinates)::

    output position  (i, j) = A (r - ci, c - cj) + (ci, cj) + t     for input position (r, c)
    so the source of (i, j) is (r, c) = A^-1 ((i, j) - (ci, cj) - t) + (ci, cj)

Source points outside the image read zeros (the background of MNIST-style data).
Augmentation is for training only: :meth:`Sequential.fit` applies it to each training
batch, never to validation data, and ``predict``/``evaluate`` never see it.
"""

from __future__ import annotations

import numpy as np

from ._validate import as_array, as_float, as_real, check_ndim

__all__ = ["affine_warp", "RandomAffine"]


def affine_warp(x, matrices, shifts):
    """Warp each image of ``x`` by its own affine map (bilinear, zeros outside).

    Parameters
    ----------
    x : array_like, shape (N, C, H, W)
    matrices : array_like, shape (N, 2, 2)
        ``A`` per image, acting on ``(row, column)`` offsets from the image centre.
    shifts : array_like, shape (N, 2)
        ``t`` per image, in pixels: ``(down, right)``.

    Returns
    -------
    ndarray, shape (N, C, H, W)
        float32 for a float32 ``x``, float64 otherwise. The identity map
        (``A = I``, ``t = 0``) returns ``x`` unchanged, and an integer shift moves the
        pixels exactly, filling with zeros.

    Raises
    ------
    ValueError
        Shapes that do not fit, or a singular matrix.

    Examples
    --------
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> affine_warp(x, np.eye(2)[None], np.array([[0.0, 1.0]]))[0, 0]   # one pixel right
    array([[0., 0., 1.],
           [0., 3., 4.],
           [0., 6., 7.]])
    """
    func = "affine_warp"
    x = as_array(func, "x", x)
    check_ndim(func, "x", x, 4, "(N, C, H, W)")
    (x,) = as_float(func, x=x)
    N, C, H, W = x.shape
    A = np.asarray(as_array(func, "matrices", matrices), np.float64)
    t = np.asarray(as_array(func, "shifts", shifts), np.float64)
    if A.shape != (N, 2, 2) or t.shape != (N, 2):
        raise ValueError(f"{func}: matrices must be (N, 2, 2) and shifts (N, 2) for "
                         f"x.shape={x.shape}; got {A.shape} and {t.shape}")
    det = A[:, 0, 0] * A[:, 1, 1] - A[:, 0, 1] * A[:, 1, 0]
    if not np.all(np.abs(det) > 1e-12):
        raise ValueError(f"{func}: every matrix must be invertible (smallest |det| "
                         f"{float(np.abs(det).min()):.3g})")
    inv = np.stack([np.stack([A[:, 1, 1], -A[:, 0, 1]], -1),
                    np.stack([-A[:, 1, 0], A[:, 0, 0]], -1)], -2) / det[:, None, None]
    ci, cj = (H - 1) / 2, (W - 1) / 2
    ii, jj = np.meshgrid(np.arange(H) - ci, np.arange(W) - cj, indexing="ij")
    di = ii.ravel()[None] - t[:, :1]                                  # (N, H*W)
    dj = jj.ravel()[None] - t[:, 1:]
    # source row and column of every output pixel, clipped to one pixel beyond the
    # image: there the four neighbours are padding zeros (weight 1 on a zero), so no
    # mask is needed, and inside the image nothing changes
    rows = np.clip(inv[:, 0, :1] * di + inv[:, 0, 1:] * dj + ci, -1, H)
    cols = np.clip(inv[:, 1, :1] * di + inv[:, 1, 1:] * dj + cj, -1, W)
    r0, c0 = np.floor(rows), np.floor(cols)
    fr, fc = (rows - r0).astype(x.dtype), (cols - c0).astype(x.dtype)
    # the image padded with one zero row/column before and two after: indices r0 + 1 and
    # r0 + 2 (and the same for columns) are then always inside
    Hp, Wp = H + 3, W + 3
    xp = np.zeros((N * C, Hp, Wp), x.dtype)
    xp[:, 1:H + 1, 1:W + 1] = x.reshape(N * C, H, W)
    flat = xp.reshape(-1)
    top = (r0.astype(np.intp) + 1) * Wp + (c0.astype(np.intp) + 1)    # (N, H*W)
    top = (np.arange(N * C).reshape(N, C, 1) * (Hp * Wp)) + top[:, None, :]
    gr, gc = 1 - fr, 1 - fc
    out = flat.take(top) * (gr * gc)[:, None, :]
    out += flat.take(top + 1) * (gr * fc)[:, None, :]
    out += flat.take(top + Wp) * (fr * gc)[:, None, :]
    out += flat.take(top + Wp + 1) * (fr * fc)[:, None, :]
    return out.reshape(N, C, H, W)


class RandomAffine:
    """A random small rotation, scaling, shear and shift per image.

    For each image, independently: an angle ``U(-degrees, degrees)``, a scale
    ``U(scale[0], scale[1])``, a shear angle ``U(-shear, shear)`` (columns slide in
    proportion to the row) and a shift ``U(-translate, translate)`` pixels along each
    axis. Then :func:`affine_warp` with ``A = R(angle) @ Shear @ scale``.

    Parameters
    ----------
    degrees : float >= 0, default 10
    translate : float >= 0, default 2
        Largest shift in pixels, each axis.
    scale : (float, float), default (0.9, 1.1)
    shear : float >= 0, default 0
        Largest shear angle in degrees.

    Examples
    --------
    >>> aug = RandomAffine(degrees=10, translate=2, scale=(0.9, 1.1))
    >>> x = np.zeros((4, 1, 28, 28), np.float32)
    >>> x[:, :, 10:18, 12:16] = 1.0
    >>> a = aug(x, np.random.default_rng(0))
    >>> b = aug(x, np.random.default_rng(0))
    >>> a.shape, a.dtype, bool(np.array_equal(a, b))    # the same seed, the same images
    ((4, 1, 28, 28), dtype('float32'), True)
    """

    def __init__(self, degrees=10.0, translate=2.0, scale=(0.9, 1.1), shear=0.0):
        cls = "RandomAffine"
        self.degrees = as_real(cls, "degrees", degrees, 0.0, 180.0)
        self.translate = as_real(cls, "translate", translate, 0.0)
        if not isinstance(scale, (tuple, list)) or len(scale) != 2:
            raise ValueError(f"{cls}: scale must be a pair (low, high), got {scale!r}")
        lo = as_real(cls, "scale[0]", scale[0], 0.0, lo_open=True)
        hi = as_real(cls, "scale[1]", scale[1], lo)
        self.scale = (lo, hi)
        self.shear = as_real(cls, "shear", shear, 0.0, 89.0)

    def params(self, n, rng):
        """The ``(matrices, shifts)`` for ``n`` images, drawn from ``rng``."""
        rng = np.random.default_rng(rng)
        theta = np.deg2rad(rng.uniform(-self.degrees, self.degrees, n))
        s = rng.uniform(self.scale[0], self.scale[1], n)
        k = np.tan(np.deg2rad(rng.uniform(-self.shear, self.shear, n)))
        shifts = rng.uniform(-self.translate, self.translate, (n, 2))
        cos, sin = np.cos(theta), np.sin(theta)
        # rotation of (row, column) offsets, counter-clockwise on the screen (rows point
        # down), after a shear that slides each row sideways by k * row
        rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
        shear = np.zeros((n, 2, 2))
        shear[:, 0, 0] = shear[:, 1, 1] = 1.0
        shear[:, 1, 0] = k
        return rot @ shear * s[:, None, None], shifts

    def __call__(self, x, rng):
        """Augmented copies of the images ``x`` (N, C, H, W), randomness from ``rng``."""
        A, t = self.params(np.shape(x)[0], rng)
        return affine_warp(x, A, t)

    def config(self) -> dict:
        return {"type": "RandomAffine", "degrees": self.degrees, "translate": self.translate,
                "scale": list(self.scale), "shear": self.shear}

    def __repr__(self):
        return (f"RandomAffine(degrees={self.degrees:g}, translate={self.translate:g}, "
                f"scale=({self.scale[0]:g}, {self.scale[1]:g}), shear={self.shear:g})")
