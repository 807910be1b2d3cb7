"""`fsbir serve`: the draw-and-search page and its JSON API (FastAPI)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response

from fsbir.retrieval.index import SearchEngine, results_json
from fsbir.sketchgen import SketchgenError, decode_sketch
from fsbir.sketchgen.errors import TOO_LARGE

STATIC = Path(__file__).parent / "static"
MAX_K = 100


@dataclass(frozen=True, kw_only=True)
class WebConfig:
    index_dir: str
    checkpoint: str | None = None
    max_upload_bytes: int = 2_000_000
    max_pixels: int = 4_000_000


def sketch_from_upload(data: bytes, max_pixels: int) -> np.ndarray | None:
    """PNG/JPEG upload → (H, W) uint8 black-on-white sketch; None for an empty (blank) canvas.
    Decoded like every sketch, so a transparent canvas is white, never black."""
    try:
        grey = decode_sketch(data, max_pixels=max_pixels)
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


def create_app(cfg: WebConfig, engine=None) -> FastAPI:
    engine = engine or SearchEngine(cfg.index_dir, cfg.checkpoint)
    app = FastAPI(title="fsbir", docs_url=None, redoc_url=None)
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
        image = None
        if sketch is not None:
            data = await sketch.read(cfg.max_upload_bytes + 1)
            if len(data) > cfg.max_upload_bytes:
                raise HTTPException(status_code=413, detail=f"sketch: upload larger than {cfg.max_upload_bytes} bytes")
            if data:
                image = sketch_from_upload(data, cfg.max_pixels)
        if image is None and not (text and text.strip()):
            raise HTTPException(status_code=400, detail="draw something, type a few words, or both")
        return JSONResponse(results_json(engine.search(image, text, k), image_url))

    @app.get("/api/items/{product_id:path}/image")
    def item_image(product_id: str) -> Response:
        # Images come from the index's own Parquet by id: no path is ever built from the request.
        row = engine.row_of(product_id)
        if row is None:
            raise HTTPException(status_code=404, detail="no such item")
        return Response(engine.image_bytes(row), media_type="image/jpeg",
                        headers={"Cache-Control": "public, max-age=3600"})

    return app
