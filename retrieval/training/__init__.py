"""Training, split the way open_clip_train splits it: config, optimizer and schedule, one epoch,
validation and best choice, and the loop; checkpoints live in `retrieval.checkpoint`."""
from .config import TrainConfig, load_config
from .epoch import TrainingDiverged
from .loop import saved_config, train

__all__ = ["TrainConfig", "TrainingDiverged", "load_config", "saved_config", "train"]
