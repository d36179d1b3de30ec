"""BatchNorm re-calibration with exact statistics (OFA): a subnet's BN statistics are computed on
data after the subnet is chosen, never inherited from the supernet's training.

Each BN layer normalises with its batch's statistics while the pass runs (as in training), and the
per-channel sum and sum of squares are accumulated in float64 over all images, so the stored mean
and (biased, the one BN normalises with) variance are those of the whole calibration set, not a
momentum average. With every image in one batch, the eval output equals the train-mode output.
"""
from __future__ import annotations

import torch
import torch.nn as nn


@torch.no_grad()
def calibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> nn.Module:
    """Set every BatchNorm's running mean/var to exact statistics over `x` (NCHW float); eval mode.

    Works on the supernet (its active subnet; inactive channels keep their values) and on static
    modules alike. Returns `model`.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    sums: dict[nn.Module, list] = {}

    def hook(module, inputs):
        t = inputs[0].detach().double()
        c = t.shape[1]
        s1 = t.sum(dim=(0, 2, 3))
        s2 = (t * t).sum(dim=(0, 2, 3))
        n = t.numel() // c
        acc = sums.get(module)
        if acc is None:
            sums[module] = [s1, s2, n]
        else:
            if acc[0].shape[0] != c:
                raise RuntimeError("BN layer saw different channel counts during calibration")
            acc[0] += s1
            acc[1] += s2
            acc[2] += n

    handles = [m.register_forward_pre_hook(hook) for m in bns]
    saved = {m: (m.running_mean.clone(), m.running_var.clone()) for m in bns
             if m.running_mean is not None}
    try:
        model.train()
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
    finally:
        for h in handles:
            h.remove()
        model.eval()
    for m in bns:
        if m.running_mean is None:
            continue
        mean, var = saved[m]
        if m in sums:
            s1, s2, n = sums[m]
            mu = s1 / n
            c = len(mu)
            mean[:c] = mu.to(mean.dtype)
            var[:c] = (s2 / n - mu * mu).clamp_min(0).to(var.dtype)
        # Plain BatchNorm2d also moved its buffers during the train-mode pass: overwrite them.
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
    return model
