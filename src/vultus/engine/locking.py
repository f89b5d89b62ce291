"""The engine's lock: one thread at a time in the pipeline and the in-memory index."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, cast

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
