"""AdamW with decay on weight matrices only, and the learning-rate schedules of a stage."""

from __future__ import annotations

import math

import torch
from torch import nn

from toolkit.train.config import OptimConfig, StageConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay for matrices (linear weights, embeddings, latents); none for biases and norm weights."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, optim: OptimConfig, stage: StageConfig) -> torch.optim.AdamW:
    """AdamW with PyTorch's fused kernel (CPU and CUDA: one pass over all parameters; on the tiny preset
    3.5x faster than the multi-tensor path); elsewhere PyTorch's default implementation."""
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    return torch.optim.AdamW(
        param_groups(model, optim.weight_decay),
        lr=stage.lr,
        betas=tuple(optim.betas),
        eps=optim.eps,
        fused=True if fused else None,
    )


def lr_at(stage: StageConfig, step: int) -> float:
    """Learning rate at `step` (0-based) of the stage: linear warmup, then the stage's decay."""
    peak, floor = stage.lr, stage.lr * stage.min_lr_ratio
    if stage.warmup and step < stage.warmup:
        return peak * (step + 1) / stage.warmup
    if stage.schedule == "constant":
        return peak
    span = max(1, stage.steps - stage.warmup)
    progress = min(1.0, (step - stage.warmup) / span)
    if stage.schedule == "linear":
        return floor + (peak - floor) * (1.0 - progress)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
