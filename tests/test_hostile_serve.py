"""`fsbir serve` under hostile input and load: header checks before decoding, bounded bodies,
ids that neither break nor alias, a bounded queue, /healthz answering throughout."""
import asyncio
import json
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

from fsbir.pipelines.cli_search import network_warning
from fsbir.pipelines.build import BuildConfig, run_build
from fsbir.pipelines.catalog import CatalogSpec
from tests.conftest import encode, wait_until
from tests.hostile import corpus


def test_tall_strip_is_refused_from_the_header(demo_index):
    from fastapi.testclient import TestClient

    from fsbir.pipelines.web import WebConfig, create_app

    client = TestClient(create_app(WebConfig(index_dir=str(demo_index))))
    for w, h in ((8, 499_999), (100, 40_000)):
        data = corpus.png_header_only(w, h)
        assert len(data) < 1_000_000
        resp = client.post("/api/search", files={"sketch": ("s.png", data, "image/png")}, data={"k": "3"})
        assert resp.status_code == 400 and "bad_aspect" in resp.json()["detail"]
    assert client.get("/healthz").status_code == 200


def asgi_call(app, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, int]:
    """(status, chunks the app pulled) of one raw ASGI POST."""
    pulled = {"n": 0}
    sent: list[dict] = []

    async def receive():
        if pulled["n"] < len(chunks):
            pulled["n"] += 1
            return {"type": "http.request", "body": chunks[pulled["n"] - 1], "more_body": pulled["n"] < len(chunks)}
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/search", "raw_path": b"/api/search", "query_string": b"",
             "headers": headers, "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 1), "root_path": ""}
    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start"), pulled["n"]


def test_body_limit_before_reading(demo_index):
    from fsbir.pipelines.web import WebConfig, create_app

    app_ = create_app(WebConfig(index_dir=str(demo_index), max_upload_bytes=10_000))
    head = (b'--b\r\nContent-Disposition: form-data; name="sketch"; filename="s.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")
    chunks = [head] + [b"x" * 65536] * 800  # a 50 MB upload, well formed as far as it goes
    form = (b"content-type", b"multipart/form-data; boundary=b")
    status, pulled = asgi_call(app_, [(b"content-length", b"52428800"), form], chunks)
    assert status == 413 and pulled == 0  # refused by Content-Length, nothing read
    status, pulled = asgi_call(app_, [form], chunks)
    assert status == 413 and pulled <= 4  # no Content-Length: cut off just past the limit


def test_ids_with_slashes_and_dots_round_trip(demo_run, tmp_path):
    from fastapi.testclient import TestClient

    from fsbir.pipelines.web import WebConfig, create_app
    from fsbir.retrieval.index import IndexConfig, build_index

    odd = ["a/b", "c?d", "%2e%2e", "e#f"]
    for i, _ in enumerate(odd):
        Image.new("RGB", (64, 64), (60 * i, 20, 200)).save(tmp_path / f"{i}.png")
    (tmp_path / "items.jsonl").write_text("".join(json.dumps({"id": pid, "image": f"{i}.png", "caption": f"item {i}"}) + "\n"
                                                  for i, pid in enumerate(odd)))
    run_build(BuildConfig(catalog=CatalogSpec(str(tmp_path / "items.jsonl"), id_column="id"),
                          out_dir=str(tmp_path / "shards"), workers=1, image_size=64))
    build_index(IndexConfig(shards=str(tmp_path / "shards"), checkpoint=str(demo_run), out=str(tmp_path / "idx")))
    client = TestClient(create_app(WebConfig(index_dir=str(tmp_path / "idx"))))
    results = client.post("/api/search", data={"text": "item", "k": "4"}).json()["results"]
    assert sorted(r["product_id"] for r in results) == sorted(odd)
    images = {}
    for r in results:
        resp = client.get(r["image_url"])
        assert resp.status_code == 200, r["image_url"]
        images[r["product_id"]] = resp.content
    assert len(set(images.values())) == 4  # every id reached its own photo, none aliased


def test_network_warning():
    assert network_warning("127.0.0.1") is None and network_warning("localhost") is None
    assert "open to the network" in network_warning("0.0.0.0")


class SlowEngine:
    """A real engine whose every search takes `seconds` longer, batched or not (to fill the queue);
    it records the size of each batch it is asked."""

    def __init__(self, engine, seconds: float):
        self.engine, self.seconds, self.batch_sizes = engine, seconds, []

    def __len__(self):
        return len(self.engine)

    def search_many(self, queries, k):
        self.batch_sizes.append(len(queries))
        time.sleep(self.seconds * len(queries))
        return self.engine.search_many(queries, k)

    def __getattr__(self, name):
        return getattr(self.engine, name)


@contextmanager
def live_server(app_):
    """A real uvicorn server on a free 127.0.0.1 port, in a thread; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app_, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "uvicorn to start")
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def concurrently(n: int, call) -> list:
    """Run call(i) for i in range(n) on n threads started together; their results in order."""
    results: list = [None] * n
    start = threading.Barrier(n)

    def one(i):
        start.wait()
        results[i] = call(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.slow
def test_busy_server_answers_503_with_retry_after_past_its_budget_and_healthz_stays_up(demo_index):
    import httpx

    from fsbir.pipelines.web import WebConfig, create_app
    from fsbir.retrieval.index import SearchEngine

    # Each search takes 0.25 s or more, so a 0.6 s budget admits about two searches' work at a time.
    app_ = create_app(WebConfig(index_dir=str(demo_index), max_wait_ms=600),
                      engine=SlowEngine(SearchEngine(demo_index), 0.25))
    with live_server(app_) as base:
        def one_search(_):
            with httpx.Client(timeout=60) as c:
                return c.post(f"{base}/api/search", data={"text": "a white t-shirt", "k": "3"})

        health: list = []

        def poll_health():
            with httpx.Client(timeout=5) as c:
                for _ in range(5):
                    health.append(c.get(f"{base}/healthz"))
                    time.sleep(0.05)

        poller = threading.Thread(target=poll_health)
        poller.start()
        answers = concurrently(8, one_search)
        poller.join()
        codes = [a.status_code for a in answers]
        assert all(h.status_code == 200 for h in health)
        assert codes.count(200) >= 1 and codes.count(503) >= 1 and set(codes) <= {200, 503}
        busy = [a for a in answers if a.status_code == 503]
        assert all(int(a.headers["retry-after"]) >= 1 for a in busy)
        time.sleep(max(int(a.headers["retry-after"]) for a in busy))
        assert one_search(0).status_code == 200  # once the queue has drained, searches are admitted again


def drawing_png(seed: int) -> bytes:
    """A few random black strokes on a white 256 px canvas, as the page uploads them."""
    from fsbir.sketchgen.strokes import render_strokes

    rng = np.random.default_rng(seed)
    strokes = [[list(rng.integers(0, 255, 4)), list(rng.integers(0, 255, 4))] for _ in range(3)]
    return encode(Image.fromarray(render_strokes(strokes, 256, 3)), "PNG")


@pytest.mark.slow
def test_fifty_concurrent_searches_are_all_answered_as_one_at_a_time(demo_index):
    import httpx

    from fsbir.pipelines.web import WebConfig, create_app
    from fsbir.retrieval.index import SearchEngine

    engine = SlowEngine(SearchEngine(demo_index), 0.0)
    texts = ["a white t-shirt", "a red dress", "a long trouser", "blue jeans", "a black shoe"]

    def form(i):
        """Ten distinct queries (i % 10): text alone, a drawing alone, or both, and k from 3 to 10."""
        j = i % 10
        data = {"k": str(3 + j % 8)}
        if j % 3 != 1:
            data["text"] = texts[j % 5]
        return ({"sketch": ("s.png", drawing_png(j), "image/png")} if j % 3 else None), data

    with live_server(create_app(WebConfig(index_dir=str(demo_index)), engine=engine)) as base:
        def search(i):
            files, data = form(i)
            with httpx.Client(timeout=60) as c:
                return c.post(f"{base}/api/search", files=files, data=data)

        alone = [search(i) for i in range(10)]
        crowd = concurrently(50, search)
    assert max(engine.batch_sizes) > 1  # the crowd was answered in batches, not one at a time
    assert [a.status_code for a in alone] == [200] * 10
    assert [c.status_code for c in crowd] == [200] * 50
    ids = lambda r: [x["product_id"] for x in r.json()["results"]]  # noqa: E731
    scores = lambda r: [x["score"] for x in r.json()["results"]]  # noqa: E731
    for i, answer in enumerate(crowd):
        assert ids(answer) == ids(alone[i % 10]), i
        assert scores(answer) == pytest.approx(scores(alone[i % 10]), abs=1e-5)
