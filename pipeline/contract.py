"""The input contract: how a raw sample becomes the model's input, written once for every consumer.

A raw sample is a uint8 image in NHWC at the model's resolution (the dataset loader resizes). The float
model sees `pixel * pixel_scale + pixel_offset`; the int8 model sees `lut[pixel]`, where the 256-entry
table is computed here from the TFLite input quantization. Host checks, the generated firmware
(`model_settings.h` carries the same table) and the serial checker all go through `quantize`, so they
cannot drift apart.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

PIXEL_SCALE = 1.0 / 255.0
PIXEL_OFFSET = 0.0


def pixels_to_float(pixels: np.ndarray, pixel_scale: float = PIXEL_SCALE,
                    pixel_offset: float = PIXEL_OFFSET) -> np.ndarray:
    """uint8 pixels -> float32 model input, in whatever layout `pixels` has."""
    if pixels.dtype != np.uint8:
        raise TypeError(f"raw samples must be uint8 pixels, got {pixels.dtype}")
    return (pixels.astype(np.float32) * np.float32(pixel_scale) + np.float32(pixel_offset)).astype(np.float32)


@dataclass(frozen=True)
class InputContract:
    height: int
    width: int
    channels: int
    input_scale: float
    input_zero_point: int
    pixel_scale: float = PIXEL_SCALE
    pixel_offset: float = PIXEL_OFFSET
    layout: str = "NHWC"
    raw_dtype: str = "uint8"
    input_dtype: str = "int8"
    lut: tuple[int, ...] = field(default=(), compare=True)

    def __post_init__(self):
        if not self.lut:
            object.__setattr__(self, "lut", tuple(int(v) for v in self._compute_lut()))
        if len(self.lut) != 256:
            raise ValueError("input contract lut must have 256 entries")

    def _compute_lut(self) -> np.ndarray:
        pixels = np.arange(256, dtype=np.uint8)
        real = pixels_to_float(pixels, self.pixel_scale, self.pixel_offset)  # float32, as the model sees it
        # TFLite's QUANTIZE computes round(real / scale) in float32, half away from zero (std::round);
        # dividing in float64 would disagree on exact .5 ties.
        scaled = real / np.float32(self.input_scale)
        mag = np.abs(scaled)
        rounded = np.floor(mag) + (mag - np.floor(mag) >= 0.5)
        q = np.sign(scaled) * rounded + self.input_zero_point
        return np.clip(q, -128, 127).astype(np.int8)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (1, self.height, self.width, self.channels)

    def quantize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 NHWC pixels (any leading batch) -> int8 input tensor values."""
        if pixels.dtype != np.uint8:
            raise TypeError(f"raw samples must be uint8 pixels, got {pixels.dtype}")
        if pixels.shape[-3:] != (self.height, self.width, self.channels):
            raise ValueError(
                f"sample shape {pixels.shape[-3:]} does not match the model input "
                f"{(self.height, self.width, self.channels)} (HWC)")
        return np.asarray(self.lut, dtype=np.int8)[pixels]

    def to_float(self, pixels: np.ndarray) -> np.ndarray:
        return pixels_to_float(pixels, self.pixel_scale, self.pixel_offset)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lut"] = list(self.lut)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "InputContract":
        d = dict(d)
        d["lut"] = tuple(d.get("lut", ()))
        return cls(**d)
