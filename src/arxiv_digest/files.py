"""How this project writes files: a temp file beside the target, then a rename, so a reader (Jekyll, a
web server, the next run) never sees half a file and a killed run leaves the old one; the site's
files, rewritten by the thousand, by swapping in a recycled spare with the same guarantees."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import sqlite3
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .errors import DigestError

TEMP_SUFFIX = ".tmp"
_T = TypeVar("_T")


class FileWriteError(DigestError, OSError):
    """A file could not be written (full disk, read-only folder, a file where a folder should be).

    One clear message naming the file; still an ``OSError`` for callers that catch those. The old
    file, if any, is untouched and no temp file is left behind.
    """

    def __init__(self, path: str, cause: OSError) -> None:
        DigestError.__init__(self, f"cannot write {path}: {cause.strerror or cause}")
        self.errno, self.strerror, self.filename = cause.errno, cause.strerror, path


def write_atomic(path: Path | str, data: str | bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically.

    A new file gets the umask's mode (``os.open`` with 0o666 applies it), a rewritten one keeps the
    mode it had. ``durable`` fsyncs the file and its folder before returning: posts, pages and
    reports must survive a power cut; the site's thousands of derived files skip it, since a build
    can always be repeated. The folder is created only when the file cannot be, because a large site
    build writes tens of thousands of files into folders that already exist.
    """
    target = os.fspath(path)
    folder, name = os.path.split(target)
    tmp = os.path.join(folder, f".{name}.{os.urandom(4).hex()}{TEMP_SUFFIX}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileNotFoundError:
            os.makedirs(folder or ".", exist_ok=True)
            fd = os.open(tmp, flags, 0o666)
    except OSError as exc:
        raise FileWriteError(target, exc) from None
    try:
        with open(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise FileWriteError(target, exc) from None
        raise
    if durable:
        _fsync_folder(folder or ".")


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable (a no-op where folders cannot be opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: Path) -> None:
    """Temp files of a run that was killed mid-write (the run lock says none is in progress)."""
    if folder.is_dir():
        for leftover in folder.glob(f".*{TEMP_SUFFIX}"):
            leftover.unlink(missing_ok=True)


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_RENAMEAT2 = getattr(_LIBC, "renameat2", None)  # glibc 2.28 and later
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _swap(first: bytes, second: bytes) -> int:
    """Exchange two paths atomically: 0, else the errno (ENOSYS where there is no ``renameat2``)."""
    if _RENAMEAT2 is None:
        return errno.ENOSYS
    return ctypes.get_errno() if _RENAMEAT2(_AT_FDCWD, first, _AT_FDCWD, second, _RENAME_EXCHANGE) else 0


class SwapWriter:
    """Rewrites existing files atomically without making and freeing a file for each: the new bytes
    go into a spare file of this process, which is swapped with the old one
    (``renameat2(RENAME_EXCHANGE)``); the old one is the next spare. On ext4 replacing a file costs
    ~0.5 ms (its blocks allocated at once, the old file's freed); rewriting a spare ~0.06 ms, and a
    template change rewrites thousands of site files.

    A spare is rewritten only when nothing else can see it change: no other name links it, and a
    write lease (which the kernel grants only while no other process has the file open) is held
    while it is written; else it is dropped and a new one made. Files that do not exist yet, and
    every file where the system cannot swap or lease (not Linux, another file system), are written
    by ``write_atomic``. ``folder`` holds the spares: private, on the targets' file system."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._owner = 0  # the process whose spare ``_spare`` is: a forked one makes its own
        self._spare: str | None = None
        self._able = _RENAMEAT2 is not None and hasattr(fcntl, "F_SETLEASE")

    def write(self, path: Path | str, data: str | bytes) -> None:
        """Write ``data`` to ``path`` atomically, not fsynced (for files a build can make again)."""
        target = os.fspath(path)
        raw = data.encode("utf-8") if isinstance(data, str) else data
        if os.getpid() != self._owner:
            self._owner, self._spare = os.getpid(), None
        try:
            old = os.stat(target, follow_symlinks=False)
        except OSError:
            old = None
        if not (self._able and old is not None and stat.S_ISREG(old.st_mode) and self._fill_spare(target, raw, old)):
            write_atomic(target, raw, durable=False)
            return
        swapped = _swap(os.fsencode(self._spare or ""), os.fsencode(target))
        if swapped != 0:
            self._drop()
            if swapped != errno.ENOENT:  # the target or the spare just went; EXDEV, EINVAL: no swapping here
                self._able = False
            write_atomic(target, raw, durable=False)

    def _fill_spare(self, target: str, raw: bytes, old: os.stat_result) -> bool:
        """The spare holds ``raw`` with the old file's permissions; False when no spare can."""
        fd = self._open_spare()
        if fd is None:
            return False
        try:
            try:
                view = memoryview(raw)
                while view:
                    view = view[os.write(fd, view) :]
                os.ftruncate(fd, len(raw))
                if stat.S_IMODE(os.fstat(fd).st_mode) != stat.S_IMODE(old.st_mode):
                    os.fchmod(fd, stat.S_IMODE(old.st_mode))
            except OSError as exc:
                self._drop()
                raise FileWriteError(target, exc) from None
        finally:
            os.close(fd)  # which also ends the lease
        return True

    def _open_spare(self) -> int | None:
        """The spare, opened for writing and leased, or a new one; None when neither can be had."""
        if self._spare is not None:
            try:
                fd = os.open(self._spare, os.O_WRONLY | os.O_NOFOLLOW)
            except OSError:
                fd = None
            if fd is not None:
                if self._lease(fd):
                    return fd
                os.close(fd)
            self._drop()
        if not self._able:
            return None
        spare = str(self.folder / f".{os.getpid()}.{os.urandom(4).hex()}{TEMP_SUFFIX}")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError:
            self._able = False
            return None
        self._spare = spare
        return fd

    def _lease(self, fd: int) -> bool:
        """Whether ``fd``'s file is ours alone: a regular file we own, with no other name, that no
        other process has open (the lease is refused while one has). Until it is closed, a process
        opening it waits; ``F_SETOWN`` 0 spares this one the SIGIO that would tell it so."""
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_uid != os.geteuid():
            return False
        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
        except OSError as exc:
            if exc.errno != errno.EAGAIN:  # this file system or system grants no leases
                self._able = False
            return False
        fcntl.fcntl(fd, fcntl.F_SETOWN, 0)
        return True

    def _drop(self) -> None:
        if self._spare is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._spare)
            self._spare = None

    def sweep(self) -> None:
        """Remove every spare in the folder: after a build, and those a killed build left."""
        remove_stale_temp_files(self.folder)
        self._spare = None


def open_state(path: Path, prepare: Callable[[sqlite3.Connection], _T]) -> tuple[sqlite3.Connection, _T]:
    """A build state's SQLite database (autocommit), and what ``prepare`` made of it; one that is
    damaged or not SQLite is deleted, with its journal, and made afresh: a lost build state costs a
    full build, never the run."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        return db, prepare(db)
    except sqlite3.DatabaseError:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        db = sqlite3.connect(path, isolation_level=None)
        return db, prepare(db)
