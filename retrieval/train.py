"""`fsbir train`: InfoNCE between fused (sketch, text) queries and photos, streamed from shards."""
from __future__ import annotations

import json
import math
import random
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from sketchgen.augment import SketchAugment

from .checkpoint import load_checkpoint, save_checkpoint
from .data import LoaderConfig, count_rows, make_loader
from .evaluate import catalog_metrics, embed_split, pick_device
from .factory import ModelSpec, create_model
from .loss import info_nce


@dataclass(frozen=True)
class TrainConfig:
    shards: str
    out: str
    model: str = "fsbir-tiny"
    pretrained: str = "none"
    fusion: str = "avg"
    sketch_tower: str = "shared"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    tower_lr_scale: float = 0.1  # pretrained towers learn at lr × this; new parts at lr
    weight_decay: float = 0.1
    warmup_steps: int = 50
    grad_clip: float = 1.0
    accum_steps: int = 1
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    shuffle_buffer: int = 2048
    query_dropout_sketch: float = 0.1
    query_dropout_text: float = 0.1
    # Weight of extra InfoNCE terms sketch→photo and text→photo beside the fused one (0 = the fused
    # loss alone, as in the seed; 0.5 measured better for every mode on the demo catalog).
    single_mode_weight: float = 0.5
    augment: SketchAugment = field(default_factory=SketchAugment)
    eval_k: int = 10
    max_steps: int | None = None  # stop early (smoke tests, benchmarks)
    category_column: str | None = None

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(self.model, self.pretrained, self.fusion, self.sketch_tower)


def load_config(toml_path: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """Defaults < TOML file < command-line options that were given (not None)."""
    values: dict[str, Any] = {}
    if toml_path:
        with open(toml_path, "rb") as fh:
            values.update(tomllib.load(fh))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    if isinstance(values.get("augment"), dict):
        values["augment"] = SketchAugment(**values["augment"])
    return TrainConfig(**values)


def config_to_dict(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg)))


def _param_groups(model, cfg: TrainConfig) -> list[dict]:
    """Pretrained towers at lr × tower_lr_scale, everything new at lr; no weight decay on biases,
    norms, embeddings and the logit scale (as in open_clip)."""
    groups: dict[tuple[bool, bool], list] = {}
    towers = getattr(model, "pretrained_towers", set())
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        in_pretrained = (("visual" in towers and (name.startswith("clip.visual") or name.startswith("sketch_visual")))
                         or ("text" in towers and name.startswith("clip.") and not name.startswith("clip.visual")
                             and name != "clip.logit_scale"))
        no_decay = p.ndim < 2 or "bn" in name or "ln" in name or "logit_scale" in name or "embedding" in name
        groups.setdefault((in_pretrained, no_decay), []).append(p)
    return [
        {"params": ps, "lr": cfg.lr * (cfg.tower_lr_scale if pre else 1.0),
         "weight_decay": 0.0 if nd else cfg.weight_decay}
        for (pre, nd), ps in groups.items()
    ]


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))
    return f


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: TrainConfig, resume: bool = False, on_step: Callable[[dict], None] | None = None,
          on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train; returns the last epoch's record. Checkpoints at each epoch end (last.pt, best.pt by
    validation sketch+text R@k); --resume continues from last.pt with the same results as an
    uninterrupted run (data order and dropout depend only on seed and epoch)."""
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    device = pick_device(cfg.device)
    state = None
    if resume and (ckpt_dir / "last.pt").exists():
        state = load_checkpoint(ckpt_dir / "last.pt")
        saved = TrainConfig(**{**state["config"], "augment": SketchAugment(**state["config"]["augment"])})
        cfg = replace(saved, epochs=cfg.epochs, device=cfg.device, workers=cfg.workers, max_steps=cfg.max_steps)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n")

    _seed_everything(cfg.seed)
    model, pp, tokenizer = create_model(cfg.spec, device=device)
    n_train = count_rows(cfg.shards, "train")
    if n_train < 2:
        raise ValueError(f"{cfg.shards} has {n_train} ok train rows; need at least 2")
    batch_size = min(cfg.batch_size, n_train)
    steps_per_epoch = max(1, n_train // batch_size // cfg.accum_steps)
    total_steps = steps_per_epoch * cfg.epochs
    optimizer = torch.optim.AdamW(_param_groups(model, cfg), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(min(cfg.warmup_steps, total_steps // 2), total_steps))
    step, start_epoch, best = 0, 0, -1.0
    partial = {"seen": 0, "loss_sum": 0.0}
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, start_epoch = state["step"], state["epoch"]
        best = state["metrics"].get("best_val", -1.0)
        partial = state.get("partial_epoch") or partial
    n_val = count_rows(cfg.shards, "val")
    loader_cfg = LoaderConfig(batch_size=batch_size, split="train", shuffle_buffer=cfg.shuffle_buffer, seed=cfg.seed,
                              workers=cfg.workers, drop_last=True, augment=cfg.augment)
    loader, dataset = make_loader(cfg.shards, loader_cfg, pp, tokenizer, shuffle=True)
    use_amp = device.startswith("cuda")
    metrics_path = out / "metrics.jsonl"
    record: dict = {}

    def checkpoint(epochs_done: int, metrics: dict, partial_epoch: dict | None, name: str = "last.pt") -> None:
        save_checkpoint(ckpt_dir / name, {
            "config": config_to_dict(cfg), "model_spec": asdict(cfg.spec), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
            "epoch": epochs_done, "metrics": metrics, "partial_epoch": partial_epoch})

    for epoch in range(start_epoch, cfg.epochs):
        dataset.set_epoch(epoch)
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)  # query dropout
        # A run stopped mid-epoch resumes by replaying that epoch's data order and dropout draws
        # up to where it stopped, so it ends exactly where an uninterrupted run would.
        skip = (step - epoch * steps_per_epoch) * cfg.accum_steps if epoch == start_epoch else 0
        seen, loss_sum = (partial["seen"], partial["loss_sum"]) if skip > 0 else (0, 0.0)
        model.train()
        t0, micro, run_seen = time.perf_counter(), 0, 0
        stopped = False
        optimizer.zero_grad(set_to_none=True)
        for batch in loader:
            n = batch["images"].shape[0]
            drop = torch.rand(n, generator=gen)
            if skip > 0:
                skip -= 1
                continue
            has_sketch = drop >= cfg.query_dropout_sketch
            has_text = ~((drop >= cfg.query_dropout_sketch) & (drop < cfg.query_dropout_sketch + cfg.query_dropout_text))
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                photos, queries, sketch_emb, text_emb = model(
                    batch["images"].to(device), batch["sketches"].to(device), batch["tokens"].to(device),
                    has_sketch.to(device), has_text.to(device))
                loss = info_nce(queries.float(), photos.float(), model.logit_scale)
                if cfg.single_mode_weight:
                    loss = loss + cfg.single_mode_weight * (
                        info_nce(sketch_emb.float(), photos.float(), model.logit_scale)
                        + info_nce(text_emb.float(), photos.float(), model.logit_scale)) / 2
            (loss / cfg.accum_steps).backward()
            micro += 1
            seen += n
            run_seen += n
            loss_sum += loss.item() * n
            if micro % cfg.accum_steps:
                continue
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if on_step:
                on_step({"epoch": epoch, "step": step, "loss": loss.item(), "lr": scheduler.get_last_lr()[0],
                         "samples": n, "steps_per_epoch": steps_per_epoch})
            if cfg.max_steps and step >= cfg.max_steps and step < (epoch + 1) * steps_per_epoch:
                stopped = True
                break
        if stopped:  # mid-epoch stop: a resumable checkpoint, no epoch record yet
            checkpoint(epoch, {"best_val": best}, {"seen": seen, "loss_sum": loss_sum})
            break
        seconds = time.perf_counter() - t0
        record = {"epoch": epoch + 1, "step": step, "train_loss": loss_sum / max(1, seen),
                  "lr": scheduler.get_last_lr()[0], "samples_per_s": run_seen / seconds if seconds else 0.0,
                  "logit_scale": float(model.logit_scale.detach().exp())}
        if n_val:
            val = catalog_metrics(model, embed_split(model, cfg.shards, "val", pp, tokenizer, 128,
                                                     cfg.category_column, device), cfg.eval_k)
            model.train()
            record["val"] = val
            score = val["modes"]["sketch+text"][f"R@{cfg.eval_k}"]
        else:
            score = -record["train_loss"]
        is_best = score > best
        best = max(best, score)
        record["best_val"] = best
        with open(metrics_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        checkpoint(epoch + 1, record, None)
        if is_best:
            checkpoint(epoch + 1, record, None, "best.pt")
        if on_epoch:
            on_epoch(record)
        if cfg.max_steps and step >= cfg.max_steps:
            break
    return record
