"""Engines run shard jobs. The job function is the same whatever runs it: in this process,
in a local process pool, or (later) on a distributed engine with the same interface."""
from __future__ import annotations

import multiprocessing as mp
import queue
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator

JobFn = Callable[[Any, Any, Callable[[int], None] | None], dict]

_progress_queue: Any = None


def _init_worker(q: Any) -> None:
    global _progress_queue
    _progress_queue = q
    try:  # one process per core already: OpenCV's own thread pool would only contend
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass


def _report(n: int) -> None:
    _progress_queue.put(n)


def _call(fn: JobFn, job: Any, settings: Any) -> dict:
    return fn(job, settings, _report)


class LocalEngine:
    """workers <= 1 runs jobs inline (no pickling, no process start-up); otherwise a process pool with a bounded number of jobs in flight, so memory does not grow with the catalog."""

    def __init__(self, workers: int = 1, max_in_flight: int | None = None):
        self.workers = max(1, workers)
        self.max_in_flight = max_in_flight or 2 * self.workers

    def run(self, fn: JobFn, jobs: Iterable[Any], settings: Any,
            on_rows: Callable[[int], None], on_done: Callable[[dict], None]) -> None:
        if self.workers == 1:
            for job in jobs:
                on_done(fn(job, settings, on_rows))
            return
        # forkserver: workers fork from a clean server that imported the job's module once, so
        # they start fast without inheriting this process's threads (progress bar, pools).
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([fn.__module__])
        progress = ctx.Queue()
        pending: set[Future] = set()
        job_iter: Iterator[Any] = iter(jobs)
        exhausted = False
        with ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker, initargs=(progress,)) as pool:
            while True:
                while not exhausted and len(pending) < self.max_in_flight:
                    job = next(job_iter, None)
                    if job is None:
                        exhausted = True
                    else:
                        pending.add(pool.submit(_call, fn, job, settings))
                if not pending:
                    break
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(progress, on_rows)
                for fut in done:
                    on_done(fut.result())
            _drain(progress, on_rows)


def _drain(q: Any, on_rows: Callable[[int], None]) -> None:
    while True:
        try:
            on_rows(q.get_nowait())
        except queue.Empty:
            return
