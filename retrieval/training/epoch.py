"""One training epoch: query dropout, the InfoNCE loss mix, gradient accumulation, clipping."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from fsbir import FsbirError

from ..category import category_loss
from ..colour import colour_loss
from ..loss import category_nce, info_nce, same_category
from .config import TrainConfig
from .distributed import World, gather_objects, gather_with_grad


class TrainingDiverged(FsbirError):
    """The loss or a gradient became NaN or infinite."""


@dataclass
class EpochProgress:
    """Where an epoch stands; a run stopped mid-epoch saves it and resumes from it."""

    seen: int = 0
    loss_sum: float = 0.0


def query_masks(n: int, generator: torch.Generator, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(has_sketch, has_text): a share of queries drop their sketch and another share their text,
    so single-mode queries work. One draw per row, so replaying an epoch replays the masks."""
    draw = torch.rand(n, generator=generator)
    has_sketch = draw >= cfg.query_dropout_sketch
    has_text = ~(has_sketch & (draw < cfg.query_dropout_sketch + cfg.query_dropout_text))
    return has_sketch, has_text


def batch_loss(model, batch: dict, has_sketch: torch.Tensor, has_text: torch.Tensor, cfg: TrainConfig,
               device: str, world: World = World()) -> torch.Tensor:
    """InfoNCE of the fused query against the photo, plus the sketch-only and text-only terms at
    `single_mode_weight` and the sketch's category term at `category_weight`, over the global
    batch (features and categories of every rank gathered); with a colour head, its colour loss,
    and with a category head, its category loss, over the global batch as well."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
        names = batch.get("category_texts")
        *embeddings, logit_scale, logits = model(batch["images"].to(device), batch["sketches"].to(device),
                                                 batch["tokens"].to(device), has_sketch.to(device), has_text.to(device),
                                                 names.to(device) if names is not None else None)
        photos, queries, sketch_emb, text_emb = (gather_with_grad(e.float(), world) for e in embeddings)
        loss = info_nce(queries, photos, logit_scale)
        if cfg.single_mode_weight:
            loss = loss + cfg.single_mode_weight * (
                info_nce(sketch_emb, photos, logit_scale) + info_nce(text_emb, photos, logit_scale)) / 2
        categories = gather_objects(batch[cfg.category_column], world) if cfg.category_column in batch else None
        if cfg.category_weight:
            loss = loss + cfg.category_weight * category_nce(sketch_emb, photos, logit_scale, same_category(categories).to(device))
        if "colour" in logits["photo"]:
            photo_logits, text_logits = (gather_with_grad(logits[k]["colour"].float(), world) for k in ("photo", "text"))
            loss = loss + colour_loss(photo_logits, text_logits, gather_objects(batch["caption"], world),
                                      gather_objects(batch["texts"], world))
        if "category" in logits["photo"]:  # the loop adds each row's class ("category_index", -1: none)
            targets = torch.tensor(gather_objects(batch["category_index"].tolist(), world), dtype=torch.long)
            loss = loss + category_loss({k: gather_with_grad(logits[k]["category"].float(), world)
                                         for k in ("photo", "text")}, targets)
        if "names" in logits:  # the same on every rank: the i-th of `category_texts` names class i mod K
            name_logits = logits["names"]["category"]
            loss = loss + category_loss({"names": name_logits}, torch.arange(len(name_logits)) % name_logits.shape[1])
    return loss


def _check_finite(loss: torch.Tensor, model, step: int) -> None:
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"the loss became {loss.item()} at step {step}; lower --lr (no checkpoint "
                               "was written for this step)")
    for p in model.parameters():
        if p.grad is not None and not torch.isfinite(p.grad).all():
            raise TrainingDiverged(f"a gradient became NaN or infinite at step {step}; lower --lr")


def train_one_epoch(model, batches: Iterable[dict], optimizer, scheduler, cfg: TrainConfig, *, epoch: int,
                    step: int, skip_batches: int, progress: EpochProgress, device: str,
                    steps_per_epoch: int, world: World = World(),
                    on_step: Callable[[dict], None] | None = None) -> tuple[int, bool, float]:
    """Run one epoch from `step`; returns (step, stopped early by max_steps, seconds).

    The first `skip_batches` batches are drawn and dropped (with their dropout draws), so a run
    resumed mid-epoch continues exactly where an uninterrupted one would be. An epoch is exactly
    `steps_per_epoch` optimizer steps, on every rank alike (a rank with a row more stops too).
    """
    end_step = (epoch + 1) * steps_per_epoch
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    start, micro = time.perf_counter(), 0
    for batch in batches:
        has_sketch, has_text = query_masks(batch["images"].shape[0], generator, cfg)
        if skip_batches > 0:
            skip_batches -= 1
            continue
        n = batch["images"].shape[0]
        loss = batch_loss(model, batch, has_sketch, has_text, cfg, device, world)
        (loss / cfg.accum_steps).backward()
        micro += 1
        progress.seen += n
        progress.loss_sum += loss.item() * n
        if micro % cfg.accum_steps:
            continue
        _check_finite(loss, model, step + 1)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if on_step:
            on_step({"epoch": epoch, "step": step, "loss": loss.item(), "lr": scheduler.get_last_lr()[0],
                     "samples": n, "steps_per_epoch": steps_per_epoch})
        if step >= end_step:
            break
        if cfg.max_steps and step >= cfg.max_steps:
            return step, True, time.perf_counter() - start
    return step, False, time.perf_counter() - start
