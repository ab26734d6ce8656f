"""A lock file that says who holds it: one writer per run folder or face cache.

The file holds the holder's pid, host and start time (JSON) and is ``flock``-ed while held,
so the operating system frees it when the holder dies, however it dies. A lock file left by
a process that is no longer alive on this host (killed with -9, power loss) is stale: it is
taken over with a warning. A holder on another host cannot be checked from here; its lock
is refused with a message saying which file to delete once that process is gone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from attribnet.errors import LockedError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a lock: pid, host name, and start time (UTC, ISO 8601)."""

    pid: int
    host: str
    started: str

    @classmethod
    def me(cls) -> LockHolder:
        """This process, now."""
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return cls(os.getpid(), socket.gethostname(), now)

    @classmethod
    def parse(cls, text: str) -> LockHolder | None:
        """The holder written in a lock file; None when the text is empty or unreadable."""
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), str(data["host"]), str(data["started"]))
        except (ValueError, TypeError, KeyError):
            return None

    def describe(self) -> str:
        """E.g. ``pid 4242 on host gpu01, started 2025-01-01T12:00:00Z``."""
        return f"pid {self.pid} on host {self.host}, started {self.started}"

    def is_alive(self) -> bool | None:
        """Whether the holder still runs; None when it is on another host (unknown)."""
        if self.host != socket.gethostname():
            return None
        return pid_alive(self.pid)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


class FileLock:
    """An exclusive lock on ``path`` for ``what`` (e.g. ``run folder runs/demo``).

    Use as a context manager, or :meth:`acquire` and :meth:`release`. ``acquire`` raises
    :class:`LockedError` naming the holder, or with ``wait`` polls until the holder is gone.
    """

    def __init__(self, path: str | os.PathLike[str], what: str):
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self, *, wait: bool = False, poll_s: float = 2.0) -> FileLock:
        """Take the lock. With ``wait``, a live holder on this host (or one whose flock is
        still held) is waited for, logging once who it is; otherwise LockedError."""
        announced = False
        while True:
            try:
                self._try_acquire()
                return self
            except _Busy as busy:
                if not wait or busy.unknown:
                    raise LockedError(busy.message) from None
                if not announced:
                    log.info("%s; waiting for it to finish (Ctrl-C to stop)", busy.message)
                    announced = True
                time.sleep(poll_s)

    def check(self) -> None:
        """Raise LockedError when another live (or unverifiable) process holds the lock.

        Reads only: creates, changes and takes nothing (a stale lock is left for
        :meth:`acquire` to take over).
        """
        if self.held:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            self._check_holder(fd)
        except _Busy as busy:
            raise LockedError(busy.message) from None
        finally:
            os.close(fd)

    def release(self) -> None:
        """Remove the lock file and free the lock (no-op when not held)."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # a process that opened the file meanwhile finds no holder
        with contextlib.suppress(FileNotFoundError):
            if _same_file(self._fd, self.path):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def move_to(self, path: str | os.PathLike[str]) -> None:
        """Tell a held lock that its file was moved (its folder renamed) to ``path``."""
        self.path = Path(path)

    def __enter__(self) -> FileLock:
        return self.acquire() if not self.held else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _try_acquire(self) -> None:
        if self.held:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                previous = self._check_holder(fd, keep=True)
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, self.path):
                break
            os.close(fd)  # released and removed between our open and flock: try again
        if previous is not None:
            log.warning(
                "taking over the stale lock %s of %s (that process is gone)",
                self.path,
                previous.describe(),
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(LockHolder.me())).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def _check_holder(self, fd: int, keep: bool = False) -> LockHolder | None:
        """flock ``fd`` and read the holder left in the file: _Busy when a live or unknown
        process holds it; else the stale holder (None if none). The flock is kept only
        with ``keep``."""
        flocked = True
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if keep else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in _NO_FLOCK:  # a file system without flock: the file alone decides
                log.debug("no flock on %s (%s): judging the lock by its holder", self.path, exc)
                flocked = False
            elif exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise _Busy(self._busy_message(self._holder_on_disk()), unknown=False) from None
            else:
                raise
        try:
            previous = LockHolder.parse(os.pread(fd, 4096, 0).decode(errors="replace"))
        finally:
            if flocked and not keep:
                fcntl.flock(fd, fcntl.LOCK_UN)
        if previous is None:
            return None
        alive = previous.is_alive()
        if alive is None or (alive and previous.pid != os.getpid()):
            raise _Busy(
                f"{self._busy_message(previous)}; if that process has ended, delete {self.path}",
                unknown=alive is None,
            )
        return previous

    def _holder_on_disk(self) -> LockHolder | None:
        try:
            return LockHolder.parse(self.path.read_text(errors="replace"))
        except OSError:
            return None

    def _busy_message(self, holder: LockHolder | None) -> str:
        who = holder.describe() if holder else "another process (starting)"
        return f"{self.what} is in use by {who} (lock file {self.path})"


_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


class _Busy(Exception):
    """The lock is held; ``unknown``: by a process whose liveness cannot be checked."""

    def __init__(self, message: str, *, unknown: bool):
        super().__init__(message)
        self.message = message
        self.unknown = unknown


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)
