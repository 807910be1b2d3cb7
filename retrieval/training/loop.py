"""`fsbir train`: the loop that ties config, data, optimizer, epochs, validation and checkpoints."""
from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fsbir import FsbirError
from fsbir.shardformat import count_ok_rows

from ..checkpoint import load_checkpoint, save_checkpoint
from ..data import LoaderConfig, make_loader
from ..evaluate import pick_device
from ..factory import create_model
from .config import TrainConfig
from .epoch import EpochProgress, train_one_epoch
from .optim import make_optimizer
from .validate import selection_score, validate


def last_checkpoint(out: str | Path) -> Path:
    return Path(out) / "checkpoints" / "last.pt"


def saved_config(out: str | Path) -> dict:
    """The settings a run folder's last checkpoint was trained with (for --resume)."""
    path = last_checkpoint(out)
    if not path.exists():
        raise FsbirError(f"nothing to resume: {path} does not exist (drop --resume to start a new run)")
    return load_checkpoint(path)["config"]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: TrainConfig, resume: bool = False, on_step: Callable[[dict], None] | None = None,
          on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train; returns the last epoch's record. Checkpoints at each epoch end (last.pt; best.pt by
    validation). With `resume`, continues from last.pt with the same results as an uninterrupted
    run (data order and dropout depend only on seed and epoch)."""
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    device = pick_device(cfg.device)
    state = load_checkpoint(last_checkpoint(out)) if resume else None
    n_train = count_ok_rows(cfg.shards, "train")
    if n_train < 2:
        raise FsbirError(f"{cfg.shards} has {n_train} ok train rows; need at least 2")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")

    _seed_everything(cfg.seed)
    model, pp, tokenizer = create_model(cfg.spec, device=device)
    # Each DataLoader worker batches its own share of the rows, so a batch must fit in one share.
    batch_size = min(cfg.batch_size, n_train // max(1, cfg.workers))
    if batch_size < 2:
        raise FsbirError(f"{n_train} train rows split over {cfg.workers} data workers leave no batch of 2; "
                         "use fewer --workers")
    steps_per_epoch = max(1, n_train // batch_size // cfg.accum_steps)
    optimizer, scheduler = make_optimizer(model, cfg, steps_per_epoch * cfg.epochs)
    step, start_epoch, best = 0, 0, -float("inf")
    partial = EpochProgress()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, start_epoch = state["step"], state["epoch"]
        best = state["metrics"].get("best_val", best)
        partial = EpochProgress(**(state.get("partial_epoch") or {}))
    has_val = count_ok_rows(cfg.shards, "val") > 0
    loader_cfg = LoaderConfig(batch_size=batch_size, split="train", shuffle_buffer=cfg.shuffle_buffer, seed=cfg.seed,
                              workers=cfg.workers, drop_last=True, augment=cfg.augment)
    loader, dataset = make_loader(cfg.shards, loader_cfg, pp, tokenizer, shuffle=True)
    record: dict = {}

    def checkpoint(epochs_done: int, metrics: dict, partial_epoch: EpochProgress | None, name: str) -> None:
        save_checkpoint(ckpt_dir / name, {
            "config": cfg.to_dict(), "model_spec": asdict(cfg.spec), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
            "epoch": epochs_done, "metrics": metrics,
            "partial_epoch": asdict(partial_epoch) if partial_epoch else None})

    for epoch in range(start_epoch, cfg.epochs):
        dataset.set_epoch(epoch)
        skip = (step - epoch * steps_per_epoch) * cfg.accum_steps if epoch == start_epoch else 0
        progress = partial if skip > 0 else EpochProgress()
        seen_before = progress.seen
        step, stopped, seconds = train_one_epoch(
            model, loader, optimizer, scheduler, cfg, epoch=epoch, step=step, skip_batches=skip,
            progress=progress, device=device, steps_per_epoch=steps_per_epoch, on_step=on_step)
        if stopped:  # mid-epoch stop: a resumable checkpoint, no epoch record yet
            checkpoint(epoch, {"best_val": best}, progress, "last.pt")
            break
        if progress.seen == 0:
            raise FsbirError(f"epoch {epoch + 1} ran no training step (batch size {batch_size}, "
                             f"{n_train} train rows); lower --batch-size")
        train_loss = progress.loss_sum / progress.seen
        record = {"epoch": epoch + 1, "step": step, "train_loss": train_loss, "lr": scheduler.get_last_lr()[0],
                  "samples_per_s": (progress.seen - seen_before) / seconds if seconds else 0.0,
                  "logit_scale": float(model.logit_scale.detach().exp())}
        if has_val:
            record["val"] = validate(model, cfg, pp, tokenizer, device)
        score = selection_score(record.get("val"), train_loss, cfg.eval_k)
        is_best = score > best
        best = max(best, score)
        record["best_val"] = best
        with open(out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        checkpoint(epoch + 1, record, None, "last.pt")
        if is_best:
            checkpoint(epoch + 1, record, None, "best.pt")
        if on_epoch:
            on_epoch(record)
        if cfg.max_steps and step >= cfg.max_steps:
            break
    return record
