"""The pipeline stages on threads: order kept, errors carried to the caller, nothing left running."""
import threading
import time

import pytest

from fsbir.pipelines.threads import Behind, ahead


def _stage_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("stage-")]


@pytest.mark.parametrize("depth", [0, 1, 4])
def test_ahead_yields_every_item_in_order_on_a_thread_at_most_depth_ahead(depth):
    produced: list[int] = []
    seen_ahead: list[int] = []

    def items():
        for i in range(50):
            produced.append(i)
            yield i

    out = []
    for item in ahead(items(), depth, "stage-read"):
        seen_ahead.append(len(produced) - len(out) - 1)
        out.append(item)
        time.sleep(0.001)
    assert out == list(range(50))
    # produced-but-not-yet-taken: the queue's `depth`, one more held by a producer blocked on put
    assert max(seen_ahead) <= depth + 1 and (depth == 0 or max(seen_ahead) >= 1)
    assert _stage_threads() == []


def test_ahead_raises_the_producers_error_in_the_caller_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise ValueError("catalog line 3 is broken")

    out = []
    with pytest.raises(ValueError, match="line 3"):
        for item in ahead(items(), 4, "stage-read"):
            out.append(item)
    assert out == [1, 2] and _stage_threads() == []


def test_ahead_stops_its_producer_when_the_caller_stops_early():
    produced: list[int] = []

    def items():
        for i in range(10_000):
            produced.append(i)
            yield i

    gen = ahead(items(), 2, "stage-read")
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()
    assert _stage_threads() == [] and len(produced) < 10


@pytest.mark.parametrize("depth", [0, 3])
def test_behind_consumes_every_item_in_order_before_the_block_ends(depth):
    consumed: list[int] = []
    with Behind(consumed.append, depth, "stage-write") as sink:
        for i in range(100):
            sink.put(i)
    assert consumed == list(range(100)) and _stage_threads() == []


def test_behind_raises_the_consumers_error_in_the_caller_and_consumes_nothing_after_it():
    consumed: list[int] = []

    def consume(i: int) -> None:
        if i == 5:
            raise OSError(28, "No space left on device")
        consumed.append(i)

    with pytest.raises(OSError, match="No space"):
        with Behind(consume, 2, "stage-write") as sink:
            for i in range(1000):
                sink.put(i)
                time.sleep(0.0005)
    assert consumed == [0, 1, 2, 3, 4] and _stage_threads() == []


def test_behind_left_by_the_callers_error_drops_what_waits_and_keeps_that_error():
    consumed: list[int] = []
    gate = threading.Event()

    def consume(i: int) -> None:
        gate.wait(5)
        consumed.append(i)

    with pytest.raises(KeyError, match="caller"):
        with Behind(consume, 8, "stage-write") as sink:
            for i in range(5):
                sink.put(i)
            threading.Timer(0.2, gate.set).start()  # the item in hand finishes after the caller failed
            raise KeyError("caller")
    assert consumed == [0] and _stage_threads() == []


def test_behind_raises_an_error_on_the_last_item_when_the_block_ends():
    def consume(i: int) -> None:
        if i == 2:
            raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        with Behind(consume, 4, "stage-write") as sink:
            for i in range(3):
                sink.put(i)
    assert _stage_threads() == []
