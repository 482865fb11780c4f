"""Atomic file writes: a reader never sees a half-written file, and a failed write leaves no debris.

Files are written to ``.tmp-*`` names beside their target and renamed into place. They get the
permissions of an ordinary new file (``0o666`` less the umask), not ``mkstemp``'s private ``0o600``.
A failed write raises :class:`OSError` naming the target, so "no space left" says where.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

TMP_PREFIX = ".tmp-"


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it (briefly)
    os.umask(mask)
    return mask


def ordinary_mode() -> int:
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary file name beside ``path`` (for libraries that write by name); it replaces
    ``path`` when the block finishes without an error, and is removed when it does not."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix="-" + os.path.basename(path), dir=folder)
    try:
        os.fchmod(fd, ordinary_mode())
        os.close(fd)
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (None, tmp):
            raise OSError(exc.errno, exc.strerror, path) from exc
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` only when the block finishes without an error.

    The temporary file lives next to the target so the final ``os.replace`` is a rename on the same
    file system (atomic on POSIX and Windows); it is flushed to disk before the rename.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def remove_stale_temporaries(folder: str | os.PathLike) -> list[str]:
    """Remove ``.tmp-*`` files a killed earlier writer left in ``folder``; returns their paths.

    Only for folders a single process owns (a training run's output folder): there, a temporary
    file that exists before the run starts can only be a leftover.
    """
    removed = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(folder):
            if entry.name.startswith(TMP_PREFIX) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(entry.path)
    return removed
