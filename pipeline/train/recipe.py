"""The training recipe shared by the supernet loop and the from-scratch baseline: the per-step loss,
seeded per-epoch generators, augmentation, learning-rate schedule and optimizer."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..supernet.model import OFASupernet
from ..supernet.space import SubnetArch
from .schedule import Phase, Schedule


def soft_cross_entropy(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    t = temperature
    target = F.softmax(teacher_logits / t, dim=1)
    return -(target * F.log_softmax(logits / t, dim=1)).sum(1).mean() * (t * t)


class StepLoss(nn.Module):
    """Summed loss of every sampled subnet on the given shards (OFA sums the subnets' gradients):
    one forward and one backward, so DDP sees a single iteration however many subnets there are."""

    def __init__(self, supernet: OFASupernet, label_smoothing: float, temperature: float):
        super().__init__()
        self.supernet = supernet
        self.label_smoothing, self.temperature = label_smoothing, temperature

    def forward(self, shards, archs: list[SubnetArch], kd_weight: float, scale: float,
                inplace_kd: bool = False):
        """`shards`: (x, y, teacher logits or None) each. With `inplace_kd` the first arch (the
        largest, by the sandwich rule) is the teacher of the others (BigNAS in-place distillation)."""
        loss = torch.zeros(())
        correct = 0
        targets = [t for _, _, t in shards]
        for ai, arch in enumerate(archs):
            self.supernet.set_active(arch)
            for si, (x, y, _) in enumerate(shards):
                logits = self.supernet(x)
                term = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
                if targets[si] is not None and kd_weight > 0:
                    term = term + kd_weight * soft_cross_entropy(logits, targets[si], self.temperature)
                if inplace_kd and ai == 0:
                    targets[si] = logits.detach()
                loss = loss + term
                correct += int((logits.detach().argmax(1) == y).sum())
        return loss * scale, correct


def epoch_generators(seed: int, phase: int, epoch: int) -> tuple[np.random.Generator, torch.Generator]:
    np_rng = np.random.default_rng([seed, phase, epoch])
    torch_seed = int(np.random.default_rng([seed, phase, epoch, 1]).integers(2 ** 62))
    return np_rng, torch.Generator().manual_seed(torch_seed)


def shift_images(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation of each image by up to `max_shift` pixels (edge pixels repeated)."""
    if max_shift <= 0:
        return x
    offsets = torch.randint(0, 2 * max_shift + 1, (x.shape[0], 2), generator=gen).tolist()
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    h, w = x.shape[2], x.shape[3]
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])


def lr_at(schedule: Schedule, phase_index: int, phase: Phase, t: int, total: int) -> float:
    """Cosine decay within each phase; linear warm-up at the very start of training."""
    warm = int(schedule.warmup_fraction * total) if phase_index == 0 else 0
    if t < warm:
        return phase.lr * (t + 1) / warm
    progress = (t - warm) / max(1, total - warm)
    return 0.5 * phase.lr * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, schedule: Schedule, lr: float) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # Weight decay on conv / linear weights only: BN affine, biases and the identity-initialised
        # kernel transforms would be pulled towards zero for no benefit.
        (decay if name.endswith("weight") and p.dim() > 1 and "transforms" not in name
         else no_decay).append(p)
    return torch.optim.SGD([{"params": decay, "weight_decay": schedule.weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}],
                           lr=lr, momentum=schedule.momentum, nesterov=schedule.momentum > 0)


def skip_unused(supernet: OFASupernet) -> None:
    """Parameters no sampled subnet touched keep still: no momentum drift, no weight decay.

    A single process leaves their gradient None, DDP hands back zeros; treating an all-zero
    gradient as None makes both take the same optimizer step."""
    for p in supernet.parameters():
        if p.grad is not None and not bool(p.grad.any()):
            p.grad = None
