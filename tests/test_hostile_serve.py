"""`fsbir serve` under hostile input and load: header checks before decoding, bounded bodies,
ids that neither break nor alias, a bounded queue, /healthz answering throughout."""
import asyncio
import json
import threading
import time

import pytest
from PIL import Image

from fsbir.cli import network_warning
from fsbir.pipelines.build import BuildConfig, run_build
from fsbir.pipelines.catalog import CatalogSpec
from tests.conftest import wait_until
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
    """A real engine whose searches take a while, to fill the queue."""

    def __init__(self, engine, seconds: float):
        self.engine, self.seconds = engine, seconds

    def __len__(self):
        return len(self.engine)

    def search(self, *args):
        time.sleep(self.seconds)
        return self.engine.search(*args)

    def __getattr__(self, name):
        return getattr(self.engine, name)


@pytest.mark.slow
def test_busy_server_answers_503_past_its_queue_and_healthz_stays_up(demo_index):
    import httpx
    import uvicorn

    from fsbir.pipelines.web import WebConfig, create_app
    from fsbir.retrieval.index import SearchEngine

    app_ = create_app(WebConfig(index_dir=str(demo_index), max_queue=3), engine=SlowEngine(SearchEngine(demo_index), 0.5))
    server = uvicorn.Server(uvicorn.Config(app_, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "uvicorn to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    codes: list[int] = []

    def one_search():
        with httpx.Client(timeout=60) as c:
            codes.append(c.post(f"{base}/api/search", data={"text": "a white t-shirt", "k": "3"}).status_code)

    try:
        searches = [threading.Thread(target=one_search) for _ in range(8)]
        for t in searches:
            t.start()
        time.sleep(0.2)
        with httpx.Client(timeout=5) as c:
            health = [c.get(f"{base}/healthz") for _ in range(5)]  # while the model thread is busy
        for t in searches:
            t.join()
        assert all(h.status_code == 200 for h in health)
        assert codes.count(200) >= 3 and codes.count(503) >= 1 and set(codes) <= {200, 503}
    finally:
        server.should_exit = True
        thread.join(timeout=10)
