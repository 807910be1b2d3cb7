"""Checkpoints: one file holding config, model, optimizer, scheduler, step, epoch and metrics;
written atomically and read back with weights_only=True."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from fsbir import FsbirError, __version__
from fsbir.shardformat import atomic_path

from .factory import ModelSpec, create_model

REQUIRED_KEYS = ("model_spec", "model")


class CheckpointError(FsbirError):
    """A checkpoint is missing, unreadable, or not an fsbir checkpoint."""


def save_checkpoint(path: str | Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({**payload, "fsbir_version": __version__}, tmp)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (then its checkpoints/best.pt, else last.pt)."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / "checkpoints" / name).exists():
                return p / "checkpoints" / name
        raise CheckpointError(f"{p} has no checkpoints/best.pt or checkpoints/last.pt")
    if not p.exists():
        raise CheckpointError(f"no checkpoint at {p}")
    return p


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict; a file that is not an fsbir checkpoint (empty, truncated, foreign, a
    bare state dict) is a CheckpointError, never a traceback."""
    file = resolve_checkpoint(path)
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError,
            AttributeError, TypeError) as exc:
        raise CheckpointError(f"{file} is not a readable checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:160] if str(exc) else 'no detail'})") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        raise CheckpointError(f"{file} is not an fsbir checkpoint (no {' / '.join(REQUIRED_KEYS)}); "
                              "give a file written by `fsbir train` or its run folder")
    return ckpt


def model_from_checkpoint(path: str | Path, device: str = "cpu"):
    """(model, preprocess, tokenizer, checkpoint dict) with the checkpoint's weights loaded."""
    ckpt = load_checkpoint(path)
    try:
        spec = ModelSpec(**{"head_version": 1, **ckpt["model_spec"], "pretrained": "none"})
        model, pp, tok = create_model(spec, device=device)
        model.load_state_dict(ckpt["model"])
    except (TypeError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{resolve_checkpoint(path)} does not fit its own model config "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
    model.eval()
    return model, pp, tok, ckpt
