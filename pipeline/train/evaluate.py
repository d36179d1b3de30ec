"""Accuracy of a model on uint8 images, and the BN-calibrated static subnet other stages consume."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..contract import pixels_to_float
from ..data import Dataset
from ..errors import DataError
from ..supernet.model import OFASupernet
from ..supernet.space import SubnetArch
from .bn import calibrate_bn


def to_input(x_uint8_nhwc: np.ndarray) -> torch.Tensor:
    """uint8 NHWC pixels -> the float NCHW tensor the PyTorch models take (pixels / 255)."""
    return torch.from_numpy(pixels_to_float(np.ascontiguousarray(x_uint8_nhwc))).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def predict_logits(model: nn.Module, x_uint8_nhwc: np.ndarray, batch_size: int = 256) -> np.ndarray:
    model.eval()
    out = [model(to_input(x_uint8_nhwc[i:i + batch_size])).numpy()
           for i in range(0, len(x_uint8_nhwc), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def evaluate(model: nn.Module, x_uint8_nhwc: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy in [0, 1] of `model` (eval mode) on uint8 NHWC images."""
    if len(y) == 0:
        raise DataError("cannot evaluate on an empty split")
    logits = predict_logits(model, x_uint8_nhwc, batch_size)
    return float((logits.argmax(1) == np.asarray(y)).mean())


def calibration_images(dataset: Dataset, resolution: int, num_images: int = 500, seed: int = 0,
                       split: str = "holdout") -> torch.Tensor:
    """Up to `num_images` images of `split` at `resolution` (a seeded subset when there are more)."""
    x = dataset.split(split, resolution).x
    if len(x) > num_images:
        idx = np.sort(np.random.default_rng(seed).choice(len(x), num_images, replace=False))
        x = x[idx]
    return to_input(x)


def calibrated_subnet(supernet: OFASupernet, arch: SubnetArch, dataset: Dataset, *,
                      num_images: int = 500, seed: int = 0) -> nn.Module:
    """The static eval module for `arch` with BN statistics re-computed on holdout images.

    Extracts first and calibrates the copy, which is the same computation as calibrating the
    supernet with `arch` active, but leaves the supernet's own buffers untouched."""
    supernet.space.check_arch(arch)
    model = supernet.extract(arch)
    x = calibration_images(dataset, arch.resolution, num_images, seed)
    # One batch (up to 512 images): then eval on these images equals the train-mode forward exactly.
    return calibrate_bn(model, x, batch_size=min(max(len(x), 1), 512))
