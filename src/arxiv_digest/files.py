"""The one way this project writes a file: a temp file beside the target, then a rename, so a reader
(Jekyll, a web server, the next run) never sees half a file and a killed run leaves the old one."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from .errors import DigestError

TEMP_SUFFIX = ".tmp"


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
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
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
