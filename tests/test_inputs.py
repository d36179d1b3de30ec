"""Any input a TFLite Micro model takes, through codegen and `check` on the virtual board.

Tiny models with the input/output shapes of the four MLPerf Tiny reference models (KWS 49x10x1 -> 12,
VWW 96x96x3 -> 2, IC 32x32x3 -> 10, AD 640 -> 640), int8 and int16 (16x8), built here with TensorFlow's
converter; npz data matching their input; the device's outputs must equal the host TFLite Micro's.
Mismatches (shape, dtype, class count) are refused before the first sample, naming both sides."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import make_tiny_tensor_tflite  # noqa: E402

from pipeline.codegen import build_context, generate_firmware  # noqa: E402
from pipeline.contract import TensorContract, quantize_real  # noqa: E402
from pipeline.errors import ArtifactError, InputContractError  # noqa: E402
from pipeline.serial import check  # noqa: E402
from pipeline.serial.sim import SimOptions  # noqa: E402
from pipeline.boards import load_board  # noqa: E402
from pipeline.tflite.model_info import inspect_tflite  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIM = dict(timeout_s=0.3, progress=False, log=lambda *a, **k: None)


def _sim() -> SimOptions:
    return SimOptions(baud=2_000_000, turnaround_ms=0.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    out = {}
    for kind in ("kws", "vww", "ic", "ad"):
        out[kind, "int8"] = make_tiny_tensor_tflite(d / f"{kind}_int8" / "model_int8.tflite", kind)
    for kind in ("kws", "ad"):
        out[kind, "int16"] = make_tiny_tensor_tflite(d / f"{kind}_int16" / "model_int16.tflite", kind,
                                                     dtype="int16")
    return out


def _npz(path: Path, x: np.ndarray, y: np.ndarray | None = None) -> str:
    np.savez(path, x=x, **({"y": y} if y is not None else {}))
    return f"npz:{path}"


def _labels(n: int, k: int) -> np.ndarray:
    return np.arange(n) % k


@pytest.mark.slow
@pytest.mark.parametrize("kind,dtype", [("kws", "int8"), ("vww", "int8"), ("ic", "int8"), ("ad", "int8"),
                                        ("kws", "int16"), ("ad", "int16")])
def test_mlperf_tiny_shapes_codegen_and_check_equal_the_host(tiny, kind, dtype, tmp_path):
    model, calib = tiny[kind, dtype]
    info = inspect_tflite(model)
    assert info.input.dtype == dtype.upper() and info.output.dtype == dtype.upper()
    fw = generate_firmware(model, "qemu-mps2-an386", tmp_path / "fw")
    settings = (fw / "model_settings.h").read_text()
    assert f"#define OFA_INPUT_RANK {len(info.input.shape)}" in settings
    assert f"#define OFA_INPUT_PROTO_DTYPE PROTO_DTYPE_{dtype.upper()}" in settings
    # real-valued (float) samples, quantized on the host; the AD vector has no labels: mse metric
    n = 12
    x = np.concatenate([calib] * (n // len(calib) + 1))[:n]
    outputs = info.output.num_elements
    y = None if kind == "ad" else _labels(n, outputs)
    spec = _npz(tmp_path / "data.npz", x, y)
    rep = check("sim", model, spec, out_dir=tmp_path / "chk", sim_options=_sim(), gate=1.0, **SIM)
    assert rep["samples"] == n and rep["gate"]["passed"]
    assert rep["agreement"]["exact_logits"] == 1.0  # the virtual board runs TFLM's reference kernels
    assert rep["input"]["input_kind"] == "tensor" and rep["input"]["input_shape"] == list(info.input.shape)
    if kind == "ad":
        assert rep["metric"] == "mse" and rep["agreement"]["anomaly_score"] == 1.0
        assert rep["accuracy"] is None and rep["agreement"]["score"]["host_mean"] > 0
    else:
        assert rep["metric"] == "top1" and rep["agreement"]["argmax"] == 1.0


def test_quantized_tensor_values_are_sent_as_they_are(tiny, tmp_path):
    """int8 npz samples are the model's tensor values: the host reference sees exactly those bytes."""
    from pipeline._io import read_jsonl
    from pipeline.serial.reference import TflmRunner

    model, _ = tiny["kws", "int8"]
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, size=(12, 49, 10), dtype=np.int8)  # no channel axis: added for 49x10x1
    spec = _npz(tmp_path / "q.npz", x, _labels(12, 12))
    check("sim", model, spec, out_dir=tmp_path / "chk", sim_options=_sim(), **SIM)
    runner = TflmRunner(model)
    logged = [r for r in read_jsonl(tmp_path / "chk" / "check.jsonl") if r.get("kind") == "sample"]
    for r in logged:
        assert r["output"] == np.frombuffer(runner.run(x[r["i"]].tobytes()), np.int8).tolist()


def test_float_samples_are_quantized_like_tflite():
    c = TensorContract((1, 4), "int16", 0.5, 3)
    q = c.quantize(np.array([[0.25, -0.25, 0.75, 1e9]], np.float32))
    assert q.dtype == np.int16 and q.tolist() == [[4, 2, 5, 32767]]  # half away from zero, then clamp
    assert quantize_real(np.array([-0.25]), 0.5, 0, "int8").tolist() == [-1]
    with pytest.raises(TypeError, match="int16"):
        c.quantize(np.zeros((1, 4), np.int8))


@pytest.mark.parametrize("bad,fragment", [
    (lambda: (np.zeros((4, 10, 49, 1), np.int8), _labels(4, 12)), "samples are 10x49x1 but the model input is 49x10x1"),
    (lambda: (np.zeros((4, 49, 10, 1), np.int16), _labels(4, 12)), "samples are int16 but the model input is int8"),
    (lambda: (np.zeros((4, 49, 10, 1), np.int8), _labels(4, 3)), "has 3 classes but the model outputs 12 values"),
])
def test_contract_mismatches_are_refused_before_the_first_sample(tiny, tmp_path, bad, fragment):
    model, _ = tiny["kws", "int8"]
    x, y = bad()
    spec = _npz(tmp_path / "bad.npz", x, y)
    with pytest.raises(InputContractError, match=fragment) as e:
        check("/dev/does-not-exist", model, spec, out_dir=tmp_path / "chk", **SIM)  # no port is ever opened
    assert e.value.exit_code == 4
    assert not (tmp_path / "chk" / "check.jsonl").exists()


def test_class_count_against_the_builtin_digits_is_refused(tiny, tmp_path):
    """A model with 2 outputs checked against the 10-class digits used to PASS; now it is refused."""
    model, _ = tiny["vww", "int8"]
    with pytest.raises(InputContractError, match="builtin:digits-rgb has 10 classes but the model outputs 2"):
        check("sim", model, "builtin:digits-rgb", out_dir=tmp_path / "chk", **SIM)


def test_cli_refuses_a_mismatch_with_one_line_and_exit_code_4(tiny, tmp_path):
    model, _ = tiny["ad", "int8"]
    spec = _npz(tmp_path / "short.npz", np.zeros((3, 64), np.float32))
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "check", "--port", "sim", "--model", str(model),
                        "--data", spec, "--out", str(tmp_path / "chk"), "--no-progress"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 4, r.stderr
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "samples are 64 but the model input is 640" in err[0]
    assert "Traceback" not in r.stderr


def test_mse_metric_for_an_autoencoder_and_forced_top1_refused(tiny, tmp_path):
    model, calib = tiny["ad", "int8"]
    with pytest.raises(InputContractError, match="no labels; top-1 needs y"):
        check("sim", model, _npz(tmp_path / "a.npz", calib[:4]), out_dir=tmp_path / "c", metric="top1", **SIM)


def test_non_square_image_model_checks_the_builtin_digits(tmp_path):
    """An NHWC image model with H != W: the digits are resized to 12x8 (the loader used to refuse)."""
    import tensorflow as tf

    from tiny_models import int8_tflite_from_keras

    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((12, 8, 1), batch_size=1)
    x = tf.keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    out = tf.keras.layers.Dense(10)(tf.keras.layers.GlobalAveragePooling2D()(x))
    calib = np.random.default_rng(0).integers(0, 256, size=(16, 12, 8, 1), dtype=np.uint8)
    model = tmp_path / "m" / "model_int8.tflite"
    model.parent.mkdir()
    model.write_bytes(int8_tflite_from_keras(tf.keras.Model(inp, out), calib))
    rep = check("sim", model, "builtin:digits", out_dir=tmp_path / "chk", limit=20, gate=0.0,
                sim_options=_sim(), **SIM)
    assert rep["input"]["input_kind"] == "image" and rep["input"]["resolution"] == [12, 8]
    assert rep["agreement"]["exact_logits"] == 1.0
    generate_firmware(model, "qemu-mps2-an386", tmp_path / "fw")
    settings = (tmp_path / "fw" / "model_settings.h").read_text()
    assert "#define OFA_INPUT_HEIGHT 12" in settings and "#define OFA_INPUT_WIDTH 8" in settings


def test_codegen_for_a_vector_model_has_no_pixel_table_and_refuses_float_io(tiny, tmp_path):
    model, _ = tiny["ad", "int8"]
    ctx = build_context(model, load_board("qemu-mps2-an386"))
    assert ctx.input_kind == "tensor" and ctx.input_lut == () and ctx.input.dims4 == (1, 640, 0, 0)
    fw = generate_firmware(model, "qemu-mps2-an386", tmp_path / "fw")
    settings = (fw / "model_settings.h").read_text()
    assert "kInputLut" not in settings and "OFA_INPUT_HEIGHT" not in settings
    assert "#define OFA_INPUT_DIMS_INIT { 1, 640, 0, 0 }" in settings
    # a float-input model is refused with a hint that says what to do, not "re-run the stage"
    import tensorflow as tf

    inp = tf.keras.Input((5,), batch_size=1)
    float_model = tmp_path / "float.tflite"
    float_model.write_bytes(tf.lite.TFLiteConverter.from_keras_model(
        tf.keras.Model(inp, tf.keras.layers.Dense(2)(inp))).convert())
    with pytest.raises(ArtifactError, match="model input is float32") as e:
        generate_firmware(float_model, "qemu-mps2-an386", tmp_path / "fw2")
    assert "full-integer quantization" in e.value.hint
