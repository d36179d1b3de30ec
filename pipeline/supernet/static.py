"""The static network of one arch, built only from standard PyTorch layers.

The structure follows `layers(space, arch)` op for op, so the ONNX graph, the TFLite model and the
cost models all describe the same network. Stride-1 convs pad symmetrically inside the conv;
stride-2 convs get an explicit `ZeroPad2d` with TF-SAME amounts and `padding=0`, which the
ONNX -> TFLite conversion folds into SAME (no PAD op, so no extra arena peak).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from .space import Layer, SearchSpace, SubnetArch, layers

#: Module types an extracted subnet may contain (tests and the exporter check against this).
STANDARD_LAYERS = (nn.Sequential, nn.Conv2d, nn.BatchNorm2d, nn.ReLU6, nn.ZeroPad2d, nn.Linear,
                   nn.AdaptiveAvgPool2d, nn.Flatten)


class Residual(nn.Module):
    """`x + block(x)`: the residual add of an inverted-residual block."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def conv_bn(layer: Layer, groups: int = 1) -> nn.Sequential:
    """Conv (+ TF-SAME pad) + BatchNorm (+ ReLU6) for one conv-like `Layer`."""
    cin, cout = layer.in_shape[2], layer.out_shape[2]
    mods: list[tuple[str, nn.Module]] = []
    if layer.stride == 1:
        padding = layer.kernel // 2
    else:
        top, bottom, left, right = layer.pad
        if any(layer.pad):
            mods.append(("pad", nn.ZeroPad2d((left, right, top, bottom))))
        padding = 0
    mods.append(("conv", nn.Conv2d(cin, cout, layer.kernel, layer.stride, padding,
                                   groups=groups, bias=False)))
    mods.append(("bn", nn.BatchNorm2d(cout)))
    if layer.relu6:
        mods.append(("act", nn.ReLU6()))
    return nn.Sequential(OrderedDict(mods))


def build_static(space: SearchSpace, arch: SubnetArch) -> nn.Sequential:
    """An untrained static module for `arch` (random init by PyTorch defaults; extract() overwrites)."""
    ops = layers(space, arch)
    top: list[tuple[str, nn.Module]] = []
    block: list[tuple[str, nn.Module]] = []
    block_name = None

    def close_block(residual: bool):
        nonlocal block, block_name
        seq = nn.Sequential(OrderedDict(block))
        top.append((block_name, Residual(seq) if residual else seq))
        block, block_name = [], None

    for i, op in enumerate(ops):
        if op.kind == "conv":
            top.append(("stem", conv_bn(op)))
        elif op.kind in ("pw_expand", "dw", "pw_project"):
            name, part = op.name.split(".")
            if block_name is not None and name != block_name:
                close_block(residual=False)
            block_name = name
            groups = op.in_shape[2] if op.kind == "dw" else 1
            block.append((part, conv_bn(op, groups)))
            nxt = ops[i + 1] if i + 1 < len(ops) else None
            if op.kind == "pw_project" and (nxt is None or nxt.kind != "add"):
                close_block(residual=False)
        elif op.kind == "add":
            close_block(residual=True)
        elif op.kind == "pool":
            top.append(("pool", nn.AdaptiveAvgPool2d(1)))
            top.append(("flatten", nn.Flatten(1)))
        elif op.kind == "fc":
            top.append(("classifier", nn.Linear(op.in_shape[2], op.out_shape[2])))
    return nn.Sequential(OrderedDict(top))
