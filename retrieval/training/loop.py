"""`fsbir train`: the loop that ties config, data, optimizer, epochs, validation and checkpoints,
in one process or as one rank of `torchrun` (DistributedDataParallel)."""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fsbir import FsbirError
from fsbir.shardformat import count_ok_rows

from ..category import category_names, category_targets, category_texts
from ..checkpoint import load_checkpoint, save_checkpoint
from ..data import LoaderConfig, check_columns, check_template_columns, iter_rows, make_loader
from ..evaluate import load_human_queries, pick_device
from ..factory import create_model
from ..model_card import write_model_card
from . import distributed
from .config import TrainConfig
from .distributed import World
from .epoch import EpochProgress, train_one_epoch
from .features import CachedTowers, cache_features, cache_sketch_pairs, cached_batches, caption_groups, view_count
from .optim import make_optimizer
from .validate import load_val_queries, selection_score, validate


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


@dataclass(frozen=True)
class Schedule:
    """How many rows each rank batches at a time and how many steps make an epoch, the same on
    every rank (each rank and each of its DataLoader workers batches its own part of the rows)."""

    rank_batch: int
    steps_per_epoch: int

    @classmethod
    def plan(cls, cfg: TrainConfig, n_train: int, world: World) -> "Schedule":
        if cfg.batch_size % world.size:
            raise FsbirError(f"batch-size {cfg.batch_size} (the global batch) must divide by the {world.size} processes")
        parts = world.size * max(1, cfg.workers)
        rows_per_part = n_train // parts
        rank_batch = min(cfg.batch_size // world.size, rows_per_part)
        if rank_batch < 2 or rank_batch * world.size < 2:
            raise FsbirError(f"{n_train} train rows split over {world.size} processes × {max(1, cfg.workers)} data "
                             "workers leave no batch of 2; use fewer --workers or processes")
        batches_per_rank = max(1, cfg.workers) * (rows_per_part // rank_batch)
        return cls(rank_batch, max(1, batches_per_rank // cfg.accum_steps))


def batch_groups(cfg: TrainConfig, table, batch_size: int) -> list | None:
    """Each training row's group for `--batch-by`: a shard column's value, or a cluster of alike
    captions (about batch_size / batch_groups rows each); None when batches are plainly shuffled."""
    if cfg.batch_by is None:
        return None
    if cfg.batch_by == "caption":
        return caption_groups(table.text[0], max(1, batch_size // cfg.batch_groups), cfg.seed)
    return [str(v) for v in table.columns[cfg.batch_by]]


def with_category_index(batches, column: str | None, names: tuple[str, ...], name_texts: torch.Tensor | None):
    """Batches with each row's class of the category head ("category_index", -1 where it has none)
    and the classes' names as texts (`category_texts`: their tokens, or their cached text
    features); the batches as they are without a head."""
    for batch in batches:
        if names:
            batch["category_index"] = category_targets(batch[column], names)
            batch["category_texts"] = name_texts
        yield batch



def train(cfg: TrainConfig, resume: bool = False, on_step: Callable[[dict], None] | None = None,
          on_epoch: Callable[[dict], None] | None = None,
          on_features: Callable[[int, int], None] | None = None) -> dict:
    """Train; returns the last epoch's record. Checkpoints at each epoch end (last.pt; best.pt by
    validation) and, once the last epoch is done, RUN/MODEL_CARD.md. With `resume`, continues from last.pt with the same results as an uninterrupted
    run (data order and dropout depend only on seed and epoch). Under torchrun, every rank runs
    this; only rank 0 validates and writes. `on_features(rows, total)` reports the rows whose
    locked-tower features were cached (see `features`)."""
    world, device = distributed.start(pick_device(cfg.device))
    main = world.is_main
    start = time.perf_counter()
    try:
        record = _train(cfg, resume, world, device, on_step if main else None, on_epoch if main else None,
                        on_features if main else None)
        finished = record.get("epoch") == cfg.epochs or bool(cfg.max_steps and record.get("step", 0) >= cfg.max_steps)
        if main and finished:
            write_model_card(cfg, record, time.perf_counter() - start, device)
        return record
    finally:
        distributed.stop(world)


def _train(cfg: TrainConfig, resume: bool, world: World, device: str, on_step, on_epoch, on_features) -> dict:
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    state = load_checkpoint(last_checkpoint(out)) if resume else None
    if state is not None and state.get("world_size", 1) != world.size:
        raise FsbirError(f"{last_checkpoint(out)} was trained by {state.get('world_size', 1)} processes; resume it "
                         f"with the same number (here {world.size}), or start a new run")
    n_train = count_ok_rows(cfg.shards, "train")
    if n_train < 2:
        raise FsbirError(f"{cfg.shards} has {n_train} ok train rows; need at least 2")
    check_template_columns(cfg.shards, cfg.caption_templates)
    for folder in cfg.sketch_shards:
        if count_ok_rows(folder, "train") == 0:
            raise FsbirError(f"--sketch-shards {folder} has no ok train rows")
    if cfg.batch_by not in (None, "caption"):
        check_columns(cfg.shards, (cfg.batch_by,), "--batch-by names")
    names: tuple[str, ...] = ()
    if cfg.category_head:
        check_columns(cfg.shards, (cfg.category_column,), "--category-column names")
        names = category_names(r[cfg.category_column] for r in iter_rows(cfg.shards, "train", [cfg.category_column]))
        if not names:
            raise FsbirError(f"the category column {cfg.category_column!r} is empty in the train split; "
                             "give another column or --category-head-weight 0")
    spec = cfg.spec(names)
    schedule = Schedule.plan(cfg, n_train, world)
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")

    _seed_everything(cfg.seed)
    model, pp, tokenizer = create_model(spec, device=device)
    if cfg.freeze_on(device):
        model.lock_pretrained_towers(cfg.unlocked_groups)
    optimizer, scheduler = make_optimizer(model, cfg, schedule.steps_per_epoch * cfg.epochs)
    step, start_epoch, best = 0, 0, -float("inf")
    partial = EpochProgress()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, start_epoch = state["step"], state["epoch"]
        best = state["metrics"].get("best_val", best)
        partial = EpochProgress(**(state.get("partial_epoch") or {}))
    # Locked towers: their features below the first trained layer are computed once, and steps
    # train what is above them.
    towers = CachedTowers(model) if cfg.freeze_on(device) and cfg.cache_views and CachedTowers.supported(model) else None
    trained = towers or model
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel

        # Some towers carry parameters the loss never reaches (a text model's pooler).
        trained = DistributedDataParallel(trained, device_ids=[device] if device.startswith("cuda") else None,
                                          find_unused_parameters=True)
    has_val = count_ok_rows(cfg.shards, "val") > 0
    human = load_val_queries(cfg, pp) if world.is_main else None
    if human is not None and not has_val:
        raise FsbirError(f"--val-queries are searched against the val split, and {cfg.shards} has no ok val rows")
    categories = (cfg.category_column,) if cfg.category_weight or cfg.category_head else ()
    val_table = None
    if towers is None:
        for option, given in (("--batch-by", cfg.batch_by), ("--sketch-shards", cfg.sketch_shards),
                              ("--sketch-pairs", cfg.sketch_pairs)):
            if given:
                raise FsbirError(f"{option} works on cached features: it needs locked towers "
                                 "(--freeze towers, the CPU default) and --cache-views 1 or more")
        loader_cfg = LoaderConfig(batch_size=schedule.rank_batch, split="train", shuffle_buffer=cfg.shuffle_buffer,
                                  seed=cfg.seed, workers=cfg.workers, drop_last=True, augment=cfg.augment,
                                  rank=world.rank, world=world.size, extra_columns=categories,
                                  caption_templates=cfg.caption_templates)
        loader, dataset = make_loader(cfg.shards, loader_cfg, pp, tokenizer, shuffle=cfg.shuffle_buffer > 1)
        name_tokens = tokenizer(category_texts(names)) if names else None

        def epoch_batches(epoch: int):
            dataset.set_epoch(epoch)
            return with_category_index(loader, cfg.category_column, names, name_tokens)
    else:
        views = view_count(cfg.cache_views, cfg.augment)
        n_val = count_ok_rows(cfg.shards, "val") if has_val and world.is_main else 0
        total = views * (1 + len(cfg.sketch_shards)) * -(-n_train // world.size) + n_val
        report = (lambda n: on_features(n, total)) if on_features else None
        group_column = (cfg.batch_by,) if cfg.batch_by not in (None, "caption") else ()
        feature_cfg = LoaderConfig(batch_size=64, split="train", seed=cfg.seed, workers=cfg.workers, drop_last=False,
                                   augment=cfg.augment, rank=world.rank, world=world.size,
                                   extra_columns=tuple(dict.fromkeys(categories + group_column)),
                                   caption_templates=cfg.caption_templates)
        train_table = cache_features(towers, cfg.shards, feature_cfg, pp, tokenizer, views, device, report,
                                     cfg.sketch_shards)
        if n_val:
            val_cfg = LoaderConfig(batch_size=64, split="val", workers=cfg.workers, drop_last=False,
                                   extra_columns=(cfg.category_column,) if cfg.category_column else ())
            val_table = cache_features(towers, cfg.shards, val_cfg, pp, tokenizer, 1, device, report)

        groups = batch_groups(cfg, train_table, schedule.rank_batch)
        name_features = towers.text_body(tokenizer(category_texts(names)).to(device)).cpu() if names else None
        pairs = None
        if cfg.sketch_pairs:
            drawn = load_human_queries(cfg.sketch_pairs, pp, None, None)
            pairs, elsewhere = cache_sketch_pairs(towers, drawn["sketches"], drawn["product_id"], train_table, device)
            if world.is_main:  # what was used, beside the run's config
                (out / "sketch_pairs.json").write_text(json.dumps({
                    "file": cfg.sketch_pairs, "drawings_used": len(pairs.rows),
                    "products_drawn": len(set(pairs.rows.tolist())), "drawings_of_other_products": elsewhere}) + "\n")
            if not len(pairs.rows):
                raise FsbirError(f"none of the drawings in {cfg.sketch_pairs} draws a product of the train split")

        def epoch_batches(epoch: int):
            return with_category_index(cached_batches(train_table, schedule.rank_batch, cfg.seed, epoch,
                                                      categories[0] if categories else None, groups, cfg.batch_groups,
                                                      pairs), cfg.category_column, names, name_features)
    record: dict = {}

    def checkpoint(epochs_done: int, metrics: dict, partial_epoch: EpochProgress | None, name: str) -> None:
        save_checkpoint(ckpt_dir / name, {
            "config": cfg.to_dict(), "model_spec": asdict(spec), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
            "epoch": epochs_done, "metrics": metrics, "world_size": world.size,
            "partial_epoch": asdict(partial_epoch) if partial_epoch else None})

    def log_step(r: dict) -> None:
        with open(out / "steps.jsonl", "a") as fh:
            fh.write(json.dumps({k: r[k] for k in ("epoch", "step", "loss", "lr")}) + "\n")
        if on_step:
            on_step(r)

    for epoch in range(start_epoch, cfg.epochs):
        skip = (step - epoch * schedule.steps_per_epoch) * cfg.accum_steps if epoch == start_epoch else 0
        progress = partial if skip > 0 else EpochProgress()
        seen_before = progress.seen
        step, stopped, seconds = train_one_epoch(
            trained, epoch_batches(epoch), optimizer, scheduler, cfg, epoch=epoch, step=step, skip_batches=skip,
            progress=progress, device=device, steps_per_epoch=schedule.steps_per_epoch, world=world,
            on_step=log_step if world.is_main else None)
        if stopped:  # mid-epoch stop: a resumable checkpoint, no epoch record yet
            if world.is_main:
                checkpoint(epoch, {"best_val": best}, progress, "last.pt")
            break
        if progress.seen == 0:
            raise FsbirError(f"epoch {epoch + 1} ran no training step (batch {schedule.rank_batch} per process, "
                             f"{n_train} train rows); lower --batch-size")
        train_loss = progress.loss_sum / progress.seen
        record = {"epoch": epoch + 1, "step": step, "train_loss": train_loss, "lr": scheduler.get_last_lr()[0],
                  "samples_per_s": world.size * (progress.seen - seen_before) / seconds if seconds else 0.0,
                  "logit_scale": float(model.logit_scale.detach().exp())}
        if world.is_main:
            if has_val:
                record["val"] = validate(model, cfg, pp, tokenizer, device, human,
                                         towers.embed(val_table) if val_table is not None else None)
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
        distributed.barrier(world)  # the other ranks wait while rank 0 validates and writes
        if cfg.max_steps and step >= cfg.max_steps:
            break
    return record
