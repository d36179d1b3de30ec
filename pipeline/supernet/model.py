"""The OFA supernet: one set of weights for every subnet of a `SearchSpace`.

`set_active(arch)` picks the subnet the next forward computes (resolution is whatever the input
has); `sample(generator)` draws one; `extract(arch)` copies its weights into a static module of
standard layers. forward() never samples or mutates the active arch.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from .ops import DynamicBatchNorm2d, DynamicConv2d, DynamicDepthwiseConv2d, DynamicLinear
from .space import SearchSpace, SubnetArch
from .static import build_static


class DynamicMBBlock(nn.Module):
    """Inverted residual: 1x1 expand + ReLU6, kxk depthwise + ReLU6, 1x1 project, add when shapes match."""

    def __init__(self, space: SearchSpace, max_in: int, max_mid: int, max_out: int, stride: int):
        super().__init__()
        self.space, self.stride = space, stride
        self.expand = DynamicConv2d(max_in, max_mid)
        self.expand_bn = DynamicBatchNorm2d(max_mid)
        self.dw = DynamicDepthwiseConv2d(max_mid, space.kernel_sizes, stride)
        self.dw_bn = DynamicBatchNorm2d(max_mid)
        self.project = DynamicConv2d(max_mid, max_out)
        self.project_bn = DynamicBatchNorm2d(max_out)

    def forward(self, x: torch.Tensor, kernel: int, expand: int, out_channels: int) -> torch.Tensor:
        cin = x.shape[1]
        h = x
        if expand != 1:
            h = F.relu6(self.expand_bn(self.expand(h, self.space.mid_channels(cin, expand))))
        h = F.relu6(self.dw_bn(self.dw(h, kernel)))
        h = self.project_bn(self.project(h, out_channels))
        if self.stride == 1 and cin == out_channels:
            h = h + x
        return h


class OFASupernet(nn.Module):
    """MobileNetV2-style supernet with elastic resolution, width, depth, kernel and expand ratio."""

    def __init__(self, space: SearchSpace, seed: int = 0):
        super().__init__()
        if space.stem_kernel % 2 == 0:
            raise ConfigError(f"search space: field 'stem_kernel' must be odd, got {space.stem_kernel}")
        self.space = space
        s = space
        self.stem = DynamicConv2d(s.in_channels, s.stem_channels, s.stem_kernel, s.stem_stride)
        self.stem_bn = DynamicBatchNorm2d(s.stem_channels)
        in_options = {s.stem_channels}
        self.stages = nn.ModuleList()
        for si, st in enumerate(s.stages):
            out_options = {s.stage_channels(si, w) for w in s.width_mults}
            blocks = nn.ModuleList()
            for bi in range(s.max_depth):
                ins = in_options if bi == 0 else out_options
                max_mid = max(s.mid_channels(c, e) for c in ins for e in s.expand_ratios)
                blocks.append(DynamicMBBlock(s, max(ins), max_mid, max(out_options),
                                             st.stride if bi == 0 else 1))
            self.stages.append(blocks)
            in_options = out_options
        self.classifier = DynamicLinear(max(in_options), s.num_classes)
        self._active = s.largest()
        self._init_weights(seed)

    def _init_weights(self, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (DynamicConv2d, DynamicDepthwiseConv2d)):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", generator=g)
                elif isinstance(m, DynamicLinear):
                    nn.init.normal_(m.weight, 0.0, 0.01, generator=g)
                    m.bias.zero_()
            # Blocks after the first of a stage always add their input back: starting their last BN
            # at zero makes each an identity, so the deep net trains like a shallow one at first.
            for blocks in self.stages:
                for blk in list(blocks)[1:]:
                    blk.project_bn.weight.zero_()

    # -- active subnet ----------------------------------------------------------------------------
    @property
    def active(self) -> SubnetArch:
        return self._active

    def set_active(self, arch: SubnetArch) -> None:
        self._active = self.space.check_arch(arch)

    def sample(self, generator: np.random.Generator, **restrict) -> SubnetArch:
        """Draw a subnet with `space.sample` (keywords restrict dimensions), make it active, return it."""
        arch = self.space.sample(generator, **restrict)
        self.set_active(arch)
        return arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arch, s = self._active, self.space
        x = x.contiguous(memory_format=torch.channels_last)
        x = F.relu6(self.stem_bn(self.stem(x, s.stem_channels))).contiguous(memory_format=torch.channels_last)
        for si, blocks in enumerate(self.stages):
            cout = s.stage_channels(si, arch.widths[si])
            for bi, (k, e) in enumerate(zip(arch.kernels[si], arch.expands[si])):
                x = blocks[bi](x, k, e, cout)
        return self.classifier(x.mean((2, 3)))

    # -- extraction -------------------------------------------------------------------------------
    def extract(self, arch: SubnetArch) -> nn.Module:
        """A static eval-mode module of standard layers computing `arch` with the supernet's weights."""
        return extract(self, arch)


def _copy_bn(dst: nn.BatchNorm2d, src: DynamicBatchNorm2d) -> None:
    c = dst.num_features
    dst.weight.copy_(src.weight[:c])
    dst.bias.copy_(src.bias[:c])
    dst.running_mean.copy_(src.running_mean[:c])
    dst.running_var.copy_(src.running_var[:c])
    dst.eps = src.eps


def extract(supernet: OFASupernet, arch: SubnetArch) -> nn.Module:
    """Copy `arch`'s weights out of `supernet` into `build_static(space, arch)` (eval mode)."""
    space = supernet.space
    space.check_arch(arch)
    model = build_static(space, arch)
    with torch.no_grad():
        stem = model.stem
        stem.conv.weight.copy_(supernet.stem.weight[:, :space.in_channels])
        _copy_bn(stem.bn, supernet.stem_bn)
        for si, blocks in enumerate(supernet.stages):
            for bi, k in enumerate(arch.kernels[si]):
                dyn = blocks[bi]
                seq = getattr(model, f"s{si}b{bi}")
                seq = seq.block if hasattr(seq, "block") else seq
                if hasattr(seq, "expand"):
                    conv = seq.expand.conv
                    conv.weight.copy_(dyn.expand.weight[:conv.out_channels, :conv.in_channels])
                    _copy_bn(seq.expand.bn, dyn.expand_bn)
                conv = seq.dw.conv
                conv.weight.copy_(dyn.dw.active_weight(conv.out_channels, k))
                _copy_bn(seq.dw.bn, dyn.dw_bn)
                conv = seq.project.conv
                conv.weight.copy_(dyn.project.weight[:conv.out_channels, :conv.in_channels])
                _copy_bn(seq.project.bn, dyn.project_bn)
        fc = model.classifier
        fc.weight.copy_(supernet.classifier.weight[:, :fc.in_features])
        fc.bias.copy_(supernet.classifier.bias)
    return model.eval()


def build_supernet(space: SearchSpace, seed: int = 0) -> OFASupernet:
    """A freshly initialised supernet for `space` (weights drawn from a generator seeded by `seed`)."""
    return OFASupernet(space, seed=seed)


def copy_supernet(supernet: OFASupernet) -> OFASupernet:
    return copy.deepcopy(supernet)
