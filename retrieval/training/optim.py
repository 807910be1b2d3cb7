"""Optimizer and learning-rate schedule: parameter groups by module membership, warmup + cosine."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .config import TrainConfig

_NO_DECAY_MODULES = (nn.LayerNorm, nn.GroupNorm, nn.Embedding, nn.modules.batchnorm._NormBase)


def no_decay_parameters(model: nn.Module) -> set[int]:
    """ids of parameters that take no weight decay (as in open_clip): biases and other vectors,
    the logit scale, and every parameter of a normalisation or embedding layer."""
    ids = {id(p) for p in model.parameters() if p.ndim < 2}
    for module in model.modules():
        if isinstance(module, _NO_DECAY_MODULES):
            ids.update(id(p) for p in module.parameters(recurse=False))
    return ids


def param_groups(model, cfg: TrainConfig) -> list[dict]:
    """Pretrained parameters at lr × tower_lr_scale, everything new (a projection put on a
    pretrained trunk included) at lr; what came pretrained is known by module
    (`FsbirModel.pretrained_parameters`), not by name."""
    pretrained = {id(p) for p in model.pretrained_parameters()}
    no_decay = no_decay_parameters(model)
    groups: dict[tuple[bool, bool], list] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((id(p) in pretrained, id(p) in no_decay), []).append(p)
    return [
        {"params": ps, "lr": cfg.lr * (cfg.tower_lr_scale if pre else 1.0),
         "weight_decay": 0.0 if nd else cfg.weight_decay}
        for (pre, nd), ps in sorted(groups.items())
    ]


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """LR multiplier: linear warmup over `warmup` steps, then cosine decay to 0 at `total`."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def make_optimizer(model, cfg: TrainConfig, total_steps: int):
    """(AdamW, LambdaLR) with open_clip's betas and eps."""
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    warmup = min(cfg.warmup_steps, total_steps // 2)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, total_steps))
