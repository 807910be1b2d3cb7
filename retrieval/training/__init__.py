"""Training, split the way open_clip_train splits it: config, optimizer and schedule, one epoch,
validation and best choice, and the loop; checkpoints live in `retrieval.checkpoint`.

The config is imported at once; the loop (torch, the model library) when first asked for, so the
CLI can show `TrainConfig`'s defaults without loading torch."""
from importlib import import_module

from .config import TrainConfig, load_config

_LAZY = {"train": ".loop", "saved_config": ".loop", "TrainingDiverged": ".epoch"}

__all__ = ["TrainConfig", "TrainingDiverged", "load_config", "saved_config", "train"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_LAZY[name], __name__), name)
