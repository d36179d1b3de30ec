"""Child process: ONNX -> (onnx2tf) float TF graph -> (TFLiteConverter) full-int8 TFLite.

Run by path with the scratch directory as the working directory (never imported): onnx2tf reads a
calibration sample from the working directory for 3-channel inputs and would download it otherwise,
and TensorFlow's global state stays out of the caller. Reads one JSON job file, writes the model and a
JSON result (`ok`, `stage`, `error`, `tf_float_max_abs_diff`, timings).

job: {"onnx": path, "calib": .npy float32 NHWC, "check_x": .npy float32 NHWC, "check_y": .npy ONNX
outputs for check_x, "out": .tflite path, "result": .json path, "quantization": QuantizationConfig dict}
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# onnx2tf's fixed name for the sample it would download (onnx2tf/utils/common_functions.py,
# download_test_image_data): it only reads the array, so any float32 NHWC images in [0, 1] will do.
ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def _write_result(path: str, result: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, path)


def main(job_path: str) -> int:
    with open(job_path) as f:
        job = json.load(f)
    result: dict = {"ok": False, "stage": "import", "timings_s": {}}
    t0 = time.perf_counter()
    try:
        import numpy as np
        import tensorflow as tf
        import onnx2tf

        from pipeline.tflite.converter import QuantizationConfig

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        result["timings_s"]["import"] = time.perf_counter() - t0

        calib = np.load(job["calib"])
        if calib.shape[-1] == 3 and not os.path.exists(ONNX2TF_SAMPLE):
            reps = int(np.ceil(20 / len(calib)))
            np.save(ONNX2TF_SAMPLE, np.concatenate([calib] * reps)[:20].astype(np.float32))

        result["stage"] = "onnx2tf"
        t = time.perf_counter()
        model = onnx2tf.convert(input_onnx_file_path=job["onnx"], output_folder_path="tf_model",
                                disable_model_save=True, not_use_onnxsim=True, non_verbose=True,
                                verbosity="error")
        result["timings_s"]["onnx2tf"] = time.perf_counter() - t
        result["tf_input_shape"] = [None if d is None else int(d) for d in model.inputs[0].shape]

        # Float parity first: an int8 collapse is otherwise impossible to tell from a layout bug.
        check_x, check_y = np.load(job["check_x"]), np.load(job["check_y"])
        got = np.concatenate([model(x[None], training=False).numpy() for x in check_x])
        result["tf_float_max_abs_diff"] = float(np.max(np.abs(got - check_y)))

        result["stage"] = "quantize"
        t = time.perf_counter()
        fn = tf.function(lambda x: model(x, training=False),
                         input_signature=[tf.TensorSpec(model.inputs[0].shape, tf.float32)])
        conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)

        def representative():
            for x in calib:
                yield [x[None].astype(np.float32)]

        data = QuantizationConfig.from_dict(job.get("quantization", {})).apply(conv, representative).convert()
        result["timings_s"]["quantize"] = time.perf_counter() - t
        tmp = job["out"] + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, job["out"])
        result["ok"] = True
        result["stage"] = "done"
    except Exception as e:  # reported to the parent, which raises the typed error
        result["error"] = f"{e.__class__.__name__}: {e}"
        result["traceback"] = traceback.format_exc()[-4000:]
    result["timings_s"]["total"] = time.perf_counter() - t0
    _write_result(job["result"], result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
