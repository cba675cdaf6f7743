"""File plumbing shared by every writer: atomic writes, writable directories, hashes.

Overnight renders are killed at arbitrary instants; every file the pipeline trusts on resume
is written by `write_atomically`, so it is either absent or complete.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from pathlib import Path
from typing import Iterator

from .errors import InputError


def write_atomically(path: Path, data: bytes) -> None:
    """Write a hidden temporary, fsync, rename: a crash leaves the old file or the new one.

    The temporary name does not end in the file's extension, so a resume scan for `*.png`
    never mistakes it for a finished frame; the pid keeps two writers apart.
    """
    with _finished_temporary(path, data) as partial:
        os.replace(partial, path)
    _fsync_directory(path.parent)


def create_atomically(path: Path, data: bytes) -> bool:
    """Like write_atomically, but only where `path` does not exist yet: the finished temporary is
    hard-linked into place, which fails if another process made the file first (farm tasks
    starting together). Returns whether this call made it; False leaves the other's file as it is."""
    with _finished_temporary(path, data) as partial:
        try:
            os.link(partial, path)
        except FileExistsError:
            return False
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.ENOSYS):
                raise
            if path.exists():  # a filesystem without hard links: check, then rename
                return False
            os.replace(partial, path)
    _fsync_directory(path.parent)
    return True


@contextlib.contextmanager
def _finished_temporary(path: Path, data: bytes) -> Iterator[Path]:
    """`data` written and fsynced to a hidden temporary beside `path`, removed afterwards if still there."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(partial, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        yield partial
    finally:
        partial.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself survive a power cut.
    descriptor = os.open(directory if str(directory) else ".", os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def require_no_link_loop(path: Path) -> None:
    """InputError if `path` is a symbolic link that leads back to itself: exists() only says
    False for one ("file not found", wrong), and resolve() raises a RuntimeError."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise InputError(f"{path}: symbolic link loop (the link leads back to itself)") from None


def require_writable_dir(directory: Path) -> None:
    """InputError unless `directory` ('' is the current one) exists and can take new files."""
    directory = directory if str(directory) else Path(".")
    if not directory.is_dir():
        existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise InputError(f"{directory}: output directory does not exist ({existing} is a file)")
        raise InputError(f"{directory}: output directory does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(f"{directory}: output directory is not writable")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """The file's sha256, read in blocks so a large video does not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
