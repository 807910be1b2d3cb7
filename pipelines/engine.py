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


class _Progress:
    """A worker's row count for one shard, sent to the build process at most every `interval`
    seconds: a queue put per row (pickling, a pipe write, a wake-up of the build process) costs the
    cores the rows need. Counts carry the shard id, so the build process can settle each shard's
    total from its stats when it finishes, whatever is still in the queue's pipe."""

    def __init__(self, shard: Any, interval: float = 0.25):
        self.shard, self.interval, self.rows, self.sent_at = shard, interval, 0, time.monotonic()

    def __call__(self, n: int) -> None:
        self.rows += n
        if time.monotonic() - self.sent_at >= self.interval:
            _progress_queue.put((self.shard, self.rows))
            self.rows, self.sent_at = 0, time.monotonic()


def _call(fn: JobFn, job: Any, settings: Any, shard: Any) -> dict:
    return fn(job, settings, _Progress(shard))


class _RowTally:
    """Rows reported per running shard. A shard's stats settle its total when it finishes (the
    queue delivers late: its feeder thread may still hold a count after the result arrived), and
    counts that arrive for a settled shard are dropped, so the totals add up to every row exactly once."""

    def __init__(self, on_rows: Callable[[int], None]):
        self.on_rows, self.reported, self.settled = on_rows, {}, set()

    def drain(self, q: Any) -> None:
        while True:
            try:
                shard, n = q.get_nowait()
            except queue.Empty:
                return
            if shard not in self.settled:
                self.reported[shard] = self.reported.get(shard, 0) + n
                self.on_rows(n)

    def settle(self, shard: Any, rows: int) -> None:
        self.settled.add(shard)
        rest = rows - self.reported.pop(shard, 0)
        if rest:
            self.on_rows(rest)


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
        # pandas too: pyarrow imports it on its first array (0.5 s); paid once in the server, not per worker.
        ctx.set_forkserver_preload([fn.__module__, "pandas"])
        progress = ctx.Queue()
        pending: set[Future] = set()
        tally = _RowTally(on_rows)
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
                        shard = job.shard_id
                        fut = pool.submit(_call, fn, job, settings, shard)
                        running[fut] = shard
                        pending.add(fut)
                if not pending:
                    break
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                tally.drain(progress)
                for fut in done:
                    shard = running.pop(fut)
                    try:
                        stats = fut.result()
                    except BrokenProcessPool:
                        raise WorkerDied(f"a worker process died while building shard {shard} (killed, or out of "
                                         "memory); finished shards are kept: run the same command again to "
                                         "resume") from None
                    tally.settle(shard, stats["rows"])
                    on_done(stats)


def build_shard(fn: JobFn, job: Any, settings: Any) -> dict:
    """The Ray task: the same job function the local pool runs (progress is counted per shard)."""
    return fn(job, settings, None)


class RayEngine:
    """Shard jobs as Ray tasks, one per shard, as img2dataset's ray distributor does: the worker
    function is the same as for the local pool, and at most `max_in_flight` tasks are out at once,
    so the driver holds a bounded number of jobs. A task whose worker dies is run again by Ray;
    the shard writer's rename-into-place means a rerun never meets a half-written shard.

    `address=None` starts a local Ray for this run (with `workers` CPUs) and stops it after;
    "auto" or "HOST:PORT" joins a running cluster (`ray start --head` on the head node)."""

    def __init__(self, address: str | None = None, workers: int = 1, max_in_flight: int | None = None,
                 retries: int = 3):
        self.address, self.workers, self.max_in_flight, self.retries = address, max(1, workers), max_in_flight, retries

    def run(self, fn: JobFn, jobs: Iterable[Any], settings: Any,
            on_rows: Callable[[int], None], on_done: Callable[[dict], None]) -> None:
        try:
            import ray
        except ImportError:
            raise FsbirError("--engine ray needs Ray: pip install 'fsbir[ray]'") from None
        started_here = not ray.is_initialized()
        if started_here:
            try:
                if self.address:
                    ray.init(address=self.address, log_to_driver=False, configure_logging=False)
                else:
                    ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False,
                             configure_logging=False, object_store_memory=512 * 1024 * 1024)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise FsbirError(f"cannot start or reach Ray at {self.address or 'a new local cluster'}: "
                                 f"{str(exc).splitlines()[0][:200]}") from None
        try:
            task = ray.remote(max_retries=self.retries)(build_shard)
            limit = self.max_in_flight or 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
            pending: dict[Any, Any] = {}

            def collect(refs: list) -> None:
                for ref in refs:
                    shard = pending.pop(ref)
                    try:
                        stats = ray.get(ref)
                    except (ray.exceptions.WorkerCrashedError, ray.exceptions.RayTaskError,
                            ray.exceptions.NodeDiedError) as exc:
                        raise WorkerDied(f"shard {shard} failed on Ray after {self.retries} retries "
                                         f"({type(exc).__name__}); finished shards are kept: run the same "
                                         "command again to resume") from None
                    on_rows(stats["rows"])
                    on_done(stats)

            for job in jobs:
                if len(pending) >= limit:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    collect(done)
                pending[task.remote(fn, job, settings)] = job.shard_id
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                collect(done)
        finally:
            if started_here:
                ray.shutdown()
