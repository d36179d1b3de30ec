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


_INT_RANGES = {"int8": (-128, 127), "int16": (-32768, 32767)}


def quantize_real(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """Real values -> int8/int16 tensor values as TFLite's QUANTIZE does: round(x / scale) in float32,
    half away from zero, plus the zero point, clamped to the type's range."""
    lo, hi = _INT_RANGES[dtype]
    scaled = np.asarray(x, dtype=np.float32) / np.float32(scale)
    mag = np.abs(scaled)
    rounded = np.floor(mag) + (mag - np.floor(mag) >= 0.5)
    q = np.sign(scaled) * rounded + zero_point
    return np.clip(q, lo, hi).astype(dtype)


@dataclass(frozen=True)
class TensorContract:
    """The contract of a model whose input is not a uint8 image: spectrograms, feature vectors, int16.

    A raw sample is either already the model's tensor values (int8 or int16, the model's own dtype: sent
    as is) or real values (float: quantized with the model's input scale and zero point, TFLite rounding).
    `shape` is the model's input shape, batch first: (1, 49, 10, 1) or (1, 640).
    """
    shape: tuple[int, ...]
    input_dtype: str  # int8 | int16
    input_scale: float
    input_zero_point: int
    layout: str = "tensor"

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.input_dtype not in _INT_RANGES:
            raise ValueError(f"tensor contract dtype must be int8 or int16, got {self.input_dtype}")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """One sample (or a batch) of raw values -> the model's input tensor values."""
        x = np.asarray(x)
        if x.shape[-len(self.sample_shape):] != self.sample_shape:
            raise ValueError(f"sample shape {x.shape} does not match the model input {self.sample_shape}")
        if x.dtype == np.dtype(self.input_dtype):
            return x
        if np.issubdtype(x.dtype, np.floating):
            return quantize_real(x, self.input_scale, self.input_zero_point, self.input_dtype)
        raise TypeError(f"raw samples must be {self.input_dtype} tensor values or floats, got {x.dtype}")

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (np.asarray(q, dtype=np.float64) - self.input_zero_point) * self.input_scale

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TensorContract":
        return cls(**{k: v for k, v in d.items() if k in ("shape", "input_dtype", "input_scale",
                                                          "input_zero_point", "layout")})
