"""Engines run shard jobs. The job function is the same whatever runs it: in this process,
in a local process pool, or (later) on a distributed engine with the same interface."""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

from fsbir import FsbirError

JobFn = Callable[[Any, Any, Callable[[int], None] | None], dict]

_progress_queue: Any = None


class WorkerDied(FsbirError):
    """A worker process was killed (out of memory, a signal) while it built a shard."""


def _init_worker(q: Any, parent_pid: int) -> None:
    global _progress_queue
    _progress_queue = q
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    try:  # one process per core already: OpenCV's own thread pool would only contend
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass


def _exit_with_parent(parent_pid: int, interval: float = 0.5) -> None:
    """A worker whose build process is gone (kill -9) has nobody to hand its shard to: exit."""
    while True:
        time.sleep(interval)
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # pragma: no cover - the pid was reused by another user's process
            os._exit(1)


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
        running: dict[Future, Any] = {}
        with ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(progress, os.getpid())) as pool:
            while True:
                while not exhausted and len(pending) < self.max_in_flight:
                    job = next(job_iter, None)
                    if job is None:
                        exhausted = True
                    else:
                        fut = pool.submit(_call, fn, job, settings)
                        running[fut] = getattr(job, "shard_id", "?")
                        pending.add(fut)
                if not pending:
                    break
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(progress, on_rows)
                for fut in done:
                    shard = running.pop(fut)
                    try:
                        stats = fut.result()
                    except BrokenProcessPool:
                        raise WorkerDied(f"a worker process died while building shard {shard} (killed, or out of "
                                         "memory); finished shards are kept: run the same command again to "
                                         "resume") from None
                    on_done(stats)
            _drain(progress, on_rows)


def _drain(q: Any, on_rows: Callable[[int], None]) -> None:
    while True:
        try:
            on_rows(q.get_nowait())
        except queue.Empty:
            return
