"""What the serial check sends and how it scores it: the samples, their contract, and the metric.

Two kinds of data, chosen from the model and the dataset before the first sample is sent:
  image   uint8 pixels (builtin:, folder:, npz with uint8 x) for an int8 NHWC model with 1 or 3 channels:
          the test split, resized to the model's H x W (square or not), through the image contract's LUT.
  tensor  any other npz (int8/int16 tensor values, or float real values) for any model input (NHWC with
          H != W, (1, N) vectors, int16): every sample of the file, in order, checked against the model
          input shape and dtype (pipeline/data/tensors.py), through the TensorContract.
Metrics: `top1` (classifier: argmax agreement with the host, accuracy against labels; the class count must
equal the output length) or `mse` (autoencoder / anomaly model: the anomaly score, mean squared error of
the dequantized reconstruction against the dequantized input, must agree with the host's; a model whose
output is not shaped like its input is scored on its output's MSE against the host's). `auto` picks top1
when the data has labels and the output length equals the class count, else mse when the output is shaped
like the input; anything else is refused.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import artifacts
from ..contract import InputContract, TensorContract
from ..data.tensors import check_classes, load_tensors, match_input, npz_dtype
from ..errors import ArtifactError, InputContractError, UsageError
from ..tflite.model_info import ModelInfo, TensorInfo

METRICS = ("auto", "top1", "mse")
_NP = {"INT8": np.int8, "INT16": np.int16}
SCORE_RTOL = 1e-3  # relative tolerance of the anomaly-score agreement (exact kernels give 0)


def is_image_input(t: TensorInfo) -> bool:
    return len(t.shape) == 4 and t.shape[0] == 1 and t.shape[3] in (1, 3) and t.dtype == "INT8"


def load_contract(model_path: str | os.PathLike, model: ModelInfo) -> InputContract:
    """The image contract from export_report.json beside the model, else from the model's quantization."""
    shape = model.input.shape
    if len(shape) != 4 or shape[0] != 1:
        raise ArtifactError(f"{model_path}: input shape {shape} is not (1, H, W, C)",
                            hint="an image contract needs an NHWC input; give other models npz tensor data")
    report = artifacts.path("export report", Path(model_path).parent)
    if report.exists():
        d = artifacts.read("export report", report, fields=("input_contract",))
        if d["input_contract"].get("layout", "NHWC") == "NHWC":
            c = InputContract.from_dict(d["input_contract"])
            if c.shape != tuple(shape):
                raise ArtifactError(f"{report}: input contract shape {c.shape} does not match the model's "
                                    f"input {tuple(shape)}", hint="re-run the export for this model")
            return c
    return InputContract(shape[1], shape[2], shape[3], model.input.scale, model.input.zero_point)


@dataclass
class CheckData:
    kind: str                      # image | tensor
    metric: str                    # top1 | mse
    x: np.ndarray                  # raw samples, (N, ...)
    labels: np.ndarray | None      # (N,) or None
    indices: np.ndarray            # position of each sample in the dataset
    class_names: tuple[str, ...]
    fingerprint: str
    contract: InputContract | TensorContract

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def quantized(self, i: int) -> np.ndarray:
        return self.contract.quantize(self.x[i])

    def describe(self) -> dict:
        d = {"input_kind": self.kind, "metric": self.metric, "input_shape": list(self.contract.shape),
             "input_dtype": self.contract.input_dtype, "samples": len(self),
             "labels": self.labels is not None, "classes": len(self.class_names)}
        if self.kind == "image":
            d.update(split="test", resolution=[self.contract.height, self.contract.width])
        else:
            d.update(split="all", raw_dtype=str(self.x.dtype))
        return d


def _pick_metric(metric: str, has_labels: bool, num_classes: int, model: ModelInfo, spec: str) -> str:
    if metric not in METRICS:
        raise UsageError(f"--metric {metric}: choose one of {', '.join(METRICS)}")
    outputs = model.output.num_elements
    autoencoder = outputs == model.input.num_elements
    if metric == "auto":
        if has_labels and num_classes == outputs:
            return "top1"
        if autoencoder:
            return "mse"
        if not has_labels:
            raise InputContractError(
                f"{spec} has no labels and the model output ({outputs} values) is not shaped like its input "
                f"({model.input.num_elements} values)", hint="add y to the npz, or pass --metric mse")
        metric = "top1"  # labels, but the wrong count: refused below with both sides
    if metric == "top1":
        if not has_labels:
            raise InputContractError(f"{spec} has no labels; top-1 needs y",
                                     hint="add y (class ids) to the npz, or pass --metric mse")
        check_classes(num_classes, outputs, spec)
    return metric


def check_data(model_path, model: ModelInfo, spec: str, *, seed: int = 0, metric: str = "auto") -> CheckData:
    """Load the data for `model`, check the contract (shape, dtype, class count), pick the metric."""
    from ..data import load_dataset

    raw = npz_dtype(spec)
    if model.input.dtype not in _NP or model.output.dtype not in _NP:
        raise InputContractError(
            f"the model takes {model.input.dtype.lower()} and returns {model.output.dtype.lower()}; the check "
            f"sends int8 or int16 tensors", hint="convert with full-integer quantization")
    if is_image_input(model.input) and (raw is None or raw == np.uint8):
        contract = load_contract(model_path, model)
        ds = load_dataset(spec, seed=seed)
        if ds.channels != contract.channels:
            raise InputContractError(
                f"{spec} has {ds.channels} channel(s) but the model input has {contract.channels}",
                hint="use the dataset the model was trained on (e.g. builtin:digits-rgb for 3 channels)")
        kind_metric = _pick_metric(metric, True, ds.num_classes, model, spec)
        split = ds.split("test", resolution=(contract.height, contract.width))
        return CheckData("image", kind_metric, split.x, split.y, split.indices, tuple(ds.class_names),
                         ds.fingerprint(), contract)
    data = load_tensors(spec)
    x = match_input(data, model.input.shape, model.input.dtype.lower())
    contract = TensorContract(model.input.shape, model.input.dtype.lower(), model.input.scale,
                              model.input.zero_point)
    kind_metric = _pick_metric(metric, data.y is not None, data.num_classes, model, spec)
    return CheckData("tensor", kind_metric, x, data.y, np.arange(len(x)), data.class_names,
                     data.fingerprint(), contract)


def dequantize(values: np.ndarray, t: TensorInfo) -> np.ndarray:
    return (values.astype(np.float64) - t.zero_point) * (t.scale or 1.0)


def score_record(metric: str, model: ModelInfo, x_q: np.ndarray, dev: np.ndarray, host: np.ndarray) -> dict:
    """Per-sample fields of the check log for the metric (dev/host: the output tensor values)."""
    same = dev.shape == host.shape
    rec = {"exact": bool(same and np.array_equal(dev, host)),
           "max_abs_diff": int(np.abs(dev.astype(int) - host.astype(int)).max()) if same and dev.size else None}
    if metric == "top1":
        rec.update(device_top1=int(dev.argmax()) if dev.size else -1,
                   argmax_agree=bool(same and dev.argmax() == host.argmax()))
        return rec
    if not same:
        rec.update(argmax_agree=False, score_agree=False)
        return rec
    d_out, h_out = dequantize(dev, model.output), dequantize(host, model.output)
    out_mse = float(np.mean((d_out - h_out) ** 2))
    rec["output_mse_vs_host"] = out_mse
    if dev.size == x_q.size:  # an autoencoder: the anomaly score is the reconstruction error
        real_in = dequantize(x_q.reshape(-1), model.input)
        d_score = float(np.mean((d_out.reshape(-1) - real_in) ** 2))
        h_score = float(np.mean((h_out.reshape(-1) - real_in) ** 2))
        rec.update(device_score=d_score, host_score=h_score,
                   score_agree=bool(abs(d_score - h_score) <= SCORE_RTOL * abs(h_score) + 1e-12))
    else:  # no reconstruction: the outputs must agree within one output quantization step (RMS)
        rec["score_agree"] = bool(out_mse <= (model.output.scale or 1.0) ** 2)
    rec["argmax_agree"] = rec["score_agree"]  # the gate's per-sample verdict, whatever the metric
    return rec
