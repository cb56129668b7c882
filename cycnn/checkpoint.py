"""Checkpoints: a model's architecture, weights and optimizer state in one file.

Two formats, chosen by the file name:

* ``.npz`` (the default, any other suffix): a zip of ``.npy`` arrays (NumPy's ``savez``,
  no pickle): one per parameter and buffer under its ``state_dict`` name, one per
  optimizer state array under ``optimizer/<slot>/<name>``, and ``__cycnn__``, a JSON
  header with the format tag, the dtype, the layers' configs, the input shape, the
  optimizer's hyperparameters and step counts, the learning-rate schedule, and a
  free-form ``meta`` dict.
* ``.safetensors``: the weights only (parameters and buffers), in the format of
  Hugging Face's ``safetensors`` (an 8-byte header length, a JSON header, the raw
  little-endian arrays), with the same JSON header stored as a string in the file's
  ``__metadata__``. ``safetensors.torch.load_file`` reads it straight into
  ``cycnn.to_torch(model)``; no optimizer state goes into it. cycnn reads and writes the
  format itself, so saving needs no extra package.

:func:`save` writes through :func:`cycnn._io.atomic_write`, so an interrupted save leaves
the previous checkpoint in place. :func:`load_checkpoint` treats the file as untrusted
input: every zip member, array, header field, offset and dtype is checked, and anything
malformed is a :class:`CheckpointError` naming the file and the problem. A model or
optimizer is returned only when all of it was read; nothing is ever half-loaded.
"""

from __future__ import annotations

import io
import json
import math
import numbers
import zipfile
from pathlib import Path

import numpy as np

from ._io import atomic_write
from ._validate import param_dtype
from .layers import layer_from_config
from .model import Sequential
from .optim import get_optimizer
from .schedules import get_scheduler

__all__ = ["save", "load", "load_checkpoint", "Checkpoint", "CheckpointError"]

#: Format tag and version written into every checkpoint.
FORMAT = "cycnn-checkpoint"
VERSION = 1
HEADER = "__cycnn__"
OPT_PREFIX = "optimizer/"
#: safetensors: the dtype names of the format and the NumPy dtypes cycnn reads them as
#: (little-endian); a file holding any other dtype is refused
SAFETENSORS_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8"),
                      "F16": np.dtype("<f2"), "I32": np.dtype("<i4"), "U8": np.dtype("u1"),
                      "I8": np.dtype("i1"), "I16": np.dtype("<i2"), "U16": np.dtype("<u2"),
                      "U32": np.dtype("<u4"), "U64": np.dtype("<u8")}
#: the largest safetensors header read (the reference implementation's limit)
SAFETENSORS_MAX_HEADER = 100_000_000


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not match its own architecture."""


class Checkpoint:
    """What :func:`load_checkpoint` returns: the model, the optimizer (or None) and the
    free-form ``meta`` dict saved with them; unpacks as ``model, optimizer, meta``.
    ``scheduler`` is the learning-rate schedule saved with the optimizer (or None),
    attached to it and at its saved step."""

    def __init__(self, model, optimizer, meta, scheduler=None):
        self.model, self.optimizer, self.meta = model, optimizer, meta
        self.scheduler = scheduler

    def __iter__(self):
        return iter((self.model, self.optimizer, self.meta))


# --------------------------------------------------------------------------- saving

def save(model, path, optimizer=None, meta=None, scheduler=None):
    """Write ``model`` (and optionally ``optimizer``, its ``scheduler`` and a
    JSON-serialisable ``meta`` dict) to ``path``, atomically.

    A path ending in ``.safetensors`` gets the safetensors format (weights and buffers,
    the architecture and ``meta`` in its metadata; ``optimizer`` and ``scheduler`` must
    be None there); any other path gets ``.npz``, with everything.

    The file is written to a temporary file in the same directory, flushed to disk and
    renamed over ``path``, so an interrupted save never leaves a half-written checkpoint;
    temporary files of saves that were killed are removed by the next save to ``path``.
    No pickle is used. Returns ``path`` as a :class:`pathlib.Path`.

    Raises
    ------
    ValueError
        An optimizer or scheduler for a ``.safetensors`` path; a scheduler without its
        optimizer.
    """
    path = Path(path)
    state = model.state_dict()
    header = {
        "format": FORMAT, "version": VERSION,
        "dtype": str(model.dtype),
        "input_shape": None if model.input_shape is None else list(model.input_shape),
        "layers": [layer.config() for layer in model.layers],
        "params": {k: list(v.shape) for k, v in model.parameters().items()},
        "buffers": {k: list(v.shape) for k, v in model.buffers().items()},
        "optimizer": None, "scheduler": None, "meta": meta or {},
    }
    if scheduler is not None and scheduler.optimizer is not optimizer:
        raise ValueError("save: scheduler must be saved together with its optimizer")
    if path.suffix == ".safetensors":
        if optimizer is not None:
            raise ValueError(f"save: {path} is a .safetensors file, which holds weights "
                             "only; save the optimizer state to a .npz checkpoint")
        with atomic_write(path) as fh:
            _write_safetensors(fh, state, {"format": FORMAT, HEADER: json.dumps(header)})
        return path
    arrays = dict(state)
    if optimizer is not None:
        cfg, opt_arrays = optimizer.state_dict()
        header["optimizer"] = cfg
        arrays.update({OPT_PREFIX + k: v for k, v in opt_arrays.items()})
        if scheduler is not None:
            header["scheduler"] = scheduler.config()
    arrays[HEADER] = np.array(json.dumps(header))
    with atomic_write(path) as fh:
        np.savez(fh, **arrays)
    return path


def _write_safetensors(fh, arrays, metadata):
    """The safetensors layout: u64 header length, JSON header (padded with spaces to a
    multiple of 8 bytes), then each array's little-endian bytes in order."""
    names = {np.dtype(v): k for k, v in SAFETENSORS_DTYPES.items()}
    entries, blobs, offset = {}, [], 0
    for name, a in arrays.items():
        a = np.asarray(a, order="C")  # (not ascontiguousarray: it makes 0-d arrays 1-d)
        a = a.astype(a.dtype.newbyteorder("<"), order="C", copy=False)
        data = a.tobytes()
        entries[name] = {"dtype": names[a.dtype], "shape": list(a.shape),
                         "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps({"__metadata__": metadata, **entries}, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    fh.write(len(head).to_bytes(8, "little"))
    fh.write(head)
    for data in blobs:
        fh.write(data)


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


def _npz_contents(data: bytes, fail):
    """``(header, arrays)`` of a ``.npz`` checkpoint."""
    arrays = _read_arrays(data, fail)
    if HEADER not in arrays:
        raise fail(f"not a cycnn checkpoint (no architecture record '{HEADER}'; arrays: "
                   f"{sorted(arrays)[:6]})")
    record = arrays.pop(HEADER)
    if record.shape != () or record.dtype.kind != "U":
        raise fail("unreadable architecture record (not a JSON string)")
    return _parse_json(str(record), "architecture record", fail), arrays


def _parse_json(text, what, fail):
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"keys {dupes} appear more than once")
        return dict(pairs)

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as e:
        raise fail(f"unreadable {what} ({e})") from None


def _safetensors_contents(data: bytes, fail):
    """``(header, arrays)`` of a ``.safetensors`` file written by cycnn, every length,
    dtype, shape and offset checked against the file before an array is made."""
    if len(data) < 8:
        raise fail(f"truncated file: {len(data)} bytes, shorter than the 8-byte header "
                   "length a .safetensors file starts with")
    n = int.from_bytes(data[:8], "little")
    if n > min(len(data) - 8, SAFETENSORS_MAX_HEADER):
        raise fail(f"truncated or corrupt file: the header claims {n:,} bytes but "
                   f"{len(data) - 8:,} follow the length field")
    try:
        text = data[8:8 + n].decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail(f"corrupt safetensors header (not UTF-8: {e})") from None
    entries = _parse_json(text, "safetensors header", fail)
    if not isinstance(entries, dict):
        raise fail("corrupt safetensors header (not a JSON object)")
    metadata = entries.pop("__metadata__", None)
    if not isinstance(metadata, dict) or not isinstance(metadata.get(HEADER), str):
        raise fail(f"not a cycnn checkpoint (its __metadata__ has no architecture record "
                   f"'{HEADER}'; a .safetensors file from elsewhere holds weights but not "
                   "the layers: build the model and call load_state_dict)")
    buffer = memoryview(data)[8 + n:]
    spans, arrays = [], {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise fail(f"tensor {name!r}: an entry must have exactly dtype, shape and "
                       f"data_offsets, got {str(entry)[:80]}")
        dt = SAFETENSORS_DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) \
            else None
        if dt is None:
            raise fail(f"tensor {name!r}: dtype {entry['dtype']!r} is not one cycnn reads "
                       f"({', '.join(SAFETENSORS_DTYPES)})")
        shape, offsets = entry["shape"], entry["data_offsets"]
        if not (isinstance(shape, list) and all(_is_int(d) for d in shape)):
            raise fail(f"tensor {name!r}: shape must be a list of ints >= 0, got {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(_is_int(o) for o in offsets) and offsets[0] <= offsets[1]):
            raise fail(f"tensor {name!r}: data_offsets must be [begin, end] with 0 <= begin "
                       f"<= end, got {offsets!r}")
        begin, end = offsets
        need = math.prod(shape) * dt.itemsize
        if end - begin != need:
            raise fail(f"tensor {name!r}: shape {tuple(shape)} of {entry['dtype']} needs "
                       f"{need:,} bytes but data_offsets span {end - begin:,}")
        if end > len(buffer):
            raise fail(f"truncated file: tensor {name!r} ends at byte {end:,} of a "
                       f"{len(buffer):,}-byte data section")
        spans.append((begin, end, name))
        arrays[name] = (dt, tuple(shape), begin)
    spans.sort()
    at = 0
    for begin, end, name in spans:
        if begin != at:
            raise fail(f"corrupt file: tensor {name!r} starts at byte {begin:,} where byte "
                       f"{at:,} was expected (tensors must tile the data section without "
                       "gaps or overlaps)")
        at = end
    if at != len(buffer):
        raise fail(f"corrupt file: {len(buffer) - at:,} bytes after the last tensor")
    out = {}
    for name, (dt, shape, begin) in arrays.items():
        count = math.prod(shape)
        flat = np.frombuffer(buffer, dt, count, offset=begin) if count else np.empty(0, dt)
        out[name] = flat.reshape(shape).astype(dt.newbyteorder("="))
    header = _parse_json(metadata[HEADER], "architecture record", fail)
    return header, out


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
    if not isinstance(header.get("buffers", {}), dict):
        raise fail(f"header field 'buffers' must be a dict, got "
                   f"{type(header['buffers']).__name__}")
    shape = header.get("input_shape")
    if shape is not None and not (isinstance(shape, list) and all(_is_int(s, 1) for s in shape)):
        raise fail(f"header field 'input_shape' must be a list of positive ints, got {shape!r}")
    if not header["layers"] or not all(isinstance(c, dict) for c in header["layers"]):
        raise fail("header field 'layers' must be a non-empty list of layer configs")
    for field in ("params", "buffers"):
        for name, shp in header.get(field, {}).items():
            if not (isinstance(shp, list) and all(_is_int(s) for s in shp)):
                raise fail(f"header lists {field[:-1]} {name!r} with shape {shp!r}")
    opt = header.get("optimizer")
    if opt is not None:
        if not isinstance(opt, dict) or not isinstance(opt.get("type"), str):
            raise fail(f"header field 'optimizer' must be an optimizer config, got {opt!r}")
        steps = opt.get("steps", {})
        if not isinstance(steps, dict) or not all(_is_int(v) for v in steps.values()):
            raise fail(f"optimizer step counts must map names to ints >= 0, got {steps!r}")
    sched = header.get("scheduler")
    if sched is not None:
        if opt is None:
            raise fail("header has a learning-rate schedule but no optimizer")
        if not isinstance(sched, dict) or not isinstance(sched.get("type"), str):
            raise fail(f"header field 'scheduler' must be a schedule config, got {sched!r}")


def load_checkpoint(path) -> Checkpoint:
    """Read a file written by :meth:`Sequential.save` (``.npz``, or ``.safetensors`` when
    the name ends so).

    Returns
    -------
    Checkpoint
        ``(model, optimizer, meta)``; ``optimizer`` is None when none was saved (always,
        for ``.safetensors``), and ``.scheduler`` the saved learning-rate schedule.

    Raises
    ------
    FileNotFoundError
        No such file.
    IsADirectoryError, PermissionError, OSError
        ``path`` is a directory, or the file cannot be read.
    CheckpointError
        Truncated or corrupt file, duplicate or unexpected zip members, safetensors
        offsets that do not tile the data, unknown dtypes, not a cycnn checkpoint, a
        malformed header, layers that do not fit the recorded input shape, weights,
        buffers or optimizer state missing, extra, or of the wrong shape; the message
        names the file and the problem.
    """
    path = Path(path)
    data = _read_file(path)

    def fail(msg):
        return CheckpointError(f"checkpoint {path}: {msg}")

    reader = _safetensors_contents if path.suffix == ".safetensors" else _npz_contents
    header, arrays = reader(data, fail)
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
    weights = {k: v for k, v in arrays.items() if not k.startswith(OPT_PREFIX)}
    opt_arrays = {k[len(OPT_PREFIX):]: v for k, v in arrays.items() if k.startswith(OPT_PREFIX)}
    expected = model.parameters()
    for field, live in (("params", expected), ("buffers", model.buffers())):
        for k, w in live.items():
            recorded = header.get(field, {}).get(k)
            if recorded is not None and tuple(recorded) != w.shape:
                raise fail(f"architecture record lists {k} as {tuple(recorded)} but the "
                           f"layers need {w.shape}")
    try:
        model.load_state_dict(weights, source="its weights")
    except ValueError as e:
        raise fail(f"weights do not match the recorded architecture: {e}") from None
    optimizer = scheduler = None
    if header.get("optimizer") is not None:
        try:
            optimizer = get_optimizer(header["optimizer"])
            optimizer.load_state_dict(header["optimizer"], opt_arrays,
                                      {k: v.shape for k, v in expected.items()})
        except (TypeError, ValueError) as e:
            raise fail(f"optimizer state is invalid ({e})") from None
        if header.get("scheduler") is not None:
            try:
                scheduler = get_scheduler(header["scheduler"], optimizer)
            except (TypeError, ValueError) as e:
                raise fail(f"learning-rate schedule is invalid ({e})") from None
    elif opt_arrays:
        raise fail(f"optimizer arrays {sorted(opt_arrays)[:4]} but no optimizer record")
    return Checkpoint(model, optimizer, header["meta"], scheduler)


def load(path) -> Sequential:
    """Load the model saved by :meth:`Sequential.save` (see :func:`load_checkpoint`)."""
    return load_checkpoint(path).model
