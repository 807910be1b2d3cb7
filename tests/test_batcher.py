"""The server's query batcher: concurrent searches run as one batch, a bad one fails alone, and
the queue is bounded by estimated work, not by a count."""
import asyncio
import threading
import time

import pytest

from fsbir.pipelines.batcher import Busy, QueryBatcher


def gather(batcher, jobs):
    async def main():
        return await asyncio.gather(*(batcher.submit(j) for j in jobs), return_exceptions=True)
    return asyncio.run(main())


def test_waiting_jobs_run_as_one_batch_and_each_gets_its_own_outcome():
    batches: list[list] = []
    release = threading.Event()

    def run_batch(jobs):
        release.wait(5)  # the first batch holds the thread while the rest arrive
        batches.append(list(jobs))
        return [ValueError(f"bad {j}") if j == 3 else j * 10 for j in jobs]

    batcher = QueryBatcher(run_batch, max_wait_s=60, first_cost_s=0.001)
    threading.Timer(0.3, release.set).start()
    outcomes = gather(batcher, range(8))
    batcher.close()
    assert [o for i, o in enumerate(outcomes) if i != 3] == [0, 10, 20, 40, 50, 60, 70]
    assert isinstance(outcomes[3], ValueError) and str(outcomes[3]) == "bad 3"
    assert sorted(j for b in batches for j in b) == list(range(8))
    assert len(batches) <= 2 and max(len(b) for b in batches) >= 7  # not one at a time


def test_batches_are_capped_at_max_batch():
    sizes: list[int] = []
    batcher = QueryBatcher(lambda jobs: sizes.append(len(jobs)) or list(jobs), max_wait_s=60, max_batch=4,
                           first_cost_s=0.001)
    assert gather(batcher, range(10)) == list(range(10))
    batcher.close()
    assert max(sizes) <= 4 and sum(sizes) == 10


def test_past_the_latency_budget_a_search_is_refused_with_a_retry_time():
    def slow(jobs):
        time.sleep(0.2)
        return list(jobs)

    # 0.5 s a query assumed, 1.2 s budget: two searches' work is admitted, the third is refused.
    batcher = QueryBatcher(slow, max_wait_s=1.2, max_batch=2, first_cost_s=0.5)
    outcomes = gather(batcher, range(5))
    assert outcomes[:2] == [0, 1]
    assert all(isinstance(o, Busy) and o.retry_after_s >= 1 for o in outcomes[2:])
    # full batches teach it the real cost (0.1 s a query, or 0.2 for a lone one), so a crowd now fits
    assert batcher.cost_s <= 0.2 + 0.05
    batcher.close()


def test_small_batches_do_not_move_the_estimate():
    """A lone search pays a batch's fixed costs alone; the queue drains at the batched rate."""
    def lone_is_slow(jobs):
        time.sleep(0.3 if len(jobs) == 1 else 0.01 * len(jobs))
        return list(jobs)

    batcher = QueryBatcher(lone_is_slow, max_wait_s=60, max_batch=8, first_cost_s=0.01)
    assert gather(batcher, [0]) == [0]
    assert batcher.cost_s == 0.01
    release = threading.Event()
    held = QueryBatcher(lambda jobs: release.wait(5) and lone_is_slow(jobs), max_wait_s=60, max_batch=8,
                        first_cost_s=0.5)
    threading.Timer(0.3, release.set).start()
    gather(held, range(9))  # one held, then a batch of 8
    assert held.cost_s < 0.5
    batcher.close()
    held.close()


def test_a_failing_batch_fails_its_callers_and_the_thread_serves_on():
    calls = {"n": 0}

    def flaky(jobs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("model fell over")
        return list(jobs)

    batcher = QueryBatcher(flaky, max_wait_s=60, first_cost_s=0.001)
    first = gather(batcher, [1])
    assert isinstance(first[0], RuntimeError)
    assert gather(batcher, [2, 3]) == [2, 3]
    batcher.close()


def test_close_fails_what_still_waits():
    started = threading.Event()

    def block(jobs):
        started.set()
        time.sleep(0.3)
        return list(jobs)

    batcher = QueryBatcher(block, max_wait_s=60, max_batch=1, first_cost_s=0.001)

    async def main():
        tasks = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
        await asyncio.sleep(0.05)
        await asyncio.get_running_loop().run_in_executor(None, batcher.close)
        return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = asyncio.run(main())
    assert outcomes[0] == 0
    assert any(isinstance(o, RuntimeError) and "shutting down" in str(o) for o in outcomes[1:])


@pytest.mark.parametrize("n", [1, 7])
def test_estimated_wait_counts_the_arriving_search(n):
    batcher = QueryBatcher(lambda jobs: list(jobs), max_wait_s=60, first_cost_s=0.25)
    assert batcher.estimated_wait_s() == pytest.approx(0.25)
    assert gather(batcher, range(n)) == list(range(n))
    batcher.close()
