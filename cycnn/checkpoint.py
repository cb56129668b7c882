"""Checkpoints: a model's architecture, weights and optimizer state in one ``.npz`` file.

A checkpoint is a zip of ``.npy`` arrays (NumPy's ``savez``, no pickle): one per
parameter under its ``state_dict`` name, one per optimizer state array under
``optimizer/<slot>/<name>``, and ``__cycnn__``, a JSON header with the format tag, the
dtype, the layers' configs, the input shape, the optimizer's hyperparameters and step
counts, and a free-form ``meta`` dict.

:func:`save` writes through :func:`cycnn._io.atomic_write`, so an interrupted save leaves
the previous checkpoint in place. :func:`load_checkpoint` treats the file as untrusted
input: every zip member, array and header field is checked, and anything malformed is a
:class:`CheckpointError` naming the file and the problem. A model or optimizer is
returned only when all of it was read; nothing is ever half-loaded.
"""

from __future__ import annotations

import io
import json
import numbers
import zipfile
from pathlib import Path

import numpy as np

from ._io import atomic_write
from ._validate import param_dtype
from .layers import layer_from_config
from .model import Sequential
from .optim import get_optimizer

__all__ = ["save", "load", "load_checkpoint", "Checkpoint", "CheckpointError"]

#: Format tag and version written into every checkpoint.
FORMAT = "cycnn-checkpoint"
VERSION = 1
HEADER = "__cycnn__"
OPT_PREFIX = "optimizer/"


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not match its own architecture."""


class Checkpoint:
    """What :func:`load_checkpoint` returns: the model, the optimizer (or None) and the
    free-form ``meta`` dict saved with them."""

    def __init__(self, model, optimizer, meta):
        self.model, self.optimizer, self.meta = model, optimizer, meta

    def __iter__(self):
        return iter((self.model, self.optimizer, self.meta))


# --------------------------------------------------------------------------- saving

def save(model, path, optimizer=None, meta=None):
    """Write ``model`` (and optionally ``optimizer`` and a JSON-serialisable ``meta``
    dict) to ``path`` as ``.npz``, atomically.

    The file is written to a temporary file in the same directory, flushed to disk and
    renamed over ``path``, so an interrupted save never leaves a half-written checkpoint;
    temporary files of saves that were killed are removed by the next save to ``path``.
    No pickle is used. Returns ``path`` as a :class:`pathlib.Path`.
    """
    path = Path(path)
    params = model.parameters()
    header = {
        "format": FORMAT, "version": VERSION,
        "dtype": str(model.dtype),
        "input_shape": None if model.input_shape is None else list(model.input_shape),
        "layers": [layer.config() for layer in model.layers],
        "params": {k: list(v.shape) for k, v in params.items()},
        "optimizer": None, "meta": meta or {},
    }
    arrays = dict(params)
    if optimizer is not None:
        cfg, opt_arrays = optimizer.state_dict()
        header["optimizer"] = cfg
        arrays.update({OPT_PREFIX + k: v for k, v in opt_arrays.items()})
    arrays[HEADER] = np.array(json.dumps(header))
    with atomic_write(path) as fh:
        np.savez(fh, **arrays)
    return path


# --------------------------------------------------------------------------- loading

def _read_file(path: Path) -> bytes:
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {path} is a directory, not a checkpoint file")
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return path.read_bytes()
    except PermissionError:
        raise PermissionError(f"checkpoint {path} cannot be read: permission denied") from None
    except OSError as e:
        raise OSError(f"checkpoint {path} cannot be read: {e.strerror or e}") from None


def _read_arrays(data: bytes, fail) -> dict[str, np.ndarray]:
    """Every ``.npy`` member of the zip in ``data``, checked and read in full."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except Exception as e:  # a damaged zip raises many kinds of exception
        raise fail(f"truncated or corrupt file, not a readable .npz ({type(e).__name__}: "
                   f"{e})") from None
    names = [info.filename for info in infos]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise fail(f"corrupt file: the zip directory lists {dupes} more than once")
    declared = sum(info.file_size for info in infos)
    if declared > max(64 * len(data), 1 << 24):
        raise fail(f"corrupt file: its members claim {declared:,} bytes unpacked from a "
                   f"{len(data):,}-byte file")
    arrays = {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise fail(f"unexpected member {info.filename!r} (a checkpoint holds only "
                       ".npy arrays)")
        try:
            raw = zf.read(info)
        except Exception as e:  # CRC errors, bad local headers, encryption flags...
            raise fail(f"truncated or corrupt file: member {info.filename!r} cannot be "
                       f"read ({type(e).__name__}: {e})") from None
        try:
            arr = np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)
        except Exception as e:  # a damaged .npy header, or pickled objects
            raise fail(f"member {info.filename!r} is not a plain NumPy array "
                       f"({type(e).__name__}: {e})") from None
        arrays[info.filename[:-4]] = arr
    return arrays


def _is_int(v, minimum=0):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum


def _check_header(header, fail) -> None:
    """Check the header's structure and types, so that nothing later trips over them."""
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise fail("not a cycnn checkpoint (wrong format tag)")
    if header.get("version") != VERSION:
        raise fail(f"format version {header.get('version')!r} is not supported (this cycnn "
                   f"reads version {VERSION})")
    expect = {"dtype": str, "layers": list, "params": dict, "meta": dict}
    for key, kind in expect.items():
        if not isinstance(header.get(key), kind):
            raise fail(f"header field {key!r} must be a {kind.__name__}, got "
                       f"{type(header.get(key)).__name__}")
    shape = header.get("input_shape")
    if shape is not None and not (isinstance(shape, list) and all(_is_int(s, 1) for s in shape)):
        raise fail(f"header field 'input_shape' must be a list of positive ints, got {shape!r}")
    if not header["layers"] or not all(isinstance(c, dict) for c in header["layers"]):
        raise fail("header field 'layers' must be a non-empty list of layer configs")
    for name, shp in header["params"].items():
        if not (isinstance(shp, list) and all(_is_int(s) for s in shp)):
            raise fail(f"header lists parameter {name!r} with shape {shp!r}")
    opt = header.get("optimizer")
    if opt is not None:
        if not isinstance(opt, dict) or not isinstance(opt.get("type"), str):
            raise fail(f"header field 'optimizer' must be an optimizer config, got {opt!r}")
        steps = opt.get("steps", {})
        if not isinstance(steps, dict) or not all(_is_int(v) for v in steps.values()):
            raise fail(f"optimizer step counts must map names to ints >= 0, got {steps!r}")


def load_checkpoint(path) -> Checkpoint:
    """Read a file written by :meth:`Sequential.save`.

    Returns
    -------
    Checkpoint
        ``(model, optimizer, meta)``; ``optimizer`` is None when none was saved.

    Raises
    ------
    FileNotFoundError
        No such file.
    IsADirectoryError, PermissionError, OSError
        ``path`` is a directory, or the file cannot be read.
    CheckpointError
        Truncated or corrupt file, duplicate or unexpected zip members, not a cycnn
        checkpoint, a malformed header, layers that do not fit the recorded input shape,
        weights or optimizer state missing, extra, or of the wrong shape; the message
        names the file and the problem.
    """
    path = Path(path)
    data = _read_file(path)

    def fail(msg):
        return CheckpointError(f"checkpoint {path}: {msg}")

    arrays = _read_arrays(data, fail)
    if HEADER not in arrays:
        raise fail(f"not a cycnn checkpoint (no architecture record '{HEADER}'; arrays: "
                   f"{sorted(arrays)[:6]})")
    record = arrays.pop(HEADER)
    if record.shape != () or record.dtype.kind != "U":
        raise fail("unreadable architecture record (not a JSON string)")
    try:
        header = json.loads(str(record))
    except ValueError as e:
        raise fail(f"unreadable architecture record ({e})") from None
    _check_header(header, fail)
    try:
        dtype = param_dtype("load", header["dtype"])
        layers = [layer_from_config(c, dtype) for c in header["layers"]]
        model = Sequential(layers, input_shape=header.get("input_shape"))
    except (TypeError, ValueError) as e:
        raise fail(f"architecture record does not describe a valid model ({e})") from None
    if model.input_shape is not None:
        try:
            model.shapes(model.input_shape)
        except ValueError as e:
            raise fail(f"the layers do not fit the recorded input shape "
                       f"{model.input_shape}: {e}") from None
    params = {k: v for k, v in arrays.items() if not k.startswith(OPT_PREFIX)}
    opt_arrays = {k[len(OPT_PREFIX):]: v for k, v in arrays.items() if k.startswith(OPT_PREFIX)}
    expected = model.parameters()
    for k, w in expected.items():
        recorded = header["params"].get(k)
        if recorded is not None and tuple(recorded) != w.shape:
            raise fail(f"architecture record lists {k} as {tuple(recorded)} but the layers "
                       f"need {w.shape}")
    try:
        model.load_state_dict(params, source="its weights")
    except ValueError as e:
        raise fail(f"weights do not match the recorded architecture: {e}") from None
    optimizer = None
    if header.get("optimizer") is not None:
        try:
            optimizer = get_optimizer(header["optimizer"])
            optimizer.load_state_dict(header["optimizer"], opt_arrays,
                                      {k: v.shape for k, v in expected.items()})
        except (TypeError, ValueError) as e:
            raise fail(f"optimizer state is invalid ({e})") from None
    elif opt_arrays:
        raise fail(f"optimizer arrays {sorted(opt_arrays)[:4]} but no optimizer record")
    return Checkpoint(model, optimizer, header["meta"])


def load(path) -> Sequential:
    """Load the model saved by :meth:`Sequential.save` (see :func:`load_checkpoint`)."""
    return load_checkpoint(path).model
