"""Float PyTorch vs int8 TFLite (reference kernels) vs int8 TFLite Micro, on every test sample.

Every int8 input goes through the input contract (`contract.quantize`), exactly as the firmware and
the serial checker feed the board. TFLite Micro must reproduce the TFLite reference kernels bit for bit
(the board runs TFLM; the reference kernels are the specification), and the int8 accuracy may fall
at most `max_drop_points` below the float model's.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..contract import InputContract
from ..errors import AccuracyGateError, ExportError
from ..tflite.model_info import inspect_tflite


@dataclass
class CrosscheckReport:
    num_samples: int
    float_accuracy: float
    tflite_ref_accuracy: float
    tflm_accuracy: float
    drop_points: float  # 100 * (float - int8) accuracy; int8 = the worse of TFLite ref and TFLM
    argmax_agreement: float  # fraction of samples where float and int8 (TFLM) pick the same class
    bit_exact_samples: int  # TFLM output == TFLite reference output, byte for byte
    mismatches: int
    first_mismatch: dict | None
    max_drop_points: float
    tflm_arena_bytes: int
    reference: str = "tensorflow tf.lite.Interpreter, OpResolverType.BUILTIN_REF"

    @property
    def bit_exact(self) -> bool:
        return self.mismatches == 0

    @property
    def accuracy_ok(self) -> bool:
        return self.drop_points <= self.max_drop_points

    @property
    def passed(self) -> bool:
        return self.bit_exact and self.accuracy_ok

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(bit_exact=self.bit_exact, accuracy_ok=self.accuracy_ok, passed=self.passed)
        return d

    def summary(self) -> str:
        return (f"float {100 * self.float_accuracy:.2f}% | int8 TFLite-ref {100 * self.tflite_ref_accuracy:.2f}% | "
                f"int8 TFLM {100 * self.tflm_accuracy:.2f}% | drop {self.drop_points:+.2f} pt (gate "
                f"{self.max_drop_points:g}) | agreement {100 * self.argmax_agreement:.1f}% | TFLM==ref "
                f"{self.bit_exact_samples}/{self.num_samples}")

    def raise_if_failed(self) -> None:
        if not self.bit_exact:
            m = self.first_mismatch or {}
            raise AccuracyGateError(
                f"TFLite Micro differs from the TFLite reference kernels on {self.mismatches} of "
                f"{self.num_samples} samples (first: sample {m.get('sample')}: ref {m.get('tflite_ref')} vs "
                f"TFLM {m.get('tflm')}, max |diff| {m.get('max_abs_diff')})",
                hint="the int8 model uses a kernel whose TFLM and TFLite implementations disagree; "
                     "report the model and the tool versions in export_report.json")
        if not self.accuracy_ok:
            raise AccuracyGateError(
                f"int8 accuracy drop {self.drop_points:.2f} points exceeds the gate of {self.max_drop_points:g}: "
                f"float {100 * self.float_accuracy:.2f}%, int8 TFLite-ref {100 * self.tflite_ref_accuracy:.2f}%, "
                f"int8 TFLM {100 * self.tflm_accuracy:.2f}%, float/int8 argmax agreement "
                f"{100 * self.argmax_agreement:.1f}% over {self.num_samples} test samples",
                hint="check the calibration images (they must look like the real inputs; raise --calib), "
                     "or relax the gate with --max-drop")


def _float_logits(float_model, x_uint8: np.ndarray, contract: InputContract, batch: int = 256) -> np.ndarray:
    import torch

    out = []
    float_model = float_model.eval()
    with torch.no_grad():
        for i in range(0, len(x_uint8), batch):
            xf = torch.from_numpy(contract.to_float(x_uint8[i:i + batch])).permute(0, 3, 1, 2).contiguous()
            out.append(float_model(xf).numpy())
    return np.concatenate(out)


def reference_interpreter(model_data: bytes):
    """TensorFlow's TFLite interpreter with the reference kernels (BUILTIN_REF), tensors allocated.

    TensorFlow's build, not ai-edge-litert's: LiteRT 2.1's reference FULLY_CONNECTED rounds the int8
    requantization once where TFLite Micro (and TensorFlow 2.19's reference kernel) round twice, so it
    disagrees with the board by 1 LSB on some samples."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        it = tf.lite.Interpreter(model_content=model_data, num_threads=1,
                                 experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    return it


def run_tflite_ref(model_data: bytes, x_int8: np.ndarray) -> np.ndarray:
    """int8 outputs of the TFLite reference kernels, one sample at a time."""
    it = reference_interpreter(model_data)
    i_idx, o_idx = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    out = []
    for x in x_int8:
        it.set_tensor(i_idx, x[None])
        it.invoke()
        out.append(it.get_tensor(o_idx)[0].copy())
    return np.stack(out)


def run_tflm(model_data: bytes, x_int8: np.ndarray, arena_bytes: int) -> np.ndarray:
    """int8 outputs of the TFLite Micro runtime with the given arena."""
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(model_data, arena_size=arena_bytes)
    out = []
    for x in x_int8:
        it.set_input(x[None], 0)
        it.invoke()
        out.append(np.asarray(it.get_output(0))[0].copy())
    return np.stack(out)


def safe_arena_bytes(model_data: bytes) -> int:
    """An arena comfortably above what TFLM needs, for in-process runs (a too-small one segfaults)."""
    from ..costs.graph import activation_floor_bytes, graph_from_tflite
    info = inspect_tflite(model_data)
    return int(max(16 * info.model_bytes, 4 * activation_floor_bytes(graph_from_tflite(info)), 1 << 20))


def crosscheck(tflite_path: str | os.PathLike, float_model, test_x_uint8: np.ndarray, test_y: np.ndarray,
               contract: InputContract, *, max_drop_points: float = 2.0, arena_bytes: int | None = None,
               raise_on_fail: bool = True) -> CrosscheckReport:
    """Compare float, TFLite-ref int8 and TFLM int8 on (test_x_uint8, test_y); raise AccuracyGateError
    when TFLM is not bit-exact with the reference kernels or the int8 drop exceeds the gate."""
    data = Path(tflite_path).read_bytes()
    test_x_uint8 = np.asarray(test_x_uint8)
    test_y = np.asarray(test_y)
    if len(test_x_uint8) == 0 or len(test_x_uint8) != len(test_y):
        raise ExportError(f"crosscheck needs matching non-empty samples and labels, got "
                          f"{len(test_x_uint8)} and {len(test_y)}")
    x_int8 = contract.quantize(test_x_uint8)  # raises on a shape that is not the model's input
    arena = arena_bytes or safe_arena_bytes(data)

    logits = _float_logits(float_model, test_x_uint8, contract)
    ref = run_tflite_ref(data, x_int8)
    micro = run_tflm(data, x_int8, arena)

    same = np.all(ref.reshape(len(ref), -1) == micro.reshape(len(micro), -1), axis=1)
    first = None
    if not same.all():
        k = int(np.flatnonzero(~same)[0])
        first = {"sample": k, "tflite_ref": ref[k].tolist(), "tflm": micro[k].tolist(),
                 "max_abs_diff": int(np.max(np.abs(ref[k].astype(np.int32) - micro[k].astype(np.int32))))}
    pf, pr, pm = logits.argmax(1), ref.argmax(1), micro.argmax(1)
    acc = lambda p: float(np.mean(p == test_y))  # noqa: E731
    fa, ra, ma = acc(pf), acc(pr), acc(pm)
    report = CrosscheckReport(
        num_samples=len(test_y), float_accuracy=fa, tflite_ref_accuracy=ra, tflm_accuracy=ma,
        drop_points=round(100.0 * (fa - min(ra, ma)), 4), argmax_agreement=float(np.mean(pf == pm)),
        bit_exact_samples=int(same.sum()), mismatches=int((~same).sum()), first_mismatch=first,
        max_drop_points=float(max_drop_points), tflm_arena_bytes=int(arena))
    if raise_on_fail:
        report.raise_if_failed()
    return report
