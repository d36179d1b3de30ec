"""Channel importance sorting (OFA): put the channels that matter most first, so that the first C
channels a narrow subnet keeps are the best ones.

Importance = L1 norm of the weights that *read* a channel (the following pointwise conv or the
classifier). Each permutation is applied to every tensor that touches those channels, so the
largest network computes exactly the same function before and after sorting.
"""
from __future__ import annotations

import torch

from .model import OFASupernet
from .ops import DynamicBatchNorm2d


def _permute_bn(bn: DynamicBatchNorm2d, perm: torch.Tensor) -> None:
    n = len(perm)
    for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        t[:n].copy_(t[:n][perm])


def _permute_(t: torch.Tensor, perm: torch.Tensor, dim: int) -> None:
    """In place (keeps DDP/optimizer references valid): permute the first len(perm) entries of `dim`."""
    n = len(perm)
    view = t.narrow(dim, 0, n)
    view.copy_(view.index_select(dim, perm))


def _order(importance: torch.Tensor) -> torch.Tensor:
    # Stable sort so equal importances (e.g. untouched zero-init channels) keep their order.
    return torch.sort(importance, descending=True, stable=True).indices


@torch.no_grad()
def sort_expand_channels(supernet: OFASupernet) -> None:
    """Sort each block's hidden (expanded) channels by the L1 norm of its project conv's inputs."""
    for blocks in supernet.stages:
        for blk in blocks:
            perm = _order(blk.project.weight.abs().sum(dim=(0, 2, 3)))
            _permute_(blk.expand.weight, perm, 0)
            _permute_bn(blk.expand_bn, perm)
            _permute_(blk.dw.weight, perm, 0)
            _permute_bn(blk.dw_bn, perm)
            _permute_(blk.project.weight, perm, 1)


def _width_groups(supernet: OFASupernet) -> list[list[int]]:
    """Stages whose outputs share one channel space: a stride-1 stage with the same maximum width
    as the stage before it adds its input back in its first block, tying the two together."""
    space = supernet.space
    groups: list[list[int]] = []
    widths = space.max_stage_channels
    for si, st in enumerate(space.stages):
        if groups and st.stride == 1 and widths[si] == widths[si - 1]:
            groups[-1].append(si)
        else:
            groups.append([si])
    return groups


@torch.no_grad()
def sort_width_channels(supernet: OFASupernet) -> None:
    """Sort each stage's output channels by the L1 norm of every weight that reads them.

    A stage's blocks all write the same channels (the residual adds tie them), so one permutation
    covers every project conv and BN of the group, and every consumer: the expand convs of the
    group's later blocks and of the next stage's first block, or the classifier."""
    stages = supernet.stages
    for group in _width_groups(supernet):
        producers = [blk for si in group for blk in stages[si]]
        consumers = [blk.expand.weight for si in group for blk in list(stages[si])[1:]]
        if group[0] != group[-1]:
            consumers += [stages[si][0].expand.weight for si in group[1:]]
        nxt = group[-1] + 1
        consumers.append(stages[nxt][0].expand.weight if nxt < len(stages)
                         else supernet.classifier.weight)
        n = producers[0].project.weight.shape[0]
        importance = torch.zeros(n, dtype=torch.float64)
        for w in consumers:
            dims = (0, 2, 3) if w.dim() == 4 else (0,)
            importance[:w.shape[1]] += w.abs().sum(dim=dims)[:n].double()
        perm = _order(importance)
        for blk in producers:
            _permute_(blk.project.weight, perm, 0)
            _permute_bn(blk.project_bn, perm)
        for w in consumers:
            _permute_(w, perm, 1)
