"""Per-board fine-tune of an extracted subnet: `finetune_subnet(supernet, arch, dataset, epochs)`.

After the search picks an arch for a board, a few epochs on the training split with knowledge
distillation from the supernet's largest subnet (at the arch's resolution, BN re-calibrated, frozen)
recover part of what weight sharing costs that one subnet (OFA's optional fine-tune). The student
starts from the supernet's weights for the arch; the recipe (SGD with the schedule's momentum and
weight decay, augmentation, cosine learning rate) is the supernet's, at a small learning rate, so the
shared weights are adjusted rather than retrained. BN statistics are re-calibrated afterwards exactly
as for any subnet, so the result is a drop-in replacement for `calibrated_subnet`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import Dataset
from ..supernet.model import OFASupernet
from ..supernet.space import SubnetArch
from .evaluate import calibrated_subnet, calibration_images, evaluate, to_input
from .bn import calibrate_bn
from .recipe import epoch_generators, lr_at, make_optimizer, shift_images, soft_cross_entropy
from .schedule import Phase, Schedule

FINETUNE_LR = 0.01
FINETUNE_SEED_PHASE = 1000  # generator stream of the fine-tune, apart from any training phase


@dataclass
class FinetuneInfo:
    epochs: float
    seconds: float
    lr: float
    kd_weight: float
    teacher: str
    holdout_acc_before: float
    holdout_acc_after: float

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def finetune_subnet(supernet: OFASupernet, arch: SubnetArch, dataset: Dataset, epochs: float, *,
                    schedule: Schedule | None = None, batch_size: int = 64, seed: int = 0,
                    lr: float = FINETUNE_LR, kd_weight: float = 1.0, temperature: float | None = None,
                    num_calib: int = 500) -> tuple[nn.Module, FinetuneInfo]:
    """Fine-tune `arch` for `epochs` epochs with KD from the largest subnet; return (the static eval
    module, BN re-calibrated on holdout images like `calibrated_subnet`, and what was done).

    Deterministic for (weights, arch, data, epochs, seed): every random choice comes from seeded
    generators. `epochs == 0` returns `calibrated_subnet` unchanged; a fraction (0.5) runs that share of
    an epoch's steps (the benchmark's "10% of the supernet's epochs")."""
    t0 = time.perf_counter()
    schedule = schedule or Schedule(phases=(Phase("finetune", 1, lr),))
    temperature = schedule.kd_temperature if temperature is None else temperature
    before_model = calibrated_subnet(supernet, arch, dataset, num_images=num_calib, seed=seed)
    hold = dataset.split("holdout", arch.resolution)
    before = evaluate(before_model, hold.x, hold.y)
    if epochs <= 0:
        return before_model, FinetuneInfo(0, time.perf_counter() - t0, lr, kd_weight, "none", before, before)

    teacher_arch = replace(supernet.space.largest(), resolution=arch.resolution)
    teacher = calibrated_subnet(supernet, teacher_arch, dataset, num_images=num_calib, seed=seed)
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = supernet.extract(arch).train()
    phase = Phase("finetune", max(1, int(epochs)), lr)
    opt = make_optimizer(student, schedule, lr)
    train = dataset.split("train", arch.resolution)
    x_all, y_all = to_input(train.x), torch.from_numpy(train.y)
    bs = min(batch_size, len(train))
    steps = max(1, len(train) // bs)
    total = max(1, int(round(epochs * steps)))   # steps in all; the last epoch may be partial
    shift = int(round(schedule.shift * arch.resolution))
    # No warm-up: the weights are trained already (warmup_fraction applies to a run's first phase only).
    tuned = replace(schedule, warmup_fraction=0.0)
    for epoch in range(-(-total // steps)):
        _, gen = epoch_generators(seed, FINETUNE_SEED_PHASE, epoch)
        order = torch.randperm(len(train), generator=gen)
        for step in range(min(steps, total - epoch * steps)):
            idx = order[step * bs:(step + 1) * bs]
            x = shift_images(x_all[idx], shift, gen)
            for group in opt.param_groups:
                group["lr"] = lr_at(tuned, 1, phase, epoch * steps + step, total)
            with torch.no_grad():
                target = teacher(x)
            logits = student(x)
            loss = F.cross_entropy(logits, y_all[idx], label_smoothing=schedule.label_smoothing)
            if kd_weight > 0:
                loss = loss + kd_weight * soft_cross_entropy(logits, target, temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    calib = calibration_images(dataset, arch.resolution, num_calib, seed)
    model = calibrate_bn(student, calib, batch_size=min(max(len(calib), 1), 512))
    after = evaluate(model, hold.x, hold.y)
    return model, FinetuneInfo(epochs, time.perf_counter() - t0, lr, kd_weight,
                               f"largest subnet at r{arch.resolution} (BN re-calibrated, frozen)", before, after)
