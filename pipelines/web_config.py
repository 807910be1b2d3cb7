"""`fsbir serve`'s settings, apart from the server so that the CLI reads their defaults without
importing FastAPI (a quarter of a second at every start of every command)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class WebConfig:
    index_dir: str
    checkpoint: str | None = None
    max_upload_bytes: int = 2_000_000
    max_wait_ms: int = 2000  # admit a search while the estimated model work ahead of it fits; else 503
    max_batch: int = 64  # searches the model runs in one forward pass
