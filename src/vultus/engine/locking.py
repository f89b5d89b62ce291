"""The engine's locks: one thread at a time in the pipeline and the in-memory index; and, between
processes, each open engine's hold on its data directory."""

from __future__ import annotations

import fcntl
import functools
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from vultus.errors import ConfigError
from vultus.files import file_lock, private_dir

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def locked(method: F) -> F:
    """Run the method holding the engine's lock (see `Engine.lock`)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return cast(F, wrapper)


def each_locked(items: Iterable[T], lock: threading.RLock) -> Iterator[T]:
    """Produce each item holding the lock, release it in between: in-process analysis takes
    the lock per image, so a search can run between two images of a long ingest."""
    it = iter(items)
    while True:
        with lock:
            try:
                item = next(it)
            except StopIteration:
                return
        yield item


# Every open engine holds PRESENCE shared. Work that no other process may see half done (a key
# rotation: the others would go on sealing under the key it retires) holds it exclusively, and
# so runs only while no other process has the data directory open. GATE makes the switch
# between the two atomic: flock drops a shared lock before it grants the exclusive one, and in
# that instant nobody else may open the directory or start such work.
PRESENCE = "engine.lock"
GATE = "engine.gate"
# How long exclusive work waits for short-lived commands beside it to finish.
ALONE_WAIT = 3.0


class Presence:
    """This engine's shared hold on its data directory, released on close or when the process
    dies. Opening refuses, at once and clearly, while another process holds it alone."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._fd: int | None = None
        fd = os.open(data_dir / PRESENCE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            with file_lock(data_dir / GATE, shared=True):
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"another process is re-encrypting {data_dir} under a new key "
                "(`vultus keys rotate`); open it again when that has finished",
                code="data_dir_busy",
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    @contextmanager
    def alone(self, what: str, *, wait: float = ALONE_WAIT) -> Iterator[None]:
        """Hold the data directory alone for `what`: refused while any other engine, in this
        process or another, has it open."""
        assert self._fd is not None, "the engine is closed"
        deadline = time.monotonic() + wait
        while True:
            with file_lock(self.data_dir / GATE):
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    # The failed conversion let go of the shared hold; no one can take the
                    # exclusive one while this process holds the gate, so this never waits.
                    fcntl.flock(self._fd, fcntl.LOCK_SH)
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"{what} needs {self.data_dir} to itself, but another Vultus process has "
                    "it open (a running `vultus serve`?). Stop that process first, or let the "
                    "server do it: `vultus keys rotate --background` queues it as a job",
                    code="data_dir_busy",
                )
            time.sleep(0.1)
        try:
            yield
        finally:
            with file_lock(self.data_dir / GATE):
                fcntl.flock(self._fd, fcntl.LOCK_SH)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# Ingest runs' owners: each ingest holds DATA_DIR/runs/<owner>.lock while its runs are open.
RUNS_DIR = "runs"


class RunClaim:
    """What marks an ingest's runs as alive: a lock file held from before its runs start
    until they are closed. The kernel lets go of it when the process dies, so a later ingest
    knows the runs it finds "running" under a free lock were abandoned."""

    def __init__(self, data_dir: Path) -> None:
        self.token = secrets.token_hex(8)
        self.path = private_dir(data_dir / RUNS_DIR) / f"{self.token}.lock"
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def abandoned(data_dir: Path, owner: str) -> bool:
        """Whether the process that owned these runs is gone. A missing file is never taken
        for that: it is a run of another machine sharing a PostgreSQL catalog."""
        path = data_dir / RUNS_DIR / f"{owner}.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        return True

    @staticmethod
    def forget(data_dir: Path, owner: str) -> None:
        (data_dir / RUNS_DIR / f"{owner}.lock").unlink(missing_ok=True)
