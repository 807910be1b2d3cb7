"""A stage of a pipeline on its own thread, joined to the calling thread by a bounded queue.

The worker's own steps (reading and hashing files, cutting the catalog into jobs, building records,
writing Parquet) run beside the sketching where a core is spare: file I/O, hashing, OpenCV, PIL and
Arrow release the GIL, so the stages overlap. The queue's bound keeps memory to a few items."""
from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")

_END = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def ahead(items: Iterable[T], depth: int, name: str = "fsbir-ahead") -> Iterator[T]:
    """The items of `items`, produced on a thread up to `depth` ahead of the caller (depth 0: in
    line, no thread). An error in the producer is raised in the caller, at the item it failed on;
    a caller that stops early stops the producer at its next item."""
    if depth <= 0:
        yield from items
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        """Put unless the caller has stopped; False once it has."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # handed to the caller, raised there
            put(_Failed(exc))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


class Behind(Generic[T]):
    """Hands items to `consume` on a thread, at most `depth` waiting (depth 0: in line, no
    thread). Leaving the block waits for every item to be consumed; an error in `consume` is
    raised in the caller (at its next `put`, or when the block ends), and no item after it is
    consumed. A block left by an error consumes nothing more."""

    def __init__(self, consume: Callable[[T], None], depth: int, name: str = "fsbir-behind"):
        self.consume = consume
        self.error: BaseException | None = None
        self.queue: queue.Queue | None = queue.Queue(maxsize=depth) if depth > 0 else None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True) if self.queue else None

    def __enter__(self) -> "Behind[T]":
        if self.thread is not None:
            self.thread.start()
        return self

    def put(self, item: T) -> None:
        if self.queue is None:
            self.consume(item)
            return
        if self.error is not None:
            raise self.error
        self.queue.put(item)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.thread is None:
            return
        if exc is not None and self.error is None:
            self.error = exc  # the items still waiting are dropped, not consumed
        self.queue.put(_END)
        self.thread.join()
        if exc is None and self.error is not None:
            raise self.error

    def _run(self) -> None:
        while (item := self.queue.get()) is not _END:
            if self.error is None:
                try:
                    self.consume(item)
                except BaseException as exc:  # raised in the caller
                    self.error = exc
