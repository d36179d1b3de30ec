"""Export a subnet to full-int8 TFLite, crosschecked float vs TFLite vs TFLite Micro, arena measured.

    res = export_int8(model, calib_x_uint8=calib.x, out_dir="out/")      # model.onnx, model_int8.tflite
    cc = crosscheck(res.tflite_path, model, test.x, test.y, res.contract)   # raises AccuracyGateError
    arena = measure_arena(res.tflite_path)                               # exact minimum, head/tail
    report = export_subnet("runs/d/supernet", "r24-w50k3e4k3e4-...", "out/")  # the whole stage

Names resolve lazily, so importing `pipeline.export` does not import torch or TensorFlow. The .tflite
reader is `pipeline.tflite` (every stage reads models through it).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "export_int8": "convert", "ExportResult": "convert", "tool_versions": "convert",
    "check_tflm_int8": "checks", "op_violations": "checks", "TFLM_INT8_OPS": "checks",
    "crosscheck": "compare", "CrosscheckReport": "compare",
    "measure_arena": "arena", "ArenaReport": "arena",
    "contract_from_model": "input_contract", "verify_contract": "input_contract",
    "export_subnet": "stage", "parse_arch": "stage",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
