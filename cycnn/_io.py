"""Writing files so that a crash never leaves a half-written one: one helper for all.

:func:`atomic_write` writes into a temporary file beside the target, flushes it to disk
and renames it over the target (``os.replace``, atomic on POSIX and Windows). Readers see
either the old file or the new one. Checkpoints and downloaded data sets use it.

A process killed in the middle (SIGKILL, power loss) cannot delete its temporary file.
The temporary names carry the writer's process id, ``.<name>.<pid>.<random><suffix>``,
so the next write to the same target removes the files of writers that are no longer
running, and never those of a save still in progress in another process.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # exists but is not ours, or cannot tell
        return True
    return True


def remove_stale_temporaries(path, suffix: str = ".tmp") -> list[Path]:
    """Delete temporary files that crashed writers of ``path`` left behind.

    Returns the files removed. Files of writers still running are kept.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    removed = []
    prefix = f".{path.name}."
    try:
        candidates = list(directory.iterdir())
    except OSError:
        return removed
    for f in candidates:
        name = f.name
        if not (name.startswith(prefix) and name.endswith(suffix)):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                f.unlink()
                removed.append(f)
    return removed


@contextlib.contextmanager
def atomic_write(path, suffix: str = ".tmp"):
    """Context manager yielding a binary file object whose contents replace ``path``.

    On a normal exit the data are flushed and fsynced and the file is renamed over
    ``path`` with the usual permissions (``0o666`` minus the umask). On an exception the
    temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    remove_stale_temporaries(path, suffix)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.{os.getpid()}.",
                               suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
