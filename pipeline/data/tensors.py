"""Tensor datasets: .npz arrays fed to a model as they are (spectrograms, feature vectors, int8/int16).

The image loader (dataset.py) turns every sample into uint8 pixels and resizes it. A model whose input is
not an image (MLPerf Tiny's keyword spotter takes 49x10x1 int8 MFCCs, the anomaly detector a 640-value
vector) needs its data as is: `load_tensors("npz:PATH")` keeps `x` in its own dtype and shape, and
`match_input(data, model_input)` checks the shape contract before a single sample is sent:

  x (N, *S) with S the model input shape without the batch dimension; a missing trailing channel of 1
  ((N,49,10) for (1,49,10,1)) is added. dtype: the model's own (int8/int16: tensor values, sent as is) or
  float (real values, quantized with the model's input scale and zero point). Anything else is refused
  with one line naming both sides (`InputContractError`, exit code 4).

`y` is optional (an autoencoder is checked on reconstruction, not labels); with `y`, the class count
(`class_names`, else max(y)+1) is what a classifier's output length must equal.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, InputContractError


@dataclass(frozen=True)
class TensorData:
    spec: str
    x: np.ndarray                 # (N, *sample shape), dtype as stored
    y: np.ndarray | None          # (N,) int64 class ids, or None
    class_names: tuple[str, ...]  # () without labels

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(repr((self.x.dtype.str, self.x.shape)).encode())
        h.update(np.ascontiguousarray(self.x).tobytes())
        if self.y is not None:
            h.update(self.y.astype(np.int64).tobytes())
        return h.hexdigest()[:16]


def npz_path(spec: str) -> Path | None:
    """The .npz path of an `npz:PATH` or `PATH.npz` spec, else None."""
    kind, _, rest = str(spec).partition(":")
    if kind == "npz":
        return Path(rest).expanduser()
    if not rest and str(spec).endswith(".npz"):
        return Path(spec).expanduser()
    return None


def npz_dtype(spec: str) -> np.dtype | None:
    """dtype of the `x` array of an npz spec without loading it whole (None: not an npz or unreadable)."""
    path = npz_path(spec)
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return f["x"].dtype if "x" in f.files else None
    except Exception:  # noqa: BLE001 - the loader reports a bad file properly
        return None


def load_tensors(spec: str) -> TensorData:
    path = npz_path(spec)
    if path is None:
        raise DataError(f"'{spec}' is not an .npz dataset; a model whose input is not an image takes its "
                        f"samples from npz:PATH (arrays x and optionally y)",
                        hint="save with np.savez(path, x=samples, y=labels); x shaped like the model input")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f.files:
                raise DataError(f"{path}: missing array 'x'; found {f.files}",
                                hint="save with np.savez(path, x=samples, y=labels)")
            x = f["x"]
            y = f["y"] if "y" in f.files else None
            names = [str(n) for n in f["class_names"]] if "class_names" in f.files else None
    except DataError:
        raise
    except Exception as e:  # zipfile / pickle errors: the file itself is bad
        raise DataError(f"{path}: cannot read as .npz ({e})") from None
    if x.ndim < 2 or len(x) == 0:
        raise DataError(f"{path}: 'x' must be (N, ...) with at least one sample, got shape {x.shape}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError(f"{path}: 'x' holds NaN or infinite values")
    if y is not None:
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{path}: 'y' must be (N,) with N = {len(x)} like 'x', got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
            raise DataError(f"{path}: 'y' must hold class ids 0..K-1, got {y.dtype} "
                            f"min {y.min() if len(y) else '-'}")
        y = y.astype(np.int64)
        k = int(y.max()) + 1
        names = names or [str(i) for i in range(k)]
        if len(names) < k:
            raise DataError(f"{path}: {len(names)} class_names for labels up to {k - 1}")
    return TensorData(spec=str(spec), x=x, y=y, class_names=tuple(names or ()))


def _fmt(shape) -> str:
    return "x".join(str(int(d)) for d in shape)


def match_input(data: TensorData, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """`data.x` shaped (N, *shape[1:]) for a model input of `shape` (batch first) and dtype int8/int16.

    Raises InputContractError naming both sides on a shape or dtype mismatch."""
    want = tuple(int(d) for d in shape[1:])
    x = data.x
    if x.shape[1:] != want and x.shape[1:] + (1,) == want:
        x = x[..., None]
    if x.shape[1:] != want:
        raise InputContractError(
            f"{data.spec}: samples are {_fmt(data.x.shape[1:])} but the model input is {_fmt(want)} "
            f"(model shape {_fmt(shape)})",
            hint=f"save x as (N, {', '.join(str(d) for d in want)}), the model input without its batch "
                 f"dimension")
    if x.dtype != np.dtype(dtype) and not np.issubdtype(x.dtype, np.floating):
        raise InputContractError(
            f"{data.spec}: samples are {x.dtype} but the model input is {dtype}",
            hint=f"give x as {dtype} tensor values (sent as is) or as float real values (quantized with the "
                 f"model's input scale and zero point)")
    return x


def check_classes(num_classes: int, outputs: int, spec: str) -> None:
    """A classifier's output length must equal the dataset's class count."""
    if num_classes and num_classes != outputs:
        raise InputContractError(
            f"{spec} has {num_classes} classes but the model outputs {outputs} values",
            hint="check the model with the dataset it was trained on, or pass --metric mse for a model "
                 "that does not classify")
