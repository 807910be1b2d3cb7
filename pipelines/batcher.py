"""One model thread for many concurrent searches: whatever waits when it wakes runs as one batch.

A search costs the model about the same whether it runs alone or beside 50 others in one forward
pass, so a crowd is served by batching, not by queueing one query at a time. The queue is bounded by
the work it holds, not by a count: a search is admitted while the estimated wait for everything
ahead of it (queries × the measured seconds a query) stays inside the latency budget; past that the
caller is told to come back, with how long until the queue has drained.
"""
from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from typing import Any, Callable

# The per-query cost is the model time of the last few batches of at least COST_BATCH searches over
# the searches they held: the rate at which batched work drains a queue. A lone search costs more a
# head, and one that ran while a crowd's requests were still being read paid for that too (a lone
# search has taken 0.78 s at the start of a burst that then ran at 20 ms a search).
COST_WINDOW = 8
COST_BATCH = 8


class Busy(Exception):
    """The queue holds more estimated work than the latency budget; retry after `retry_after_s`."""

    def __init__(self, retry_after_s: int):
        super().__init__(f"busy: try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class QueryBatcher:
    """`await submit(job)` → the job's result. `run_batch(jobs)` runs on the one model thread and
    returns one outcome per job, in order: a result, or an exception raised to that job's caller
    alone. `first_cost_s` is the per-query cost assumed until a batch of COST_BATCH has been timed."""

    def __init__(self, run_batch: Callable[[list], list], max_wait_s: float, max_batch: int = 64,
                 first_cost_s: float = 0.05):
        self._run_batch, self.max_wait_s, self.max_batch = run_batch, max_wait_s, max_batch
        self.cost_s = first_cost_s
        self._recent: deque[tuple[float, int]] = deque(maxlen=COST_WINDOW)
        self._pending: deque[tuple[Any, asyncio.Future, asyncio.AbstractEventLoop]] = deque()
        self._running = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._serve, name="fsbir-model", daemon=True)
        self._thread.start()

    def estimated_wait_s(self) -> float:
        """Seconds of model work ahead of a search that arrives now (its own included)."""
        with self._cond:
            return (len(self._pending) + self._running + 1) * self.cost_s

    async def submit(self, job):
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._cond:
            wait = (len(self._pending) + self._running + 1) * self.cost_s
            if wait > self.max_wait_s:
                raise Busy(max(1, math.ceil(wait - self.max_wait_s)))
            self._pending.append((job, future, loop))
            self._cond.notify()
        return await future

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    batch, self._pending = list(self._pending), deque()
                    for _, future, loop in batch:
                        loop.call_soon_threadsafe(_settle, future, RuntimeError("the server is shutting down"))
                    return
                batch = [self._pending.popleft() for _ in range(min(len(self._pending), self.max_batch))]
                self._running = len(batch)
            start = time.perf_counter()
            try:
                outcomes = self._run_batch([job for job, _, _ in batch])
            except Exception as exc:  # noqa: BLE001 - the batch's failure is each caller's
                outcomes = [exc] * len(batch)
            elapsed = time.perf_counter() - start
            with self._cond:
                self._running = 0
                if len(batch) >= min(COST_BATCH, self.max_batch):
                    self._recent.append((elapsed, len(batch)))
                    self.cost_s = sum(t for t, _ in self._recent) / sum(n for _, n in self._recent)
            for (_, future, loop), outcome in zip(batch, outcomes):
                loop.call_soon_threadsafe(_settle, future, outcome)


def _settle(future: asyncio.Future, outcome) -> None:
    if future.done():  # the caller went away
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
