"""`fsbir serve`'s settings, apart from the server so that the CLI reads their defaults without
importing FastAPI (a quarter of a second at every start of every command)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class WebConfig:
    index_dir: str
    checkpoint: str | None = None
    max_upload_bytes: int = 2_000_000
    max_queue: int = 8  # searches waiting for the model; more get 503
