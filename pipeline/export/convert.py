"""`export_int8`: a static PyTorch subnet -> ONNX -> onnx2tf -> full-int8 TFLite, checked at each step.

Steps: ONNX export + onnxruntime parity with PyTorch; onnx2tf (TF-converter backend: the only one in
onnx2tf 1.29) to a float TF graph, parity with ONNX; `tf.lite.TFLiteConverter` with int8 builtins only,
per-channel weights, int8 input and output, calibrated on a seeded subset of the calibration images;
then the op policy (`checks.check_tflm_int8`), the input contract and its proof against TFLite's own
QUANTIZE. The TensorFlow part runs in a child process (see `_workers/onnx_to_tflite.py`).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from .._io import write_bytes
from ..contract import InputContract
from ..errors import ExportError, UnsupportedOpError
from .checks import check_tflm_int8
from .input_contract import contract_from_model, verify_contract
from ..tflite.converter import FULL_INT8
from ..tflite.model_info import ModelInfo, inspect_tflite
from .onnx_export import ONNX_TOLERANCE, OnnxResult, export_onnx

WORKER = Path(__file__).with_name("_workers") / "onnx_to_tflite.py"
ONNX_NAME = "model.onnx"
TFLITE_NAME = "model_int8.tflite"
REJECTED_NAME = "model_int8.rejected.tflite"
TF_TOLERANCE = 1e-3
TOOLS = ("torch", "onnx", "onnxruntime", "onnxsim", "onnx2tf", "tensorflow-cpu", "tflite-micro")


@dataclass
class ExportResult:
    onnx_path: Path
    tflite_path: Path
    onnx: OnnxResult
    tf_float_max_abs_diff: float
    model: ModelInfo
    contract: InputContract
    contract_check: dict
    calib_count: int
    calib_indices: list[int]
    seed: int
    timings_s: dict[str, float] = field(default_factory=dict)
    tool_versions: dict[str, str] = field(default_factory=lambda: tool_versions())

    def to_dict(self) -> dict:
        return {"onnx": {"path": self.onnx_path.name, "opset": self.onnx.opset,
                         "max_abs_diff_vs_torch": self.onnx.max_abs_diff,
                         "parity_samples": self.onnx.num_parity_samples,
                         "node_counts": _counts(self.onnx.node_types)},
                "tf_float_max_abs_diff_vs_onnx": self.tf_float_max_abs_diff,
                "tflite": {"path": self.tflite_path.name, "quantization": {**FULL_INT8.to_dict(), "weights": "int8 per-channel"},
                           "calibration_images": self.calib_count, "calibration_seed": self.seed},
                "model": self.model.to_dict(),
                "input_contract": self.contract.to_dict(), "input_contract_check": self.contract_check,
                "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
                "tool_versions": self.tool_versions}


def tool_versions() -> dict[str, str]:
    out = {}
    for name in TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _counts(names) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in names:
        out[n] = out.get(n, 0) + 1
    return out


def pick_calibration(x_uint8: np.ndarray, num_calib: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded subset of at most `num_calib` images (all of them when there are fewer), in index order."""
    n = len(x_uint8)
    if n == 0:
        raise ExportError("no calibration images given", hint="pass the calibration split's images")
    if num_calib < 1:
        raise ExportError(f"num_calib must be >= 1, got {num_calib}")
    idx = np.arange(n) if n <= num_calib else np.sort(
        np.random.default_rng(seed).choice(n, num_calib, replace=False))
    return x_uint8[idx], idx


def _converter_ops(message: str) -> list[str]:
    """Op names the TFLite converter refused, from its MLIR diagnostics ('tf.Erf' op ...)."""
    return sorted(set(re.findall(r"'(?:tf|tfl)\.(\w+)' op", message)))


def _run_worker(onnx_path: Path, calib_f: np.ndarray, check_x: np.ndarray, check_y: np.ndarray,
                out_path: Path, workdir: Path, timeout_s: float) -> dict:
    for name, arr in (("calib.npy", calib_f), ("check_x.npy", check_x), ("check_y.npy", check_y)):
        np.save(workdir / name, np.ascontiguousarray(arr, dtype=np.float32))
    job = {"onnx": str(onnx_path), "calib": str(workdir / "calib.npy"), "check_x": str(workdir / "check_x.npy"),
           "check_y": str(workdir / "check_y.npy"), "out": str(out_path), "result": str(workdir / "result.json"),
           "quantization": FULL_INT8.to_dict()}
    (workdir / "job.json").write_text(json.dumps(job))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    log = workdir / "convert.log"
    try:
        with open(log, "w") as f:
            subprocess.run([sys.executable, str(WORKER), str(workdir / "job.json")], cwd=workdir, env=env,
                           stdout=f, stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise ExportError(f"onnx2tf/TFLite conversion took longer than {timeout_s:.0f} s",
                          hint="the machine may be overloaded; raise timeout_s") from None
    try:
        return json.loads((workdir / "result.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        tail = log.read_text(errors="replace")[-1500:]
        raise ExportError(f"the conversion process died without a result; its log ends with:\n{tail}") from None


def _worker_error(res: dict) -> ExportError:
    msg = res.get("error", "unknown error")
    if res.get("stage") == "quantize":
        ops = _converter_ops(msg)
        if ops:
            return UnsupportedOpError(
                f"the int8 TFLite converter refused op(s) {', '.join(ops)}: no int8 builtin kernel exists "
                f"for them, so TFLite Micro cannot run the model. Converter diagnostics:\n"
                + "\n".join(line.strip() for line in msg.splitlines() if "error" in line)[:2000],
                hint="replace the PyTorch layers that produce these ops with int8-friendly ones "
                     "(Conv2d/BatchNorm2d/ReLU6/pooling/Linear)")
        return ExportError(f"int8 quantization failed: {msg[:2000]}")
    if res.get("stage") == "onnx2tf":
        return ExportError(f"onnx2tf could not convert the ONNX graph: {msg[:2000]}",
                           hint="inspect model.onnx (e.g. with netron); onnx2tf supports standard CNN ops")
    return ExportError(f"conversion failed at stage '{res.get('stage')}': {msg[:2000]}")


def export_int8(model, *, calib_x_uint8: np.ndarray, out_dir: str | os.PathLike, num_calib: int = 200,
                seed: int = 0, opset: int = 13, onnx_tolerance: float = ONNX_TOLERANCE,
                tf_tolerance: float = TF_TOLERANCE, check_contract: bool = True,
                timeout_s: float = 900.0) -> ExportResult:
    """Export a static eval-mode PyTorch model (NCHW float input = pixels/255) to full-int8 TFLite.

    calib_x_uint8: uint8 NHWC images at the model's resolution (the calibration split). Writes
    `model.onnx` and `model_int8.tflite` atomically into `out_dir`.
    """
    import torch

    t_start = time.perf_counter()
    calib_x_uint8 = np.asarray(calib_x_uint8)
    if calib_x_uint8.dtype != np.uint8 or calib_x_uint8.ndim != 4 or calib_x_uint8.shape[3] not in (1, 3):
        raise ExportError(f"calibration images must be uint8 NHWC with 1 or 3 channels, got "
                          f"{calib_x_uint8.dtype} {calib_x_uint8.shape}",
                          hint="use Dataset.split('calibration', resolution).x")
    _, h, w, c = calib_x_uint8.shape
    out_dir = Path(out_dir).resolve()  # the conversion worker runs in another working directory
    out_dir.mkdir(parents=True, exist_ok=True)
    calib, calib_idx = pick_calibration(calib_x_uint8, num_calib, seed)
    pixel_contract = InputContract(h, w, c, 1.0, 0)  # only its uint8 -> float mapping is used here
    calib_f = pixel_contract.to_float(calib)  # NHWC float32 = pixels / 255
    rng = np.random.default_rng(seed)
    parity_nhwc = np.concatenate([calib_f[:8], rng.random((2, h, w, c), dtype=np.float32)])
    parity_nchw = parity_nhwc.transpose(0, 3, 1, 2)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    with torch.no_grad():
        onnx_res = export_onnx(model, out_dir / ONNX_NAME, parity_x=parity_nchw, opset=opset,
                               tolerance=onnx_tolerance)
    timings["onnx"] = time.perf_counter() - t

    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_res.path), so, providers=["CPUExecutionProvider"])
    check_y = np.concatenate([sess.run(None, {"input": x[None]})[0] for x in parity_nchw])

    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ofa-export-") as tmp:
        workdir = Path(tmp)
        scratch_tflite = workdir / TFLITE_NAME
        res = _run_worker(onnx_res.path, calib_f, parity_nhwc, check_y, scratch_tflite, workdir, timeout_s)
        if not res.get("ok"):
            raise _worker_error(res)
        data = scratch_tflite.read_bytes()
    timings["tflite_convert"] = time.perf_counter() - t
    for k, v in res.get("timings_s", {}).items():
        timings[f"worker_{k}"] = v
    tf_diff = float(res.get("tf_float_max_abs_diff", float("nan")))
    if not tf_diff <= tf_tolerance:
        raise ExportError(f"onnx2tf's float TF graph differs from ONNX: max abs diff {tf_diff:.3g} > "
                          f"{tf_tolerance:g}", hint="a layout conversion went wrong; inspect model.onnx")

    info = inspect_tflite(data)
    try:
        check_tflm_int8(info, height=h, width=w, channels=c)
    except ExportError as e:
        # Keep the refused model under a name no later stage picks up, so the user can inspect it.
        rejected = write_bytes(out_dir / REJECTED_NAME, data)
        raise type(e)(e.message, f"{e.hint} (the refused model is {rejected})") from None
    contract = contract_from_model(info)
    contract_check = verify_contract(contract) if check_contract else {"skipped": True}
    tflite_path = write_bytes(out_dir / TFLITE_NAME, data)
    timings["total"] = time.perf_counter() - t_start
    return ExportResult(onnx_path=onnx_res.path, tflite_path=Path(tflite_path), onnx=onnx_res,
                        tf_float_max_abs_diff=tf_diff, model=info, contract=contract,
                        contract_check=contract_check, calib_count=len(calib),
                        calib_indices=[int(i) for i in calib_idx], seed=seed, timings_s=timings)
