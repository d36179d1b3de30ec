"""Dynamic layers: weights sized for the largest subnet, sliced to the active one on every call.

Channels are always the *first* C of a tensor: importance sorting (sorting.py) puts the most useful
channels first, so a narrow subnet keeps the best ones. Stride-2 convolutions pad TensorFlow-style
(extra pixel right/bottom) so the exported int8 graph folds the pad into SAME and holds no PAD op.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .space import same_padding


CL = torch.channels_last


def _match_format(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Give the weight the activation's memory format. The supernet runs channels_last: oneDNN then
    computes the depthwise backward ~3x faster on CPU than in NCHW (and mixed formats take the slow
    path)."""
    if x.is_contiguous(memory_format=CL):
        return w.contiguous(memory_format=CL)
    return w


def tf_same_pad(x: torch.Tensor, kernel: int, stride: int) -> tuple[torch.Tensor, int]:
    """Pad `x` for a TF-SAME conv; return (input, conv padding). Stride 1 pads symmetrically in the
    conv itself (identical to SAME for odd kernels); stride 2 pads explicitly, as extract() does."""
    if stride == 1:
        return x, kernel // 2
    top, bottom = same_padding(x.shape[2], kernel, stride)
    left, right = same_padding(x.shape[3], kernel, stride)
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom))
    return x, 0


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first C channels of its parameters.

    Training mode normalises with batch statistics and leaves the running statistics untouched:
    they hold meaning only for one subnet, so they are set by `pipeline.train.calibrate_bn`
    (exact statistics for the active subnet), as OFA re-calibrates before every evaluation. This
    also keeps DDP ranks bit-identical without broadcasting buffers.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if self.training:
            return F.batch_norm(x, None, None, self.weight[:c], self.bias[:c], True, 0.0, self.eps)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c],
                            self.bias[:c], False, 0.0, self.eps)


class DynamicConv2d(nn.Module):
    """Dense kxk convolution (stem and 1x1 pointwise) with elastic input and output channels."""

    def __init__(self, max_in: int, max_out: int, kernel: int = 1, stride: int = 1):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.weight = nn.Parameter(torch.empty(max_out, max_in, kernel, kernel))

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        w = _match_format(self.weight[:out_channels, :x.shape[1]], x)
        x, padding = tf_same_pad(x, self.kernel, self.stride)
        return F.conv2d(x, w, None, self.stride, padding)


class DynamicDepthwiseConv2d(nn.Module):
    """Depthwise conv with elastic channels and kernel size (OFA elastic kernel).

    A smaller kernel is the centre crop of the next larger one passed through a learned
    (k*k x k*k) matrix shared by all channels of this layer, identity-initialised, so kernel
    sizes share weights without forcing the small kernel to equal the big one's centre.
    """

    def __init__(self, max_channels: int, kernel_sizes: tuple[int, ...], stride: int):
        super().__init__()
        self.kernel_sizes = tuple(sorted(kernel_sizes))
        self.stride = stride
        k = self.kernel_sizes[-1]
        self.weight = nn.Parameter(torch.empty(max_channels, 1, k, k))
        desc = self.kernel_sizes[::-1]
        self.transforms = nn.ParameterDict({
            f"{big}to{small}": nn.Parameter(torch.eye(small * small))
            for big, small in zip(desc, desc[1:])})

    def active_weight(self, channels: int, kernel: int) -> torch.Tensor:
        w = self.weight[:channels]
        size = self.kernel_sizes[-1]
        for small in reversed(self.kernel_sizes[:-1]):
            if small < kernel:
                break
            start = (size - small) // 2
            w = w[:, :, start:start + small, start:start + small]
            w = F.linear(w.reshape(channels, small * small), self.transforms[f"{size}to{small}"])
            w = w.reshape(channels, 1, small, small)
            size = small
        return w

    def forward(self, x: torch.Tensor, kernel: int) -> torch.Tensor:
        c = x.shape[1]
        w = _match_format(self.active_weight(c, kernel), x)
        x, padding = tf_same_pad(x, kernel, self.stride)
        return F.conv2d(x, w, None, self.stride, padding, 1, c)


class DynamicLinear(nn.Module):
    """Classifier with elastic input features."""

    def __init__(self, max_in: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, max_in))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[:, :x.shape[1]], self.bias)
