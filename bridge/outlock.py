"""One run at a time in an output folder: an operating-system lock on a file in it, held for the run.

Two runs writing one folder would interleave checkpoints and splats (a Resume pressed while the run
before it, cut off from Blender, is still saving its checkpoint; two Blenders training into the same
folder). Training and SfM take :func:`output_lock` before they read or write anything there (render
passes do not: each frame is written atomically under its own name, and their folder is the
artist's, where a lock file would be clutter). The lock is the kernel's (``flock`` on POSIX,
``msvcrt.locking`` on Windows), tied to the open file: it goes when the process ends, however it
ends, so there are no stale locks to clear. The file itself stays (it holds the last holder's pid
and host, for the message); removing a lock file while others may be waiting on it would let two
runs in.

When the folder is held, the run waits (the other may be saving: a Stage "waiting" says so), then
fails with kind ``busy``, naming the folder and the holder. A stop while waiting ends it at once.
"""
from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import time
from collections.abc import Iterator

from .protocol import EXIT_BAD_INPUT, EXIT_FAILED, BridgeError, Stage, clip
from .protocol.jobs import OUTPUT_LOCK

LOCK_WAIT = 60.0  # seconds: a large run saving its checkpoint on a slow disk takes tens of seconds
_WINDOWS_OFFSET = 1 << 30  # msvcrt locks bytes that others cannot read: a byte far past the holder's note


@contextlib.contextmanager
def output_lock(ctx, folder: str | os.PathLike, wait: float = LOCK_WAIT) -> Iterator[bool]:
    """Hold ``folder``'s lock for the block; yields True, or False when a stop came while waiting
    (then nothing may touch the folder). BridgeError ``busy`` when it stays held for ``wait`` seconds."""
    folder = os.path.abspath(os.fspath(folder))
    path = os.path.join(folder, OUTPUT_LOCK)
    fd = _open_lock(path)
    try:
        held = _lock(fd)
        if held is None:  # a file system without locks (some network shares): run as before, unguarded
            ctx.log(f"{folder}: this file system does not support locks; make sure no other run uses it",
                    level="warning")
        elif not held:
            if not _wait(ctx, fd, folder, wait):
                yield False
                return
        if held is not None:
            _note_holder(fd)
        yield True
    finally:
        _unlock(fd)
        os.close(fd)


# Never through a link (the holder's note would truncate and overwrite the file it points at), never
# blocking on a FIFO someone named so: only the folder's own regular file is the lock.
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


def _open_lock(path: str) -> int:
    """The lock file's descriptor; BridgeError (exit code 2) when it is a link, a hard link to a file
    elsewhere, or not a regular file; ``write_failed`` when it cannot be made."""
    refuse = None
    if os.path.islink(path):
        refuse = "is a symbolic link"
    else:
        try:
            fd = os.open(path, _OPEN_FLAGS, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a link made since the check above
                refuse = "is a symbolic link"
            elif exc.errno == errno.EISDIR:
                refuse = "is not a regular file"
            else:
                denied = exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
                raise BridgeError("bad_input" if denied else "write_failed",
                                  f"{clip(path)}: cannot create the output folder's lock file ({exc.strerror})",
                                  hint="Choose an output folder you can write to." if denied
                                  else "Check that the output folder is writable.",
                                  exit_code=EXIT_BAD_INPUT if denied else EXIT_FAILED) from None
        else:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                refuse = "is not a regular file"
            elif st.st_nlink > 1:
                refuse = f"is a hard link to another file ({st.st_nlink} names)"
            if refuse is None:
                return fd
            os.close(fd)
    raise BridgeError("bad_input", f"{clip(path)}: the output folder's lock file {refuse}; Splatwork writes "
                      "there, so it would write through it", hint=f"Delete {OUTPUT_LOCK} from the output folder "
                      "(it is made again), or choose another output folder.", exit_code=EXIT_BAD_INPUT)


def _wait(ctx, fd: int, folder: str, wait: float) -> bool:
    holder = _holder(fd)
    ctx.emit(Stage(stage="waiting", message=f"{folder} is in use by another run{holder}; waiting up to "
                                            f"{wait:g} s for it to finish saving"))
    deadline = time.monotonic() + wait
    while True:
        if "stop" in ctx.commands.poll():
            return False
        if _lock(fd):
            ctx.log(f"{folder}: the other run finished; this one goes on")
            return True
        if time.monotonic() >= deadline:
            raise BridgeError(
                "busy", f"{folder} is in use by another run{_holder(fd) or holder} (waited {wait:g} s)",
                hint="Wait for that run to finish, or stop it, then try again; or choose another output folder.",
                exit_code=EXIT_BAD_INPUT)
        time.sleep(0.2)


def _lock(fd: int) -> bool | None:
    """True: locked now; False: another process holds it; None: this file system has no locks."""
    try:
        if os.name == "nt":
            import msvcrt

            os.lseek(fd, _WINDOWS_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES, getattr(errno, "EDEADLOCK", -1)):
            return False
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise


def _unlock(fd: int) -> None:
    # Closing the file releases it anyway; saying so at once is for Windows, where that may lag.
    with contextlib.suppress(OSError):
        if os.name == "nt":
            import msvcrt

            os.lseek(fd, _WINDOWS_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)


def _note_holder(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())


def _holder(fd: int) -> str:
    """" (pid N on HOST)" from the holder's note, or "" when there is none."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        pid, host = os.read(fd, 300).decode("utf-8", "replace").split()[:2]
        return f" (pid {int(pid)} on {host})"
    except (OSError, ValueError):
        return ""
