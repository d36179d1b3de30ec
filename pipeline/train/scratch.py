"""Train one subnet alone, from scratch: the baseline the supernet is compared with (the
progressive-shrinking benchmark and the catalog's compute account)."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from ..data import Dataset
from ..supernet import build_supernet
from ..supernet.space import SearchSpace, SubnetArch
from .bn import calibrate_bn
from .evaluate import evaluate, to_input
from .recipe import epoch_generators, lr_at, make_optimizer, shift_images
from .schedule import Schedule


def train_scratch(space: SearchSpace, arch: SubnetArch, ds: Dataset, schedule: Schedule, epochs: int,
                  batch_size: int, seed: int) -> tuple[float, float]:
    """Train `arch` alone (static module, supernet-style init) with the schedule's first-phase recipe
    (optimizer, augmentation, cosine lr); return (test accuracy after the same BN re-calibration the
    supernet's subnets get, seconds)."""
    t0 = time.perf_counter()
    model = build_supernet(space, seed=seed).extract(arch).train().to(memory_format=torch.channels_last)
    phase = schedule.phases[0]
    opt = make_optimizer(model, schedule, phase.lr)
    train = ds.split("train", arch.resolution)
    x_all, y_all = to_input(train.x), torch.from_numpy(train.y)
    steps = len(train) // batch_size
    shift = int(round(schedule.shift * arch.resolution))
    for epoch in range(epochs):
        _, gen = epoch_generators(seed, 0, epoch)
        order = torch.randperm(len(train), generator=gen)
        for step in range(steps):
            idx = order[step * batch_size:(step + 1) * batch_size]
            x = shift_images(x_all[idx], shift, gen).contiguous(memory_format=torch.channels_last)
            lr = lr_at(schedule, 0, phase, epoch * steps + step, epochs * steps)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y_all[idx], label_smoothing=schedule.label_smoothing).backward()
            opt.step()
    model = model.to(memory_format=torch.contiguous_format)
    hold = ds.split("holdout", arch.resolution)
    calibrate_bn(model, to_input(hold.x), batch_size=len(hold.x))
    test = ds.split("test", arch.resolution)
    return evaluate(model, test.x, test.y), time.perf_counter() - t0
