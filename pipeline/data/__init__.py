"""Datasets: the built-in digits, image folders and .npz arrays, with deterministic stratified splits.

A spec string names the source:
  builtin:digits        scikit-learn's bundled 8x8 handwritten digits (1 channel, 10 classes)
  builtin:digits-rgb    the same digits, each tinted with a seeded colour on a seeded background (3 channels)
  builtin:shapes        a hard 10-class 32x32 RGB set drawn procedurally from a fixed seed (shapes among
                        distractors on textured backgrounds), generated at first use and cached (shapes.py)
  folder:PATH | PATH/   one subfolder per class holding PNG/JPEG images (grayscale or RGB)
  npz:PATH | PATH.npz   arrays `x` (N,H,W[,C], uint8 or float in [0,1]) and `y` (N,) class ids 0..K-1
  audio:PATH            one subfolder per keyword of 16 kHz mono WAV files -> uint8 49x40x1 spectrograms
                        (TFLite Micro's audio frontend: audio.py)
  builtin:keywords      keywords synthesized with espeak-ng at first use, cached (keywords.py);
  builtin:keywords-small  4 keywords + silence + unknown, fewer clips
The serial check also takes npz tensors shaped like any model input (int8/int16/float): tensors.py.

Every sample is kept as uint8 NHWC at its native size; `Dataset.split(name, resolution)` resizes.
Splits: train (supernet weights), holdout (BN re-calibration, predictor, search), calibration (int8
quantization), test (only for final reporting: never seen by search).
"""
from __future__ import annotations

from .dataset import SPLITS, Dataset, Split, load_dataset, resize_images

__all__ = ["SPLITS", "Dataset", "Split", "load_dataset", "resize_images"]
