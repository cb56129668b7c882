"""Reading image files as a model's input, the way MNIST's digits were made.

:func:`read_image` decodes a PNG, JPEG or ``.npy`` file into a grey ``(H, W)`` array in
[0, 1]; :func:`mnist_like` turns any such array into a 28x28 MNIST-style image:

1. grey values in [0, 1], **inverted** when the background is light (MNIST digits are
   white on black; a digit photographed or drawn on paper is dark on light), judged by
   the mean of the outermost rows and columns;
2. the ink's bounding box (pixels above 0.1 of the brightest), scaled to fit a 20x20 box
   with its aspect ratio kept (area averaging when shrinking, bilinear when enlarging);
3. placed in a 28x28 image so that its centre of mass is the image centre, as in the
   original MNIST preprocessing.

An image that is already 28x28 is only inverted if needed. Files are untrusted input:
anything that is not a readable image of a sane size raises :class:`ImageError` naming
the file and the problem; PNG and JPEG need Pillow (``pip install 'cycnn[images]'``),
``.npy`` files need nothing but NumPy.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

__all__ = ["read_image", "mnist_like", "ImageError", "MAX_PIXELS", "MAX_FILE_BYTES"]

#: the largest image (width x height) read; larger ones are refused before decoding
MAX_PIXELS = 4096 * 4096
#: the largest file read
MAX_FILE_BYTES = 64 * 2**20


class ImageError(ValueError):
    """An image file that cannot be used: unreadable, corrupt, huge or of a wrong kind."""


def _fail(path, msg):
    return ImageError(f"{path}: {msg}")


def _check_file(path: Path):
    if path.is_dir():
        raise _fail(path, "is a directory, not an image file")
    if not path.is_file():
        raise _fail(path, "no such file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise _fail(path, f"file of {size:,} bytes is larger than the {MAX_FILE_BYTES:,} "
                          "bytes read")
    if size == 0:
        raise _fail(path, "empty file")


def _read_npy(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            readers = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}
            if version not in readers:
                raise _fail(path, f".npy format version {version} is not read (1.0 and "
                                  "2.0 are)")
            shape, fortran, dtype = readers[version](fh)
            fh.seek(0)
            if dtype.hasobject:
                raise _fail(path, "holds Python objects, not pixel values")
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if dtype.kind not in "biuf" or len(shape) not in (2, 3):
                raise _fail(path, f"must hold a 2-D (H, W) or 3-D (H, W, C) array of "
                                  f"numbers, got dtype {dtype} and shape {shape}")
            if count > MAX_PIXELS * 4:
                raise _fail(path, f"array of shape {shape} is larger than allowed")
            a = np.lib.format.read_array(fh, allow_pickle=False)
    except ImageError:
        raise
    except Exception as e:  # bad magic, bad header, truncated data...
        raise _fail(path, f"not a readable .npy file ({type(e).__name__}: {e})") from None
    a = np.asarray(a)
    if a.ndim == 3:
        if a.shape[2] not in (1, 3, 4) and a.shape[0] in (1, 3, 4):
            a = np.moveaxis(a, 0, 2)  # (C, H, W) -> (H, W, C)
        if a.shape[2] not in (1, 3, 4):
            raise _fail(path, f"a 3-D array must be (H, W, C) with C in 1, 3, 4, got "
                              f"shape {a.shape}")
    if a.dtype.kind == "b":
        a = a.astype(np.uint8) * 255
    if a.dtype.kind in "iu":
        if a.size and (a.min() < 0 or a.max() > 255):
            raise _fail(path, "integer pixels must lie in 0-255")
        a = a.astype(np.float64) / 255
    else:
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise _fail(path, "holds NaN or infinite values")
        if a.size and (a.min() < 0 or a.max() > 1):
            raise _fail(path, "floating-point pixels must lie in [0, 1] (integers in 0-255)")
    if a.ndim == 3:
        rgb = a[..., :3] if a.shape[2] >= 3 else a[..., :1]
        grey = rgb @ np.array([0.299, 0.587, 0.114]) if rgb.shape[2] == 3 else rgb[..., 0]
        if a.shape[2] == 4:  # transparent pixels show the (white) page behind them
            grey = grey * a[..., 3] + (1 - a[..., 3])
        a = grey
    return a


def _read_picture(path: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise _fail(path, "reading PNG or JPEG files needs Pillow: pip install "
                          "'cycnn[images]' (or save the image as .npy)") from None
    too_big = _fail(path, f"image is outside the sizes read (1 to {MAX_PIXELS:,} pixels)")
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own bomb check, at our limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=["PNG", "JPEG"]) as im:
                w, h = im.size
                if w * h > MAX_PIXELS or w == 0 or h == 0:
                    raise _fail(path, f"image of {w}x{h} pixels is outside the sizes read "
                                      f"(1 to {MAX_PIXELS:,} pixels)")
                im.load()
                if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and
                                                       "transparency" in im.info):
                    im = im.convert("RGBA")
                    page = Image.new("RGBA", im.size, (255, 255, 255, 255))
                    im = Image.alpha_composite(page, im)
                grey = np.asarray(im.convert("L"), dtype=np.float64) / 255
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise too_big from None
    except Exception as e:  # UnidentifiedImageError, truncated data, bad chunks, ...
        raise _fail(path, f"not a readable PNG or JPEG image ({type(e).__name__}: "
                          f"{e})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    return grey


def read_image(path) -> np.ndarray:
    """Read a PNG, JPEG or ``.npy`` image as grey values in [0, 1], shape ``(H, W)``.

    ``.npy`` arrays may be ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` with C in 1, 3, 4;
    integers are taken as 0-255, floats as [0, 1]. Colour is turned into grey with the
    ITU-R 601 weights (0.299, 0.587, 0.114); transparent pixels count as white paper.

    Raises
    ------
    ImageError
        Missing, empty, huge, corrupt or unsupported files, with the file's name.
    """
    path = Path(path)
    _check_file(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"\x93NUMPY"):
        return _read_npy(path)
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8"):
        return _read_picture(path)
    raise _fail(path, "not a PNG, JPEG or .npy file")


def _resize_matrix(n_in, n_out):
    """``(n_out, n_in)`` resampling weights: area averaging when shrinking (each output
    pixel averages the stretch of input it covers), linear interpolation when growing."""
    R = np.zeros((n_out, n_in))
    if n_out <= n_in:
        scale = n_in / n_out
        for o in range(n_out):
            lo, hi = o * scale, (o + 1) * scale
            for i in range(int(lo), min(int(np.ceil(hi)), n_in)):
                R[o, i] = min(hi, i + 1) - max(lo, i)
            R[o] /= R[o].sum()
    else:
        pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        i0 = np.floor(pos).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        f = pos - i0
        R[np.arange(n_out), i0] += 1 - f
        R[np.arange(n_out), i1] += f
    return R


def mnist_like(grey, size=28, box=20):
    """Turn a grey ``(H, W)`` image in [0, 1] into MNIST's form: white on black, the ink
    fitted into a ``box x box`` square, centred by its centre of mass in ``size x size``.

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        Values in [0, 1].
    size : int, default 28
    box : int, default 20

    Returns
    -------
    ndarray of float32, shape (size, size)

    Examples
    --------
    >>> page = np.ones((100, 60))             # white paper
    >>> page[20:80, 25:35] = 0.0              # a dark vertical stroke: a "1"
    >>> x = mnist_like(page)
    >>> x.shape, float(x.max()), round(float(x[:, :9].max()), 3)  # bright ink, dark margin
    ((28, 28), 1.0, 0.0)
    """
    a = np.asarray(grey, dtype=np.float64)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"mnist_like: grey must be a non-empty 2-D array, got shape {a.shape}")
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if border.mean() > 0.5:
        a = 1.0 - a
    if a.shape == (size, size):
        return a.astype(np.float32)
    ink = a > 0.1 * a.max() if a.max() > 0 else np.zeros(a.shape, bool)
    if not ink.any():
        return np.zeros((size, size), np.float32)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    a = a[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = a.shape
    scale = box / max(h, w)
    oh, ow = max(1, round(h * scale)), max(1, round(w * scale))
    small = _resize_matrix(h, oh) @ a @ _resize_matrix(w, ow).T
    total = small.sum()
    ci = (np.arange(oh) @ small.sum(axis=1)) / total if total > 0 else (oh - 1) / 2
    cj = (np.arange(ow) @ small.sum(axis=0)) / total if total > 0 else (ow - 1) / 2
    top = int(round((size - 1) / 2 - ci))
    left = int(round((size - 1) / 2 - cj))
    top, left = min(max(top, 0), size - oh), min(max(left, 0), size - ow)
    out = np.zeros((size, size))
    out[top:top + oh, left:left + ow] = small
    return np.clip(out, 0, 1).astype(np.float32)
