"""Private files: the data directory (0700), the SQLite database (0600) and the download folder of an app process.

Files the web app hands out (transcripts, credentials) are written to a folder made for this process alone
(`tempfile.mkdtemp`, 0700), each file 0600, written under a fresh name and renamed into place so a planted symlink
is replaced, never written through; files older than an hour are deleted, and the folder goes when the process ends.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from roleplay.errors import StoreError

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (and its parents) when missing and make it owner-only (0700) when this user owns it.

    Raises:
        StoreError: it cannot be created (the message names the directory and what to check).
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        _tighten(path, PRIVATE_DIR)
    except OSError as exc:
        raise StoreError(f"cannot create the data directory {path}: {exc.strerror or exc}; point ROLEPLAY_DATA_DIR "
                         "at a directory this user may write") from None
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty when missing (0600 from the start) and make an existing one owner-only.

    SQLite creates its -wal and -shm files with the database file's mode, so they are private too.

    Raises:
        StoreError: it cannot be created.
    """
    try:
        if not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        os.close(fd)
        _tighten(path, PRIVATE_FILE)
    except OSError as exc:
        raise StoreError(f"cannot create the database file {path}: {exc.strerror or exc}; check "
                         "ROLEPLAY_DATABASE_URL and ROLEPLAY_DATA_DIR") from None
    return path


def _tighten(path: Path, mode: int) -> None:
    if os.name != "posix":
        return
    info = path.stat()
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, stat.S_IMODE(info.st_mode) & mode)


DOWNLOAD_MAX_AGE = 3600.0


class DownloadFolder:
    """This process's private folder for files handed to browsers; `files/` holds ours, `gradio/` can hold Gradio's.

    Args:
        max_age: Seconds a written file is kept (older ones are deleted on the next write).
        clock: Wall-clock seconds (injectable for tests).
    """

    def __init__(self, max_age: float = DOWNLOAD_MAX_AGE, clock: Callable[[], float] = time.time) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="roleplay-"))
        self.files = self.root / "files"
        self.files.mkdir(mode=PRIVATE_DIR)
        self.gradio = self.root / "gradio"
        self.max_age = max_age
        self.clock = clock
        atexit.register(self.close)

    def write(self, name: str, text: str) -> Path:
        """Write `text` (UTF-8) as `name` in the folder, owner-only, replacing whatever had that name; returns its path.

        Characters other than letters, digits, `.`, `_` and `-` in `name` become `_`.
        """
        name = re.sub(r"[^\w.-]", "_", name).lstrip(".") or "download"
        self.age_out()
        staging = self.files / f".{name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(staging, flags, PRIVATE_FILE)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            final = self.files / name
            os.replace(staging, final)  # renames over a symlink itself; never follows it
        finally:
            staging.unlink(missing_ok=True)
        return final

    def age_out(self) -> None:
        """Delete written files older than `max_age`."""
        cutoff = self.clock() - self.max_age
        for path in self.files.iterdir():
            try:
                if path.lstat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:
                pass

    def close(self) -> None:
        """Remove the folder and everything in it."""
        shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.close)
