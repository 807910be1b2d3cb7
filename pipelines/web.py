"""`fsbir serve`: the draw-and-search page and its JSON API (FastAPI).

The model runs on one thread, off the event loop, so the page, images and /healthz keep answering
while searches run. Concurrent searches are batched: when the model thread wakes it runs every search
that waits as one forward pass (`batcher.py`). Searches wait only while the estimated work ahead of
them fits the latency budget (`max_wait_ms`); past it the server answers 503 with Retry-After at once
instead of piling up. Request bodies are bounded before they are read.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response

from fsbir.sketchgen import SketchgenError, decode_sketch
from fsbir.sketchgen.errors import TOO_LARGE

from .batcher import COST_BATCH, Busy, QueryBatcher
from .web_config import WebConfig

STATIC = Path(__file__).parent / "static"
MAX_K = 100


# Room for the multipart framing, the text field and k beside the sketch itself.
FORM_OVERHEAD_BYTES = 64 * 1024


def sketch_from_upload(data: bytes) -> np.ndarray | None:
    """PNG/JPEG upload → (H, W) uint8 black-on-white sketch; None for an empty (blank) canvas.
    Decoded like every sketch, so a transparent canvas is white, never black, and pixel count and
    shape are checked from the header first."""
    try:
        grey = decode_sketch(data)
    except SketchgenError as exc:
        raise HTTPException(status_code=413 if exc.reason == TOO_LARGE else 400,
                            detail=f"sketch: {exc.reason}: {exc}") from None
    if (grey < 128).sum() < 5:  # nothing drawn
        return None
    return grey


def image_url(product_id: str) -> str:
    """An item's image URL; the id is percent-encoded whole, so '/', '?' or '%2e%2e' in an id
    can neither break the URL nor alias another route."""
    return f"/api/items/{quote(product_id, safe='')}/image"


class BodyLimit:
    """ASGI wrapper: a request whose Content-Length is over the limit gets 413 before its body is
    read; one without Content-Length (chunked) is cut off as soon as it passes the limit."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._refuse(send)
        state = {"received": 0, "over": False, "started": False}

        async def bounded_receive():
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.limit:
                    state["over"] = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if state["over"]:  # the app's own answer to a cut-off body is replaced by 413
                if not state["started"]:
                    state["started"] = True
                    await self._refuse(send)
                return
            state["started"] = state["started"] or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
            if not state["started"]:
                await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"detail": f"request body larger than {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def create_app(cfg: WebConfig, engine=None):
    """The ASGI app: FastAPI routes inside the body-size guard."""
    from fsbir.retrieval.index import SearchEngine, results_json  # torch: only when serving

    engine = engine or SearchEngine(cfg.index_dir, cfg.checkpoint)
    app = FastAPI(title="fsbir", docs_url=None, redoc_url=None)
    batcher = QueryBatcher(lambda jobs: _search_batch(engine, jobs), max_wait_s=cfg.max_wait_ms / 1000,
                           max_batch=cfg.max_batch, first_cost_s=_one_search_s(engine))
    app.router.on_shutdown.append(batcher.close)
    page = (STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    def index_page() -> str:
        return page

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "items": len(engine)}

    @app.post("/api/search")
    async def api_search(sketch: UploadFile | None = File(None), text: str | None = Form(None),
                         k: int = Form(10)) -> JSONResponse:
        if not 1 <= k <= MAX_K:
            raise HTTPException(status_code=422, detail=f"k must be between 1 and {MAX_K}")
        if text is not None and len(text) > 1000:
            raise HTTPException(status_code=413, detail="text: longer than 1000 characters")
        data = b""
        if sketch is not None:
            data = await sketch.read(cfg.max_upload_bytes + 1)
            if len(data) > cfg.max_upload_bytes:
                raise HTTPException(status_code=413, detail=f"sketch: upload larger than {cfg.max_upload_bytes} bytes")
        try:
            results = await batcher.submit((data, text, k))
        except Busy as busy:
            raise HTTPException(status_code=503, detail=f"busy: more searches are waiting than the server answers in "
                                f"{cfg.max_wait_ms} ms; try again shortly",
                                headers={"Retry-After": str(busy.retry_after_s)}) from None
        return JSONResponse(results_json(results, image_url))

    @app.get("/api/items/{encoded:path}/image")
    def item_image(request: Request) -> Response:
        # The id is read from the raw path and decoded exactly once (the router's own decoding
        # would turn an id "%2e%2e" into ".."). Images come from the index's own Parquet by id:
        # no file path is ever built from the request.
        raw = request.scope.get("raw_path") or request.url.path.encode()
        encoded = raw.decode("latin-1").split("?", 1)[0][len("/api/items/"):-len("/image")]
        row = engine.row_of(unquote(encoded))
        if row is None:
            raise HTTPException(status_code=404, detail="no such item")
        return Response(engine.image_bytes(row), media_type="image/jpeg",
                        headers={"Cache-Control": "public, max-age=3600"})

    return BodyLimit(app, cfg.max_upload_bytes + FORM_OVERHEAD_BYTES)


def _one_search_s(engine) -> float:
    """Seconds a search costs in a batch of COST_BATCH sketch+text searches: the queue's first estimate. A
    first batch warms the model (its first pass pays one-off set-up costs, which would make the
    estimate refuse a crowd)."""
    sketch = np.full((64, 64), 255, np.uint8)
    sketch[32, 8:56] = 0
    batch = [(sketch, "warm-up")] * COST_BATCH
    engine.search_many(batch, 1)
    start = time.perf_counter()
    engine.search_many(batch, 1)
    return (time.perf_counter() - start) / COST_BATCH


def _search_batch(engine, jobs: list[tuple[bytes, str | None, int]]) -> list:
    """Decode each upload (on the model thread: decoding is CPU work too), then search every query
    that decoded in one batch. A bad upload fails its own search only."""
    outcomes: list = []
    queries, asked = [], []
    for i, (data, text, k) in enumerate(jobs):
        try:
            image = sketch_from_upload(data) if data else None
            if image is None and not (text and text.strip()):
                raise HTTPException(status_code=400, detail="draw something, type a few words, or both")
        except HTTPException as exc:
            outcomes.append(exc)
            continue
        outcomes.append(None)
        queries.append((image, text))
        asked.append(i)
    if queries:
        k_max = max(jobs[i][2] for i in asked)
        for i, results in zip(asked, engine.search_many(queries, k_max)):
            outcomes[i] = results[:jobs[i][2]]
    return outcomes
