"""Optimiser set-up: frozen parameters, weight-decay groups, the learning-rate schedule, activation checkpointing."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from streamvggt.train.config import OptimSection


def freeze(model: nn.Module, prefixes: Sequence[str]) -> int:
    """Stop gradients for parameters whose names start with any of ``prefixes``; returns how many were frozen.

    A prefix that matches nothing is an error (a typo would silently train what was meant to stay fixed).
    """
    frozen = 0
    for prefix in prefixes:
        matched = [p for name, p in model.named_parameters() if name == prefix or name.startswith(prefix + ".")]
        if not matched:
            raise ValueError(f"model.freeze: no parameter is named '{prefix}' or starts with '{prefix}.'")
        for parameter in matched:
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    return frozen


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters in two groups: with weight decay, and without it for biases and 1-D parameters
    (norm weights, layer scales), as in the reference."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim <= 1 or name.endswith(".bias") else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    Linear warm-up over ``warmup_steps`` (step k uses (k + 1) / warmup_steps, so no step is wasted at zero),
    then a half cosine from 1 down to ``min_ratio`` at ``total_steps`` (the reference's per-iteration schedule,
    in steps instead of fractional epochs).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(
    model: nn.Module, section: OptimSection, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable parameters and its schedule (stepped once per optimizer step)."""
    optimizer = torch.optim.AdamW(
        parameter_groups(model, section.weight_decay), lr=section.lr, betas=tuple(section.betas)
    )
    total = max(1, math.ceil(section.epochs * steps_per_epoch))
    warmup = round(section.warmup_epochs * steps_per_epoch)
    schedule = functools.partial(
        lr_factor, warmup_steps=warmup, total_steps=total, min_ratio=section.min_lr / section.lr
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Recompute every aggregator block (frame and global) during the backward pass instead of storing its
    activations. Parameter names are unchanged (the blocks' ``forward`` is wrapped in place), so checkpoints keep
    the official naming. Returns the number of wrapped blocks."""
    aggregator = model.aggregator
    blocks = [*aggregator.frame_blocks, *aggregator.global_blocks]
    for block in blocks:
        block.forward = functools.partial(_checkpointed, block.forward)
    return len(blocks)


def _checkpointed(forward, *args, **kwargs):
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)
