"""Checkpoints: one file holding config, model, optimizer, scheduler, step, epoch and metrics;
written atomically and read back with weights_only=True."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from pipelines import FSBIR_VERSION

from .factory import ModelSpec, create_model



def save_checkpoint(path: str | Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({**payload, "fsbir_version": FSBIR_VERSION}, tmp)
    os.replace(tmp, path)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (then its checkpoints/best.pt, else last.pt)."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / "checkpoints" / name).exists():
                return p / "checkpoints" / name
        raise FileNotFoundError(f"{p} has no checkpoints/best.pt or checkpoints/last.pt")
    if not p.exists():
        raise FileNotFoundError(f"no checkpoint at {p}")
    return p


def load_checkpoint(path: str | Path) -> dict:
    return torch.load(resolve_checkpoint(path), map_location="cpu", weights_only=True)


def model_from_checkpoint(path: str | Path, device: str = "cpu"):
    """(model, preprocess, tokenizer, checkpoint dict) with the checkpoint's weights loaded."""
    ckpt = load_checkpoint(path)
    spec = ModelSpec(**{**ckpt["model_spec"], "pretrained": "none"})
    model, pp, tok = create_model(spec, device=device)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, pp, tok, ckpt
