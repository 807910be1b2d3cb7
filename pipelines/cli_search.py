"""The search commands: `fsbir index`, `search` and `serve`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fsbir import FsbirError
from fsbir.pipelines.web_config import WebConfig
from fsbir.retrieval.configs import CatalogWeights, IndexConfig

from .cli_options import CATALOG_CATEGORY_WEIGHT, CATALOG_COLOUR_WEIGHT, default


def network_warning(host: str) -> str | None:
    """What to tell a user who binds the server beyond this machine."""
    if host in ("127.0.0.1", "localhost", "::1"):
        return None
    return (f"warning: binding to {host}: the page and its API are open to the network, without "
            "authentication or TLS")


def index(
    shards: str = typer.Argument(..., help="Folder of shards from build-dataset (the gallery)."),
    checkpoint: str = typer.Option(..., help="Checkpoint file, or a run folder (uses checkpoints/best.pt)."),
    out: Path = typer.Option(..., "--out", help="Index folder to write."),
    split: str = typer.Option(default(IndexConfig, "split"), help="Which split's photos to index: all | train | val | test."),
    index_type: str = typer.Option(default(IndexConfig, "index_type"), help="auto (exact below 100k items, else IVF tuned to recall@10 ≥ 0.95) | flat (exact) | ivf | hnsw."),
    nlist: int = typer.Option(default(IndexConfig, "nlist"), help="IVF lists (0: about 4·sqrt(N))."),
    hnsw_m: int = typer.Option(default(IndexConfig, "hnsw_m"), help="HNSW graph degree."),
    batch_size: int = typer.Option(default(IndexConfig, "batch_size")),
    device: str = typer.Option(default(IndexConfig, "device"), help="auto | cpu | cuda | cuda:N."),
    colour_column: Optional[str] = typer.Option(None, help="Catalog column with each product's colour (e.g. baseColour): words that name a colour then find the products the catalog lists in it, not the ones the colour head guesses. Needs a colour head."),
    category_column: Optional[str] = typer.Option(None, help="Catalog column with each product's type (e.g. articleType), the same for the category head's block. Needs a model trained with that column."),
    catalog_colour_weight: float = CATALOG_COLOUR_WEIGHT,
    catalog_category_weight: float = CATALOG_CATEGORY_WEIGHT,
) -> None:
    """Embed the gallery photos and write embeddings, metadata, a faiss index and the model's fingerprint."""
    from fsbir.pipelines.terminal import index_with_progress

    index_with_progress(IndexConfig(shards=shards, checkpoint=checkpoint, out=str(out), split=split,
                                    index_type=index_type, nlist=nlist, hnsw_m=hnsw_m, batch_size=batch_size,
                                    device=device, colour_column=colour_column, category_column=category_column,
                                    catalog_weights=CatalogWeights(colour=catalog_colour_weight,
                                                                   category=catalog_category_weight)))


def search(
    index_dir: Path = typer.Argument(..., help="Folder written by `fsbir index`."),
    sketch: Optional[Path] = typer.Option(None, help="Sketch image file (dark strokes on a light or transparent background)."),
    text: Optional[str] = typer.Option(None, help="A few words, e.g. 'a long ivory trouser'."),
    k: int = typer.Option(10, "--k", help="Number of results."),
    json_out: bool = typer.Option(False, "--json", help="Print {\"results\": [...]} as JSON instead of a table."),
    grid: Optional[Path] = typer.Option(None, help="Write a PNG: the query, then the top-k photos with captions and scores."),
    checkpoint: Optional[str] = typer.Option(None, help="Model to query with (default: the one the index was built with)."),
    nprobe: Optional[int] = typer.Option(None, help="IVF lists to visit (approximate indexes)."),
    ef_search: Optional[int] = typer.Option(None, help="HNSW search breadth (approximate indexes)."),
    device: str = typer.Option("cpu", help="auto | cpu | cuda | cuda:N."),
) -> None:
    """Search the index with a sketch, a text, or both."""
    from fsbir.pipelines.terminal import SearchRequest, run_search

    if sketch is None and not text:
        raise FsbirError("give --sketch FILE, --text '...', or both")
    run_search(SearchRequest(index_dir=str(index_dir), sketch=str(sketch) if sketch else None, text=text, k=k,
                             json_out=json_out, grid=str(grid) if grid else None, checkpoint=checkpoint,
                             nprobe=nprobe, ef_search=ef_search, device=device))


def serve(
    index_dir: Path = typer.Argument(..., help="Folder written by `fsbir index`."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 127.0.0.1 keeps it on this machine."),
    port: int = typer.Option(8000),
    checkpoint: Optional[str] = typer.Option(None, help="Model to query with (default: the index's)."),
    max_upload_bytes: int = typer.Option(default(WebConfig, "max_upload_bytes"), help="Largest accepted sketch upload."),
    max_wait_ms: int = typer.Option(default(WebConfig, "max_wait_ms"),
                                    help="Latency budget: a search is admitted while the estimated model work ahead of it "
                                         "fits in this many ms; past it the server answers 503 with Retry-After."),
    max_batch: int = typer.Option(default(WebConfig, "max_batch"),
                                  help="Most concurrent searches the model runs as one batch."),
) -> None:
    """Serve the draw-and-search web page and its JSON API."""
    import uvicorn

    from fsbir.pipelines.web import create_app

    app_ = create_app(WebConfig(index_dir=str(index_dir), checkpoint=checkpoint, max_upload_bytes=max_upload_bytes,
                                max_wait_ms=max_wait_ms, max_batch=max_batch))
    warning = network_warning(host)
    if warning:
        typer.secho(warning, fg="yellow", err=True)
    typer.echo(f"fsbir: open http://{host}:{port}/")
    uvicorn.run(app_, host=host, port=port, log_level="warning")
