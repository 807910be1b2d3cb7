import base64
import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fsbir.pipelines.web import WebConfig, create_app
from fsbir.retrieval.index import SearchEngine
from tests.conftest import encode, wait_until

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("FSBIR_ARTIFACTS", Path(__file__).parents[1] / "runs" / "test-artifacts"))


@pytest.fixture(scope="module")
def client(demo_index):
    return TestClient(create_app(WebConfig(index_dir=str(demo_index), max_upload_bytes=50_000)))


def sketch_png(alpha: bool = False) -> bytes:
    arr = np.full((256, 256, 4 if alpha else 3), 255, np.uint8)
    if alpha:
        arr[..., 3] = 0  # transparent paper, as a raw canvas export would be
        arr[60:200, 100:104] = (0, 0, 0, 255)
    else:
        arr[60:200, 100:104] = 0
    return encode(Image.fromarray(arr), "PNG")


def test_page_and_health(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and 'id="search"' in page.text
    assert client.get("/healthz").json() == {"status": "ok", "items": 64}


def test_search_sketch_text_and_both(client):
    for files, data in [({"sketch": ("s.png", sketch_png(), "image/png")}, {}), ({}, {"text": "white shirt"}),
                        ({"sketch": ("s.png", sketch_png(), "image/png")}, {"text": "white shirt"})]:
        resp = client.post("/api/search", files=files or None, data={**data, "k": "5"})
        assert resp.status_code == 200, resp.text
        results = resp.json()["results"]
        assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
        assert set(results[0]) == {"rank", "product_id", "caption", "score", "image_url"}
        img = client.get(results[0]["image_url"])
        assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(img.content)).size == (96, 96)


def test_transparent_canvas_is_white_not_black(client, demo_index):
    via_api = client.post("/api/search", files={"sketch": ("s.png", sketch_png(alpha=True), "image/png")},
                          data={"k": "3"}).json()["results"]
    opaque = client.post("/api/search", files={"sketch": ("s.png", sketch_png(), "image/png")},
                         data={"k": "3"}).json()["results"]
    assert [r["product_id"] for r in via_api] == [r["product_id"] for r in opaque]
    assert via_api[0]["score"] == pytest.approx(opaque[0]["score"], abs=1e-5)


def test_blank_canvas_means_text_only(client):
    blank = encode(Image.new("RGB", (256, 256), "white"), "PNG")
    with_blank = client.post("/api/search", files={"sketch": ("s.png", blank, "image/png")},
                             data={"text": "red dress", "k": "3"}).json()["results"]
    text_only = client.post("/api/search", data={"text": "red dress", "k": "3"}).json()["results"]
    assert with_blank == text_only
    resp = client.post("/api/search", files={"sketch": ("s.png", blank, "image/png")}, data={"k": "3"})
    assert resp.status_code == 400 and "draw something" in resp.json()["detail"]


def test_bad_uploads_get_4xx(client):
    big = os.urandom(60_000)
    resp = client.post("/api/search", files={"sketch": ("s.png", big, "image/png")}, data={"k": "3"})
    assert resp.status_code == 413 and "larger than" in resp.json()["detail"]
    resp = client.post("/api/search", files={"sketch": ("s.png", b"not a png", "image/png")}, data={"k": "3"})
    assert resp.status_code == 400 and "decode_error" in resp.json()["detail"]
    resp = client.post("/api/search", data={"text": "x", "k": "1000"})
    assert resp.status_code == 422


def test_item_ids_cannot_reach_files(client):
    for bad in ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "nope"]:
        resp = client.get(f"/api/items/{bad}/image")
        assert resp.status_code == 404


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed (make test installs it)")
def test_real_browser_draw_type_search(demo_index, demo_shards):
    from playwright.sync_api import sync_playwright

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "fsbir", "serve", str(demo_index), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        import urllib.request

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(healthy, "the server's /healthz", server, poll=0.2)
        engine = SearchEngine(demo_index)
        item = engine.items.slice(0, 1).to_pylist()[0]  # a known catalog item: draw its box, type its caption
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run"])
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto(f"http://127.0.0.1:{port}/")
            box = page.locator("#pad").bounding_box()
            x0, y0 = box["x"], box["y"]
            page.mouse.move(x0 + 120, y0 + 60)
            page.mouse.down()
            for x, y in [(260, 60), (300, 330), (90, 330), (120, 60)]:
                page.mouse.move(x0 + x, y0 + y, steps=12)
            page.mouse.up()
            page.fill("#text", item["caption"])
            with page.expect_response("**/api/search") as resp_info:
                page.click("#search")
            assert resp_info.value.status == 200
            page.wait_for_selector(".result-card")
            cards = page.locator(".result-card")
            assert cards.count() == 12
            shown = [cards.nth(i).get_attribute("data-product-id") for i in range(12)]
            # The PNG the page uploads (its own export function): composited on white, strokes included.
            b64 = page.evaluate("""async () => {
                const bytes = new Uint8Array(await (await sketchBlob()).arrayBuffer());
                let s = ""; for (const b of bytes) s += String.fromCharCode(b); return btoa(s); }""")
            img = Image.open(io.BytesIO(base64.b64decode(b64)))
            assert img.size == (256, 256)
            rgba = np.asarray(img.convert("RGBA"))
            assert (rgba[0, 0] == 255).all(), "canvas export must be white, not transparent/black"
            assert (rgba[..., 0] < 128).sum() > 200, "the drawn strokes are in the upload"
            # What the page shows is what the engine ranks for that drawing + caption, and it is not
            # the text-only ranking, so the drawing reached the server.
            expected = [r.product_id for r in engine.search(np.asarray(img.convert("L")), item["caption"], 12)]
            assert shown == expected
            assert shown != [r.product_id for r in engine.search(None, item["caption"], 12)]
            assert page.locator(".result-card img").first.evaluate("i => i.naturalWidth") > 0
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "serve-e2e.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
